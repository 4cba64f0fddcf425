"""Measuring a model: character accuracy, full-string and per-position accuracy, confusions.

The same functions serve the per-epoch validation in training and `captcha eval --val`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np


log = logging.getLogger(__name__)


def predict_logits(forward: Callable[[Any], Any], x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Run ``forward`` (array -> logits array) over ``x`` in batches."""
    return np.concatenate([forward(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]) if len(x) else \
        np.zeros((0, 0), dtype=np.float32)


def char_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Accuracy of single-character predictions."""
    return {"char_acc": float((pred == target).mean()) if len(target) else float("nan"), "chars": int(len(target))}


def string_metrics(pred: Sequence[str], truth: Sequence[str]) -> dict[str, Any]:
    """Full-string accuracy, per-position accuracy and character accuracy of captcha readings."""
    if not truth:
        return {"string_acc": float("nan"), "captchas": 0}
    length = max(len(t) for t in truth)
    pos = [np.mean([len(p) > i and len(t) > i and p[i] == t[i] for p, t in zip(pred, truth)]) for i in range(length)]
    chars = sum(len(t) for t in truth)
    right = sum(a == b for p, t in zip(pred, truth) for a, b in zip(p, t))
    return {"string_acc": float(np.mean([p == t for p, t in zip(pred, truth)])),
            "captcha_char_acc": right / chars, "position_acc": [float(v) for v in pos], "captchas": len(truth)}


def confusions(pred: Sequence[str], truth: Sequence[str], top: int = 10) -> list[tuple[str, str, int]]:
    """Most frequent (true, predicted, count) character mix-ups."""
    c = Counter((t, p) for ps, ts in zip(pred, truth) for p, t in zip(ps, ts) if p != t)
    return [(t, p, n) for (t, p), n in c.most_common(top)]


@dataclass
class EvalReport:
    """What `captcha eval --val` prints."""

    chars: dict[str, Any]
    captchas: dict[str, Any]
    confusions: list[tuple[str, str, int]]
    per_class: dict[str, Any]
    errors: list[dict[str, Any]]
    files: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"chars": self.chars, "captchas": self.captchas,
                "confusions": [{"true": t, "pred": p, "count": n} for t, p, n in self.confusions],
                "per_class": self.per_class, "errors": self.errors, "files": self.files}


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path | None = None, out_dir: str | Path | None = None,
                        show_errors: int = 0, dataset: str | Path | None = None) -> EvalReport:
    """Evaluate a recognizer on its validation data (chars/val and captchas/val, or its held-out split;
    ``data`` says where that dataset is now), or on any labelled ``dataset`` folder."""
    from sklearn.metrics import classification_report, confusion_matrix

    from .checkpoint import load_checkpoint
    from .solve import Solver
    from .trainset import labelled_data, validation_data

    ckpt = load_checkpoint(checkpoint, kind="recognizer")
    solver = Solver.from_loaded(ckpt, checkpoint)
    charset = solver.charset
    val = labelled_data(ckpt, dataset) if dataset is not None else validation_data(ckpt, data)
    chars: dict[str, Any] = {}
    true_chars: list[str] = []
    pred_chars: list[str] = []
    if len(val.char_images) and solver.method == "classify":
        x = np.stack([solver.pre(im) for im in val.char_images])
        pred = predict_logits(solver.backend, x).argmax(1)
        chars = char_metrics(pred, np.asarray(val.char_targets))
        true_chars += [charset.alphabet[t] for t in val.char_targets]
        pred_chars += [charset.alphabet[p] for p in pred]
    texts: list[str] = []
    confs: list[float] = []
    for res in solver.solve_batch([im for im, _ in val.captchas]):
        texts.append(res.solution.text if res.solution else "")
        confs.append(res.solution.confidence if res.solution else 0.0)
    truth = [lab for _, lab in val.captchas]
    caps = string_metrics(texts, truth)
    for p, t in zip(texts, truth):
        true_chars += list(t)
        pred_chars += list(p.ljust(len(t), "?"))[: len(t)]
    labels = sorted(set(true_chars) | (set(pred_chars) - {"?"}), key=charset.alphabet.find)
    per_class = classification_report(true_chars, pred_chars, labels=labels, output_dict=True, zero_division=0) \
        if true_chars else {}
    files: dict[str, str] = {}
    if out_dir is not None and true_chars:
        from .plots import confusion_png, error_sheet

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        cm = confusion_matrix(true_chars, pred_chars, labels=labels)
        files["confusion"] = str(confusion_png(cm, labels, out_dir / "confusion.png"))
        if show_errors:
            wrong = sorted((i for i, (p, t) in enumerate(zip(texts, truth)) if p != t), key=lambda i: -confs[i])
            picks = wrong[:show_errors]
            if picks:
                files["errors"] = str(error_sheet([val.captchas[i][0] for i in picks], [truth[i] for i in picks],
                                                  [texts[i] for i in picks], [confs[i] for i in picks],
                                                  out_dir / "errors.png"))
    errors = [{"index": i, "truth": t, "pred": p, "confidence": c}
              for i, (p, t, c) in enumerate(zip(texts, truth, confs)) if p != t]
    return EvalReport(chars, caps, confusions(texts, truth), per_class, errors[:50], files)
