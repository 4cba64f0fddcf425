"""The held-out styles: deterministic per seed, and each distortion family really changes the glyph."""

import dataclasses
import random

import numpy as np
import pytest

from captcha.data.styles import STYLES, HeldOutStyle, family_files, render_styled
from captcha.errors import DataError

try:
    family_files(("LiberationSans", "FreeSans"))
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


FAMILIES = {"elastic warp": dict(warp="elastic"), "sine warp": dict(warp="sine"), "perspective": dict(perspective=0.2),
            "hollow": dict(hollow=True), "jpeg": dict(jpeg=(10, 12)), "low contrast": dict(contrast=(150, 160)),
            "speckle": dict(speckle=0.05), "strokes": dict(strokes=2)}


@needs_fonts
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_distortion_family_changes_the_glyph(family):
    plain = HeldOutStyle("plain", ("LiberationSans", "FreeSans"), (40, 40), rotation=0.0)
    clean = _pixels(render_styled("K", random.Random(3), plain))
    changed = _pixels(render_styled("K", random.Random(3), dataclasses.replace(plain, **FAMILIES[family])))
    assert np.abs(changed - clean).mean() > 1.0, family


def test_missing_fonts_say_which_packages_to_install():
    with pytest.raises(DataError, match="fonts-liberation"):
        family_files(("NoSuchFontFamilyAnywhere",))
