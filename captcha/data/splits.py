"""Which samples of a dataset are for training and which for validation, in either layout.

One reader serves training (``training.dataset``), `captcha eval --val` (the held-out part a
checkpoint recorded) and `captcha eval DIR` (any labelled folder), so they can never disagree
about which captchas were held out. Pure data: no torch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..charset import Charset
from ..config import VAL_FRACTION
from ..errors import ConfigError, DataError
from .images import file_digest, is_image_name
from .layout import (
    Problem,
    dataset_folder,
    detect_layout,
    left_out_note,
    load_images,
    read_captcha_labels,
    read_char_folder,
)
from .segment import SegmentConfig
from .synth import seed_for

Captcha = tuple[Any, str]  # (RGB PIL image, label)


@dataclass
class EvalData:
    """What a model is measured on: single characters and whole captchas, with its length and splitter."""

    char_images: list
    char_targets: list[int]
    captchas: list[Captcha]
    length: int  # characters a captcha; 0: any (a CTC model of a site whose lengths vary)
    segment: SegmentConfig
    split: dict[str, Any]
    left_out: list[Problem] = field(default_factory=list)  # labelled files not measured, and why


@dataclass
class Parts:
    """A dataset read into its training and validation parts (samples, or decoded captchas)."""

    train_chars: list
    val_chars: list
    train_caps: list[Captcha]
    val_caps: list[Captcha]
    split: dict[str, Any]


def flat_split(names: list[str], val_fraction: float, seed: int) -> set[str]:
    """Deterministic held-out file names of a flat captcha folder (none for a fraction of 0)."""
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"--val-fraction must be from 0 to below 1, got {val_fraction}")
    if val_fraction == 0:
        return set()
    order = sorted(names)
    random.Random(seed_for(seed, "split")).shuffle(order)
    return set(order[: max(1, round(len(order) * val_fraction))])


def read_captchas(folder: Path, charset: Charset, problems: list[Problem] | None = None) -> list[Captcha]:
    """Decoded labelled captchas of one folder (none when it does not exist); unreadable ones, and labels the
    ``charset`` cannot spell, are left out (each appended to ``problems`` where given)."""
    if not folder.is_dir():
        return []
    collected = problems is not None  # else an unreadable one is logged, as load_images does
    problems = problems if collected else []
    images, kept = load_images(read_captcha_labels(folder, charset, problems=problems),
                               (lambda s, exc: problems.append(Problem.unreadable(s.path, exc))) if collected else None)
    return list(zip(images, [s.label for s in kept]))


def read_parts(root: Path, charset: Charset, val_fraction: float, seed: int,
                val_files: list[str] | None = None, val_only: bool = False) -> Parts:
    """Both layouts: the course's chars/ + captchas/ folders, or a flat folder split by seed
    (or by the recorded ``val_files``). ``val_only`` skips decoding the training part."""
    if detect_layout(root) == "course":
        def chars(part: str) -> list:
            return read_char_folder(root / "chars" / part, charset, problems=[]) if (root / "chars" / part).is_dir() else []

        return Parts([] if val_only else chars("train"), chars("val"),
                      [] if val_only else read_captchas(root / "captchas" / "train", charset),
                      read_captchas(root / "captchas" / "val", charset), {"layout": "course", "root": str(root)})
    samples = read_captcha_labels(root, charset, problems=[])
    names = [s.path.name for s in samples]
    held = set(val_files) if val_files is not None else flat_split(names, val_fraction, seed)
    if val_only:
        samples = [s for s in samples if s.path.name in held]
    images, kept = load_images(samples)
    caps = list(zip(images, [s.label for s in kept]))
    is_val = [s.path.name in held for s in kept]
    info = {"layout": "flat", "root": str(root), "seed": seed, "val_fraction": val_fraction, "val_files": sorted(held),
            "labelled": len(names)}
    return Parts([], [], [c for c, v in zip(caps, is_val) if not v], [c for c, v in zip(caps, is_val) if v], info)


def validation_data(ckpt: dict[str, Any], data: str | Path | None = None) -> EvalData:
    """The validation part of the data a checkpoint was trained on (for `captcha eval --val`)."""
    info = ckpt.get("split", {})
    root = Path(data or info.get("root") or ckpt["train_config"]["data"])
    if not root.is_dir():
        raise DataError(f"{root}: validation data not found; pass --data DIR")
    charset = Charset.from_dict(ckpt["charset"])
    conf = ckpt["train_config"]
    recorded = info.get("val_files") if info.get("layout") == "flat" else None
    if recorded == [] and (ckpt.get("refit") or {}).get("validation_trained_on"):
        est = ckpt["refit"]["estimate"]["val"].get("string_acc")
        raise DataError(f"{root}: the checkpoint was trained again on every labelled captcha there (refit), so none "
                        f"is left to validate on" + (f"; its estimate from before: {100 * est:.2f}% full-string"
                                                     if est is not None else "")
                        + "; evaluate on other labelled captchas with `captcha eval --data DIR`, or train with --no-refit")
    share = conf.get("val_fraction")
    parts = read_parts(root, charset, VAL_FRACTION if share is None else share, conf.get("seed", 0), recorded,
                       val_only=True)
    return _evaluation_data(parts, ckpt, charset, root)


def trained_on(ckpt: dict[str, Any], data: str | Path) -> int:
    """How many of the images `captcha eval --data` reads in ``data`` (a flat folder's, or a course layout's
    val parts) are, byte for byte, files of the checkpoint's training data: its training folder's but those it
    held out, where that folder is still there (0 where it is not). Figures read on them overstate what it reads
    of new captchas."""
    info = ckpt.get("split") or {}
    root = Path(info.get("root") or (ckpt.get("train_config") or {}).get("data") or "")
    if not str(root) or not root.is_dir():
        return 0
    if info.get("layout") == "flat":
        held = set(info.get("val_files") or [])
        files = [p for p in _images_under(root, flat=True) if p.name not in held]
    else:
        files = _images_under(root / "chars" / "train") + _images_under(root / "captchas" / "train")
    seen = {file_digest(p) for p in files}
    data = Path(data)
    read = _images_under(data, flat=True) if detect_layout(data) == "flat" else \
        _images_under(data / "chars" / "val") + _images_under(data / "captchas" / "val")
    return sum(file_digest(p) in seen for p in read)


def _images_under(folder: Path, flat: bool = False) -> list[Path]:
    """The image files in ``folder`` (``flat``) or anywhere below it; none where it does not exist."""
    if not folder.is_dir():
        return []
    return sorted(p for p in (folder.iterdir() if flat else folder.rglob("*")) if p.is_file() and is_image_name(p.name))


def labelled_data(ckpt: dict[str, Any], data: str | Path) -> EvalData:
    """Any labelled data for `captcha eval DATASET`: every captcha of a flat folder, or the chars/val
    and captchas/val parts of a course-layout dataset."""
    root = dataset_folder(data)
    charset = Charset.from_dict(ckpt["charset"])
    left_out: list[Problem] = []  # a flat folder's captchas the model's characters cannot spell, or unreadable
    if detect_layout(root) == "course":
        parts = read_parts(root, charset, 0.2, 0, val_only=True)
    else:
        parts = Parts([], [], [], read_captchas(root, charset, left_out), {"layout": "flat", "root": str(root)})
    return _evaluation_data(parts, ckpt, charset, root, left_out)


def _evaluation_data(parts: Parts, ckpt: dict[str, Any], charset: Charset, root: Path,
                     left_out: list[Problem] | None = None) -> EvalData:
    v_imgs, v_kept = load_images(parts.val_chars)
    if not v_imgs and not parts.val_caps:
        raise DataError(f"{root}: no labelled data to evaluate (chars/val, captchas/val, or labelled captchas)"
                        + (f"; left out: {left_out_note(left_out)}" if left_out else ""))
    return EvalData(v_imgs, [charset.encode(s.label)[0] for s in v_kept], parts.val_caps,
                    int(ckpt["length"]), SegmentConfig.from_dict(ckpt["segment"]), parts.split, list(left_out or []))
