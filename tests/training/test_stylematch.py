"""Style-matched synthesis: parameters fitted to a site's captchas, fonts ranked by feature distance."""

import numpy as np
from PIL import Image, ImageDraw

from captcha.data.preprocess import Preprocess
from captcha.training.stylematch import measure_style, synthesize


def _site(n: int = 12):
    """Grey-blue captchas of 4 characters: dark red ink on a light blue band, 120x40."""
    out = []
    for i in range(n):
        img = Image.new("RGB", (120, 40), (200, 220, 245))
        text = "AB12"[i % 4:] + "AB12"[: i % 4]
        ImageDraw.Draw(img).text((20, 8), " ".join(text), fill=(150, 20, 20), font_size=22)
        out.append((img, text))
    return out


def _pixels(crops):
    small = Preprocess(size=(8, 8))
    return np.stack([small(c).ravel() for c in crops])


def test_the_style_is_fitted_to_the_site():
    style = measure_style(_site(), 4)
    assert style.size == (120, 40) and not style.grey and style.length == 4 and style.alphabet == "12AB"
    assert np.abs(np.subtract(style.background, (200, 220, 245))).max() < 15
    assert style.ink[0] > style.ink[2] + 40  # red ink
    assert 0.3 <= style.ink_height <= 1.0


def test_synthesis_draws_labelled_captchas_in_that_style():
    made, style = synthesize(_site(), 4, 6, _pixels, seed=1)
    assert len(made) == 6 and len(style.families) == 3
    for img, text in made:
        assert img.size == (120, 40) and len(text) == 4 and set(text) <= set("12AB")
        assert np.asarray(img).std() > 3
    again, _ = synthesize(_site(), 4, 6, _pixels, seed=1)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) and s == t for (a, s), (b, t) in zip(made, again))
