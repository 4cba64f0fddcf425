"""Scores of readings: character, full-string and per-position accuracy, and confusions. Pure Python/numpy."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

import numpy as np


def char_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Accuracy of single-character predictions."""
    return {"char_acc": float((pred == target).mean()) if len(target) else float("nan"), "chars": int(len(target))}


def string_metrics(pred: Sequence[str], truth: Sequence[str]) -> dict[str, Any]:
    """Full-string accuracy, per-position accuracy and character accuracy of captcha readings."""
    if not truth:
        return {"string_acc": float("nan"), "captchas": 0}
    length = max(len(t) for t in truth)
    # position i over the captchas that have one (a site whose lengths vary has fewer 6th characters than 1st)
    pos = [np.mean([len(p) > i and p[i] == t[i] for p, t in zip(pred, truth) if len(t) > i]) for i in range(length)]
    chars = sum(len(t) for t in truth)
    right = sum(a == b for p, t in zip(pred, truth) for a, b in zip(p, t))
    return {"string_acc": float(np.mean([p == t for p, t in zip(pred, truth)])),
            "captcha_char_acc": right / chars, "position_acc": [float(v) for v in pos], "captchas": len(truth)}


MISSING = "?"  # what a reading shorter than its label has at the missing positions


def aligned_chars(pred: Sequence[str], truth: Sequence[str]) -> tuple[list[str], list[str]]:
    """(true, read) character pairs position by position; a short reading counts as :data:`MISSING`."""
    t_out, p_out = [], []
    for p, t in zip(pred, truth):
        t_out += list(t)
        p_out += list(p.ljust(len(t), MISSING))[: len(t)]
    return t_out, p_out


def confusions(true_chars: Sequence[str], pred_chars: Sequence[str], top: int = 10) -> list[tuple[str, str, int]]:
    """Most frequent (true, read, count) character mix-ups among aligned character pairs."""
    c = Counter((t, p) for t, p in zip(true_chars, pred_chars) if p != t)
    return [(t, p, n) for (t, p), n in c.most_common(top)]


def score(m: dict[str, Any]) -> tuple[float, float]:
    """Sort key of a validation result: full-string accuracy, then character accuracy (NaN lowest)."""
    s = m.get("string_acc", float("nan"))
    c = m.get("char_acc", m.get("captcha_char_acc", float("nan")))
    return (s if s == s else -1.0, c if c == c else -1.0)


def rejection(confidences: Sequence[float], correct: Sequence[bool], coverage: float = 0.95) -> dict[str, float]:
    """Refusing the least confident answers until ``coverage`` of them remain: the confidence
    threshold, the share of wrong answers refused, and the accuracy of those kept."""
    conf, ok = np.asarray(confidences, float), np.asarray(correct, bool)
    if not len(conf):
        return {}
    keep = max(1, math.ceil(coverage * len(conf) - 1e-9))
    threshold = float(np.sort(conf)[::-1][keep - 1])  # the least confidence still answered (ties keep more)
    kept = conf >= threshold
    wrong = ~ok
    return {"coverage": float(kept.mean()), "threshold": threshold,
            "wrong_rejected": float((~kept & wrong).sum() / wrong.sum()) if wrong.any() else float("nan"),
            "kept_accuracy": float(ok[kept].mean()) if kept.any() else float("nan")}


def reliability(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> dict[str, Any]:
    """Confidence against accuracy in equal-width bins, and the expected calibration error (ECE)."""
    conf, ok = np.asarray(confidences, float), np.asarray(correct, bool)
    rows, ece = [], 0.0
    edges = np.linspace(0, 1, bins + 1)
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf >= lo) & ((conf < hi) if hi < 1 else (conf <= hi))
        if inside.any():
            gap = abs(conf[inside].mean() - ok[inside].mean())
            ece += gap * inside.mean()
            rows.append({"from": float(lo), "to": float(hi), "count": int(inside.sum()),
                         "confidence": float(conf[inside].mean()), "accuracy": float(ok[inside].mean())})
    return {"ece": float(ece), "bins": rows}
