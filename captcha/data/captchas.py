"""Synthetic whole captchas in many layouts: what the general reader (a CTC model) is pretrained on.

Two layouts, each drawn per captcha from its own RNG:

- ``cells``: the course's way, one corpus cell (``corpus.render_cell``) per character, side by side;
- ``text``: one canvas, the glyphs' ink masks placed left to right with random spacing (overlapping
  when negative, a third of them heavily) and baseline jitter, the whole string then warped (perspective, elastic,
  sine), coloured, dotted, crossed by curves, speckled, blurred, JPEG-compressed.

Either may have its pixels changed as some sites' are (``TEXTURES``: scattered, thresholded, inverted) and
sit in a band of a larger canvas (blank margins), as some sites draw them. Faces and
distortions come from the pretraining corpus (``fonts``, ``corpus``), so the held-out families of
the leave-style-out benchmark stay unseen. Our own code on Pillow, numpy and scipy.
"""

from __future__ import annotations

import io
import random
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from scipy import ndimage

from .corpus import (
    SS,
    _background,
    _curves,
    _displace,
    _glyph_mask,
    _ink,
    _perspective,
    render_cell,
)
from .synth import concat_captcha

LAYOUTS = ("cells", "text")
LAYOUT_RATES = (0.3, 0.7)
STRIKE_RATE = 0.2  # captchas crossed by a thick, often bent strike-through (``_strike``), besides the thin curves
# How a site's pixels may differ from smooth anti-aliased rendering (``_texture``), and how often. Before these
# the general reader read sysu_alnum4's test quarter 86% as it is, 0% scattered by 2 pixels, 70% thresholded, 71%
# inverted (bench/textures.py). In 2x2 blocks (1%) and dithered (42%) are holes too, but they are the leave-style-out
# families of eroded-mono (pixelated) and halftone-serif (dots): drawn here, those sites would stop being unseen.
TEXTURES = {"scatter": 0.12, "binary": 0.06, "invert": 0.04}
# Captchas of the ``text`` layout whose glyphs overlap heavily (each the next's left part, up to 0.4 of the average
# glyph's width), and captchas sprinkled with ink dots, as the commonest web generators draw them. Without them the
# general reader read, with no training, 1.3 / 43.0 / 2.7 / 21.3% of four leave-style-out styles (lso-eroded-arc5,
# lso-striped-arc6, lso-warped-lower5, lso-warped-upper4) and 26.7 / 93.3 / 50.3 / 79.7% of the same drawn with their
# glyphs apart; without the dots, the two warped styles 23.0 / 46.0% (300 captchas each; docs/measurements.md).
OVERLAP_RATE = 0.35
DOTS_RATE = 0.3
LENGTHS = (4, 5, 6)  # the default of random_text; the reader takes its own from ReaderConfig


def random_text(rng: random.Random, alphabet: str, lengths: Sequence[int] = LENGTHS) -> str:
    """A random string of one of ``lengths``, in upper or lower case (sites use both)."""
    text = "".join(rng.choice(alphabet) for _ in range(rng.choice(lengths)))
    case = rng.random()
    if case < 0.3:
        return text.lower()
    if case < 0.45:
        return "".join(c.lower() if rng.random() < 0.5 else c for c in text)
    return text


def _cells(text: str, rng: random.Random, fonts: Mapping[str, Sequence[str]], alphabet: str) -> Image.Image:
    height = rng.randint(36, 64)
    cells = []
    for c in text:
        cell = render_cell(c, rng, fonts, alphabet=alphabet)
        cells.append(cell.resize((max(8, round(cell.width * height / cell.height)), height), Image.BILINEAR))
    return concat_captcha(cells)


def _text(text: str, rng: random.Random, fonts: Mapping[str, Sequence[str]]) -> Image.Image:
    family = rng.choice(sorted(fonts))
    faces = list(fonts[family])
    one_face = rng.random() < 0.7
    face = rng.choice(faces)
    fams = tuple(f for f, p in (("affine", 0.7), ("stroke", 0.3)) if rng.random() < p)
    ink_h = rng.uniform(20, 40) * SS
    glyphs = [_glyph_mask(c, face if one_face else rng.choice(faces), ink_h * rng.uniform(0.85, 1.15), rng, fams)
              for c in text]
    glyphs = [g.crop(g.getbbox()) if g.getbbox() else g for g in glyphs]  # spacing is between the inks
    # the gap between neighbouring inks, in average glyph widths; negative: glyphs overlap
    spacing = rng.uniform(-0.4, -0.1) if rng.random() < OVERLAP_RATE else rng.uniform(-0.25, 0.3)
    average = sum(g.width for g in glyphs) / len(glyphs)
    pad = int(ink_h * rng.uniform(0.15, 0.5))
    width = int(sum(g.width for g in glyphs) + average * len(glyphs) * max(spacing, 0) * 1.2 + pad * 2 + ink_h)
    height = int(max(g.height for g in glyphs) + pad * 2 + ink_h * 0.2)
    canvas = Image.new("L", (width, height), 0)
    x = pad
    jitter = rng.uniform(0, 0.15) * ink_h
    for g in glyphs:
        y = int((height - g.height) / 2 + rng.uniform(-jitter, jitter))
        canvas.paste(Image.new("L", g.size, 255), (x, y), g)
        # each glyph starts right of the one before (a third of its width at least), so the order stays readable
        x += max(int(g.width / 3) + 1, int(g.width + spacing * average * rng.uniform(0.6, 1.2)))
    canvas = canvas.crop((0, 0, min(width, x + pad), height))
    mask = np.asarray(canvas)
    if rng.random() < 0.2:
        mask = _perspective(mask, rng)
    for kind, p in (("elastic", 0.25), ("sine", 0.3)):
        if rng.random() < p:
            mask = _displace(mask, rng, kind)
    w, h = max(8, mask.shape[1] // SS), max(8, mask.shape[0] // SS)
    alpha = np.asarray(Image.fromarray(mask).resize((w, h), Image.BILINEAR), np.float32) / 255.0
    extras = tuple(f for f, p in (("background", 0.75), ("low_contrast", 0.1)) if rng.random() < p)
    bg, dark = _background(rng, (w, h), extras)
    if rng.random() < 0.3:  # one colour per character
        edges = np.linspace(0, w, len(text) + 1)
        ink = np.zeros((h, w, 3), np.float32)
        for a, b in zip(edges[:-1], edges[1:]):
            ink[:, int(a):int(b) + 1] = _ink(rng, bg, dark, extras)
    else:
        ink = np.broadcast_to(_ink(rng, bg, dark, extras), (h, w, 3))
    if rng.random() < 0.08:  # outline only
        alpha = np.clip(alpha - ndimage.grey_erosion(alpha, size=(3, 3)), 0, 1)
    out = bg * (1 - alpha[..., None]) + ink * alpha[..., None]
    img = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")
    middle = ink[h // 2, w // 2]  # the ink dots and curves are drawn in, when not a colour of their own
    if rng.random() < DOTS_RATE:
        _dots(img, rng, middle)
    if rng.random() < 0.45:
        _curves(img, rng, middle)
    return img


def _dots(img: Image.Image, rng: random.Random, ink: np.ndarray) -> None:
    """Small round dots scattered over the captcha, in the glyphs' ink or another dark colour."""
    w, h = img.size
    draw = ImageDraw.Draw(img)
    colour = tuple(int(v) for v in (ink if rng.random() < 0.5 else [rng.randint(0, 180) for _ in range(3)]))
    for _ in range(int(rng.uniform(10, 50) * w * h / (160 * 50)) + 1):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.4, 1.0) + 0.012 * h
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)


def _strike(img: Image.Image, rng: random.Random) -> None:
    """A thick strike-through that starts or ends inside the text, often bent: many sites draw one that
    crosses a glyph's top or foot and turns it into another character (n -> 7, 9 -> 8)."""
    w, h = img.size
    colour = tuple(lo for lo, _ in img.getextrema()) if rng.random() < 0.7 else \
        tuple(rng.randint(0, 160) for _ in range(3))  # mostly the darkest ink of each channel
    x0, x1 = rng.uniform(0, 0.3) * w, rng.uniform(0.7, 1.0) * w
    xs = sorted([x0, x1] + [rng.uniform(x0, x1) for _ in range(rng.randint(0, 2))])
    ys = [rng.uniform(0.2, 0.8) * h for _ in xs]
    if rng.random() < 0.5:  # a short hook at the start, back across the first glyph
        xs.insert(0, xs[0] + rng.uniform(0.02, 0.08) * w)
        ys.insert(0, ys[0] + rng.choice((-1, 1)) * rng.uniform(0.15, 0.35) * h)
    width = max(1, round(h * rng.uniform(0.03, 0.08)))
    ImageDraw.Draw(img).line(list(zip(xs, ys)), fill=colour, width=width, joint="curve")


def _degrade(img: Image.Image, rng: random.Random) -> Image.Image:
    if rng.random() < 0.3:
        arr = np.asarray(img).copy()
        nrng = np.random.default_rng(rng.getrandbits(32))
        spots = nrng.random(arr.shape[:2]) < rng.uniform(0.005, 0.05)
        arr[spots] = nrng.integers(0, 256, (int(spots.sum()), 3 if rng.random() < 0.5 else 1))
        img = Image.fromarray(arr)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    if rng.random() < 0.2:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=rng.randint(15, 60))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return img


def scatter(arr: np.ndarray, rng: random.Random, reach: int) -> np.ndarray:
    """Each pixel taken from a random neighbour up to ``reach`` pixels away: ink sprayed rather than drawn."""
    nrng = np.random.default_rng(rng.getrandbits(32))
    h, w = arr.shape[:2]
    ys = np.clip(np.arange(h)[:, None] + nrng.integers(-reach, reach + 1, (h, w)), 0, h - 1)
    xs = np.clip(np.arange(w)[None, :] + nrng.integers(-reach, reach + 1, (h, w)), 0, w - 1)
    return arr[ys, xs]


def threshold(img: Image.Image) -> Image.Image:
    """``img`` in two greys, 0 and 255, cut halfway between its darkest and lightest: hard, jagged edges."""
    grey = img.convert("L")
    lo, hi = grey.getextrema()
    return grey.point(lambda v: 255 if v > (lo + hi) / 2 else 0)


def _texture(img: Image.Image, rng: random.Random) -> Image.Image:
    """At most one of the ways sites' pixels differ from smooth rendering (``TEXTURES``): ink scattered over a
    few pixels (the whole captcha or a stretch of it), thresholded to two colours (hard, jagged edges), or
    inverted."""
    kind = rng.choices([*TEXTURES, None], [*TEXTURES.values(), 1 - sum(TEXTURES.values())])[0]
    w, h = img.size
    if kind == "scatter":
        arr = np.asarray(img).copy()
        a, b = (0, w) if rng.random() < 0.5 else sorted(int(rng.uniform(0, w)) for _ in range(2))
        arr[:, a:b + 1] = scatter(arr[:, a:b + 1], rng, rng.randint(2, max(2, round(h / 25))))
        return Image.fromarray(arr)
    if kind == "binary":
        dark, light = sorted((tuple(rng.randint(0, 255) for _ in range(3)) for _ in range(2)), key=sum)
        return ImageOps.colorize(threshold(img), dark if sum(light) - sum(dark) > 150 else (0, 0, 0), light)
    if kind == "invert":
        return ImageOps.invert(img)
    return img


def in_band(img: Image.Image, rng: random.Random, size: tuple[int, int], colour: tuple[int, ...]) -> Image.Image:
    """``img`` pasted at a random place of a ``size`` canvas of ``colour``: a captcha with blank margins."""
    out = Image.new("RGB", size, colour)
    out.paste(img, (rng.randint(0, size[0] - img.width), rng.randint(0, size[1] - img.height)))
    return out


def _margins(img: Image.Image, rng: random.Random) -> Image.Image:
    """The captcha in a band of a larger canvas of its own background colour (or white)."""
    w, h = img.size
    big = (int(w * rng.uniform(1.0, 1.6)), int(h * rng.uniform(1.3, 3.0)))
    colour = tuple(int(v) for v in np.asarray(img)[[0, -1]][:, [0, -1]].reshape(-1, 3).mean(0)) \
        if rng.random() < 0.6 else (255, 255, 255)
    return in_band(img, rng, big, colour)


def render_captcha(text: str, rng: random.Random, fonts: Mapping[str, Sequence[str]], alphabet: str) -> Image.Image:
    """One synthetic captcha showing ``text``, in a layout and style drawn from ``rng``."""
    layout = rng.choices(LAYOUTS, LAYOUT_RATES)[0]
    img = _cells(text, rng, fonts, alphabet) if layout == "cells" else _text(text, rng, fonts)
    if rng.random() < STRIKE_RATE:
        _strike(img, rng)
    img = _texture(_degrade(img, rng), rng)
    if rng.random() < 0.15:
        img = _margins(img, rng)
    scale = rng.uniform(0.7, 1.4)
    return img.resize((max(8, round(img.width * scale)), max(8, round(img.height * scale))), Image.BILINEAR)
