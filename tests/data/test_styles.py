"""The held-out styles: deterministic per seed, each appearance family really changes the glyph, and none of
them is a family the pretraining corpus draws."""

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest

from captcha.data.fonts import held_out_files
from captcha.data.styles import STYLES, HeldOutStyle, render_styled
from captcha.errors import DataError

try:
    held_out_files(("LiberationSans", "FreeSans"))
    HAVE_FONTS = True
except DataError:
    HAVE_FONTS = False

needs_fonts = pytest.mark.skipif(not HAVE_FONTS, reason="Debian font packages (fonts-liberation, fonts-freefont-ttf) "
                                                        "not installed")


def _pixels(img) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


@needs_fonts
@pytest.mark.parametrize("name", list(STYLES))
def test_each_style_is_deterministic_per_seed(name):
    style = STYLES[name]
    try:
        a, b = (render_styled("K", random.Random(7), style) for _ in range(2))
    except DataError as exc:
        pytest.skip(str(exc))
    assert a.size == style.cell and a.tobytes() == b.tobytes()
    assert a.tobytes() != render_styled("K", random.Random(8), style).tobytes()


FAMILIES = {"halftone": dict(halftone=3), "stripes": dict(stripes=5), "grid": dict(grid=9), "erode": dict(erode=0.3),
            "pixelate": dict(pixelate=2), "motion blur": dict(motion=5)}


@needs_fonts
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_distortion_family_changes_the_glyph(family):
    plain = HeldOutStyle("plain", ("LiberationSans", "FreeSans"), (40, 40), rotation=0.0)
    clean = _pixels(render_styled("K", random.Random(3), plain))
    changed = _pixels(render_styled("K", random.Random(3), dataclasses.replace(plain, **FAMILIES[family])))
    assert np.abs(changed - clean).mean() > 1.0, family


def test_missing_fonts_say_which_packages_to_install():
    with pytest.raises(DataError, match="fonts-liberation"):
        held_out_files(("NoSuchFontFamilyAnywhere",))


def test_held_out_styles_use_neither_pretraining_fonts_nor_corpus_families():
    from captcha.data.corpus import FAMILIES as CORPUS
    from captcha.data.fonts import is_held_out, pretraining_faces

    fields = {f.name for f in dataclasses.fields(HeldOutStyle)} - {"name", "families", "cell", "rotation"}
    assert not fields & set(CORPUS), fields & set(CORPUS)
    pretraining = {Path(f.path).name for f in pretraining_faces()}
    for style in STYLES.values():
        assert all(is_held_out(name + "-Regular.ttf") for name in style.families), style.name
        assert not any(name.startswith(style.families) for name in pretraining), style.name
