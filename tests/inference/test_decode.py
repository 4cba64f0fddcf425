import numpy as np
import pytest

from captcha.charset import Charset
from captcha.inference.decode import ctc_decode, decode, decode_predictions, softmax

CS = Charset("AB1")  # classes A=0, B=1, 1=2; the CTC blank is 3


def onehot(rows: list[list[int]], classes: int, p: float = 0.9) -> np.ndarray:
    """(captchas, steps, classes) probabilities with ``p`` on the given class of each step."""
    out = np.full((len(rows), len(rows[0]), classes), (1 - p) / (classes - 1))
    for i, row in enumerate(rows):
        for t, k in enumerate(row):
            out[i, t, k] = p
    return out


def test_softmax_is_stable_and_normalised():
    x = np.array([[1000.0, 1000.0, -1000.0]])
    assert np.allclose(softmax(x), [[0.5, 0.5, 0.0]]) and np.isfinite(softmax(x)).all()


def test_ctc_collapses_repeats_and_drops_blanks():
    blank = 3
    (sol,) = ctc_decode(onehot([[0, 0, blank, 0, 1, 1, blank, blank, 2]], 4), CS)
    assert sol.text == "AAB1" and len(sol.confidences) == 4  # a blank between the two A's keeps both
    (empty,) = ctc_decode(onehot([[blank] * 6], 4), CS)
    assert empty.text == "" and empty.confidences == [] and empty.confidence == 0.0


def test_ctc_confidence_is_the_best_column_of_a_repeat():
    probs = onehot([[0, 0]], 4)
    probs[0, 1] = [0.95, 0.02, 0.02, 0.01]
    (sol,) = ctc_decode(probs, CS)
    assert sol.text == "A" and sol.confidences == [pytest.approx(0.95)]


def test_per_position_decoding_and_string_confidence():
    (sol,) = decode_predictions(onehot([[2, 0, 0, 1]], 3, p=0.8), CS)
    assert sol.text == "1AAB" and sol.confidences == [pytest.approx(0.8)] * 4
    assert sol.confidence == pytest.approx(0.8 ** 4)


def test_decode_dispatches_on_method():
    logits = np.log(onehot([[0, 3, 1]], 4))
    assert decode(logits, CS, "ctc")[0].text == "AB"
    assert decode(np.log(onehot([[0, 1, 2]], 3)), CS, "classify")[0].text == "AB1"
