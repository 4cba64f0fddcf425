"""Pictures for people: training curves, confusion matrices, sheets of misread captchas."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure


def figure(width: float, height: float, dpi: int = 100) -> Figure:
    """A figure that draws to files only: no pyplot, no global backend, no display needed."""
    return Figure(figsize=(width, height), dpi=dpi)


def training_curve(history: Sequence[dict[str, Any]], path: str | Path, title: str = "training") -> Path:
    """Loss and validation accuracies per epoch, as a PNG."""
    epochs = [h["epoch"] for h in history]
    fig = figure(7, 4)
    ax = fig.add_subplot()
    ax.plot(epochs, [h["loss"] for h in history], "o-", color="tab:red", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (cross-entropy)")
    ax2 = ax.twinx()
    for key, label, colour in (("char_acc", "val character accuracy", "tab:blue"),
                               ("string_acc", "val full-string accuracy", "tab:green")):
        vals = [100 * h[key] for h in history if key in h]
        if vals:
            ax2.plot(epochs[-len(vals):], vals, "s--", color=colour, label=label)
    ax2.set_ylabel("accuracy (%)")
    ax2.set_ylim(0, 100.5)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="center right")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def confusion_png(cm: np.ndarray, labels: Sequence[str], path: str | Path) -> Path:
    """A labelled confusion matrix (rows: truth, columns: prediction), log-scaled counts."""
    n = len(labels)
    fig = figure(max(5, 0.28 * n + 2), max(4.5, 0.28 * n + 1.5))
    ax = fig.add_subplot()
    im = ax.imshow(np.log1p(cm), cmap="Blues")
    ax.set_xticks(range(n), labels, fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_xlabel("predicted character")
    ax.set_ylabel("true character")
    for i, j in zip(*np.nonzero(cm)):
        if i != j:
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="red", fontsize=6)
    ax.set_title(f"confusion matrix ({int(cm.sum())} characters, {int(cm.trace())} right; red: errors)")
    fig.colorbar(im, ax=ax, label="log(1 + count)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path


def error_sheet(images: Sequence, truth: Sequence[str], pred: Sequence[str], conf: Sequence[float],
                path: str | Path, columns: int = 4) -> Path:
    """The misread captchas, each with truth, prediction and confidence beneath."""
    rows = (len(images) + columns - 1) // columns
    fig = figure(3 * columns, 1.6 * rows)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, t, p, c in zip(axes.ravel(), images, truth, pred, conf):
        ax.imshow(np.asarray(img))
        ax.set_title(f"true {t}  read {p}  ({100 * c:.0f}%)", fontsize=9, color="darkred")
    fig.suptitle("most confidently misread captchas")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path
