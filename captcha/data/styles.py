"""Glyph styles held out of pretraining: the leave-style-out benchmark's data.

The shipped backbones learned glyphs drawn by ``corpus`` (v2) or ``synth`` (v1). These styles
change what a captcha generator can change, in ways neither ever draws: font families held out of
pretraining (``fonts.HELD_OUT_PREFIXES``: Liberation, FreeFont, URW, Carlito, Caladea) and
appearance families outside ``corpus.FAMILIES``: ink printed as a halftone dot screen, glyphs filled
with stripes over a lattice of grid lines, ink eroded into holes, pixelation, motion blur. Our own
code on Pillow, numpy and scipy; every cell is drawn from its own seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage

from .fonts import held_out_files


@dataclass(frozen=True)
class HeldOutStyle:
    """A captcha style none of whose fonts or appearance families the project pretrained on."""

    name: str
    families: tuple[str, ...]  # font file name prefixes
    cell: tuple[int, int]  # (width, height)
    halftone: int = 0  # dot-screen period in pixels (0: solid ink)
    stripes: int = 0  # stripe period inside the glyph in pixels (0: one colour)
    grid: int = 0  # lattice spacing of background grid lines in pixels
    erode: float = 0.0  # share of the ink eaten by holes
    pixelate: int = 1  # block size of the final pixelation
    motion: int = 0  # length of the motion-blur streak in pixels
    rotation: float = 15.0


STYLES = {
    "halftone-serif": HeldOutStyle("halftone-serif", ("LiberationSerif", "FreeSerif", "NimbusRoman", "C059", "P052",
                                                      "URWBookman", "Caladea"), (40, 60), halftone=3, grid=9,
                                   rotation=25.0),
    "striped-sans": HeldOutStyle("striped-sans", ("LiberationSans", "FreeSans", "NimbusSans", "Carlito", "URWGothic"),
                                 (40, 40), stripes=5, motion=5),
    "eroded-mono": HeldOutStyle("eroded-mono", ("LiberationMono", "FreeMono", "NimbusMonoPS"), (48, 40), erode=0.25,
                                pixelate=2, rotation=10.0),
}


def _ink_mask(char: str, rng: random.Random, style: HeldOutStyle, scale: int) -> np.ndarray:
    """The glyph's ink at ``scale`` times the cell size, rotated and placed, as floats in [0, 1]."""
    w, h = style.cell
    img = Image.new("L", (w * scale, h * scale), 0)
    font = ImageFont.truetype(rng.choice(held_out_files(style.families)), int(min(w, h) * scale * rng.uniform(0.6, 0.85)))
    draw = ImageDraw.Draw(img)
    box = draw.textbbox((0, 0), char, font=font)
    x = (w * scale - (box[2] - box[0])) / 2 - box[0] + rng.uniform(-0.1, 0.1) * w * scale
    y = (h * scale - (box[3] - box[1])) / 2 - box[1] + rng.uniform(-0.1, 0.1) * h * scale
    draw.text((x, y), char, font=font, fill=255)
    img = img.rotate(rng.uniform(-style.rotation, style.rotation), resample=Image.BICUBIC)
    return np.asarray(img, dtype=np.float32) / 255.0


def render_styled(char: str, rng: random.Random, style: HeldOutStyle) -> Image.Image:
    """One character cell in ``style``."""
    w, h = style.cell
    scale = 4  # draw large, then reduce: smooth edges and fine screens
    mask = _ink_mask(char, rng, style, scale)
    H, W = mask.shape
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    if style.halftone:  # printed through a rotated dot screen: the glyph becomes rows of dots
        period, angle = style.halftone * scale, np.deg2rad(rng.uniform(10, 80))
        u, v = np.cos(angle) * xx + np.sin(angle) * yy, -np.sin(angle) * xx + np.cos(angle) * yy
        dots = (np.cos(2 * np.pi * u / period) + np.cos(2 * np.pi * v / period)) / 2  # -1..1
        mask = mask * (dots > rng.uniform(-0.5, 0.0))
    if style.erode:  # holes eaten into the strokes by smooth noise
        nrng = np.random.default_rng(rng.getrandbits(32))
        noise = ndimage.gaussian_filter(nrng.random((H, W)), 0.7 * scale)
        mask = mask * (noise > np.quantile(noise, style.erode))
    bg = np.array([rng.randint(215, 255) for _ in range(3)], np.float32)
    ink = np.array([rng.randint(0, 90) for _ in range(3)], np.float32)
    ink_map = np.broadcast_to(ink, (H, W, 3)).astype(np.float32)
    if style.stripes:  # two inks in diagonal bands
        other = np.array([rng.randint(60, 170) for _ in range(3)], np.float32)
        band = ((xx + yy * rng.choice((-1, 1))) // (style.stripes * scale / 2)) % 2 == 1
        ink_map = np.where(band[..., None], other, ink_map)
    canvas = np.broadcast_to(bg, (H, W, 3)).astype(np.float32)
    if style.grid:  # a regular lattice of thin lines behind the glyph
        step = style.grid * scale
        ox, oy = rng.uniform(0, step), rng.uniform(0, step)
        lines = (((xx + ox) % step) < scale) | (((yy + oy) % step) < scale)
        canvas = np.where(lines[..., None], bg * 0.55, canvas)
    out = canvas * (1 - mask[..., None]) + ink_map * mask[..., None]
    img = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)).resize((w, h), Image.LANCZOS)
    if style.motion:  # a straight streak in one direction
        arr = np.asarray(img, dtype=np.float32)
        kernel = np.zeros((style.motion, style.motion), np.float32)
        kernel[style.motion // 2, :] = 1.0 / style.motion
        kernel = ndimage.rotate(kernel, rng.uniform(0, 180), reshape=False, order=1)
        kernel /= max(kernel.sum(), 1e-6)
        arr = np.stack([ndimage.convolve(arr[..., c], kernel, mode="nearest") for c in range(3)], -1)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if style.pixelate > 1:
        p = style.pixelate
        img = img.resize((max(1, w // p), max(1, h // p)), Image.BOX).resize((w, h), Image.NEAREST)
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.5)))
