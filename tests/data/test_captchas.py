"""Synthetic whole captchas for the general reader."""

import random

import numpy as np

from captcha.data.captchas import LENGTHS, random_text, render_captcha
from captcha.data.fonts import by_family, pretraining_faces

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _render(seed: int):
    rng = random.Random(seed)
    text = random_text(rng, ALPHABET)
    return text, render_captcha(text, rng, by_family(pretraining_faces()), ALPHABET)


def test_each_captcha_is_determined_by_its_seed():
    (t1, a), (t2, b) = _render(7), _render(7)
    assert t1 == t2 and np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(_render(8)[1])) or _render(8)[0] != t1


def test_texts_and_images_vary_as_the_reader_needs():
    rows = [_render(s) for s in range(40)]
    assert {len(t) for t, _ in rows} == set(LENGTHS)
    assert any(t != t.upper() for t, _ in rows) and any(t == t.upper() for t, _ in rows)  # both cases
    assert all(im.mode == "RGB" and im.width > im.height >= 8 for _, im in rows)
    assert len({im.size for _, im in rows}) > 20  # sizes and aspect ratios vary
    assert all(np.asarray(im).std() > 5 for _, im in rows)  # something is drawn on every one
