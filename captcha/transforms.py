"""Preprocessing, defined once: crop -> fixed size -> float array -> normalisation.

Training, evaluation and solving all call :class:`Preprocess`; its settings live in the
checkpoint. Augmentation (albumentations) is added on top for training only. This module uses
numpy and Pillow, not torch, so the ONNX solving path can share it.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
        """HWC uint8 -> CHW float32, normalised as the backbone expects."""
        return arr.transpose(2, 0, 1).astype(np.float32) * self._scale - self._shift

    def __call__(self, crop: Image.Image) -> np.ndarray:
        return self.normalize(self.resize(crop))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the checkpoint."""
        return {"size": list(self.size), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocess":
        """Rebuild from :meth:`to_dict`."""
        return cls(size=tuple(d["size"]), mean=tuple(d["mean"]), std=tuple(d["std"]))


def whole_captcha_size(sizes: Sequence[tuple[int, int]], stride: int = 8) -> tuple[int, int]:
    """Network input (height, width) for reading whole captchas of these (width, height) sizes.

    Keeps the glyphs near the scale the backbone was pretrained at (characters filling about 32
    pixels): the median height rounded to a multiple of 16 within 32..64, the median aspect ratio,
    and a width in whole feature columns (``stride`` pixels each).
    """
    if not sizes:
        return (32, 128)
    w = float(np.median([s[0] for s in sizes]))
    h = float(np.median([s[1] for s in sizes]))
    height = int(min(64, max(32, 16 * round(h / 16))))
    width = int(max(2 * stride, stride * round(height * w / h / stride)))
    return (height, width)


@dataclass
class AugmentConfig:
    """Captcha-style augmentation strengths; ``enabled=False`` switches it all off."""

    enabled: bool = True
    rotate: float = 10.0  # degrees
    shift: float = 0.08  # fraction of the crop
    scale: tuple[float, float] = (0.85, 1.15)
    blur: float = 0.2  # probability of each of blur, noise, distortion below
    noise: float = 0.2
    distort: float = 0.2
    colour: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AugmentConfig":
        d = dict(d)
        d["scale"] = tuple(d.get("scale", (0.85, 1.15)))
        return cls(**d)


class Augment:
    """Albumentations pipeline for training crops; deterministic given a per-sample seed."""

    def __init__(self, cfg: AugmentConfig, size: tuple[int, int]) -> None:
        import albumentations as A
        import cv2

        self.cfg = cfg
        border = dict(border_mode=cv2.BORDER_REPLICATE)
        self.pipeline = A.Compose([
            A.Affine(rotate=(-cfg.rotate, cfg.rotate), translate_percent=(-cfg.shift, cfg.shift),
                     scale=cfg.scale, shear=(-5, 5), p=0.9, **border),
            A.OneOf([A.ElasticTransform(alpha=8, sigma=4, **border),
                     A.GridDistortion(num_steps=4, distort_limit=0.2, **border)], p=cfg.distort),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 3)), A.MotionBlur(blur_limit=3)], p=cfg.blur),
            A.GaussNoise(std_range=(0.02, 0.08), p=cfg.noise),
            A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.4, hue=0.1, p=cfg.colour),
            A.ToGray(p=0.1 * (cfg.colour > 0)),
        ], seed=0)

    def __call__(self, arr: np.ndarray, seed: int | None = None) -> np.ndarray:
        if seed is not None:
            self.pipeline.set_random_seed(seed)
        return self.pipeline(image=arr)["image"]


class TrainTransform:
    """Preprocess with augmentation in the middle (resize -> augment -> normalise).

    The sample seed is set by the caller (see ``train``), so one epoch's augmented images can be
    reproduced exactly, which is what lets the cached-feature path match the plain one.
    """

    def __init__(self, pre: Preprocess, aug: AugmentConfig | None) -> None:
        self.pre = pre
        self.aug = Augment(aug, pre.size) if aug is not None and aug.enabled else None

    def __call__(self, crop: Image.Image, seed: int | None = None) -> np.ndarray:
        arr = self.pre.resize(crop)
        if self.aug is not None:
            arr = self.aug(arr, seed if seed is not None else random.getrandbits(32))
        return self.pre.normalize(arr)


def batch(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Stack CHW arrays into one NCHW float32 batch."""
    return np.stack(arrays).astype(np.float32, copy=False)

