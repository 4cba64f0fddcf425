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
    views: int = 0  # shifted views it was re-read in (see Solver.read)
    disagreeing: int = 0  # of those, how many read other text
    calibration: tuple[float, float] | None = None  # (a, b) of the model's confidence map: see :func:`calibrated`

    @property
    def answer(self) -> str | None:
        """The reading, or None when it was rejected."""
        return None if self.rejected else self.text

    @property
    def raw_confidence(self) -> float:
        """The network's confidence in the whole string: the product of its characters', times the share of its
        views (itself and any shifted ones) that read the same; 0 for a reading of a length the model never
        saw (it cannot be right). What solving decides by (re-reading, lengths)."""
        if not self.confidences or not self.length_ok:
            return 0.0
        return float(np.prod(self.confidences)) * (1 + self.views - self.disagreeing) / (1 + self.views)

    @property
    def confidence(self) -> float:
        """The whole string's confidence, calibrated by the model's confidence map where it has one: how often
        a reading this sure is right. What is reported and refused by (``--reject-below``)."""
        raw = self.raw_confidence
        return raw if self.calibration is None else calibrated(raw, *self.calibration)


@dataclass
class BatchResult:
    """One row of a batch run: the input, and either its solution or the error it met."""

    source: str
    solution: Solution | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.solution is not None


CONFIDENCE_EDGE = 1e-4  # confidences are held this far from 0 and 1 before their log-odds are taken


def log_odds(p: np.ndarray | float) -> np.ndarray:
    """log(p / (1 - p)), ``p`` held within CONFIDENCE_EDGE of 0 and 1."""
    p = np.clip(np.asarray(p, np.float64), CONFIDENCE_EDGE, 1 - CONFIDENCE_EDGE)
    return np.log(p / (1 - p))


def mapped(odds: np.ndarray, a: float, b: float) -> np.ndarray:
    """The confidence map on confidences' log-odds: sigmoid(a odds + b)."""
    return 1 / (1 + np.exp(-(a * odds + b)))


def calibrated(p: float, a: float, b: float) -> float:
    """A confidence through a confidence map (:func:`mapped`), with 0 (a reading that cannot be right) kept 0."""
    if p <= 0.0:
        return 0.0
    return float(mapped(log_odds(p), a, b))


def captcha_inputs(img: Image.Image, length: int, segment: SegmentConfig, pre: Preprocess) -> np.ndarray:
    """One captcha -> its ``length`` preprocessed character crops, (length, 3, H, W) float32."""
    return pre.normalize(np.stack([pre.resize(c) for c in split(img, length, segment)]))  # one call for all crops


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, numerically stable."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def averaged_logits(views: list[np.ndarray]) -> np.ndarray:
    """Logits of the mean of several readings' probabilities (views of one captcha, or two networks)."""
    mean = sum(softmax(v) for v in views) / len(views)
    return np.log(np.maximum(mean, np.float32(1e-30)))


def ctc_decode(probs: np.ndarray, charset: Charset, length: int = 0) -> list[Solution]:
    """(captchas, columns, chars + blank) probabilities -> solutions by best path (blank is the last class).

    Repeats collapse unless a blank separates them; a character's confidence is its best column's. With
    ``length`` (a model that learned from captchas of that length only), a best path of another length
    gives way to the most probable path of exactly ``length`` characters; a character it adds has its
    column's probability as confidence, and one it drops scales them all by the odds of its blanks.
    """
    blank = probs.shape[-1] - 1
    paths = probs.argmax(-1)
    read = [_collapse(path, p, blank) for path, p in zip(paths, probs)]
    off = [i for i, (chars, _) in enumerate(read) if length and len(chars) != length]
    if off:  # one Viterbi pass over all of them: per captcha it was a fifth of a far site's solving time
        for i, fixed in zip(off, exact_length_paths(np.log(np.maximum(probs[off], 1e-30)), length)):
            if fixed is None:
                continue
            p, path = probs[i], paths[i]
            # a character the best path read and this one drops costs the odds of its columns' blanks
            dropped = np.flatnonzero((fixed == blank) & (path != blank))
            ratio = float(np.prod(p[dropped, blank] / p[dropped, path[dropped]]))
            chars, confs = _collapse(fixed, p, blank)
            read[i] = chars, [c * ratio ** (1 / length) for c in confs]
    return [Solution(charset.decode(chars), confs) for chars, confs in read]


def _collapse(path: np.ndarray, p: np.ndarray, blank: int) -> tuple[list[int], list[float]]:
    """A path of one symbol per column -> its characters and each one's best column probability."""
    chars: list[int] = []
    confs: list[float] = []
    prev = blank
    for t, k in enumerate(path):
        if k != blank and k != prev:
            chars.append(int(k))
            confs.append(float(p[t, k]))
        elif k != blank and k == prev:
            confs[-1] = max(confs[-1], float(p[t, k]))
        prev = k
    return chars, confs


VITERBI_BYTES = 64 << 20  # back-pointers held at once: a batch of a site of thousands of characters goes in parts


def exact_length_paths(logp: np.ndarray, length: int) -> list[np.ndarray | None]:
    """(captchas, columns, classes) log-probabilities -> for each captcha the most probable path (one symbol
    per column, blank last) that collapses to exactly ``length`` (>= 1) characters, by Viterbi over
    (characters emitted, last symbol); None where the columns are too few."""
    caps, cols, classes = logp.shape
    step = max(1, VITERBI_BYTES // (cols * (length + 1) * classes * 8))  # its back-pointers' bytes per captcha
    if caps > step:
        return [path for i in range(0, caps, step) for path in exact_length_paths(logp[i:i + step], length)]
    blank = classes - 1
    counts, chars, each = np.arange(length + 1), np.arange(blank), np.arange(caps)
    score = np.full((caps, length + 1, classes), -np.inf)
    score[:, 0, blank] = logp[:, 0, blank]
    score[:, 1, :blank] = logp[:, 0, :blank]
    back = np.zeros((cols, caps, length + 1, classes, 2), dtype=np.int32)  # (emitted, symbol) a column earlier
    for t in range(1, cols):
        new = np.empty_like(score)
        came = back[t]
        # a blank keeps the count, from any symbol
        top = score.argmax(2)
        new[:, :, blank] = np.take_along_axis(score, top[..., None], 2)[..., 0] + logp[:, t, None, blank]
        came[:, :, blank, 0], came[:, :, blank, 1] = counts, top
        # the same character again continues it; a different symbol before it (the best one that is not
        # this character) starts a new one, one count up
        order = np.argsort(score, axis=2)  # int8 logits tie often: which of two equals leads is argsort's choice
        first, second = order[:, :-1, -1, None], order[:, :-1, -2, None]
        source = np.where(first == chars, second, first)
        start = np.full((caps, length + 1, blank), -np.inf)
        start[:, 1:] = np.take_along_axis(score[:, :-1], source, 2)
        stay = score[:, :, :blank]
        new_start = start > stay
        new[:, :, :blank] = np.where(new_start, start, stay) + logp[:, t, None, :blank]
        came[:, :, :blank, 0] = np.where(new_start, counts[:, None] - 1, counts[:, None])
        came[:, 1:, :blank, 1] = np.where(new_start[:, 1:], source, chars)
        came[:, 0, :blank, 1] = chars
        score = new
    end = score[:, length].argmax(1)
    found = np.isfinite(score[each, length, end])
    paths = np.empty((caps, cols), dtype=np.int64)
    n, k = np.full(caps, length), end
    for t in range(cols - 1, -1, -1):
        paths[:, t] = k
        n, k = back[t, each, n, k, 0], back[t, each, n, k, 1]
    return [path if ok else None for path, ok in zip(paths, found)]


def decode_predictions(probs: np.ndarray, charset: Charset) -> list[Solution]:
    """(captchas, length, classes) probabilities -> solutions, one character per position."""
    idx = probs.argmax(-1)
    conf = np.take_along_axis(probs, idx[..., None], -1)[..., 0]
    return [Solution(charset.decode(i), [float(c) for c in cs]) for i, cs in zip(idx, conf)]


def decode(logits: np.ndarray, charset: Charset, method: str, length: int = 0) -> list[Solution]:
    """(captchas, positions or columns, classes) logits -> solutions, by the model's method (CTC readings
    held to ``length`` characters when it is given: see :func:`ctc_decode`)."""
    probs = softmax(logits)
    return ctc_decode(probs, charset, length) if method == "ctc" else decode_predictions(probs, charset)
