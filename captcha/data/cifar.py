"""CIFAR-10 readers: torchvision's pickled batches, an image-folder copy, or the .tar.gz of JPEGs.

Used by the course's warm-up bench (``bench.cifar``) and by `captcha pretrain --source cifar10`.
"""

from __future__ import annotations

import io
import logging
import pickle
import tarfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import DataError
from .preprocess import Preprocess

log = logging.getLogger(__name__)

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def _from_pickles(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for name in _BATCHES[split]:
        with open(folder / name, "rb") as fh:
            # torchvision's own reader does the same; these files are the dataset's published format.
            entry = pickle.load(fh, encoding="latin1")
        xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((32, 32)), dtype=np.uint8)


def _from_folder(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for cls, name in enumerate(CLASSES):
        for p in sorted((folder / split / name).glob("*")):
            xs.append(_decode(p.read_bytes()))
            ys.append(cls)
    return np.stack(xs), np.asarray(ys)


def _from_tar(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 3 or parts[-3] != split or parts[-2] not in CLASSES:
                continue
            xs.append(_decode(tar.extractfile(member).read()))
            ys.append(CLASSES.index(parts[-2]))
    if not xs:
        raise DataError(f"{path}: no {split}/<class>/*.jpg members found")
    order = np.lexsort((np.arange(len(ys)), ys))  # stable, class-major like the folder reader
    return np.stack(xs)[order], np.asarray(ys)[order]


def load_cifar10(path: str | Path, split: str = "train", trust_pickle: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 ``split`` as (N x 32 x 32 x 3 uint8 images, N labels) from any supported form; the
    pickled batches only with ``trust_pickle`` (unpickling a crafted file runs its code)."""
    path = Path(path)
    if split not in _BATCHES:
        raise ValueError("split is train or test")  # a programming error, not a user's
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return _from_tar(path, split)
    for folder in (path / "cifar-10-batches-py", path):
        if (folder / _BATCHES[split][0]).is_file():
            if not trust_pickle:
                raise DataError(f"{folder}: CIFAR-10's pickled batches can run code when read; pass --trust-pickle "
                                "if you trust where they came from, or give the JPEG folder or .tar.gz instead")
            return _from_pickles(folder, split)
    if (path / split).is_dir():
        return _from_folder(path, split)
    if (path / "cifar10-jpg.tar.gz").is_file():
        return _from_tar(path / "cifar10-jpg.tar.gz", split)
    raise DataError(f"{path}: no CIFAR-10 found; expected cifar-10-batches-py/, {split}/<class>/*.jpg, or a .tar.gz")


def normalise(x: np.ndarray, pre: Preprocess) -> torch.Tensor:
    """N x 32 x 32 x 3 uint8 images -> normalised NCHW tensors at ``pre``'s size (channels-last)."""
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    t = torch.from_numpy(x).permute(0, 3, 1, 2).float().div_(255)
    if tuple(t.shape[-2:]) != tuple(pre.size):
        t = nn.functional.interpolate(t, size=tuple(pre.size), mode="bilinear", align_corners=False)
    return ((t - mean) / std).contiguous(memory_format=torch.channels_last)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and 4-pixel translation, the standard CIFAR recipe."""
    flip = torch.rand(len(x), generator=g) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    dx, dy = (int(v) for v in torch.randint(-4, 5, (2,), generator=g))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def cifar_batches(cfg: Any, pre: Preprocess) -> tuple[Iterator, int, tuple[torch.Tensor, torch.Tensor], str]:
    """Endless augmented training batches and a held-out test sample, for ``captcha pretrain``."""
    if not cfg.data:
        raise DataError("--source cifar10 needs --data PATH (cifar-10-batches-py, an image folder or the .tar.gz)")
    x, y = load_cifar10(cfg.data, "train", cfg.trust_pickle)
    tx, ty = load_cifar10(cfg.data, "test", cfg.trust_pickle)
    xt, yt = normalise(x, pre), torch.from_numpy(y)
    g = torch.Generator().manual_seed(cfg.seed)

    def stream() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            perm = torch.randperm(len(xt), generator=g)
            for i in range(0, len(perm) - cfg.batch_size + 1, cfg.batch_size):
                idx = perm[i:i + cfg.batch_size]
                yield augment(xt[idx], g), yt[idx]

    keep = np.random.default_rng(0).permutation(len(tx))[:2000]
    return stream(), len(CLASSES), (normalise(tx[keep], pre), torch.from_numpy(ty[keep])), "cifar10"
