"""From network outputs to text: softmax, per-position and CTC decoding, and the result types.

Pure numpy: shared by solving (any backend) and by validation during training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..charset import Charset
from ..data.preprocess import Preprocess
from ..data.segment import SegmentConfig, split


@dataclass
class Solution:
    """A read captcha: the text, how sure the model is of each character, and any warnings."""

    text: str
    confidences: list[float]
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    rejected: bool = False  # less confident than the solver's --reject-below: no answer, ``text`` is the guess
    length_ok: bool = True  # False: a length no captcha the model learned from had (see Solver.read)

    @property
    def answer(self) -> str | None:
        """The reading, or None when it was rejected."""
        return None if self.rejected else self.text

    @property
    def confidence(self) -> float:
        """The whole string's confidence: the product of its characters', 0 for a reading of a length
        the model never saw (it cannot be right)."""
        return float(np.prod(self.confidences)) if self.confidences and self.length_ok else 0.0


@dataclass
class BatchResult:
    """One row of a batch run: the input, and either its solution or the error it met."""

    source: str
    solution: Solution | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.solution is not None


def captcha_inputs(img: Image.Image, length: int, segment: SegmentConfig, pre: Preprocess) -> np.ndarray:
    """One captcha -> its ``length`` preprocessed character crops, (length, 3, H, W) float32."""
    return pre.normalize(np.stack([pre.resize(c) for c in split(img, length, segment)]))  # one call for all crops


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, numerically stable."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def ctc_decode(probs: np.ndarray, charset: Charset) -> list[Solution]:
    """(captchas, columns, chars + blank) probabilities -> solutions by best path (blank is the last class).

    Repeats collapse unless a blank separates them; a character's confidence is its best column's.
    """
    blank = probs.shape[-1] - 1
    best = probs.argmax(-1)
    out = []
    for row, p in zip(best, probs):
        chars, confs, prev = [], [], blank
        for t, k in enumerate(row):
            if k != blank and k != prev:
                chars.append(int(k))
                confs.append(float(p[t, k]))
            elif k != blank and k == prev:
                confs[-1] = max(confs[-1], float(p[t, k]))
            prev = k
        out.append(Solution(charset.decode(chars), confs))
    return out


def decode_predictions(probs: np.ndarray, charset: Charset) -> list[Solution]:
    """(captchas, length, classes) probabilities -> solutions, one character per position."""
    idx = probs.argmax(-1)
    conf = np.take_along_axis(probs, idx[..., None], -1)[..., 0]
    return [Solution(charset.decode(i), [float(c) for c in cs]) for i, cs in zip(idx, conf)]


def decode(logits: np.ndarray, charset: Charset, method: str) -> list[Solution]:
    """(captchas, positions or columns, classes) logits -> solutions, by the model's method."""
    probs = softmax(logits)
    return ctc_decode(probs, charset) if method == "ctc" else decode_predictions(probs, charset)
