"""Synthetic whole captchas for the general reader."""

import random

import numpy as np

from captcha.data.captchas import LENGTHS, random_text, render_captcha
from captcha.data.fonts import by_family, pretraining_faces
from captcha.data.segment import to_content
from captcha.training.reader import READER_SEGMENT

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
    assert all(im.mode == "RGB" and min(im.size) >= 8 for _, im in rows)
    # a band of a larger canvas may be taller than wide; what the reader sees, cropped to content, is not
    content = [to_content(im, READER_SEGMENT) for _, im in rows]
    assert all(c.width > c.height for c in content) and any(c.size != im.size for c, (_, im) in zip(content, rows))
    assert len({im.size for _, im in rows}) > 20  # sizes and aspect ratios vary
    assert all(np.asarray(im).std() > 5 for _, im in rows)  # something is drawn on every one


def test_a_strike_through_crosses_most_of_the_width_at_a_thickness_that_grows_with_the_height():
    from PIL import Image

    from captcha.data.captchas import _strike

    def struck(h: int, seed: int) -> np.ndarray:
        img = Image.new("RGB", (4 * h, h), (250, 250, 250))
        img.putpixel((0, 0), (20, 20, 20))  # the darkest ink, which the strike mostly takes
        _strike(img, random.Random(seed))
        return np.asarray(img)[..., 0] < 128

    for seed in range(10):
        ink = struck(60, seed)
        cols = np.flatnonzero(ink[1:].any(0))
        assert cols.min() <= 0.3 * 240 + 2 and cols.max() >= 0.7 * 240 - 2  # from near the start to near the end
    thick = np.mean([struck(120, s)[1:].sum() / 480 for s in range(10)])
    thin = np.mean([struck(30, s)[1:].sum() / 120 for s in range(10)])
    assert thick > 2 * thin  # ink per column: about 4x the height, about 4x the thickness


def test_each_texture_changes_the_pixels_as_its_name_says(monkeypatch):
    import captcha.data.captchas as captchas

    base = _render(3)[1]
    arr = np.asarray(base)

    def textured(kind: str, seed: int = 0) -> np.ndarray:
        monkeypatch.setattr(captchas, "TEXTURES", {kind: 1.0})
        out = np.asarray(captchas._texture(base, random.Random(seed)))
        assert out.shape == arr.shape and out.dtype == np.uint8
        return out

    scattered = textured("scatter")
    assert not np.array_equal(scattered, arr) and np.array_equal(scattered, textured("scatter"))  # by its seed
    colours = {tuple(p) for p in arr.reshape(-1, 3)}
    assert all(tuple(p) in colours for p in scattered.reshape(-1, 3))  # moved, not made up
    assert len({tuple(p) for p in textured("binary").reshape(-1, 3)}) == 2  # ink and ground, hard-edged
    assert np.array_equal(textured("invert"), 255 - arr)
    monkeypatch.setattr(captchas, "TEXTURES", {"scatter": 0.0})
    assert np.array_equal(np.asarray(captchas._texture(base, random.Random(0))), arr)  # none drawn: untouched


def test_heavily_overlapping_glyphs_make_narrower_captchas_in_their_order(monkeypatch):
    """The text layout's heavy overlap: the same strings drawn overlapping are narrower than drawn as before, and each
    glyph still starts right of the one before it (a third of its width at least)."""
    from PIL import Image

    import captcha.data.captchas as captchas

    fonts = by_family(pretraining_faces())
    placed: list[list[tuple[int, int]]] = []
    paste = Image.Image.paste

    def spy(self, im, box=None, mask=None):  # where each glyph lands on the text layout's canvas
        if self.mode == "L" and isinstance(box, tuple) and mask is not None:
            placed[-1].append((box[0], mask.width))
        return paste(self, im, box, mask)

    def widths(rate: float) -> list[float]:
        monkeypatch.setattr(captchas, "OVERLAP_RATE", rate)
        out = []
        for seed in range(12):
            rng = random.Random(seed)
            placed.append([])
            img = captchas._text("ABCDE", rng, fonts)
            out.append(img.width / img.height)
        return out

    monkeypatch.setattr(Image.Image, "paste", spy)
    apart, overlapping = widths(0.0), widths(1.0)
    assert np.mean(overlapping) < 0.85 * np.mean(apart)
    assert all(len(p) == 5 and all(b[0] - a[0] >= a[1] / 3 for a, b in zip(p, p[1:])) for p in placed)


def test_dots_are_small_round_and_inside_the_captcha():
    from PIL import Image

    from captcha.data.captchas import _dots

    img = Image.new("RGB", (160, 50), (255, 255, 255))
    _dots(img, random.Random(2), np.array([10, 20, 30]))
    ink = np.asarray(img).min(2) < 200
    from scipy import ndimage

    blobs, n = ndimage.label(ink)
    sizes = ndimage.sum(ink, blobs, range(1, n + 1))
    assert 5 <= n <= 60 and sizes.max() <= 40  # a few dozen dots, none larger than a small disc
