"""Training-time augmentation (albumentations), added between resizing and normalisation.

Deterministic per sample: the caller passes each sample's seed, so an epoch's augmented images
can be reproduced exactly (which is what lets cached frozen features match the plain path).
"""

from __future__ import annotations

import random

import albumentations as A
import cv2
import numpy as np
from PIL import Image

from ..config import AugmentConfig
from .preprocess import Preprocess


class Augment:
    """Albumentations pipeline for training crops, deterministic given a per-sample seed; a ``whole`` captcha
    (CTC) also loses a few thin holes (``cfg.erase``)."""

    def __init__(self, cfg: AugmentConfig, size: tuple[int, int], whole: bool = False) -> None:
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
            *([A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=(0.1, 0.3), hole_width_range=(0.02, 0.06),
                               fill="random_uniform", p=cfg.erase)] if whole and cfg.erase else []),
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

    def __init__(self, pre: Preprocess, aug: AugmentConfig | None, whole: bool = False) -> None:
        self.pre = pre
        self.aug = Augment(aug, pre.size, whole) if aug is not None and aug.enabled else None

    def __call__(self, crop: Image.Image, seed: int | None = None) -> np.ndarray:
        arr = self.pre.resize(crop)
        if self.aug is not None:
            arr = self.aug(arr, seed if seed is not None else random.getrandbits(32))
        return self.pre.normalize(arr)
