"""Calibrated confidence, fitted on captchas the model did not train on, changing no reading.

Split-and-classify: one temperature for the logits. A network trained with label smoothing is under-confident,
one trained long is over-confident; dividing its logits by a temperature fitted to minimise the negative
log-likelihood on data it did not train on (Guo et al., 2017) makes "0.9" mean right nine times in ten.

CTC: a map of the whole reading's confidence, p -> sigmoid(a log-odds(p) + b) (Platt, 1999), fitted on how the
solver reads the captchas the first fit held out. A CTC reading's confidence is a product over its characters,
scaled by its re-read views' agreement, which no temperature of the logits straightens. `--reject-below` relies
on both.
"""

from __future__ import annotations

import math

import numpy as np

from ..inference.decode import log_odds, mapped, softmax

T_RANGE = (0.05, 20.0)


def nll(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``targets`` under softmax(logits / temperature)."""
    p = softmax(np.asarray(logits, np.float64) / temperature)
    return float(-np.log(np.clip(p[np.arange(len(targets)), targets], 1e-12, 1.0)).mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray, iters: int = 60) -> float:
    """The temperature minimising :func:`nll` (golden-section search on its logarithm)."""
    targets = np.asarray(targets, int)
    if not len(targets):
        return 1.0
    lo, hi = math.log(T_RANGE[0]), math.log(T_RANGE[1])
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(logits, targets, math.exp(a)), nll(logits, targets, math.exp(b))
    for _ in range(iters):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(logits, targets, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(logits, targets, math.exp(b))
    return float(math.exp((lo + hi) / 2))


# The map is fitted by gradient descent from the identity (a = 1, b = 0) with a pull back toward it, for a fixed
# number of steps: with the 30-60 held-out captchas of a run from 100-200 labels it stops short of fitting them
# exactly. As measured (docs/measurements.md, "A confidence map fitted on what the first fit held out").
MAP_STEPS, MAP_RATE, MAP_PULL = 500, 0.1, 0.01


def fit_confidence_map(confidences: np.ndarray, right: np.ndarray, slope: bool = True) -> tuple[float, float]:
    """The (a, b) of the map sigmoid(a log-odds(p) + b) of readings' ``confidences`` p toward whether each was
    ``right``: minimum log-loss, pulled toward the identity (MAP_PULL), by MAP_STEPS of gradient descent; without
    ``slope``, a shift alone (a = 1): all a handful of readings can tell."""
    x, y = log_odds(confidences), np.asarray(right, np.float64)
    a, b = 1.0, 0.0
    if not len(x):
        return a, b
    for _ in range(MAP_STEPS):
        gap = mapped(x, a, b) - y
        grad_a = float(np.mean(gap * x)) + MAP_PULL * (a - 1) if slope else 0.0
        a, b = a - MAP_RATE * grad_a, b - MAP_RATE * (float(np.mean(gap)) + MAP_PULL * b)
    return max(a, 1e-3), b
