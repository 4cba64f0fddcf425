"""Preprocessing, defined once: crop -> fixed size -> float array -> normalisation.

Training, evaluation and solving all call :class:`Preprocess`; its settings live in the
checkpoint. Augmentation (``augment``) is added on top for training only. This module uses
numpy and Pillow, not torch, so the ONNX solving path can share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..config import CTC_COLUMNS, CTC_MAGNIFY, CTC_MAX_HEIGHT, CTC_TALL

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
COLUMN_PIXELS = 8  # input pixels per feature column of the CTC network (networks.SeqNet's width stride)


@dataclass
class Preprocess:
    """Turns a character crop (RGB PIL image) into the network's normalised CHW float32 input."""

    size: tuple[int, int] = (32, 32)  # (height, width): small inputs keep a ResNet-18 fast on a CPU
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        self.size = (int(self.size[0]), int(self.size[1]))
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        self._scale = (1.0 / (255.0 * np.asarray(self.std, dtype=np.float32))).reshape(3, 1, 1)
        self._shift = (np.asarray(self.mean, dtype=np.float32) / np.asarray(self.std, dtype=np.float32)).reshape(3, 1, 1)

    def resize(self, crop: Image.Image) -> np.ndarray:
        """Crop image -> HWC uint8 array of the fixed size."""
        h, w = self.size
        if crop.size != (w, h):
            crop = crop.resize((w, h), Image.BILINEAR, reducing_gap=None)
        return np.asarray(crop, dtype=np.uint8)

    def normalize(self, arr: np.ndarray) -> np.ndarray:
        """HWC uint8 -> CHW float32, normalised as the backbone expects (also a stack: NHWC -> NCHW)."""
        return np.moveaxis(arr, -1, -3).astype(np.float32, order="C") * self._scale - self._shift

    def __call__(self, crop: Image.Image) -> np.ndarray:
        return self.normalize(self.resize(crop))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the checkpoint."""
        return {"size": list(self.size), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocess":
        """Rebuild from :meth:`to_dict`."""
        return cls(size=tuple(d["size"]), mean=tuple(d["mean"]), std=tuple(d["std"]))


def columns_width(length: int, stride: int = COLUMN_PIXELS) -> int:
    """The narrowest input that gives each of ``length`` characters ``CTC_COLUMNS`` feature columns."""
    return stride * CTC_COLUMNS * length


def widened(x: np.ndarray, width: int) -> np.ndarray:
    """Network inputs (..., H, W) resampled (linearly, along the width alone) to ``width`` columns: the
    normalised arrays stretched as the image would be, with no image to decode again."""
    old = x.shape[-1]
    pos = np.clip((np.arange(width) + 0.5) * old / width - 0.5, 0, old - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, old - 1)
    frac = (pos - lo).astype(np.float32)
    return np.ascontiguousarray(x[..., lo] * (1 - frac) + x[..., hi] * frac, dtype=np.float32)


def whole_captcha_size(sizes: Sequence[tuple[int, int]], stride: int = COLUMN_PIXELS, height: int | None = None,
                       length: int = 0) -> tuple[int, int]:
    """Network input (height, width) for reading whole captchas of these (width, height) sizes.

    Keeps the glyphs near the scale the start was pretrained at: ``height`` when given (the general
    reader's own input height), else the median height rounded to a multiple of 16 within 32..64
    (the glyph backbone's characters fill about 32 pixels); the median aspect ratio, and a width in
    whole feature columns (``stride`` pixels each), widened where that leaves a captcha of ``length``
    characters fewer than ``CTC_COLUMNS`` columns a character (cramped glyphs are stretched apart).
    """
    if not sizes:
        return (height or 32, max(128, columns_width(length, stride)))
    w = float(np.median([s[0] for s in sizes]))
    h = float(np.median([s[1] for s in sizes]))
    height = height or int(min(64, max(32, 16 * round(h / 16))))
    width = int(max(2 * stride, stride * round(height * w / h / stride), columns_width(length, stride)))
    return (height, width)


def whole_captcha_sizes(sizes: Sequence[tuple[int, int]], stride: int = COLUMN_PIXELS,
                        height: int | None = None, length: int = 0) -> list[tuple[int, int]]:
    """The inputs worth probing for whole captchas of up to ``length`` characters: :func:`whole_captcha_size`'s,
    and, when the captchas are much taller than the start's ``height`` (fine strokes, dot screens that
    shrinking would blur away), one nearer their own height (a multiple of 16, at most ``CTC_MAX_HEIGHT``)."""
    first = whole_captcha_size(sizes, stride, height, length)
    h = float(np.median([s[1] for s in sizes])) if sizes else 0.0
    if not height or h < CTC_TALL * height:
        return [first]
    tall = int(min(CTC_MAX_HEIGHT, max(height + 16, 16 * round(h / 16))))
    return [first, whole_captcha_size(sizes, stride, tall, length)]


def magnified_size(size: tuple[int, int], factor: tuple[float, float] = CTC_MAGNIFY,
                   stride: int = COLUMN_PIXELS) -> tuple[int, int]:
    """Input ``size`` (height, width) ``factor`` (height's, width's) times larger, at most ``CTC_MAX_HEIGHT`` high
    and never smaller, the width in whole feature columns (``stride`` pixels each)."""
    tall = max(1.0, min(factor[0], CTC_MAX_HEIGHT / size[0]))
    wide = max(1.0, factor[1])
    return (int(round(tall * size[0])), stride * max(2, round(wide * size[1] / stride)))
