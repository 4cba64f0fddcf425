"""`captcha bench transfer`: the course's two-axis claim about when transfer learning works.

Rows are starting points (random, CIFAR-10-pretrained: a dissimilar task A, glyph-pretrained: a
similar one, ImageNet when cached); columns are freeze levels; each cell trains `captcha train` on
the same captcha dataset and reports full-string val accuracy and training time. A last column
repeats the frozen run with only a few images per character: the data-size axis.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..charset import DEFAULT_ALPHABET, Charset
from ..config import TrainConfig
from ..data.layout import first_captchas
from ..nn.networks import imagenet_weights_path, shipped_backbone
from ..training.train import train

log = logging.getLogger(__name__)

FREEZES = ("all", "layer3", "layer2", "none")


def starting_points(cifar_backbone: str | None) -> dict[str, str]:
    """Row name -> --pretrained value, for the sources present on this machine."""
    rows = {"none (random init)": "none"}
    if cifar_backbone and Path(cifar_backbone).is_file():
        rows["cifar10-pretrained"] = cifar_backbone
    if shipped_backbone().is_file():
        rows["glyph-pretrained"] = "glyphs"
    if imagenet_weights_path().is_file():
        rows["imagenet"] = "imagenet"
    return rows


def _fewer_chars(data: Path, per_class: int, out: Path, seed: int = 0) -> Path:
    """A copy of a course dataset with only ``per_class`` training images per character."""
    shutil.copytree(data / "captchas", out / "captchas")
    shutil.copytree(data / "chars" / "val", out / "chars" / "val")
    rng = random.Random(seed)
    for cls in sorted((data / "chars" / "train").iterdir()):
        dest = out / "chars" / "train" / cls.name
        dest.mkdir(parents=True)
        for p in rng.sample(sorted(cls.iterdir()), min(per_class, len(list(cls.iterdir())))):
            shutil.copy(p, dest / p.name)
    return out


def bench_transfer(data: str | Path, cifar_backbone: str | None = None, epochs: int = 6, small: int = 10,
                   freezes: tuple[str, ...] = FREEZES, out_dir: str | Path = "runs/bench-transfer",
                   say: Callable[[str], None] = log.info, small_captchas: int = 100,
                   **train_kw: Any) -> dict[str, Any]:
    """Train every (start, freeze) cell on ``data``; returns and writes the table (Markdown + JSON).

    The small-data column keeps ``small`` images per character (course data, frozen as the default
    does for single characters) or the first ``small_captchas`` training captchas (captcha data,
    fine-tuned whole as the default does for crops cut from captchas).
    """
    data = Path(data)
    out_dir = Path(out_dir)
    train_kw.setdefault("size", (32, 32))  # the table compares starts and freeze levels at one resolution
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = starting_points(cifar_backbone)
    cells: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        small_col: list[tuple[str, Path, str]] = []
        if (data / "chars" / "train").is_dir():
            small_col = [(f"all, {small}/char", _fewer_chars(data, small, Path(tmp) / "few"), "all")]
        elif (data / "captchas" / "train" / "labels.csv").is_file():
            charset = Charset(train_kw.get("charset", DEFAULT_ALPHABET))
            small_col = [(f"none, {small_captchas} captchas",
                          first_captchas(data, small_captchas, Path(tmp) / "few", charset), "none")]
        for row, source in rows.items():
            cells[row] = {}
            columns = [(f, data, f) for f in freezes] + small_col
            for col, dataset, freeze in columns:
                ckpt = Path(tmp) / f"{len(cells)}-{col.replace(' ', '').replace('/', '')}.pt"
                res = train(TrainConfig(data=str(dataset), out=str(ckpt), pretrained=source, freeze=freeze,
                                        epochs=epochs, synth_if_missing=False, **train_kw), say=lambda _m: None)
                best = res["best"]
                cells[row][col] = {"string_acc": best.get("string_acc"), "char_acc": best.get("char_acc", best.get("captcha_char_acc")),
                                   "train_seconds": res["train_seconds"]}
                say(f"{row:>20} | {col:<14} | full-string {100 * best.get('string_acc', 0):6.2f}% | "
                    f"{res['train_seconds']:.0f}s")
    result = {"data": str(data), "epochs": epochs, "small_per_class": small, "small_captchas": small_captchas,
              "cells": cells}
    (out_dir / "transfer.json").write_text(json.dumps(result, indent=2))
    (out_dir / "transfer.md").write_text(format_transfer(result) + "\n")
    return result


def format_transfer(result: dict[str, Any]) -> str:
    """The table as Markdown: full-string accuracy (training seconds) per cell."""
    cols = list(next(iter(result["cells"].values())).keys())
    lines = [f"Full-string val accuracy (training seconds), {result['epochs']} epochs on {result['data']}", "",
             "| start \\ freeze | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for row, cells in result["cells"].items():
        lines.append(f"| {row} | " + " | ".join(
            f"{100 * c['string_acc']:.1f}% ({c['train_seconds']:.0f}s)" for c in cells.values()) + " |")
    return "\n".join(lines)
