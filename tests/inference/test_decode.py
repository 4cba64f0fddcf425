import numpy as np
import pytest

from captcha.charset import Charset
from captcha.inference import decode as decode_module
from captcha.inference.decode import (
    ctc_decode,
    decode,
    decode_predictions,
    exact_length_paths,
    softmax,
)

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


def test_the_exact_length_path_is_the_most_probable_one_of_that_length():
    """Against every path of a few columns: the Viterbi path collapses to the length asked and none of that
    length is more probable; None when the columns cannot hold the characters."""
    import itertools

    rng = np.random.default_rng(0)
    for _ in range(60):
        cols, classes, length = rng.integers(2, 6), rng.integers(2, 5), rng.integers(1, 4)
        logp = np.log(rng.dirichlet(np.ones(classes), size=cols))
        blank = classes - 1

        def chars(path):
            out, prev = [], blank
            for k in path:
                if k != blank and k != prev:
                    out.append(k)
                prev = k
            return out

        best = max((logp[np.arange(cols), list(q)].sum() for q in itertools.product(range(classes), repeat=cols)
                    if len(chars(q)) == length), default=None)
        (got,) = exact_length_paths(logp[None], length)
        if best is None:
            assert got is None
        else:
            assert len(chars(got)) == length and logp[np.arange(cols), got].sum() == pytest.approx(best)


@pytest.mark.parametrize("budget", [None, 3000])
def test_a_batch_of_captchas_gets_the_paths_each_would_alone(budget, monkeypatch):
    """One Viterbi pass over many captchas finds each one's path as a pass over it alone does, ties included
    (int8 logits come in steps, so equally probable symbols are common), and so does a batch too large for
    one pass, taken in parts."""
    if budget:
        monkeypatch.setattr(decode_module, "VITERBI_BYTES", budget)  # a few captchas a part
    rng = np.random.default_rng(1)
    logp = np.log(rng.dirichlet(np.ones(5), size=(12, 9)))
    logp = np.round(logp * 2) / 2  # coarse steps: many exact ties
    logp[3, :2] = -np.inf  # a captcha whose first columns can read nothing
    for length in (1, 3, 5):
        together = exact_length_paths(logp, length)
        for one, got in zip(logp, together):
            (alone,) = exact_length_paths(one[None], length)
            assert (alone is None and got is None) or (alone == got).all()
        assert together[3] is None and all(p is not None for k, p in enumerate(together) if k != 3)
    assert exact_length_paths(logp[:2, :3], 5) == [None, None]  # 3 columns cannot hold 5 characters


def test_ctc_held_to_a_length_only_when_the_best_path_misses_it():
    blank = 3
    probs = onehot([[0, blank, 1, blank, blank]], 4)
    probs[0, 3] = [0.05, 0.05, 0.4, 0.5]  # "1" a close second in a blank column
    assert ctc_decode(probs, CS)[0].text == "AB"
    (held,) = ctc_decode(probs, CS, length=3)
    assert held.text == "AB1" and held.confidence == pytest.approx(0.9 * 0.9 * 0.4)  # "1" at its column's 0.4
    probs = onehot([[0, 1, blank, 2, blank]], 4)
    probs[0, 1] = [0.05, 0.5, 0.05, 0.4]  # "B" read over a close blank: dropped to hold "A1" to 2
    (dropped,) = ctc_decode(probs, CS, length=2)
    assert dropped.text == "A1" and dropped.confidence == pytest.approx(0.9 * 0.9 * 0.4 / 0.5)
    assert ctc_decode(onehot([[0, blank, 1, blank, 2]], 4), CS, length=3)[0].confidences == [pytest.approx(0.9)] * 3
