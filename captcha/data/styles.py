"""Glyph styles held out of pretraining and of `data synth`: the leave-style-out benchmark's data.

The shipped backbone learned glyphs drawn by ``synth`` from matplotlib's and Pillow's fonts with
rotation, scale, stroke, colour, texture, dots, lines and blur. These styles change what a captcha
generator can change: other font families (Debian's font packages, found on disk), and distortion
families that ``synth`` never applies (elastic and sine warps, perspective, hollow glyphs, JPEG
artefacts, low contrast, speckle, strokes through the glyph, tall and wide cells). Our own code on
Pillow, numpy and scipy; every cell is drawn from its own seed.
"""

from __future__ import annotations

import functools
import io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage

from ..errors import DataError

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/share/texmf/fonts"), Path("/usr/local/share/fonts"))
# Debian packages that hold the families below (all free licences: SIL OFL, GPL with font exception,
# AGPL for URW base35); installed for the benchmark only, never shipped.
FONT_PACKAGES = "fonts-liberation fonts-freefont-ttf fonts-urw-base35 fonts-crosextra-carlito fonts-crosextra-caladea"


@dataclass(frozen=True)
class HeldOutStyle:
    """A captcha style none of whose fonts or distortion families the project pretrained on."""

    name: str
    families: tuple[str, ...]  # font file name prefixes
    cell: tuple[int, int]  # (width, height)
    warp: str = ""  # "", "elastic", "sine"
    perspective: float = 0.0  # corner jitter, fraction of the cell
    hollow: bool = False
    jpeg: tuple[int, int] | None = None  # quality range
    contrast: tuple[int, int] = (0, 90)  # ink luminance range on a light background
    speckle: float = 0.0  # share of pixels flipped
    strokes: int = 0  # thick lines drawn through the glyph
    rotation: float = 15.0


STYLES = {
    "warped-serif": HeldOutStyle("warped-serif", ("LiberationSerif", "FreeSerif", "NimbusRoman", "C059", "P052",
                                                  "URWBookman", "Caladea"), (40, 60), warp="elastic",
                                 speckle=0.04, rotation=25.0),
    "hollow-sans": HeldOutStyle("hollow-sans", ("LiberationSans", "FreeSans", "NimbusSans", "Carlito", "URWGothic"),
                                (40, 40), perspective=0.18, hollow=True, jpeg=(12, 35)),
    "faint-mono": HeldOutStyle("faint-mono", ("LiberationMono", "FreeMono", "NimbusMonoPS"), (48, 40), warp="sine",
                               contrast=(110, 170), strokes=2, rotation=10.0),
}


@functools.lru_cache(maxsize=None)
def family_files(families: tuple[str, ...]) -> tuple[str, ...]:
    """Font files on this machine whose names start with one of ``families``, in a fixed order."""
    found = sorted({str(p) for d in FONT_DIRS if d.is_dir() for p in d.rglob("*")
                    if p.suffix.lower() in (".ttf", ".otf") and p.name.startswith(families)})
    if not found:
        raise DataError(f"no font of {', '.join(families)} is installed; install the Debian packages "
                        f"{FONT_PACKAGES} (apt-get install ...)")
    return tuple(found)


def render_styled(char: str, rng: random.Random, style: HeldOutStyle) -> Image.Image:
    """One character cell in ``style``."""
    w, h = style.cell
    bg = tuple(rng.randint(215, 255) for _ in range(3))
    ink_level = rng.randint(*style.contrast)
    ink = tuple(min(255, ink_level + rng.randint(0, 40)) for _ in range(3))
    scale = 4  # draw large, then reduce: smooth edges at any warp
    img = Image.new("RGB", (w * scale, h * scale), bg)
    font = ImageFont.truetype(rng.choice(family_files(style.families)), int(min(w, h) * scale * rng.uniform(0.6, 0.85)))
    draw = ImageDraw.Draw(img)
    box = draw.textbbox((0, 0), char, font=font)
    x = (w * scale - (box[2] - box[0])) / 2 - box[0] + rng.uniform(-0.1, 0.1) * w * scale
    y = (h * scale - (box[3] - box[1])) / 2 - box[1] + rng.uniform(-0.1, 0.1) * h * scale
    if style.hollow:
        draw.text((x, y), char, font=font, fill=bg, stroke_width=scale + 1, stroke_fill=ink)
    else:
        draw.text((x, y), char, font=font, fill=ink)
    img = img.rotate(rng.uniform(-style.rotation, style.rotation), resample=Image.BICUBIC, fillcolor=bg)
    for _ in range(style.strokes):
        draw = ImageDraw.Draw(img)
        draw.line([(0, rng.uniform(0.2, 0.8) * h * scale), (w * scale, rng.uniform(0.2, 0.8) * h * scale)],
                  fill=ink, width=scale * rng.randint(1, 2))
    img = img.resize((w, h), Image.LANCZOS)
    if style.perspective:
        img = _perspective(img, rng, style.perspective, bg)
    if style.warp:
        img = _warp(img, rng, style.warp)
    if style.speckle:
        arr = np.asarray(img).copy()
        nrng = np.random.default_rng(rng.getrandbits(32))
        mask = nrng.random(arr.shape[:2]) < style.speckle
        arr[mask] = nrng.integers(0, 256, size=(int(mask.sum()), 1))
        img = Image.fromarray(arr)
    if style.jpeg:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=rng.randint(*style.jpeg))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.6)))


def _perspective(img: Image.Image, rng: random.Random, amount: float, fill: tuple) -> Image.Image:
    """Each corner moved by up to ``amount`` of the cell: a quad warp."""
    w, h = img.size
    src = [(0, 0), (w, 0), (w, h), (0, h)]
    dst = [(x + rng.uniform(-amount, amount) * w, y + rng.uniform(-amount, amount) * h) for x, y in src]
    rows = []
    for (x, y), (u, v) in zip(dst, src):  # coefficients map output (dst) points back to input (src)
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, u])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, v])
    a = np.asarray(rows, dtype=np.float64)
    coeffs = np.linalg.solve(a[:, :8], a[:, 8])
    return img.transform((w, h), Image.PERSPECTIVE, tuple(coeffs), Image.BICUBIC, fillcolor=fill)


def _warp(img: Image.Image, rng: random.Random, kind: str) -> Image.Image:
    """A smooth displacement of every pixel: random elastic fields, or sine waves along both axes."""
    arr = np.asarray(img, dtype=np.float32)
    h, w = arr.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "elastic":
        nrng = np.random.default_rng(rng.getrandbits(32))
        dx = ndimage.gaussian_filter(nrng.uniform(-1, 1, (h, w)), 4) * w * 0.6
        dy = ndimage.gaussian_filter(nrng.uniform(-1, 1, (h, w)), 4) * h * 0.6
    else:
        amp, period, phase = rng.uniform(1.5, 3.0), rng.uniform(0.6, 1.2), rng.uniform(0, 2 * np.pi)
        dx = amp * np.sin(2 * np.pi * yy / (period * h) + phase)
        dy = amp * np.sin(2 * np.pi * xx / (period * w) + phase)
    coords = [yy + dy, xx + dx]
    out = np.stack([ndimage.map_coordinates(arr[..., c], coords, order=1, mode="nearest") for c in range(3)], -1)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
