"""The pretraining corpus: deterministic per seed, and every distortion family changes the glyph."""

import random

import numpy as np
import pytest

from captcha.data.corpus import FAMILIES, RATES, pick_families, render_cell
from captcha.data.fonts import by_family, covers_alphabet, matplotlib_faces

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
FONTS = by_family(tuple(f for f in matplotlib_faces() if covers_alphabet(f.path)))  # on every machine


def _render(seed: int, families=None, char: str = "R"):
    return render_cell(char, random.Random(seed), FONTS, families, ALPHABET)


def test_a_cell_is_the_same_for_the_same_seed_and_differs_for_another():
    a, b = _render(5), _render(5)
    assert a.tobytes() == b.tobytes() and a.mode == "RGB"
    assert a.tobytes() != _render(6).tobytes()


def test_the_clean_glyph_is_dark_ink_on_white_in_a_square_cell():
    arr = np.asarray(_render(3, families=()), dtype=np.int16)
    assert arr.shape[0] == arr.shape[1]
    assert (arr[0] == 255).all() and (arr[:, 0] == 255).all()  # the border is blank paper
    assert arr.min() < 120  # and there is ink


@pytest.mark.parametrize("family", FAMILIES)
def test_every_distortion_family_changes_the_glyph(family):
    changed = 0
    for seed in range(3):
        clean = np.asarray(_render(seed, families=()), dtype=np.int16)
        other = np.asarray(_render(seed, families=(family,)), dtype=np.int16)
        changed += other.shape != clean.shape or np.abs(other - clean).mean() > 1.0
    assert changed >= 2, family


def test_cells_draw_each_family_at_its_rate():
    rng = random.Random(0)
    drawn = [pick_families(rng) for _ in range(4000)]
    for family in FAMILIES:
        share = sum(family in d for d in drawn) / len(drawn)
        assert abs(share - RATES[family]) < 0.03, (family, share)
