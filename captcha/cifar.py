"""CIFAR-10 readers (torchvision's pickled batches, an image-folder copy, or its .tar.gz) and the
course's warm-up benchmark: ResNet-18 from scratch vs a pretrained, frozen backbone.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import tarfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image
from torch import nn

from .errors import DataError

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


def load_cifar10(path: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 ``split`` as (N x 32 x 32 x 3 uint8 images, N labels) from any supported form."""
    path = Path(path)
    if split not in _BATCHES:
        raise ValueError("split is train or test")
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return _from_tar(path, split)
    for folder in (path / "cifar-10-batches-py", path):
        if (folder / _BATCHES[split][0]).is_file():
            return _from_pickles(folder, split)
    if (path / split).is_dir():
        return _from_folder(path, split)
    if (path / "cifar10-jpg.tar.gz").is_file():
        return _from_tar(path / "cifar10-jpg.tar.gz", split)
    raise DataError(f"{path}: no CIFAR-10 found; expected cifar-10-batches-py/, {split}/<class>/*.jpg, or a .tar.gz")


def _normalise(x: np.ndarray, pre) -> torch.Tensor:
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    t = torch.from_numpy(x).permute(0, 3, 1, 2).float().div_(255)
    if tuple(t.shape[-2:]) != tuple(pre.size):
        t = nn.functional.interpolate(t, size=tuple(pre.size), mode="bilinear", align_corners=False)
    return ((t - mean) / std).contiguous(memory_format=torch.channels_last)


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and 4-pixel translation, the standard CIFAR recipe."""
    flip = torch.rand(len(x), generator=g) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    dx, dy = (int(v) for v in torch.randint(-4, 5, (2,), generator=g))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def cifar_batches(cfg: Any, pre) -> tuple[Iterator, int, tuple[torch.Tensor, torch.Tensor], str]:
    """Endless augmented training batches and a held-out test sample, for ``captcha pretrain``."""
    if not cfg.data:
        raise DataError("--source cifar10 needs --data PATH (cifar-10-batches-py, an image folder or the .tar.gz)")
    x, y = load_cifar10(cfg.data, "train")
    tx, ty = load_cifar10(cfg.data, "test")
    xt, yt = _normalise(x, pre), torch.from_numpy(y)
    g = torch.Generator().manual_seed(cfg.seed)

    def stream() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            perm = torch.randperm(len(xt), generator=g)
            for i in range(0, len(perm) - cfg.batch_size + 1, cfg.batch_size):
                idx = perm[i:i + cfg.batch_size]
                yield _augment(xt[idx], g), yt[idx]

    keep = np.random.default_rng(0).permutation(len(tx))[:2000]
    return stream(), len(CLASSES), (_normalise(tx[keep], pre), torch.from_numpy(ty[keep])), "cifar10"


def _subset(x: np.ndarray, y: np.ndarray, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A class-balanced random subset of ``n`` images (all when n is None)."""
    if n is None or n >= len(y):
        return x, y
    rng = np.random.default_rng(seed)
    per = n // len(CLASSES)
    idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per] for c in range(len(CLASSES))])
    idx = rng.permutation(idx)
    return x[idx], y[idx]


def bench_cifar10(data: str | Path, pretrained: str, subset: int | None = 5000, test_subset: int | None = 1000,
                  epochs: int = 3, size: int = 32, batch_size: int = 64, lr: float = 0.01, seed: int = 0,
                  out_dir: str | Path = "runs/bench-cifar10", say=log.info) -> dict[str, Any]:
    """The course's warm-up: the same batches through ResNet-18 from scratch and through frozen backbones."""
    from .model import build_model
    from .train import frozen_outputs
    from .transforms import Preprocess

    pre = Preprocess(size=(size, size))
    x, y = _subset(*load_cifar10(data, "train"), subset, seed)
    tx, ty = _subset(*load_cifar10(data, "test"), test_subset, seed + 1)
    xt, yt = _normalise(x, pre), torch.from_numpy(y)
    txt, tyt = _normalise(tx, pre), torch.from_numpy(ty)
    runs = (("scratch", "none", "none", False), ("frozen", pretrained, "all", False),
            ("frozen-layer3", pretrained, "layer3", False), ("frozen-cached", pretrained, "all", True))
    results: dict[str, Any] = {"data": str(data), "train_images": len(y), "test_images": len(ty), "epochs": epochs,
                               "size": size, "batch_size": batch_size, "lr": lr, "runs": {}}
    loss_fn = nn.CrossEntropyLoss()
    for name, source, freeze, cached in runs:
        torch.manual_seed(seed)
        model, src = build_model(len(CLASSES), source, freeze)
        model = model.to(memory_format=torch.channels_last)
        if freeze != "none":
            results["pretrained"] = src
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)
        feats, extract_s = None, 0.0
        if cached:
            t0 = time.perf_counter()
            feats = torch.flatten(model.avgpool(frozen_outputs(model, xt, "layer4")), 1)
            extract_s = time.perf_counter() - t0
        epoch_s, losses, batch_s = [], [], []
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(yt), generator=torch.Generator().manual_seed(seed + epoch))
            t0 = time.perf_counter()
            total = 0.0
            for i in range(0, len(order), batch_size):
                idx = order[i:i + batch_size]
                tb = time.perf_counter()
                logits = model.fc(feats[idx]) if cached else model(xt[idx])
                loss = loss_fn(logits, yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                batch_s.append(time.perf_counter() - tb)
                total += loss.item() * len(idx)
            epoch_s.append(time.perf_counter() - t0)
            losses.append(total / len(yt))
            say(f"{name}: epoch {epoch + 1}/{epochs} loss {losses[-1]:.3f} in {epoch_s[-1]:.1f}s")
        model.eval()
        with torch.inference_mode():
            pred = torch.cat([model(txt[i:i + 512]).argmax(1) for i in range(0, len(tyt), 512)])
        run = {"pretrained": src, "freeze": freeze, "cached_features": cached, "seconds_per_batch": float(np.mean(batch_s)),
               "seconds_per_epoch": float(np.mean(epoch_s)), "feature_extraction_seconds": extract_s,
               "seconds_per_epoch_amortised": float(np.mean(epoch_s)) + extract_s / epochs,
               "loss_per_epoch": losses, "test_acc": float((pred == tyt).float().mean())}
        results["runs"][name] = run
        say(f"{name}: test accuracy {100 * run['test_acc']:.1f}%")
    scratch = results["runs"]["scratch"]
    for name, run in results["runs"].items():
        run["speedup_per_batch"] = scratch["seconds_per_batch"] / run["seconds_per_batch"]
        run["speedup_per_epoch"] = scratch["seconds_per_epoch"] / run["seconds_per_epoch_amortised"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cifar10.json").write_text(json.dumps(results, indent=2))
    _loss_png(results, out_dir / "cifar10-loss.png")
    results["files"] = [str(out_dir / "cifar10.json"), str(out_dir / "cifar10-loss.png")]
    return results


def _loss_png(results: dict[str, Any], path: Path) -> None:
    from .plots import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for name, run in results["runs"].items():
        ax.plot(range(1, len(run["loss_per_epoch"]) + 1), run["loss_per_epoch"], "o-",
                label=f"{name} ({run['seconds_per_epoch_amortised']:.1f} s/epoch, {100 * run['test_acc']:.0f}% test)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(f"CIFAR-10 warm-up ({results['train_images']} images, {results['size']}px); "
                 f"pretrained: {results.get('pretrained')}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def format_cifar_report(results: dict[str, Any]) -> str:
    """The benchmark as a Markdown table."""
    lines = [f"CIFAR-10 warm-up: {results['train_images']} train / {results['test_images']} test images at "
             f"{results['size']}px, {results['epochs']} epochs, batch {results['batch_size']}, SGD momentum 0.9; "
             f"pretrained backbone: {results.get('pretrained')}", "",
             "| run | freeze | s/batch | s/epoch | speed-up per epoch | loss per epoch | test acc |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results["runs"].items():
        lines.append(f"| {name} | {r['freeze']} | {r['seconds_per_batch']:.4f} | {r['seconds_per_epoch_amortised']:.2f} | "
                     f"{r['speedup_per_epoch']:.1f}x | {' '.join(f'{v:.3f}' for v in r['loss_per_epoch'])} | "
                     f"{100 * r['test_acc']:.1f}% |")
    return "\n".join(lines)
