"""The project's exception types: every failure a user can cause is one of these."""

import os
import tempfile
from pathlib import Path


class CaptchaError(Exception):
    """Base class: the CLI turns any of these into one clear line and a non-zero exit."""


class ImageError(CaptchaError, ValueError):
    """An input file is not an image we can read (empty, truncated, too large, not an image...)."""


class DataError(CaptchaError, ValueError):
    """A dataset folder does not follow the documented layout."""


class CheckpointError(CaptchaError, ValueError):
    """A checkpoint file is missing, corrupt, foreign, too new or does not match."""


class ConfigError(CaptchaError, ValueError):
    """An option or setting is invalid (a bad value, a device that is not there, a contradiction)."""


def require_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path, or a CheckpointError saying how to get a checkpoint there."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; train one with `captcha train --out {path}`, "
                              "or pass --checkpoint PATH")
    return path


def require_writable(path: str | os.PathLike, option: str = "--out") -> Path:
    """``path`` as a Path once its folder is made and a file could be written in it, else a ConfigError: a run
    that would write there learns it before training, not at its first checkpoint."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot write there ({exc.strerror or exc}); choose a folder you can "
                          "write to") from None
    return path
