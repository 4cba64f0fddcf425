"""Splitting a captcha image into its character crops: small strategies behind one interface.

A splitter maps (RGB image, number of characters) to that many boxes ``(x0, y0, x1, y1)``, left
to right. Crops keep a little context around each character so that training crops and solving
crops look alike. numpy, Pillow and OpenCV's labelling only: the ONNX path uses it too, without PyTorch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import cv2
import numpy as np
from PIL import Image

from ..config import SPLITTERS, SVG_APART
from ..errors import ConfigError

Box = tuple[int, int, int, int]


@dataclass
class SegmentConfig:
    """How to split: the method, and whether to trim margins to the ink first."""

    method: str = "equal"
    trim: bool = False  # the course's cells are exact: keep them whole
    crop: bool = False  # cut the captcha to its content first (blank margins, a band of a larger canvas)
    lines: bool = True  # the content crop looks past ruled lines and frames (False: as checkpoints made before it)
    frame: bool = True  # the content crop reads the ground inside a frame round the edge (False: as before it)
    specks: bool = True  # the content crop looks past noise dots strewn over the canvas (False: as before it)
    context: float = 0.1  # extra width on each side, as a fraction of a character's width
    # an SVG whose glyphs are elements of their own is drawn as those glyphs alone, side by side (False: as the page
    # shows it, as checkpoints made before it were trained)
    apart: bool = SVG_APART

    def __post_init__(self) -> None:
        if self.method not in SPLITTERS:
            raise ConfigError(f"unknown splitter {self.method!r}; choose one of {', '.join(SPLITTERS)} (or auto when training)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SegmentConfig":
        """The splitter a checkpoint recorded; one made before ``lines``, ``frame``, ``specks`` or ``apart`` existed
        crops and draws as it did then."""
        return cls(**{"lines": False, "frame": False, "specks": False, "apart": False, **d})


CONTENT_MASS = 0.01  # share of the ink allowed outside the content box on each side (specks, stray lines)
CONTENT_PAD = 0.12  # margin kept around the content, as a fraction of its height
CONTENT_KEEP = 0.9  # a box covering this much of both sides is no crop at all
# Ruled lines: a grid behind the text, ruled paper, a frame. A row (column) inked across at least LINE_SPAN
# of the ink's extent is a line when it is at most LINE_WIDTH pixels thick. Where there are at least
# RULED_LINES such rows the content crop leaves them out, with a pixel either side (their anti-aliased
# edges), and such columns too where there are that many. A lone line stays, and columns never go alone:
# across the text's own extent a glyph's stem spans it (a lone line each way took 46 px of a
# captcha_images_v2 captcha's text). Where most of the image reads as ink, the ink is the background
# (henan_digits4's coloured ground in a white frame): no lines.
# Plain `captcha train` (2-core AVX2 CPU, bench/real.py's split): lso-halftone-band4 79.2% -> 91.2% (its grid
# in a band of a blank canvas; not used to build this); lso-halftone-upper6 64.8% -> 73.2% (the rule was
# tried on it: required both ways, its grids' light vertical lines, missing from the ink mask, left 41 more
# captchas uncut: 70.8%, 74.0%; lines across the whole image, the first form: 78.8% twice);
# lso-halftone-lower5 27-34% -> 57.6% (the first form; tuned-on). No image of henan, sysu,
# captcha_images_v2 or four other leave-style-out sites cuts otherwise.
LINE_SPAN = 0.95
LINE_WIDTH = 3
RULED_LINES = 2
# A frame round a gridded band: the frame's lines go first, the band's grid on a second pass. Made for
# lso-halftone-band4 with a 1-px frame drawn round each image (tuned-on: 80.4% with one pass); no image of
# the nine sets here cuts otherwise.
RULED_PASSES = 3
# Noise dots strewn over a canvas whose text sits in a band carry far more than CONTENT_MASS of the ink on
# each side, so nothing was cut. Where ink components smaller than SPECK_MIN pixels or SPECK_AREA of the
# image carry more than SPECK_SHARE of the ink, the cut is measured again without them, and taken where it
# is under SPECK_TIGHTER of the area. Plain `captcha train`: lso-striped-band5 with dark dots at 1% of the
# pixels (made for this check) 32.0% -> 84.8% (84.4-87.6% without dots). Of the nine sets here only 9 of
# lso-halftone-lower5's images and 4 of lso-halftone-upper6's cut otherwise (uncut before, cut to the text now).
SPECK_MIN = 3
SPECK_AREA = 0.0002
SPECK_SHARE = 0.05
SPECK_TIGHTER = 0.5


def content_box(img: Image.Image, lines: bool = SegmentConfig.lines, frame: bool = SegmentConfig.frame,
                specks: bool = SegmentConfig.specks) -> Box:
    """The part of ``img`` that holds the captcha's ink, with a small margin (the whole image when
    the ink fills it): robust to specks and stray lines, which carry little of the ink mass, with
    ``lines`` to ruled lines across the ink (a grid behind the text, ruled paper, a frame), with
    ``frame`` to a frame round the edge in another colour than the ground (see :func:`ground_level`),
    and with ``specks`` to noise dots strewn over the canvas (the cut is measured again without them, and
    taken where they had widened it: :func:`without_specks`)."""
    w, h = img.size
    mask = ink_mask(img, frame)
    if lines and np.count_nonzero(mask) < 0.5 * mask.size:
        # with ``frame`` (checkpoints since it), lines are looked for again across what is left: a frame's
        # lines span the whole image, a grid in a band inside it only the band
        for _ in range(RULED_PASSES if frame else 1):
            ruled = ruled_lines(mask)
            if not ruled.any():
                break
            mask = mask & ~ruled
    box = _mass_box(mask)
    if specks:
        clean = without_specks(mask)
        if clean is not mask:
            # taken only where the specks widened the cut: a small shift is not worth a different crop
            tight = _mass_box(clean)
            if _area(tight) < SPECK_TIGHTER * _area(box):
                box = tight
    return box


def _area(box: Box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def _mass_box(mask: np.ndarray) -> Box:
    """The box holding all but CONTENT_MASS of the ink on each side, padded; the whole image when it
    covers nearly all of it."""
    h, w = mask.shape
    ink = _ink_counts(mask)
    total = int(ink[0].sum())
    if total == 0:
        return (0, 0, w, h)
    spans = []
    for counts in ink:  # columns, then rows
        cum = np.cumsum(counts) / total
        spans.append((int(np.searchsorted(cum, CONTENT_MASS)), int(np.searchsorted(cum, 1 - CONTENT_MASS)) + 1))
    (x0, x1), (y0, y1) = spans
    pad = max(2, int(round((y1 - y0) * CONTENT_PAD)))
    box = (max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad))
    if box[2] - box[0] >= CONTENT_KEEP * w and box[3] - box[1] >= CONTENT_KEEP * h:
        return (0, 0, w, h)
    return box


def without_specks(mask: np.ndarray) -> np.ndarray:
    """``mask`` less its specks (8-connected ink components under SPECK_MIN pixels or SPECK_AREA of the
    image) where they carry more than SPECK_SHARE of the ink; else ``mask`` itself."""
    labels, stats = components(mask)
    if len(stats) < 2:
        return mask
    area = stats[:, cv2.CC_STAT_AREA]
    small = area < max(SPECK_MIN, SPECK_AREA * mask.size)
    small[0] = False
    ink = int(area[1:].sum())  # the components' areas count every ink pixel once: no pass over the mask
    if ink - int(area[small].sum()) >= (1 - SPECK_SHARE) * ink:
        return mask
    return mask & ~small[labels]


def ruled_lines(mask: np.ndarray) -> np.ndarray:
    """The pixels of ruled lines in an ink ``mask``: RULED_LINES or more thin rows across the ink, and
    columns likewise where there are such rows too (upright glyph stems can span the text's height)."""
    col_ink, row_ink = _ink_counts(mask)
    ext = _extent(col_ink, row_ink)  # ink_extent's, from the counts the shares below need too
    if ext is None:
        return np.zeros_like(mask)
    x0, y0, x1, y1 = ext
    # the ink's extent holds all of each row's and column's ink: its shares are the whole image's counts
    rows, cols = _thin_full_runs(row_ink[y0:y1] / (x1 - x0)), _thin_full_runs(col_ink[x0:x1] / (y1 - y0))
    out = np.zeros_like(mask)
    if len(rows) < RULED_LINES:
        return out  # columns alone may be glyph stems spanning the text
    for a, b in rows:
        out[max(y0 + a - 1, 0):y0 + b + 1] = True
    if len(cols) >= RULED_LINES:
        for a, b in cols:
            out[:, max(x0 + a - 1, 0):x0 + b + 1] = True
    return out


def _thin_full_runs(share: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of rows (or columns) inked across LINE_SPAN and at most LINE_WIDTH thick."""
    across = share >= LINE_SPAN
    if not across.any():  # most rows and columns: no line
        return []
    full = np.concatenate([[False], across, [False]])
    edges = np.flatnonzero(np.diff(full.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2]) if b - a <= LINE_WIDTH]


def to_content(img: Image.Image, cfg: SegmentConfig) -> Image.Image:
    """``img`` cut to its content when ``cfg.crop`` asks for it: the first step of reading a captcha."""
    if not cfg.crop:
        return img
    box = content_box(img, cfg.lines, cfg.frame, cfg.specks)
    return img if box == (0, 0) + img.size else img.crop(box)


INK_MIN = 30  # grey levels from the background below which a pixel is never ink
# A frame drawn round the edge, up to FRAME_WIDTH pixels thick, FRAME_SIDE of each of its four sides within
# INK_MIN of its level, is looked past (``frame``). Plain `captcha train` (2-core AVX2 CPU, bench/real.py's
# split): lso-striped-band5 with a 1-px dark frame drawn round each image (made for this check) 34.8% ->
# 84.8% (84.4-87.6% unframed); henan_digits4 (a real framed site) 100% -> 100%. No image of the other
# eight sets here reads its ground otherwise.
FRAME_WIDTH = 3
FRAME_SIDE = 0.9


FLOAT32_EXACT = 1 << 24  # the most pixels a float32 count holds exactly


def ink_mask(img: Image.Image, frame: bool = False) -> np.ndarray:
    """Boolean H x W mask of foreground: pixels far from the background colour (:func:`ground_level`)."""
    g = np.asarray(img.convert("L"))
    # each step on the 256 grey levels, not on the pixels, and one lookup makes the mask: every captcha solved is
    # cut to its content on the core the network would otherwise have, and its time is the solving rate's
    far = np.abs(np.arange(256) - ground_level(g, frame))
    thr = max(INK_MIN, _otsu_threshold(np.bincount(far, weights=_grey_counts(g), minlength=256)))
    return cv2.LUT(g, (far > thr).astype(np.uint8)).view(bool)


def _grey_counts(g: np.ndarray) -> np.ndarray:
    """How many pixels of a uint8 image have each of the 256 grey levels."""
    if g.size <= FLOAT32_EXACT:  # OpenCV counts in float32: about three times faster than np.bincount
        return cv2.calcHist([g], [0], None, [256], [0, 256]).ravel()
    return np.bincount(g.ravel(), minlength=256)


def _ink_counts(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ink pixels of each column and of each row of a boolean mask."""
    m = _as_bytes(mask)
    return (cv2.reduce(m, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel(),
            cv2.reduce(m, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel())


def _as_bytes(mask: np.ndarray) -> np.ndarray:
    """A boolean mask as the 0/1 uint8 image OpenCV reads, without a copy where it is contiguous."""
    return np.ascontiguousarray(mask).view(np.uint8)


def _extent(col_ink: np.ndarray, row_ink: np.ndarray) -> Box | None:
    """The ink's bounding box from its column and row counts, or None where there is none."""
    cols, rows = np.flatnonzero(col_ink), np.flatnonzero(row_ink)
    if cols.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def ground_level(g: np.ndarray, frame: bool = False) -> int:
    """The background's grey level in a grey image: its border's median; with ``frame``, where all four
    edges are drawn in one level unlike the pixels just inside them (a frame round the captcha), the
    median just inside the frame, so the ground within it does not read as ink."""
    level = int(_median(_ring(g, 0)))
    if not frame:
        return level
    rings = [r for r in (_ring(g, k) for k in range(1, FRAME_WIDTH + 3)) if r is not None]
    if not rings or abs(int(_median(np.concatenate(rings))) - level) <= INK_MIN:
        return level  # the edge's level runs on inwards: no frame (most images, decided in one step)
    near = np.abs(g.astype(np.int16) - level) <= INK_MIN
    for k in range(1, FRAME_WIDTH + 1):
        # the ground: three rings inside the frame's k, so a thin line inset from the edge is not taken for it
        inner = rings[k - 1:k + 2]
        sides = (near[:k], near[-k:], near[:, :k], near[:, -k:])
        if not inner or min(float(side.mean()) for side in sides) < FRAME_SIDE:
            return level
        inside = int(_median(np.concatenate(inner)))
        if abs(inside - level) > INK_MIN:
            return inside
    return level


def _median(values: np.ndarray) -> float:
    """``np.median`` of a 1-D array of integers, by one partial sort (a tenth of np.median's overhead)."""
    mid = values.size // 2
    if values.size % 2:
        return float(np.partition(values, mid)[mid])
    part = np.partition(values, (mid - 1, mid))
    return (float(part[mid - 1]) + float(part[mid])) / 2


def _ring(g: np.ndarray, k: int) -> np.ndarray | None:
    """The pixels k in from the edge of ``g`` all round (None when the image is too small for it)."""
    h, w = g.shape
    if min(h, w) <= 2 * k + 1:
        return None if k else np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    s = g[k:h - k, k:w - k]
    return np.concatenate([s[0], s[-1], s[:, 0], s[:, -1]])


def _otsu_threshold(hist: np.ndarray) -> int:
    """Otsu's threshold of a 256-level histogram: the level that best parts it in two."""
    total = hist.sum()
    if total == 0:
        return 0
    levels = np.arange(256)
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * levels)
    w1 = total - w0
    mean_all = m0[-1]
    spread = w0 * w1  # 0 where one side is empty: no parting there
    between = np.divide((mean_all * w0 - m0 * total) ** 2, spread, out=np.zeros_like(spread), where=spread > 0)
    return int(np.argmax(between))


def ink_extent(mask: np.ndarray) -> Box | None:
    """Bounding box of the ink, or None for an empty mask."""
    return _extent(*_ink_counts(mask))


def _with_context(cuts: list[float], top: int, bottom: int, width: int, height: int, context: float) -> list[Box]:
    boxes = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        pad = (b - a) * context
        x0, x1 = max(0, int(round(a - pad))), min(width, int(round(b + pad)))
        boxes.append((x0, top, max(x1, x0 + 1), bottom))
    return boxes


def split_equal(img: Image.Image, n: int, cfg: SegmentConfig) -> list[Box]:
    """The course's cells: n equal slices (of the inked span when trimming)."""
    w, h = img.size
    x0, y0, x1, y1 = 0, 0, w, h
    if cfg.trim:
        ext = ink_extent(ink_mask(img))
        if ext is not None:
            x0, _, x1, _ = ext
    step = (x1 - x0) / n
    cuts = [x0 + i * step for i in range(n + 1)]
    if not cfg.trim:
        return [(int(round(a)), 0, int(round(b)), h) for a, b in zip(cuts[:-1], cuts[1:])]
    return _with_context(cuts, y0, y1, w, h, cfg.context)


def split_projection(img: Image.Image, n: int, cfg: SegmentConfig) -> list[Box]:
    """Cut at the n-1 column-ink valleys nearest to the equal cuts."""
    mask = ink_mask(img)
    w, h = img.size
    ext = ink_extent(mask)
    if ext is None:
        return split_equal(img, n, SegmentConfig("equal", trim=False))
    x0, _, x1, _ = ext
    profile = mask.sum(0).astype(np.float64)
    profile = np.convolve(profile, np.ones(3) / 3, mode="same")
    step = (x1 - x0) / n
    cuts = [float(x0)]
    for i in range(1, n):
        guess = x0 + i * step
        lo, hi = int(max(cuts[-1] + step * 0.4, guess - step * 0.45)), int(min(x1 - 1, guess + step * 0.45))
        if hi <= lo:
            cuts.append(guess)
            continue
        window = profile[lo:hi + 1]
        # Prefer the lowest ink, and among ties the point closest to the equal cut.
        penalty = np.abs(np.arange(lo, hi + 1) - guess) / step * window.max() * 0.3 if window.max() > 0 else 0
        cuts.append(float(lo + int(np.argmin(window + penalty))))
    cuts.append(float(x1))
    return _with_context(cuts, 0, h, w, h, cfg.context)


def components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 8-connected components of a boolean mask: (labels, one row of cv2 stats a label, the ground's first).

    OpenCV rather than scipy.ndimage: about twice as fast on a captcha (75-100 against 130-190 us), and scipy
    (a quarter of a second to import) stays off the solving path: `captcha solve` on one image 0.8-1.0 -> 0.6 s."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(_as_bytes(mask), connectivity=8)
    return labels, stats


def _components(mask: np.ndarray) -> list[tuple[int, int, int]]:
    """Connected components (8-neighbour) as (x0, x1, pixel count)."""
    stats = components(mask)[1][1:]
    left, width, area = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_AREA]
    return [(int(x), int(x + w), int(a)) for x, w, a in zip(left, width, area)]


def split_components(img: Image.Image, n: int, cfg: SegmentConfig) -> list[Box]:
    """Connected components: drop specks, merge fragments, cut the widest blobs until there are n."""
    mask = ink_mask(img)
    w, h = img.size
    comps = [c for c in _components(mask) if c[2] >= max(4, mask.sum() * 0.01)]
    if not comps:
        return split_equal(img, n, SegmentConfig("equal", trim=False))
    spans = sorted([c[0], c[1]] for c in comps)
    merged: list[list[int]] = []
    for s in spans:  # components that overlap horizontally belong to one glyph (i, j, broken strokes)
        if merged and s[0] < merged[-1][1] - 1:
            merged[-1][1] = max(merged[-1][1], s[1])
        else:
            merged.append(list(s))
    while len(merged) > n:  # merge the narrowest piece into its nearer neighbour
        i = min(range(len(merged)), key=lambda k: merged[k][1] - merged[k][0])
        if i == 0:
            j = 1
        elif i == len(merged) - 1:
            j = i - 1
        else:
            j = i - 1 if merged[i][0] - merged[i - 1][1] <= merged[i + 1][0] - merged[i][1] else i + 1
        a, b = sorted((i, j))
        merged[a:b + 1] = [[merged[a][0], merged[b][1]]]
    while len(merged) < n:  # cut the widest blob into equal parts
        i = max(range(len(merged)), key=lambda k: merged[k][1] - merged[k][0])
        x0, x1 = merged[i]
        if x1 - x0 < 2:
            break
        mid = (x0 + x1) // 2
        merged[i:i + 1] = [[x0, mid], [mid, x1]]
    if len(merged) < n:
        return split_equal(img, n, SegmentConfig("equal", trim=True, context=cfg.context))
    _rebalance(merged, (merged[-1][1] - merged[0][0]) / n)
    boxes = []
    for x0, x1 in merged:
        pad = (x1 - x0) * cfg.context
        boxes.append((max(0, int(round(x0 - pad))), 0, min(w, int(round(x1 + pad))), h))
    return boxes


def _rebalance(pieces: list[list[int]], expected: float) -> None:
    """A blob holding two glyphs beside a glyph broken in two: merge the pair, cut the blob."""
    for _ in range(len(pieces)):
        widths = [b - a for a, b in pieces]
        wide = max(range(len(pieces)), key=lambda k: widths[k])
        if widths[wide] < 1.7 * expected or len(pieces) < 3:
            return
        pair = min((k for k in range(len(pieces) - 1) if wide not in (k, k + 1)),
                   key=lambda k: pieces[k + 1][1] - pieces[k][0], default=None)
        if pair is None or pieces[pair + 1][1] - pieces[pair][0] > 1.1 * expected:
            return
        pieces[pair:pair + 2] = [[pieces[pair][0], pieces[pair + 1][1]]]
        wide = max(range(len(pieces)), key=lambda k: pieces[k][1] - pieces[k][0])
        x0, x1 = pieces[wide]
        pieces[wide:wide + 1] = [[x0, (x0 + x1) // 2], [(x0 + x1) // 2, x1]]


_IMPL: dict[str, Callable[[Image.Image, int, SegmentConfig], list[Box]]] = {
    "equal": split_equal, "projection": split_projection, "components": split_components,
}


def split_boxes(img: Image.Image, n: int, cfg: SegmentConfig | None = None) -> list[Box]:
    """Boxes of the ``n`` characters of ``img``, left to right."""
    cfg = cfg or SegmentConfig()
    if n < 1:
        raise ConfigError("a captcha has at least one character")
    boxes = _IMPL[cfg.method](img, n, cfg)
    assert len(boxes) == n, (cfg.method, len(boxes), n)
    w, h = img.size
    # Never an empty crop, even from a 1x1 image: clamp into the image with at least one pixel.
    return [(min(x0, w - 1), min(y0, h - 1), max(min(x1, w), min(x0, w - 1) + 1), max(min(y1, h), min(y0, h - 1) + 1))
            for x0, y0, x1, y1 in boxes]


def split(img: Image.Image, n: int, cfg: SegmentConfig | None = None) -> list[Image.Image]:
    """The ``n`` character crops of ``img`` (cut to its content first when ``cfg.crop``)."""
    cfg = cfg or SegmentConfig()
    img = to_content(img, cfg)
    return [img.crop(b) for b in split_boxes(img, n, cfg)]
