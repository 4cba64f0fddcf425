"""Synthetic captcha data made offline: glyph rendering and the course-sized dataset.

Fonts come only from PyPI packages (matplotlib's bundled DejaVu, STIX and Computer Modern faces and
Pillow's built-in font), so a fresh machine renders the same images as ours. Every image is drawn
from its own seed, derived from (dataset seed, split, class, index), so output is byte-identical
for a given seed and independent of generation order.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ..config import SynthConfig
from .layout import write_labels_csv

log = logging.getLogger(__name__)

# matplotlib's bundled faces; names missing from an installed matplotlib are skipped.
_MPL_FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmb10.ttf",
)
PILLOW_DEFAULT = "<pillow-default>"
MIN_FONTS = 8


@functools.lru_cache(maxsize=1)
def font_files() -> tuple[str, ...]:
    """The font faces available from installed packages, in a fixed order."""
    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    found = [str(ttf / name) for name in _MPL_FONTS if (ttf / name).is_file()]
    try:
        ImageFont.load_default(size=20)  # FreeType build of Pillow >= 10.1 ships a scalable face
        found.append(PILLOW_DEFAULT)
    except (AttributeError, TypeError, OSError):
        pass
    if len(found) < MIN_FONTS:
        raise RuntimeError(
            f"only {len(found)} font faces found in matplotlib/Pillow; need {MIN_FONTS}. "
            "Reinstall matplotlib (pip install --force-reinstall matplotlib)"
        )
    return tuple(found)


@functools.lru_cache(maxsize=512)
def font_at(path: str, size: int) -> ImageFont.FreeTypeFont:
    """A font face at a pixel size, cached (Pillow's built-in face by its placeholder name)."""
    if path == PILLOW_DEFAULT:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(path, size)


def seed_for(*parts: object) -> int:
    """A stable 64-bit seed from any parts (Python's hash() is salted per process, so not that)."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@dataclass
class GlyphStyle:
    """How hard the rendered glyphs are; the course set uses the defaults."""

    size: tuple[int, int] = (40, 40)  # (width, height) of one character cell
    font_scale: tuple[float, float] = (0.55, 0.85)  # glyph height as a fraction of the cell
    rotation: float = 18.0  # degrees, either way
    jitter: float = 0.18  # max centre offset as a fraction of the cell
    noise_dots: tuple[int, int] = (0, 25)
    lines: tuple[int, int] = (0, 2)
    blur: float = 0.8  # max Gaussian blur radius
    neighbours: float = 0.0  # probability of fragments of neighbouring glyphs at the edges


def _colour(rng: random.Random, lo: int, hi: int) -> tuple[int, int, int]:
    return tuple(rng.randint(lo, hi) for _ in range(3))  # type: ignore[return-value]


def _background(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """Light background: flat, gradient or blotchy texture."""
    w, h = size
    nrng = np.random.default_rng(rng.getrandbits(32))
    base = np.array(_colour(rng, 175, 255), dtype=np.float32)
    kind = rng.random()
    if kind < 0.35:
        arr = np.broadcast_to(base, (h, w, 3)).copy()
    elif kind < 0.7:
        other = np.array(_colour(rng, 175, 255), dtype=np.float32)
        t = np.linspace(0, 1, w if rng.random() < 0.5 else h, dtype=np.float32)
        t = t[None, :, None] if t.shape[0] == w else t[:, None, None]
        arr = base * (1 - t) + other * t
        arr = np.broadcast_to(arr, (h, w, 3)).copy()
    else:
        coarse = nrng.normal(0, 18, size=(max(2, h // 8), max(2, w // 8), 3)).astype(np.float32)
        up = np.asarray(Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize((w, h), Image.BILINEAR))
        arr = base + (up.astype(np.float32) - 128)
    arr += nrng.normal(0, rng.uniform(0, 8), size=arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _glyph_layer(char: str, rng: random.Random, style: GlyphStyle, fonts: Sequence[str]) -> Image.Image:
    """One glyph as an RGBA tile, rotated, sized to the cell height."""
    w, h = style.size
    height = rng.uniform(*style.font_scale) * h
    font = font_at(rng.choice(list(fonts)), max(8, int(round(height * 1.25))))
    stroke = rng.choice((0, 0, 0, 1)) if height > 18 else 0
    box = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), char, font=font, stroke_width=stroke)
    gw, gh = box[2] - box[0], box[3] - box[1]
    tile = Image.new("L", (gw + 4, gh + 4), 0)
    ImageDraw.Draw(tile).text((2 - box[0], 2 - box[1]), char, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    # Fit the glyph's ink height to the target height, keeping its aspect ratio (0 vs O, 1 vs I).
    scale = height / max(gh, 1)
    tile = tile.resize((max(1, round(tile.width * scale)), max(1, round(tile.height * scale))), Image.BICUBIC)
    tile = tile.rotate(rng.uniform(-style.rotation, style.rotation), resample=Image.BICUBIC, expand=True)
    ink = Image.new("RGBA", tile.size, _colour(rng, 0, 120) + (255,))
    ink.putalpha(tile)
    return ink


def render_char(char: str, rng: random.Random, style: GlyphStyle | None = None,
                fonts: Sequence[str] | None = None, neighbour_pool: str = "") -> Image.Image:
    """Draw one character cell: background, glyph, clutter, noise and blur."""
    style = style or GlyphStyle()
    fonts = fonts or font_files()
    w, h = style.size
    img = _background(rng, style.size).convert("RGBA")
    if neighbour_pool and rng.random() < style.neighbours:
        for side in (-1, 1):
            if rng.random() < 0.6:
                other = _glyph_layer(rng.choice(neighbour_pool), rng, style, fonts)
                x = (-other.width + rng.randint(2, max(3, w // 4))) if side < 0 else (w - rng.randint(2, max(3, w // 4)))
                img.paste(other, (x, (h - other.height) // 2 + rng.randint(-3, 3)), other)
    glyph = _glyph_layer(char, rng, style, fonts)
    max_dx, max_dy = style.jitter * w, style.jitter * h
    cx = w / 2 + rng.uniform(-max_dx, max_dx)
    cy = h / 2 + rng.uniform(-max_dy, max_dy)
    x, y = int(round(cx - glyph.width / 2)), int(round(cy - glyph.height / 2))
    img.paste(glyph, (x, y), glyph)  # may run over the edge: real glyphs touch their cell's border
    img = img.convert("RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(*style.lines)):
        colour = _colour(rng, 0, 160)
        if rng.random() < 0.5:
            draw.line([(rng.uniform(0, w), rng.uniform(0, h)), (rng.uniform(0, w), rng.uniform(0, h))],
                      fill=colour, width=rng.choice((1, 1, 2)))
        else:
            r = rng.uniform(w * 0.3, w)
            ox, oy = rng.uniform(0, w), rng.uniform(0, h)
            start = rng.uniform(0, 360)
            draw.arc([ox - r, oy - r, ox + r, oy + r], start, start + rng.uniform(30, 120), fill=colour, width=1)
    for _ in range(rng.randint(*style.noise_dots)):
        px, py = rng.randrange(w), rng.randrange(h)
        draw.point((px, py), fill=_colour(rng, 0, 255))
    radius = rng.uniform(0, style.blur)
    if radius > 0.3:
        img = img.filter(ImageFilter.GaussianBlur(radius))
    return img


def concat_captcha(cells: Sequence[Image.Image]) -> Image.Image:
    """Put character cells side by side, as the course's captchas were made."""
    w = sum(c.width for c in cells)
    h = max(c.height for c in cells)
    out = Image.new("RGB", (w, h), "white")
    x = 0
    for cell in cells:
        out.paste(cell, (x, 0))
        x += cell.width
    return out


Renderer = Callable[[str, random.Random], Image.Image]  # (character, its own RNG) -> one character cell


def synth_dataset(out: str | Path, cfg: SynthConfig | None = None, render: Renderer | None = None) -> dict[str, int]:
    """Write a course-layout dataset under ``out`` and return how many files of each kind.

    ``render`` draws each character cell (default: the course-style glyphs of :func:`render_char`).
    """
    cfg = cfg or SynthConfig()
    out = Path(out)
    if render is None:
        style, fonts = GlyphStyle(), font_files()

        def render(char: str, rng: random.Random) -> Image.Image:
            return render_char(char, rng, style, fonts)
    counts: dict[str, int] = {}
    for split, per_class, n_captchas in (("train", cfg.train_per_class, cfg.train_captchas),
                                         ("val", cfg.val_per_class, cfg.captchas)):
        cells: dict[str, list[Image.Image]] = {}
        for char in cfg.charset.alphabet:
            folder = out / "chars" / split / char
            folder.mkdir(parents=True, exist_ok=True)
            cells[char] = []
            for i in range(per_class):
                img = render(char, random.Random(seed_for(cfg.seed, split, char, i)))
                img.save(folder / f"{i:04d}.png")
                cells[char].append(img)
        counts[f"chars/{split}"] = per_class * len(cfg.charset)
        if n_captchas and per_class:
            counts[f"captchas/{split}"] = _write_captchas(out / "captchas" / split, cells, n_captchas, cfg, split)
    log.info("wrote %s to %s", counts, out)
    return counts


def _write_captchas(folder: Path, cells: dict[str, list[Image.Image]], n: int, cfg: SynthConfig, split: str) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed_for(cfg.seed, split, "captchas"))
    rows = []
    for k in range(n):
        label = "".join(rng.choice(cfg.charset.alphabet) for _ in range(cfg.length))
        picks = [cells[c][rng.randrange(len(cells[c]))] for c in label]
        name = f"{label}_{k:04d}.png"
        concat_captcha(picks).save(folder / name)
        rows.append((name, label))
    write_labels_csv(folder, rows)
    return n
