"""One self-describing checkpoint file: written atomically, read without running any code."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, require_file

FORMAT = "captcha-checkpoint"
VERSION = 1
KINDS = ("recognizer", "backbone")
NOT_A_CHECKPOINT = "corrupt, or not a checkpoint written by `captcha train` or `captcha pretrain`"
REQUIRED = {
    "recognizer": ("arch", "charset", "preprocess", "length", "segment", "model"),
    "backbone": ("arch", "model"),
}


def last_file(out: str | os.PathLike) -> Path:
    """Where a run writing ``out`` keeps its latest state for ``--resume``: ``<out>.last.pt`` beside it."""
    out = Path(out)
    return out.with_name(out.stem + ".last.pt")


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``payload`` to ``path`` via a temp file + rename, so a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, **payload}
    if payload.get("kind") not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def half_precision(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with its floating-point tensors in float16: half the bytes of a shipped file (loading
    into a float32 model converts them back)."""
    return {k: v.half() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in state.items()}


def read_weights_file(path: str | os.PathLike) -> Any:
    """``torch.load(weights_only=True)`` of ``path``, every failure turned into a clear CheckpointError."""
    path = require_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses anything but tensors and plain containers: a crafted file stops here.
        # torch raises one exception type for both cases; only its message tells a refused global
        # (a crafted file) from bytes that are no pickle at all
        refused = [ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln]
        if not refused:
            raise CheckpointError(f"{path}: {NOT_A_CHECKPOINT}") from None
        raise CheckpointError(f"{path}: refused, the file holds objects other than weights ({refused[0]}); "
                              "only load checkpoints you trust") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file") from None
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied; check the file's permissions") from None
    except Exception:  # noqa: BLE001 - torch.load raises KeyError, RuntimeError, ... on foreign bytes
        # PyTorch's own message (which may ask the user to file a PyTorch issue) would mislead here.
        raise CheckpointError(f"{path}: {NOT_A_CHECKPOINT}") from None


def is_checkpoint(obj: Any) -> bool:
    """True for a dict carrying this project's checkpoint marker."""
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def load_checkpoint(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` and check that it is ours, complete and not too new."""
    return check_checkpoint(read_weights_file(path), path, kind)


def check_checkpoint(ckpt: Any, path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """``ckpt`` itself when it is a complete checkpoint of ``kind`` that this version can read."""
    if not is_checkpoint(ckpt):
        raise CheckpointError(f"{path}: not a captcha checkpoint (no format={FORMAT!r} marker)")
    version = ckpt.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version!r} is newer than this "
                              f"captcha ({VERSION}); upgrade the package")
    got = ckpt.get("kind")
    if got not in KINDS:
        raise CheckpointError(f"{path}: unknown checkpoint kind {got!r}")
    if kind is not None and got != kind:
        raise CheckpointError(f"{path}: is a {got} checkpoint, expected a {kind}")
    missing = [k for k in REQUIRED[got] if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}; it is incomplete or damaged")
    return ckpt
