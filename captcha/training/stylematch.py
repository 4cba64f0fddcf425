"""Style-matched synthesis: synthetic captchas drawn to look like the user's, for training with few labels.

Each style parameter is fitted to the user's labelled captchas: the image size, grey or colour, the
background and ink colours (medians over the ink mask and its complement), the glyphs' height in the
image (the content box), the characters used and the captcha length. The font is chosen by distance
in the pretrained backbone's feature space: the user's character crops against clean glyphs of each
pretraining font family drawn in the fitted colours; the nearest families draw the synthetic
captchas. Each synthetic captcha is a random string of the user's characters, glyphs placed with
small rotations and spacing jitter, a little noise. Our own code on Pillow and numpy.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, ImageFilter

from ..data.corpus import SS, _curves, _glyph_mask, render_cell
from ..data.fonts import by_family, pretraining_faces
from ..data.segment import SegmentConfig, content_box, ink_mask, split
from ..data.splits import Captcha
from ..data.synth import seed_for

FONT_CHOICES = 3  # families kept, nearest first
SAMPLE = 120  # user captchas measured at most


@dataclass
class SiteStyle:
    """The style parameters fitted to a site's captchas."""

    size: tuple[int, int]  # (width, height)
    grey: bool
    background: tuple[int, int, int]
    ink: tuple[int, int, int]
    ink_height: float  # glyph height / image height
    span: float  # text width / image width
    length: int
    alphabet: str
    fold_case: bool = True  # labels fold to one case: draw either case
    families: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the checkpoint."""
        return asdict(self)


def measure_style(captchas: Sequence[Captcha], length: int) -> SiteStyle:
    """Fit every parameter but the font to the labelled ``captchas`` of ``length`` characters."""
    sample = [(im, lab) for im, lab in captchas if len(lab) == length][:SAMPLE]
    if not sample:
        raise ValueError("no captchas of the captcha length to measure a style from")
    widths, heights, bgs, inks, ink_h, spans = [], [], [], [], [], []
    for im, _ in sample:
        arr = np.asarray(im.convert("RGB"), np.float32)
        mask = ink_mask(im)
        widths.append(im.width)
        heights.append(im.height)
        if mask.any() and (~mask).any():
            bgs.append(np.median(arr[~mask], 0))
            inks.append(np.median(arr[mask], 0))
        x0, y0, x1, y1 = content_box(im)
        ink_h.append((y1 - y0) / im.height)
        spans.append((x1 - x0) / im.width)
    grey = all(im.mode in ("L", "LA", "1") or np.ptp(np.asarray(im.convert("RGB"), np.int16), axis=2).max() < 12
               for im, _ in sample[:20])

    def colour(values: list) -> tuple[int, int, int]:
        return tuple(int(v) for v in np.median(values, 0)) if values else (0, 0, 0)

    return SiteStyle((int(np.median(widths)), int(np.median(heights))), grey, colour(bgs) if bgs else (255, 255, 255),
                     colour(inks), float(np.clip(np.median(ink_h), 0.3, 1.0)), float(np.clip(np.median(spans), 0.3, 1.0)),
                     length, "".join(sorted({c for _, lab in sample for c in lab})))


def rank_families(style: SiteStyle, captchas: Sequence[Captcha], features: Callable[[list], np.ndarray],
                  per_family: int = 48, seed: int = 0) -> list[str]:
    """Pretraining font families, nearest first to the user's character crops in ``features`` space."""
    crops = [c for im, lab in captchas[:SAMPLE] if len(lab) == style.length
             for c in split(im, style.length, SegmentConfig("equal", trim=True, crop=True))]
    target = features(crops).mean(0)
    fonts = by_family(pretraining_faces())
    dist = {}
    for family in sorted(fonts):
        rng = random.Random(seed_for(seed, "style-rank", family))
        glyphs = [_coloured(render_cell(rng.choice(style.alphabet), rng, {family: fonts[family]}, families=()), style)
                  for _ in range(per_family)]
        dist[family] = float(np.linalg.norm(features(glyphs).mean(0) - target))
    return sorted(dist, key=dist.get)


def _coloured(cell: Image.Image, style: SiteStyle) -> Image.Image:
    """A clean dark-on-white cell redrawn in the site's ink and background colours."""
    alpha = 1.0 - np.asarray(cell.convert("L"), np.float32)[..., None] / 255.0
    out = np.asarray(style.background, np.float32) * (1 - alpha) + np.asarray(style.ink, np.float32) * alpha
    return Image.fromarray(out.clip(0, 255).astype(np.uint8), "RGB")


def render_site_captcha(text: str, rng: random.Random, style: SiteStyle,
                        fonts: dict[str, tuple[str, ...]]) -> Image.Image:
    """One synthetic captcha of ``text`` in ``style``: the fitted size, colours and glyph height."""
    w, h = style.size
    face = rng.choice(list(fonts[rng.choice(style.families)]))
    ink_h = style.ink_height * h * SS * rng.uniform(0.75, 0.95)
    # a site whose labels fold case draws either case: the labels cannot say which
    drawn = [c.swapcase() if style.fold_case and rng.random() < 0.5 else c for c in text]
    glyphs = [_glyph_mask(c, face, ink_h * rng.uniform(0.92, 1.08), rng, ("affine",) if rng.random() < 0.6 else ())
              for c in drawn]
    glyphs = [g.crop(g.getbbox()) if g.getbbox() else g for g in glyphs]
    canvas = Image.new("L", (w * SS, h * SS), 0)
    slot = style.span * w * SS / len(text)
    x = (w * SS - slot * len(text)) / 2
    for g in glyphs:
        gx = int(x + (slot - g.width) / 2 + rng.uniform(-0.12, 0.12) * slot)
        gy = int((h * SS - g.height) / 2 + rng.uniform(-0.08, 0.08) * h * SS)
        canvas.paste(Image.new("L", g.size, 255), (gx, gy), g)
        x += slot
    alpha = np.asarray(canvas.resize((w, h), Image.BILINEAR), np.float32)[..., None] / 255.0
    jitter = np.array([rng.uniform(-20, 20) for _ in range(3)], np.float32)
    bg = np.asarray(style.background, np.float32) + jitter
    ink = np.asarray(style.ink, np.float32) + np.array([rng.uniform(-25, 25) for _ in range(3)], np.float32)
    out = bg * (1 - alpha) + ink * alpha
    if rng.random() < 0.5:
        out = out + np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(2, 10), out.shape)
    img = Image.fromarray(out.clip(0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.5:  # strike-through lines and arcs, as many sites draw
        _curves(img, rng, ink)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    return img.convert("L").convert("RGB") if style.grey else img


def synthesize(captchas: Sequence[Captcha], length: int, n: int, features: Callable[[list], np.ndarray],
               fold_case: bool = True, seed: int = 0) -> tuple[list[Captcha], SiteStyle]:
    """``n`` labelled synthetic captchas in the style of ``captchas``, and the style fitted."""
    style = measure_style(captchas, length)
    style.fold_case = fold_case
    style.families = tuple(rank_families(style, captchas, features, seed=seed)[:FONT_CHOICES])
    fonts = by_family(pretraining_faces())
    out = []
    for i in range(n):
        rng = random.Random(seed_for(seed, "site-synth", i))
        text = "".join(rng.choice(style.alphabet) for _ in range(length))
        out.append((render_site_captcha(text, rng, style, fonts), text))
    return out, style
