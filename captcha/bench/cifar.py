"""The course's warm-up benchmark on CIFAR-10: ResNet-18 from scratch vs a pretrained, frozen backbone.

Every run sees the same batches in the same order, and steps through the one training loop.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.cifar import CLASSES, load_cifar10, normalise
from ..data.preprocess import Preprocess
from ..eval.plots import figure
from ..nn.networks import build_model
from ..training.loop import (
    Trainable,
    frozen_outputs,
    indexed_batches,
    predict,
    train_one_epoch,
)

log = logging.getLogger(__name__)


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
                  out_dir: str | Path = "runs/bench-cifar10", say=log.info, trust_pickle: bool = False) -> dict[str, Any]:
    """The course's warm-up: the same batches through ResNet-18 from scratch and through frozen backbones."""
    pre = Preprocess(size=(size, size))
    x, y = _subset(*load_cifar10(data, "train", trust_pickle), subset, seed)
    tx, ty = _subset(*load_cifar10(data, "test", trust_pickle), test_subset, seed + 1)
    xt, yt = normalise(x, pre), torch.from_numpy(y)
    txt, tyt = normalise(tx, pre), torch.from_numpy(ty)
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
        inputs, extract_s = xt, 0.0
        if cached:
            t0 = time.perf_counter()
            inputs = frozen_outputs(model, xt, "layer4")
            extract_s = time.perf_counter() - t0
        net = Trainable(model, "layer4" if cached else None)
        epoch_s, losses, batch_s = [], [], []
        for epoch in range(epochs):
            order = torch.randperm(len(yt), generator=torch.Generator().manual_seed(seed + epoch))
            t0 = time.perf_counter()
            losses.append(train_one_epoch(net, indexed_batches(inputs, yt, order, batch_size), opt, None, loss_fn,
                                          on_batch=lambda _b, _loss, s: batch_s.append(s)))
            epoch_s.append(time.perf_counter() - t0)
            say(f"{name}: epoch {epoch + 1}/{epochs} loss {losses[-1]:.3f} in {epoch_s[-1]:.1f}s")
        pred = torch.from_numpy(predict(model, txt).argmax(1))
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
    fig = figure(6, 4)
    ax = fig.add_subplot()
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
