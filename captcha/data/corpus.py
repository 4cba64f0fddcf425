"""The pretraining corpus: single glyphs drawn the way captcha generators draw them.

Each cell is rendered from its own RNG: a face (family first, then a face of it), then each
distortion family of ``FAMILIES`` is applied or not, each at a random strength. The glyph is drawn
as a grey-level ink mask at twice the cell size (geometric warps act on the mask, so edges stay
smooth), reduced, then coloured, cluttered and degraded. Our own code on Pillow, numpy and scipy.

The leave-style-out benchmark (``styles``) uses font families held out of ``fonts.pretraining_faces``
and appearance families that are not in this list.
"""

from __future__ import annotations

import io
import random
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from .synth import font_at

SS = 2  # supersampling of the ink mask
FAMILIES = ("affine", "perspective", "elastic", "sine", "stroke", "hollow", "shadow", "blur", "jpeg", "speckle",
            "curves", "neighbours", "cut", "background", "low_contrast", "aspect")
# How often each family is drawn when a cell picks its own (``families=None``).
RATES = {"affine": 0.8, "perspective": 0.25, "elastic": 0.25, "sine": 0.2, "stroke": 0.35, "hollow": 0.08,
         "shadow": 0.08, "blur": 0.35, "jpeg": 0.2, "speckle": 0.3, "curves": 0.35, "neighbours": 0.4,
         "cut": 0.15, "background": 0.75, "low_contrast": 0.15, "aspect": 0.7}


def pick_families(rng: random.Random) -> tuple[str, ...]:
    """The distortion families one cell gets, each drawn at its own rate."""
    return tuple(f for f in FAMILIES if rng.random() < RATES[f])


def _glyph_mask(char: str, font_path: str, height: float, rng: random.Random, fams: Sequence[str]) -> Image.Image:
    """The character's ink as an L image, ink height ``height`` pixels (already supersampled)."""
    font = font_at(font_path, max(8, int(round(height * 1.3))))
    box = font.getbbox(char)
    gw, gh = max(1, box[2] - box[0]), max(1, box[3] - box[1])
    pad = int(gh * 0.2) + 4
    tile = Image.new("L", (gw + 2 * pad, gh + 2 * pad), 0)
    ImageDraw.Draw(tile).text((pad - box[0], pad - box[1]), char, fill=255, font=font)
    scale = height / gh
    tile = tile.resize((max(1, round(tile.width * scale)), max(1, round(tile.height * scale))), Image.BILINEAR)
    if "stroke" in fams:  # thicken or thin the stroke by a few supersampled pixels
        k = 2 * rng.randint(1, max(1, int(height / 14))) + 1
        tile = tile.filter(ImageFilter.MaxFilter(k) if rng.random() < 0.55 else ImageFilter.MinFilter(min(k, 3)))
    if "affine" in fams:
        s = rng.random()  # strength
        angle = rng.uniform(-50, 50) * s
        shear = rng.uniform(-0.5, 0.5) * s
        sx, sy = 1 + rng.uniform(-0.35, 0.35) * s, 1 + rng.uniform(-0.25, 0.25) * s
        tile = tile.resize((max(1, round(tile.width * sx)), max(1, round(tile.height * sy))), Image.BILINEAR)
        w, h = tile.size
        tile = tile.transform((w + int(abs(shear) * h), h), Image.AFFINE,
                              (1, shear, -int(abs(shear) * h) if shear > 0 else 0, 0, 1, 0), Image.BILINEAR)
        tile = tile.rotate(angle, resample=Image.BILINEAR, expand=True)
    return tile


def _perspective(mask: np.ndarray, rng: random.Random) -> np.ndarray:
    """Each corner moved by up to a quarter of the cell: a quad warp."""
    h, w = mask.shape
    amount = rng.uniform(0.05, 0.25)
    src = [(0, 0), (w, 0), (w, h), (0, h)]
    dst = [(x + rng.uniform(-amount, amount) * w, y + rng.uniform(-amount, amount) * h) for x, y in src]
    rows = []
    for (x, y), (u, v) in zip(dst, src):  # coefficients map output points back to input points
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, u])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, v])
    a = np.asarray(rows, dtype=np.float64)
    coeffs = np.linalg.solve(a[:, :8], a[:, 8])
    img = Image.fromarray(mask).transform((w, h), Image.PERSPECTIVE, tuple(coeffs), Image.BILINEAR)
    return np.asarray(img)


def _displace(mask: np.ndarray, rng: random.Random, kind: str) -> np.ndarray:
    """Smooth displacement of every pixel: a random elastic field, or sine waves."""
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "elastic":
        nrng = np.random.default_rng(rng.getrandbits(32))
        sigma = rng.uniform(0.08, 0.18) * h
        strength = rng.uniform(0.3, 1.2) * sigma
        field = [ndimage.gaussian_filter(nrng.uniform(-1, 1, (h // 4 + 1, w // 4 + 1)), sigma / 4)
                 for _ in range(2)]
        dx, dy = (ndimage.zoom(f, (h / f.shape[0], w / f.shape[1]), order=1)[:h, :w] for f in field)
        norm = max(np.abs(dx).max(), np.abs(dy).max(), 1e-6)
        dx, dy = dx / norm * strength, dy / norm * strength
    else:
        amp = rng.uniform(0.02, 0.08) * h
        period = rng.uniform(0.5, 1.5) * h
        phase = rng.uniform(0, 2 * np.pi)
        dx = amp * np.sin(2 * np.pi * yy / period + phase) if rng.random() < 0.7 else 0 * yy
        dy = amp * np.sin(2 * np.pi * xx / period + phase)
    return ndimage.map_coordinates(mask, [yy + dy, xx + dx], order=1, mode="constant", cval=0).astype(np.uint8)


def gradient(rng: random.Random, size: tuple[int, int], first: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """An HxWx3 float gradient in any direction from colour ``first`` to one drawn with channels in [lo, hi]."""
    w, h = size
    other = np.array([rng.randint(lo, hi) for _ in range(3)], np.float32)
    a = rng.uniform(0, 2 * np.pi)
    t = (np.cos(a) * np.linspace(0, 1, w)[None, :] + np.sin(a) * np.linspace(0, 1, h)[:, None])
    t = (t - t.min()) / max(np.ptp(t), 1e-6)
    return first * (1 - t[..., None]) + other * t[..., None]


def _background(rng: random.Random, size: tuple[int, int], fams: Sequence[str]) -> tuple[np.ndarray, bool]:
    """(HxWx3 float background, whether it is dark)."""
    w, h = size
    if "background" not in fams:
        return np.full((h, w, 3), 255.0, np.float32), False
    nrng = np.random.default_rng(rng.getrandbits(32))
    dark = rng.random() < 0.12
    lo, hi = (0, 80) if dark else (150, 255)
    base = np.array([rng.randint(lo, hi) for _ in range(3)], np.float32)
    kind = rng.randrange(4)
    if kind == 0:  # flat
        arr = np.broadcast_to(base, (h, w, 3)).copy()
    elif kind == 1:
        arr = gradient(rng, size, base, lo, hi)
    elif kind == 2:  # pixel noise
        arr = base + nrng.normal(0, rng.uniform(8, 40), (h, w, 3))
    else:  # smooth blotchy texture in several colours
        coarse = nrng.uniform(lo, hi, (max(2, h // rng.randint(4, 12)), max(2, w // rng.randint(4, 12)), 3))
        arr = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((w, h), Image.BICUBIC), np.float32)
    return arr.astype(np.float32), dark


def _ink(rng: random.Random, bg: np.ndarray, dark: bool, fams: Sequence[str]) -> np.ndarray:
    """An ink colour that stands out from the background (barely, with ``low_contrast``)."""
    mean = bg.reshape(-1, 3).mean(0)
    if "low_contrast" in fams:
        gap = rng.uniform(25, 60) * (1 if dark else -1)
        return np.clip(mean + gap + np.array([rng.uniform(-15, 15) for _ in range(3)]), 0, 255)
    if dark:
        return np.array([rng.randint(170, 255) for _ in range(3)], np.float32)
    return np.array([rng.randint(0, 110) for _ in range(3)], np.float32)


def _curves(img: Image.Image, rng: random.Random, ink: np.ndarray) -> None:
    """Lines, arcs or Bezier curves drawn across the glyph."""
    w, h = img.size
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(1, 3)):
        colour = tuple(int(v) for v in (ink if rng.random() < 0.6 else [rng.randint(0, 200) for _ in range(3)]))
        width = rng.choice((1, 1, 2, 2, 3))
        kind = rng.randrange(3)
        if kind == 0:
            draw.line([(0, rng.uniform(0, h)), (w, rng.uniform(0, h))], fill=colour, width=width)
        elif kind == 1:
            r = rng.uniform(0.4, 1.2) * max(w, h)
            cx, cy, start = rng.uniform(0, w), rng.uniform(-h, 2 * h), rng.uniform(0, 360)
            draw.arc([cx - r, cy - r, cx + r, cy + r], start, start + rng.uniform(40, 160), fill=colour, width=width)
        else:
            p = [(0, rng.uniform(0, h)), (rng.uniform(0, w), rng.uniform(-h, 2 * h)),
                 (rng.uniform(0, w), rng.uniform(-h, 2 * h)), (w, rng.uniform(0, h))]
            t = np.linspace(0, 1, 24)[:, None]
            pts = ((1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t ** 2 * p[2] + t ** 3 * p[3])
            draw.line([tuple(q) for q in pts], fill=colour, width=width)


def render_cell(char: str, rng: random.Random, fonts: Mapping[str, Sequence[str]],
                families: Sequence[str] | None = None, alphabet: str = "") -> Image.Image:
    """One character cell. ``fonts``: family -> face paths; ``families``: None draws them at ``RATES``.

    With ``families=()`` the clean glyph: dark ink on white, upright, centred in a square cell.
    """
    fams = pick_families(rng) if families is None else tuple(families)
    family = rng.choice(sorted(fonts))
    face = rng.choice(list(fonts[family]))
    h = rng.randint(36, 64)
    aspect = rng.choice((rng.uniform(0.55, 0.8), rng.uniform(0.85, 1.15), rng.uniform(1.2, 1.6))) \
        if "aspect" in fams else 1.0
    w = max(16, int(round(h * aspect)))
    fill = rng.uniform(0.5, 0.9) if "aspect" in fams else 0.7  # ink height / cell height
    W, H = w * SS, h * SS
    canvas = Image.new("L", (W, H), 0)
    glyph = _glyph_mask(char, face, fill * H, rng, fams)
    spread = 0.22 if "cut" in fams else 0.08  # "cut": the glyph may run over the cell edge
    x = int(round((W - glyph.width) / 2 + rng.uniform(-spread, spread) * W))
    y = int(round((H - glyph.height) / 2 + rng.uniform(-spread, spread) * H))
    canvas.paste(glyph, (x, y), glyph)
    if "neighbours" in fams and alphabet:  # fragments of the glyphs beside it in a captcha
        for side in (-1, 1):
            if rng.random() < 0.7:
                other = _glyph_mask(rng.choice(alphabet), face, fill * H, rng, fams)
                show = rng.uniform(0.1, 0.35) * W
                ox = int(-other.width + show) if side < 0 else int(W - show)
                canvas.paste(other, (ox, y + rng.randint(-H // 10, H // 10)), other)
    mask = np.asarray(canvas)
    if "perspective" in fams:
        mask = _perspective(mask, rng)
    for kind in ("elastic", "sine"):
        if kind in fams:
            mask = _displace(mask, rng, kind)
    alpha = np.asarray(Image.fromarray(mask).resize((w, h), Image.BILINEAR), np.float32) / 255.0
    bg, dark = _background(rng, (w, h), fams)
    ink = _ink(rng, bg, dark, fams)
    if "shadow" in fams:
        dx, dy = rng.choice((-2, -1, 1, 2)), rng.choice((-2, -1, 1, 2))
        shade = np.roll(alpha, (dy, dx), axis=(0, 1))[..., None] * rng.uniform(0.4, 0.9)
        colour = ink * 0.5 + bg.reshape(-1, 3).mean(0) * 0.5 if rng.random() < 0.5 else np.array(
            [rng.randint(0, 255) for _ in range(3)], np.float32)
        bg = bg * (1 - shade) + colour * shade
    if "hollow" in fams:  # outline only: the ink minus its eroded inside
        width = rng.randint(1, 2)
        alpha = np.clip(alpha - ndimage.grey_erosion(alpha, size=(2 * width + 1, 2 * width + 1)), 0, 1)
    out = bg * (1 - alpha[..., None]) + ink * alpha[..., None]
    img = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")
    if "curves" in fams:
        _curves(img, rng, ink)
    if "speckle" in fams:
        arr = np.asarray(img).copy()
        nrng = np.random.default_rng(rng.getrandbits(32))
        spots = nrng.random((h, w)) < rng.uniform(0.01, 0.08)
        arr[spots] = nrng.integers(0, 256, (int(spots.sum()), 3 if rng.random() < 0.5 else 1))
        img = Image.fromarray(arr)
    if "blur" in fams:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.6)))
    if "jpeg" in fams:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=rng.randint(8, 50))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return img
