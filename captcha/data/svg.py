"""SVG captchas as pixels: the captchas web apps draw as SVG (text as filled outlines, noise as stroked curves, a
rectangle behind), rasterised by our own small renderer on Pillow, no SVG library.

It draws what such captchas use: ``rect``, ``circle``, ``ellipse``, ``line``, ``polyline``, ``polygon`` and ``path``
(every command; an arc as the straight line to its end), each filled (even-odd) and stroked in a solid colour with
its opacity, moved by its own and its groups' ``transform``, in the ``viewBox`` the root gives, groups passing their
paint on; a ``use`` draws what it points at (a glyph cairo or matplotlib keeps in ``defs`` or a ``symbol``), lengths
in any CSS unit. ``text`` (and its ``tspan``) is drawn at its positions, shifts, per-character turns, anchor, baseline,
size, weight and slant, in one font whatever family it names: Pillow's own, the same on every machine, so that a
model reads a site's captchas at solving as it learned them, where the family a page names would resolve to whatever
fonts each machine has. Style sheets' rules of a tag, classes and an id apply; a gradient is drawn as its mean
colour; an ``image`` carried in a ``data:`` URL is drawn (nothing outside the document is read). Patterns, clips and
masks are not. Input is untrusted: the file's size, the pixels, the elements and the points drawn are bounded, and
XML entities are refused.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import re
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageChops, ImageColor, ImageDraw, ImageFont

from ..errors import ImageError

MAX_SVG_BYTES = 2_000_000  # an SVG captcha is a few kilobytes
MAX_POINTS = 500_000  # points drawn in all, curves flattened
MAX_DEPTH = 64  # elements nested in one another (groups in groups): a captcha nests two or three
MAX_ELEMENTS = 20_000  # elements drawn, each use of one counted: a captcha draws tens (a chain of uses grows fast)
# drawn this many times larger, then reduced: smooth edges. On the SVG leave-style-out sites' captchas (180x50) 3
# drew one in 6.2 ms against 4's 9.5 ms, its pixels 2.0 grey levels from 4's on average (2: 4.0 ms, 3.2 levels)
SUPERSAMPLE = 3
CURVE_STEPS = 12  # straight pieces a Bezier curve is drawn with
GLYPH_HEIGHT = 0.25  # of the page's height: a filled shape at least this tall (and no wider than GLYPH_WIDTH of its
GLYPH_WIDTH = 0.5  # width) is a glyph when drawing apart; dots, backgrounds and bands are not
# two inks are one glyph drawn twice (a shadow, an outline over a fill) where their boxes' sides differ by at most
# GLYPH_SAME and their centres lie less than GLYPH_NEAR of the longest side apart; an overlapping neighbour is another
GLYPH_SAME, GLYPH_NEAR = 0.2, 0.1
GLYPH_GAP = 0.15  # of the page's height: the blank between glyphs drawn apart
PAGE_COVER = 0.8  # of the page's area: a filled shape whose box covers this much is a ground, not text
GLYPH_PAGES = 3  # pages of glyph boxes kept apart, and of width drawn apart, at most (a captcha's take one or two)
CIRCLE_SIDE = 3.0  # canvas pixels (one output pixel) a side of the polygon a circle is drawn as, at most
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_TOKEN = re.compile(r"([MmLlHhVvCcSsQqTtAaZz])|(" + _NUMBER.pattern + ")")
_SKIPPED = {"defs", "clipPath", "mask", "pattern", "linearGradient", "radialGradient", "symbol", "marker", "style",
            "title", "desc", "metadata", "script", "foreignObject"}  # drawn only through a use, or never
_XLINK = "{http://www.w3.org/1999/xlink}href"
_URL = re.compile(r"url\(\s*['\"]?#([^)'\"\s]+)['\"]?\s*\)")
MAX_RULES = 2_000  # style sheet rules read: a captcha's sheet has a handful
_RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")
_SELECTOR = re.compile(r"^(\*|[A-Za-z][\w-]*)?((?:[.#][\w-]+)*)$")  # a tag, classes and an id: nothing between
_PAINT = ("fill", "stroke", "stroke-width", "opacity", "fill-opacity", "stroke-opacity", "fill-rule", "font-size",
          "font-weight", "font-style", "text-anchor", "dominant-baseline", "letter-spacing")
FONT_SIZE = 16.0  # a browser's default, in user units
# a text's em in raster pixels at most, in canvas sizes (a larger one is drawn at this and scaled: its edges blur)
MAX_EM = 2
_LAYOUT_EM = 64  # advances are measured on the font at this size and scaled: the same at any resolution
_BOLD = 0.04  # a bold glyph's extra stroke, in ems: the one font has one weight
_ITALIC = "skewX(-12)"  # an italic or oblique glyph's slant: the one font has no italic
# dominant-baseline -> Pillow's vertical anchor (the alphabetic baseline where it names none of these)
_BASELINE = {"middle": "m", "central": "m", "hanging": "a", "text-before-edge": "a", "text-top": "a",
             "text-after-edge": "d", "ideographic": "d", "text-bottom": "d"}

Subpath = tuple[np.ndarray, bool]  # points (n x 2), closed
Matrix = tuple[float, float, float, float, float, float]  # SVG's (a, b, c, d, e, f): x' = a x + c y + e, y' = b x + d y + f
IDENTITY: Matrix = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
_FUNCTION = re.compile(r"(matrix|translate|scale|rotate|skewX|skewY)\s*\(([^)]*)\)")
# the weights of a cubic's 4 control points at each of the CURVE_STEPS points drawn (a quadratic is raised to one)
_CUBIC = np.array([[math.comb(3, i) * (k / CURVE_STEPS) ** i * (1 - k / CURVE_STEPS) ** (3 - i) for i in range(4)]
                   for k in range(1, CURVE_STEPS + 1)])


def looks_like_svg(data: bytes) -> bool:
    """Whether ``data`` is an SVG document (its start, past a BOM, an XML declaration, a doctype or comments)."""
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<svg") or (head.startswith((b"<?xml", b"<!--", b"<!DOCTYPE")) and b"<svg" in data[:4096])


def render_svg(data: bytes, name: str, max_pixels: int,
               embedded: Callable[[bytes], Image.Image | None] | None = None, apart: bool = False) -> Image.Image:
    """An SVG document -> an RGBA image at its own size (width and height, else its viewBox's); ImageError if it
    is not one, is too large, or draws too much. ``embedded`` decodes a raster an ``image`` carries (bytes -> RGBA,
    None if unreadable); without it such images are not drawn. With ``apart``, a document that draws its glyphs
    as elements of their own (:meth:`_Canvas.glyph_like`) is drawn as those glyphs alone, side by side a gap apart
    in their order across the page (:func:`_spaced`): no glyph hides another, and no stroke or dot crosses one."""
    if len(data) > MAX_SVG_BYTES:
        raise ImageError(f"{name}: an SVG of {len(data)} bytes is over the limit of {MAX_SVG_BYTES}")
    if b"<!ENTITY" in data:
        raise ImageError(f"{name}: an SVG that declares XML entities is refused; save it without them")
    try:
        root = ET.fromstring(data)
    except (ET.ParseError, ValueError) as exc:
        raise ImageError(f"{name}: not a well-formed SVG ({exc}); convert it to png") from None
    if _tag(root) != "svg":
        raise ImageError(f"{name}: an XML document, not an SVG image")
    box = _numbers(root.get("viewBox", ""))
    width, height = _length(root.get("width")), _length(root.get("height"))
    if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
        if not width or not height:
            raise ImageError(f"{name}: an SVG with neither a size nor a viewBox; give it width and height")
        box = [0.0, 0.0, width, height]
    width, height = width or box[2], height or box[3]
    w, h = max(1, round(width)), max(1, round(height))
    if w * h > max_pixels:
        raise ImageError(f"{name}: {w}x{h} pixels is over the limit of {max_pixels} "
                         "(raise max_pixels if this is really a captcha)")
    scale = (w * SUPERSAMPLE / box[2], h * SUPERSAMPLE / box[3])
    ids = {e.get("id", ""): e for e in root.iter() if e.get("id")}
    _apply_style_sheets(root)
    canvas = _Canvas((w * SUPERSAMPLE, h * SUPERSAMPLE), box[:2], scale, name, ids, embedded)
    canvas.glyphs = [] if apart else None
    try:
        with np.errstate(invalid="ignore", over="ignore"):  # inf times 0 is NaN: drawn at the edge, not warned of
            canvas.walk(root, {"fill": "black"}, IDENTITY, 0)
        if canvas.glyphs is not None and len(canvas.glyphs) >= 2:
            drawn = _spaced(canvas.glyphs, canvas.canvas)
            return drawn.resize((max(1, round(drawn.width / SUPERSAMPLE)), h), Image.BOX)
    except _NotApart:
        return render_svg(data, name, max_pixels, embedded)
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a hostile document trips in drawing is this file's error
        raise ImageError(f"{name}: an SVG it cannot draw ({type(exc).__name__}: {exc}); convert it to png") from None
    if canvas.glyphs or canvas.left_out:  # nothing to draw apart after all: the page, with what was taken out
        return render_svg(data, name, max_pixels, embedded)
    return canvas.canvas.resize((w, h), Image.BOX)


def _tag(element: ET.Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def _href(element: ET.Element) -> str:
    """What an element points at: its ``href``, or SVG 1.1's ``xlink:href``."""
    return (element.get(_XLINK) or element.get("href") or "").strip()


def _numbers(text: str) -> list[float]:
    return [v for v in map(float, _NUMBER.findall(text or "")) if math.isfinite(v)]


_UNITS = {"": 1.0, "px": 1.0, "pt": 4 / 3, "pc": 16.0, "in": 96.0, "cm": 96 / 2.54, "mm": 96 / 25.4,
          "em": FONT_SIZE, "rem": FONT_SIZE, "ex": FONT_SIZE / 2}  # CSS's absolute units in px; em, ex of the default


def _length(text: str | None, whole: float = 0.0) -> float:
    """A length attribute in user units (px, pt, mm... as CSS converts them), a percentage of ``whole``; 0 for a
    missing or unreadable one, or a percentage with no whole given."""
    text = (text or "").strip()
    if text.endswith("%"):
        return _length(text[:-1]) / 100 * whole if whole else 0.0
    found = _NUMBER.match(text)
    if not found:
        return 0.0
    value = float(found.group()) * _UNITS.get(text[found.end():].strip(), 1.0)
    return value if math.isfinite(value) else 0.0


class _Canvas:
    """An RGBA image at the supersampled size that each shape is composited onto in document order, within the
    shape's own box (a captcha's shapes are small: painting the whole canvas for each took 30 ms a captcha)."""

    def __init__(self, size: tuple[int, int], origin: list[float], scale: tuple[float, float], name: str,
                 ids: dict[str, ET.Element], embedded: Callable[[bytes], Image.Image | None] | None = None) -> None:
        self.size, self.origin, self.scale, self.name, self.ids = size, origin, scale, name, ids
        self.embedded = embedded  # a raster's bytes -> an RGBA image (data.images decodes it, bounded)
        self.canvas = Image.new("RGBA", size, (0, 0, 0, 0))
        self.pen = ImageDraw.Draw(self.canvas)  # what is drawn straight on the canvas (opaque outlines and strokes)
        self.points = self.elements = 0
        self.using: list[ET.Element] = []  # the elements the uses being drawn point at: one pointing back is skipped
        # drawing apart: each glyph-like element on a layer of its own, with the box its ink covers
        self.glyphs: list[tuple[Image.Image, tuple[int, int, int, int]]] | None = None
        self.glyph_area = 0  # canvas pixels the glyphs' inks' boxes cover, together
        self.left_out = False  # a shape left out of the page while drawing apart
        self.scratch: Image.Image | None = None  # what a glyph drawn apart is drawn on

    def glyph_like(self, box: tuple[tuple[int, int], tuple[int, int]] | None) -> bool:
        """Whether a filled shape covering ``box`` is drawn apart as a glyph: at least GLYPH_HEIGHT of the page's
        height and at most GLYPH_WIDTH of its width (not a dot, not a background or a band across the page). One as
        tall and wider that leaves most of the page uncovered is text drawn as one shape: such a document is drawn as
        the page shows it (:class:`_NotApart`)."""
        if self.glyphs is None or box is None or box[1][1] < GLYPH_HEIGHT * self.size[1]:
            return False
        if box[1][0] <= GLYPH_WIDTH * self.size[0]:
            return True
        if box[1][0] * box[1][1] < PAGE_COVER * self.size[0] * self.size[1]:
            raise _NotApart
        return False

    def no_glyph(self, tag: str, e: ET.Element, grow: float) -> bool:
        """Whether an element is no glyph before it is drawn: a line, or a dot (by its radius, ``grow``: how its
        transform scales it): a site's dots are many, and drawing them only to leave them out cost a millisecond."""
        if tag == "line":
            return True
        if tag not in ("circle", "ellipse"):
            return False
        radius = max(_length(e.get(key)) for key in (("r",) if tag == "circle" else ("rx", "ry")))
        return 2 * radius * grow * max(self.scale) < GLYPH_HEIGHT * self.size[1]

    @contextmanager
    def own_layer(self, apart: bool) -> Iterator[None]:
        """What is drawn inside kept apart in :attr:`glyphs` (its ink cut out, with its box) where ``apart``, else
        drawn on the canvas."""
        if not apart:
            yield
            return
        canvas, pen = self.canvas, self.pen
        if self.scratch is None:  # one layer, cleared where each glyph inked it: a fresh one a glyph cost 0.1 ms
            self.scratch = Image.new("RGBA", self.size, (0, 0, 0, 0))
        self.canvas, self.pen = self.scratch, ImageDraw.Draw(self.scratch)
        try:
            yield
        finally:
            self.canvas, self.pen = canvas, pen
            ink = self.scratch.getbbox()  # of its alpha
            if ink is not None and self.glyphs is not None:
                self.glyph_area += (ink[2] - ink[0]) * (ink[3] - ink[1])
                if self.glyph_area > GLYPH_PAGES * self.size[0] * self.size[1]:
                    raise _NotApart  # more than a captcha's glyphs: each kept apart would cost memory without end
                self.glyphs.append((self.scratch.crop(ink), ink))
                self.scratch.paste((0, 0, 0, 0), ink)

    def walk(self, element: ET.Element, paint: dict[str, str], matrix: Matrix, depth: int) -> None:
        tag = _tag(element)
        if tag in _SKIPPED:
            return
        if depth > MAX_DEPTH:
            raise ImageError(f"{self.name}: an SVG nested over {MAX_DEPTH} elements deep is refused")
        self.elements += 1
        if self.elements > MAX_ELEMENTS:
            raise ImageError(f"{self.name}: an SVG that draws over {MAX_ELEMENTS} elements is refused")
        paint = {**paint, **_style(element)}
        if tag != "svg":  # the root's transform is not SVG 1.1's; its viewBox places it
            matrix = _times(matrix, transform_matrix(element.get("transform", "")))
        if tag == "use":  # as a group holding the element it points at (cairo's and matplotlib's glyphs), at x, y
            target = self.ids.get(_href(element).removeprefix("#"))
            if target is None or target in self.using:
                return
            self.using.append(target)
            matrix = _times(matrix, (1.0, 0.0, 0.0, 1.0, _length(element.get("x")), _length(element.get("y"))))
            for part in target if _tag(target) == "symbol" else [target]:
                self.walk(part, paint, matrix, depth + 1)
            self.using.pop()
            return
        if tag == "image":
            self.image(element, paint, matrix)
            return
        if tag == "text":
            for char, x, y, turn, glyph_paint in _text_layout(element, paint):
                self.glyph(char, (x, y, turn), glyph_paint, matrix)
            return
        if tag not in ("svg", "g", "a", "switch"):
            self.draw(tag, element, paint, matrix)
        for child in element:
            self.walk(child, paint, matrix, depth + 1)

    def draw(self, tag: str, e: ET.Element, paint: dict[str, str], matrix: Matrix) -> None:
        a, b, c, d, tx, ty = matrix
        grow = math.sqrt(abs(a * d - b * c))  # a stroke's width grows as the transform scales
        sx, sy = self.scale
        if self.glyphs is not None and self.no_glyph(tag, e, grow):
            self.left_out = True  # the page is drawn again if no glyph is drawn apart
            return
        fill, stroke = _colour(paint.get("fill"), self.ids), _colour(paint.get("stroke"), self.ids)
        if self.glyphs is not None and fill is None:
            self.left_out = True  # a stroke: never a glyph drawn apart
            return
        shapes = _shape(tag, e, self.origin_size(), grow * max(sx, sy))
        if not shapes:
            return
        ox, oy = self.origin
        far = 4 * max(self.size)  # a point further off the canvas is drawn this far: Pillow draws in C ints
        self.spend(sum(len(p) for p, _ in shapes))
        # every point at once (a captcha's glyphs are thousands): the transform and the viewBox as one product,
        # clamped (NaN drawn at -far, as a number is)
        at = np.concatenate([points for points, _ in shapes])
        at = at @ np.array([[a * sx, b * sy], [c * sx, d * sy]]) + ((tx - ox) * sx, (ty - oy) * sy)
        np.clip(at, -far, far, out=at)
        at[np.isnan(at)] = -far
        placed, k = [], 0
        for points, closed in shapes:
            placed.append((at[k:k + len(points)], closed))
            k += len(points)
        opacity = _opacity(paint.get("opacity"))
        width = min(far, max(1, round(_length(paint.get("stroke-width", "1")) * grow * (sx + sy) / 2))) if stroke else 0
        fill_alpha = opacity * _opacity(paint.get("fill-opacity"))
        stroke_alpha = opacity * _opacity(paint.get("stroke-opacity"))
        covered = self.box(at, 0)
        apart = self.glyph_like(covered)
        if self.glyphs is not None and not apart and (not covered or covered[1][0] <= GLYPH_WIDTH * self.size[0]):
            self.left_out = True  # a dot, left out as strokes are; a shape across the page (a ground) is drawn
            return
        with self.own_layer(apart):
            if fill is not None and tag != "line":
                filled = [points for points, _ in placed if len(points) >= 3]
                if len(filled) == 1 and fill_alpha >= 1:  # one opaque outline (a dot, a bar) replaces what it covers
                    self.pen.polygon(filled[0].ravel().tolist(), fill=(*fill, 255))
                elif filled and covered:
                    (left, top), size = covered
                    mask = Image.new("1", size, 0)
                    for points in filled:  # even-odd: a glyph's counters are holes
                        one = Image.new("1", size, 0)
                        ImageDraw.Draw(one).polygon((points - (left, top)).ravel().tolist(), fill=1)
                        mask = ImageChops.logical_xor(mask, one)
                    self.paint(mask.convert("L"), (left, top), fill, fill_alpha)
            if stroke is not None:
                lines = [(np.concatenate([points, points[:1]]) if closed else points) for points, closed in placed
                         if len(points) >= 2]
                if stroke_alpha >= 1:  # an opaque stroke is drawn on the canvas, a translucent one composited
                    for line in lines:
                        self.pen.line(line.ravel().tolist(), fill=(*stroke, 255), width=width, joint="curve")
                elif lines and (box := self.box(at, width)):
                    (left, top), size = box
                    layer = Image.new("L", size, 0)
                    draw = ImageDraw.Draw(layer)
                    for line in lines:
                        draw.line((line - (left, top)).ravel().tolist(), fill=255, width=width, joint="curve")
                    self.paint(layer, (left, top), stroke, stroke_alpha)

    def box(self, at: np.ndarray, width: int) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """The canvas pixels points ``at`` cover, a stroke ``width`` around them: its corner and size; None where
        they lie wholly off the canvas."""
        low, high = at.min(axis=0), at.max(axis=0)
        left, top = max(0, int(low[0]) - width - 1), max(0, int(low[1]) - width - 1)
        right, bottom = min(self.size[0], int(high[0]) + width + 2), min(self.size[1], int(high[1]) + width + 2)
        return ((left, top), (right - left, bottom - top)) if right > left and bottom > top else None

    def glyph(self, char: str, at: tuple[float, float, float], paint: dict[str, str], matrix: Matrix) -> None:
        """One character of a ``text``, its baseline's start at (x, y) in user units, turned by ``turn`` degrees:
        drawn by FreeType into a raster at the canvas's resolution, then mapped onto the canvas by one affine."""
        fill, stroke = _colour(paint.get("fill"), self.ids), _colour(paint.get("stroke"), self.ids)
        size = _font_size(paint.get("font-size"))
        a, b, c, d, _, _ = matrix
        sx, sy = self.scale
        em = min(round(size * math.sqrt(abs(a * d - b * c)) * (sx + sy) / 2), MAX_EM * max(self.size))
        if (fill is None and stroke is None) or char.isspace() or em < 2:
            return
        self.spend(em)  # a glyph costs as its size does
        unit = size / em  # user units per raster pixel
        weight = paint.get("font-weight", "").strip()
        bold = round(em * _BOLD) if weight in ("bold", "bolder") or (weight.isdigit() and int(weight) >= 600) else 0
        outline = round(_length(paint.get("stroke-width", "1")) / unit) if stroke is not None else 0
        anchor = "l" + _BASELINE.get(paint.get("dominant-baseline", "").strip(), "s")
        font = _font(em)
        left, top, right, bottom = font.getbbox(char, anchor=anchor, stroke_width=bold + outline)
        if right <= left or bottom <= top:
            return
        x, y, turn = at
        slant = _ITALIC if paint.get("font-style", "").strip() in ("italic", "oblique") else ""
        local = _times(transform_matrix(f"translate({x} {y}) rotate({turn}) {slant}"),
                       (unit, 0.0, 0.0, unit, left * unit, top * unit))  # the raster's pixels in user units
        mapped = self.mapping(matrix, local, (right - left, bottom - top))
        if mapped is None:
            return

        def drawn(width: int) -> Image.Image:
            raster = Image.new("L", (right - left, bottom - top), 0)
            ImageDraw.Draw(raster).text((-left, -top), char, fill=255, font=font, anchor=anchor, stroke_width=width,
                                        stroke_fill=255)
            return raster

        place, at_box = mapped
        body = drawn(bold)
        opacity = _opacity(paint.get("opacity"))
        with self.own_layer(self.glyphs is not None):  # a text's character is a glyph, whatever its size
            if fill is not None:
                self.paint(place(body), at_box, fill, opacity * _opacity(paint.get("fill-opacity")))
            if stroke is not None and outline:
                ring = ImageChops.subtract(drawn(bold + outline), body)
                self.paint(place(ring), at_box, stroke, opacity * _opacity(paint.get("stroke-opacity")))

    def image(self, e: ET.Element, paint: dict[str, str], matrix: Matrix) -> None:
        """An ``image`` whose ``href`` is a ``data:`` URL of a raster (nothing outside the document is read), fitted
        into its x, y, width, height as ``preserveAspectRatio`` says (centred whole by default, or stretched)."""
        href = _href(e)
        if not href.startswith("data:") or "," not in href or self.embedded is None:
            return
        head, _, payload = href.partition(",")
        try:
            data = base64.b64decode("".join(payload.split()), validate=True) if head.endswith(";base64") \
                else urllib.parse.unquote_to_bytes(payload)
        except (binascii.Error, ValueError):
            return  # an image a browser cannot show either
        if looks_like_svg(data):
            return  # an SVG inside an SVG is not drawn: no document draws another
        raster = self.embedded(data)
        if raster is None:
            return
        iw, ih = raster.size
        self.spend(iw * ih // 64)  # decoded pixels cost as points do
        width, height = _length(e.get("width")) or iw, _length(e.get("height")) or ih
        kx, ky = width / iw, height / ih
        x, y = _length(e.get("x")), _length(e.get("y"))
        if (e.get("preserveAspectRatio") or "").split()[:1] != ["none"]:  # xMidYMid meet: whole, centred
            k = min(kx, ky)
            x, y, kx, ky = x + (width - iw * k) / 2, y + (height - ih * k) / 2, k, k
        mapped = self.mapping(matrix, (kx, 0.0, 0.0, ky, x, y), (iw, ih))
        if mapped is None:
            return
        place, at_box = mapped
        layer = place(raster)
        opacity = _opacity(paint.get("opacity"))
        if opacity < 1:
            layer.putalpha(_faded(layer.getchannel("A"), opacity))
        self.canvas.alpha_composite(layer, dest=at_box)

    def mapping(self, matrix: Matrix, local: Matrix, size: tuple[int, int]
                ) -> tuple[Callable[[Image.Image], Image.Image], tuple[int, int]] | None:
        """How a raster of ``size`` pixels lands on the canvas: ``local`` takes its pixels to user units, ``matrix``
        those onto the page, the viewBox onto the canvas. A function that maps such a raster into the box it covers,
        and that box's corner; None where it lies off the canvas or is flattened to a line."""
        sx, sy = self.scale
        ox, oy = self.origin
        forward = _times(_times((sx, 0.0, 0.0, sy, -ox * sx, -oy * sy), matrix), local)
        corners = [(forward[0] * u + forward[2] * v + forward[4], forward[1] * u + forward[3] * v + forward[5])
                   for u in (0, size[0]) for v in (0, size[1])]
        if not all(math.isfinite(c) for corner in corners for c in corner):
            return None
        box = self.box(np.array(corners), 0)
        det = forward[0] * forward[3] - forward[1] * forward[2]
        if box is None or abs(det) < 1e-9:
            return None
        (x0, y0), covered = box
        p, q, r, s, e, f = _times((1.0, 0.0, 0.0, 1.0, -x0, -y0), forward)
        back = (s / det, -r / det, (r * f - s * e) / det, -q / det, p / det, (q * e - p * f) / det)  # Pillow's order
        return (lambda raster: raster.transform(covered, Image.AFFINE, back, resample=Image.BILINEAR), (x0, y0))

    def spend(self, points: int) -> None:
        """Count ``points`` drawn against MAX_POINTS; ImageError past it."""
        self.points += points
        if self.points > MAX_POINTS:
            raise ImageError(f"{self.name}: an SVG that draws over {MAX_POINTS} points is refused")

    def origin_size(self) -> tuple[float, float]:
        return self.size[0] / self.scale[0], self.size[1] / self.scale[1]

    def paint(self, coverage: Image.Image, at: tuple[int, int], colour: tuple[int, int, int], opacity: float) -> None:
        """``colour`` over the canvas where ``coverage`` (an L image placed ``at``) says, times ``opacity``."""
        layer = Image.new("RGBA", coverage.size, (*colour, 0))
        layer.putalpha(coverage if opacity >= 1 else _faded(coverage, opacity))
        self.canvas.alpha_composite(layer, dest=at)


class _NotApart(Exception):
    """A document whose glyphs are not drawn apart after all: it is drawn as the page shows it."""


def _spaced(glyphs: list[tuple[Image.Image, tuple[int, int, int, int]]], page: Image.Image) -> Image.Image:
    """Glyphs (each its ink cut out, with its box; in document order) side by side in their order across the page,
    GLYPH_GAP of its height apart, each at its own height, on the page's commonest colour. Inks that cover nearly the
    same box are one glyph drawn twice (a shadow, an outline over a fill) and stay together; overlapping neighbours
    do not."""
    groups: list[list[tuple[int, Image.Image, tuple[int, int, int, int]]]] = []
    for k, (layer, ink) in sorted(enumerate(glyphs), key=lambda g: (g[1][1][0] + g[1][1][2]) / 2):
        same = next((g for g in groups if any(_drawn_twice(ink, b) for _, _, b in g)), None)
        if same is not None:
            same.append((k, layer, ink))
        else:
            groups.append([(k, layer, ink)])
    gap = max(1, round(GLYPH_GAP * page.height))
    spans = [(min(b[0] for _, _, b in g), max(b[2] for _, _, b in g)) for g in groups]
    width = sum(r - le for le, r in spans) + gap * (len(spans) + 1)
    if width > GLYPH_PAGES * page.width:
        raise _NotApart  # hundreds of thin glyphs (a hostile document): as wide as their gaps make them
    sample = page.resize((max(1, page.width // 4), max(1, page.height // 4)), Image.NEAREST)  # a sixteenth is enough
    background = max(sample.getcolors(sample.width * sample.height))[1]
    out = Image.new("RGBA", (width, page.height), background)
    x = gap
    for group, (left, right) in zip(groups, spans):
        for _, layer, ink in sorted(group, key=lambda g: g[0]):  # document order: the last drawn on top
            out.alpha_composite(layer, dest=(x + ink[0] - left, ink[1]))
        x += right - left + gap
    return out


def _drawn_twice(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether two inks' boxes are one glyph's, drawn twice: sides alike (GLYPH_SAME), centres near (GLYPH_NEAR)."""
    longest = max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1])
    for lo, hi in ((0, 2), (1, 3)):
        side_a, side_b = a[hi] - a[lo], b[hi] - b[lo]
        if abs(side_a - side_b) > GLYPH_SAME * max(side_a, side_b) or \
                abs(a[lo] + a[hi] - b[lo] - b[hi]) / 2 >= GLYPH_NEAR * longest:
            return False
    return True


def _faded(alpha: Image.Image, opacity: float) -> Image.Image:
    """An L coverage or alpha channel times ``opacity``."""
    return alpha.point(lambda v: round(v * opacity))


@functools.lru_cache(maxsize=32)
def _font(em: int) -> ImageFont.FreeTypeFont:
    """Pillow's own scalable font (Aileron) at ``em`` pixels: the one every ``text`` is drawn in."""
    font = ImageFont.load_default(em)
    if not isinstance(font, ImageFont.FreeTypeFont):
        raise ImageError("this Pillow was built without FreeType, so an SVG's text cannot be drawn; "
                         "install Pillow from its wheels")
    return font


def _font_size(text: str | None) -> float:
    """A ``font-size`` in user units: px or none, pt, em or a percentage of the default; the default if unreadable."""
    text = (text or "").strip()
    value = _length(text, FONT_SIZE)
    return value if value > 0 else FONT_SIZE


def _text_chars(e: ET.Element, paint: dict[str, str], chain: tuple[ET.Element, ...] = (), depth: int = 0
                ) -> Iterator[tuple[str, dict[str, str], tuple[ET.Element, ...]]]:
    """A ``text``'s characters in document order, each with its paint and the elements it lies in, innermost first
    (whose ``x``/``y``/``dx``/``dy``/``rotate`` lists may place it)."""
    chain = (e, *chain)
    for char in e.text or "":
        yield char, paint, chain
    for child in e:
        if _tag(child) in ("tspan", "a") and depth < MAX_DEPTH:
            yield from _text_chars(child, {**paint, **_style(child)}, chain, depth + 1)
        for char in child.tail or "":
            yield char, paint, chain


def _text_layout(e: ET.Element, paint: dict[str, str]) -> list[tuple[str, float, float, float, dict[str, str]]]:
    """Where each character of a ``text`` goes: (character, x, y of its baseline's start, turn in degrees, paint).
    White space collapses as a browser collapses it; a character takes each of ``x``, ``y``, ``dx``, ``dy`` from the
    innermost element whose list reaches its index there, ``rotate`` from the innermost that has one (its last value
    going on); each chunk (from an absolute position on) moves by its ``text-anchor``."""
    out: list[tuple[str, float, float, float, dict[str, str]]] = []
    chunks: list[list[int]] = [[]]
    advances: list[float] = []
    lists: dict[ET.Element, dict[str, list[float]]] = {}
    seen: dict[ET.Element, int] = {}  # characters kept so far inside each element: the index into its lists
    x = y = 0.0
    for char, p, chain in _text_chars(e, paint):
        char = " " if char.isspace() else char
        if char == " " and (not out or out[-1][0] == " "):
            continue
        values: dict[str, float] = {}
        turns: list[float] = []
        for element in chain:
            if element not in lists:
                lists[element] = {k: _numbers(element.get(k, "")) for k in ("x", "y", "dx", "dy", "rotate")}
            i = seen.get(element, 0)
            seen[element] = i + 1
            for key, got in lists[element].items():
                if key != "rotate" and key not in values and i < len(got):
                    values[key] = got[i]
            turns = turns or lists[element]["rotate"][:i + 1]
        if "x" in values or "y" in values:
            x, y = values.get("x", x), values.get("y", y)
            chunks.append([])
        x, y = x + values.get("dx", 0.0), y + values.get("dy", 0.0)
        chunks[-1].append(len(out))
        out.append((char, x, y, turns[-1] if turns else 0.0, p))
        advances.append(_font(_LAYOUT_EM).getlength(char) * _font_size(p.get("font-size")) / _LAYOUT_EM
                        + _length(p.get("letter-spacing")))
        x += advances[-1]
    for chunk in chunks:
        while chunk and out[chunk[-1]][0] == " ":  # a chunk's trailing space takes no room for its anchor
            chunk.pop()
        if not chunk:
            continue
        shift = {"middle": 0.5, "end": 1.0}.get(out[chunk[0]][4].get("text-anchor", "").strip(), 0.0) \
            * sum(advances[j] for j in chunk)
        for j in chunk:
            char, cx, cy, turn, p = out[j]
            out[j] = (char, cx - shift, cy, turn, p)
    return out


def _times(m: Matrix, n: Matrix) -> Matrix:
    """The transform that applies ``n``, then ``m``."""
    a, b, c, d, e, f = m
    p, q, r, s, t, u = n
    return (a * p + c * q, b * p + d * q, a * r + c * s, b * r + d * s, a * t + c * u + e, b * t + d * u + f)


def transform_matrix(text: str) -> Matrix:
    """An SVG ``transform`` attribute as one matrix (its functions applied right to left, as SVG applies them); a
    function with the wrong number of values is left out."""
    out = IDENTITY
    for name, args in _FUNCTION.findall(text or ""):
        v = _numbers(args)
        m: Matrix | None = None
        if name == "matrix" and len(v) == 6:
            m = (v[0], v[1], v[2], v[3], v[4], v[5])
        elif name == "translate" and len(v) in (1, 2):
            m = (1.0, 0.0, 0.0, 1.0, v[0], v[1] if len(v) == 2 else 0.0)
        elif name == "scale" and len(v) in (1, 2):
            m = (v[0], 0.0, 0.0, v[-1], 0.0, 0.0)
        elif name == "rotate" and len(v) in (1, 3):
            cos, sin = math.cos(math.radians(v[0])), math.sin(math.radians(v[0]))
            m = (cos, sin, -sin, cos, 0.0, 0.0)
            if len(v) == 3:  # about (cx, cy): there, turned, back
                m = _times(_times((1.0, 0.0, 0.0, 1.0, v[1], v[2]), m), (1.0, 0.0, 0.0, 1.0, -v[1], -v[2]))
        elif name in ("skewX", "skewY") and len(v) == 1:
            k = math.tan(math.radians(v[0]))
            m = (1.0, 0.0, k, 1.0, 0.0, 0.0) if name == "skewX" else (1.0, k, 0.0, 1.0, 0.0, 0.0)
        if m is not None:
            out = _times(out, m)
    return out


def _style(e: ET.Element) -> dict[str, str]:
    """The paint an element sets: its attributes, then its ``style`` declarations (a ``font`` shorthand spread out)."""
    out = {k: e.get(k) for k in _PAINT if e.get(k) is not None}
    out.update(_font_shorthand(e.get("font", "")))
    for key, value in _declarations(e.get("style")).items():
        if key in _PAINT:
            out[key] = value
        elif key == "font":
            out.update(_font_shorthand(value))
    return out


def _declarations(text: str | None) -> dict[str, str]:
    """A ``style`` attribute's declarations (``fill: red; stroke: none``), the last of each name kept."""
    return {k.strip(): v.strip() for k, _, v in (part.partition(":") for part in (text or "").split(";")) if k.strip()}


def _apply_style_sheets(root: ET.Element) -> None:
    """The rules of the document's ``style`` elements written into the ``style`` of each element they select, before
    its own declarations (CSS's order: presentation attributes, then the sheet by specificity, then the element's
    style). Selectors of a tag, classes and an id (``*``, ``text``, ``.c1``, ``path#n.c1``); any other is skipped."""
    buckets: dict[str, list[tuple[int, int, str | None, list[str], set[str], str]]] = {}
    count = 0
    for sheet in root.iter():
        if _tag(sheet) != "style":
            continue
        text = re.sub(r"/\*.*?\*/", "", "".join(sheet.itertext()), flags=re.S)
        for selectors, body in _RULE.findall(text):
            for selector in selectors.split(","):
                found = _SELECTOR.match(selector.strip())
                if not found or not selector.strip() or count >= MAX_RULES:
                    continue
                tag = found.group(1) if found.group(1) not in (None, "*") else None
                parts = re.findall(r"([.#])([\w-]+)", found.group(2))
                ids, classes = [v for k, v in parts if k == "#"], {v for k, v in parts if k == "."}
                rule = (100 * len(ids) + 10 * len(classes) + (tag is not None), count, tag, ids, classes,
                        body.replace("!important", ""))
                key = f"#{ids[0]}" if ids else f".{min(classes)}" if classes else tag or "*"
                buckets.setdefault(key, []).append(rule)  # each element looks up only the rules that could select it
                count += 1
    if not buckets:
        return
    for e in root.iter():
        classes = set((e.get("class") or "").split())
        keys = ["*", _tag(e), f"#{e.get('id')}", *(f".{c}" for c in classes)]
        picked = sorted(r for k in keys for r in buckets.get(k, ()) if (r[2] is None or r[2] == _tag(e))
                        and all(i == e.get("id") for i in r[3]) and r[4] <= classes)
        if picked:
            e.set("style", ";".join(r[5] for r in picked) + ";" + (e.get("style") or ""))


def _font_shorthand(text: str) -> dict[str, str]:
    """CSS's ``font`` (``italic bold 24px/1.2 Arial``) as the properties it sets: its slant, weight and size (the
    family goes unread: every text is drawn in one font)."""
    out: dict[str, str] = {}
    for word in text.split():
        if word in ("italic", "oblique"):
            out["font-style"] = word
        elif word in ("bold", "bolder") or (word.isdigit() and len(word) == 3):
            out["font-weight"] = word
        elif _NUMBER.match(word):
            out["font-size"] = word.split("/")[0]
            break  # the family follows the size
    return out


def _colour(text: str | None, ids: dict[str, ET.Element] | None = None) -> tuple[int, int, int] | None:
    """A paint as one colour; None for none. A gradient is drawn as its mean colour (a ramp behind the text reads
    as its middle; drawn as ink, it would hide dark glyphs); another paint server as its fallback, else as ink."""
    if text is None or text.strip() in ("none", "transparent", ""):
        return None
    text = text.strip()
    if text == "currentColor":
        return (0, 0, 0)
    server = _URL.match(text)
    if server:
        element = (ids or {}).get(server.group(1))
        mean = _gradient_mean(element, ids or {}) if element is not None else None
        return mean or _colour(text[server.end():].strip() or "black")
    try:
        return ImageColor.getrgb(text)[:3]
    except ValueError:
        return (0, 0, 0)  # an unknown name: drawn as ink, not dropped


def _gradient_mean(element: ET.Element, ids: dict[str, ET.Element]) -> tuple[int, int, int] | None:
    """A gradient's colour averaged along it (its stops', or those of the gradient it points at); None if it is not
    one or has no stops."""
    for _ in range(8):  # a gradient takes its stops from the one it points at: a few hops at most
        if _tag(element) not in ("linearGradient", "radialGradient"):
            return None
        stops = [child for child in element if _tag(child) == "stop"]
        if stops:
            break
        element = ids.get(_href(element).removeprefix("#"))
        if element is None:
            return None
    else:
        return None
    points: list[tuple[float, tuple[int, int, int]]] = []
    for stop in stops:
        style = _declarations(stop.get("style"))
        text = (stop.get("offset") or "0").strip()
        offset = _length(text, 1.0)
        offset = min(1.0, max(offset, points[-1][0] if points else 0.0))  # offsets never go back
        points.append((offset, _colour(style.get("stop-color") or stop.get("stop-color") or "black") or (0, 0, 0)))
    # flat before the first stop and after the last, a linear ramp between each two
    spans = [(points[0][0], points[0][1], points[0][1]),
             *((b[0] - a[0], a[1], b[1]) for a, b in zip(points, points[1:])),
             (1.0 - points[-1][0], points[-1][1], points[-1][1])]
    total = sum(w for w, _, _ in spans)
    if total <= 0:
        return points[-1][1]
    r, g, b = (round(sum(w * (lo[i] + hi[i]) / 2 for w, lo, hi in spans) / total) for i in range(3))
    return r, g, b


def _opacity(text: str | None) -> float:
    try:
        return min(1.0, max(0.0, float(text))) if text is not None else 1.0
    except ValueError:
        return 1.0


def _shape(tag: str, e: ET.Element, view: tuple[float, float], detail: float = 1.0) -> list[Subpath]:
    """An element's outline as subpaths in user units; ``detail``: canvas pixels a user unit, which sets how many
    points draw a circle."""

    def num(key: str, of: float = 0.0) -> float:
        return _length(e.get(key), of)  # missing or junk: 0, as browsers skip it

    if tag == "path":
        return path_outline(e.get("d", ""))
    outline: list[tuple[list[tuple[float, float]], bool]] = []
    if tag == "rect":
        x, y, w, h = num("x", view[0]), num("y", view[1]), num("width", view[0]), num("height", view[1])
        if w > 0 and h > 0:
            outline = [([(x, y), (x + w, y), (x + w, y + h), (x, y + h)], True)]
    elif tag in ("circle", "ellipse"):
        cx, cy = num("cx", view[0]), num("cy", view[1])
        rx, ry = (num("r"), num("r")) if tag == "circle" else (num("rx"), num("ry"))
        # a side of CIRCLE_SIDE canvas pixels, 8 to 48 sides: a captcha's dots are small, and each point costs
        steps = min(48, max(8, math.ceil(2 * math.pi * max(rx, ry) * min(detail, 1e6) / CIRCLE_SIDE)))
        if rx > 0 and ry > 0:
            outline = [([(cx + rx * math.cos(2 * math.pi * k / steps), cy + ry * math.sin(2 * math.pi * k / steps))
                         for k in range(steps)], True)]
    elif tag == "line":
        outline = [([(num("x1"), num("y1")), (num("x2"), num("y2"))], False)]
    elif tag in ("polyline", "polygon"):
        values = _numbers(e.get("points", ""))
        if len(values) >= 2:
            outline = [(list(zip(values[0::2], values[1::2])), tag == "polygon")]
    return [(np.array(points, dtype=np.float64), closed) for points, closed in outline]


@functools.lru_cache(maxsize=64)  # a glyph drawn twice (its shadow, its outline over it) is read once
def path_outline(d: str) -> list[Subpath]:
    """A path's ``d`` -> its subpaths as points, curves flattened (CURVE_STEPS pieces each), arcs drawn straight;
    shared between the calls with one ``d``, so read-only."""
    found = _TOKEN.findall(d)
    commands, values = [c for c, _ in found], [float(n) if n else 0.0 for _, n in found]
    # the path as pieces in order: a point, or a cubic's control points (a quadratic raised to one: the same
    # curve at the same steps), all curves then flattened at once (a captcha's glyphs are hundreds of curves)
    corners: list[tuple[float, float]] = []
    curves: list[tuple[float, ...]] = []
    is_curve: list[bool] = []
    subpaths: list[tuple[int, bool]] = []  # pieces each subpath holds, and whether it is closed
    start = 0  # the current subpath's first piece
    x = y = sx = sy = 0.0
    last_control: tuple[float, float] | None = None
    command, last_command, i = "", "", 0

    def take(n: int) -> list[float] | None:
        nonlocal i
        if i + n > len(commands) or any(commands[i:i + n]):
            return None
        i += n
        return values[i - n:i]

    def point(px: float, py: float) -> None:
        corners.append((px, py))
        is_curve.append(False)

    def cubic(x1: float, y1: float, x2: float, y2: float, x3: float, y3: float) -> None:
        curves.append((x, y, x1, y1, x2, y2, x3, y3))
        is_curve.append(True)

    while i < len(commands):
        if commands[i]:
            command = commands[i]
            i += 1
            if command in "Zz":
                if len(is_curve) > start:
                    subpaths.append((len(is_curve) - start, True))
                start = len(is_curve)
                (x, y), last_control = (sx, sy), None
                continue
        elif not command or command in "Zz":
            break  # numbers with no command before them: the rest is not drawn
        rel = command.islower()
        ox, oy = (x, y) if rel else (0.0, 0.0)
        kind = command.upper()
        arity = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "T": 2, "A": 7}[kind]
        v = take(arity)
        if v is None:
            break
        control: tuple[float, float] | None = None
        if kind != "M" and len(is_curve) == start:  # drawing on after a close: a new subpath from where it closed
            point(x, y)
        if kind == "M":
            if len(is_curve) - start > 1:
                subpaths.append((len(is_curve) - start, False))
            elif len(is_curve) > start:  # a lone moveto draws nothing
                del is_curve[start:]
                corners.pop()
            start = len(is_curve)
            x, y = v[0] + ox, v[1] + oy
            sx, sy = x, y
            point(x, y)
            command = "l" if rel else "L"  # further pairs are lines
        elif kind == "L":
            x, y = v[0] + ox, v[1] + oy
            point(x, y)
        elif kind == "H":
            x = v[0] + ox
            point(x, y)
        elif kind == "V":
            y = v[0] + (y if rel else 0.0)
            point(x, y)
        elif kind == "C":
            control = (v[2] + ox, v[3] + oy)
            cubic(v[0] + ox, v[1] + oy, *control, v[4] + ox, v[5] + oy)
            x, y = v[4] + ox, v[5] + oy
        elif kind == "S":
            c1 = (2 * x - last_control[0], 2 * y - last_control[1]) if last_control and last_command in "CcSs" \
                else (x, y)
            control = (v[0] + ox, v[1] + oy)
            cubic(*c1, *control, v[2] + ox, v[3] + oy)
            x, y = v[2] + ox, v[3] + oy
        elif kind in "QT":
            if kind == "Q":
                control, (ex, ey) = (v[0] + ox, v[1] + oy), (v[2] + ox, v[3] + oy)
            else:
                control = (2 * x - last_control[0], 2 * y - last_control[1]) \
                    if last_control and last_command in "QqTt" else (x, y)
                ex, ey = v[0] + ox, v[1] + oy
            qx, qy = control
            cubic(x + 2 / 3 * (qx - x), y + 2 / 3 * (qy - y), ex + 2 / 3 * (qx - ex), ey + 2 / 3 * (qy - ey), ex, ey)
            x, y = ex, ey
        elif kind == "A":
            x, y = v[5] + ox, v[6] + oy
            point(x, y)
        last_control, last_command = control, command
    if len(is_curve) - start > 1:
        subpaths.append((len(is_curve) - start, False))
    return _flattened(corners, curves, is_curve, subpaths)


def _flattened(corners: list[tuple[float, float]], curves: list[tuple[float, ...]], is_curve: list[bool],
               subpaths: list[tuple[int, bool]]) -> list[Subpath]:
    """Pieces in order (a corner, or a cubic's start and control points) -> each subpath's points, every cubic
    drawn as its CURVE_STEPS points at once; the arrays are read-only (path_outline's cache shares them)."""
    if not subpaths:
        return []
    used = sum(n for n, _ in subpaths)
    kinds = np.array(is_curve[:used], dtype=bool)
    sizes = np.where(kinds, CURVE_STEPS, 1)
    ends = np.cumsum(sizes)
    out = np.empty((int(ends[-1]), 2))
    firsts = ends - sizes
    points = np.array(corners, dtype=np.float64).reshape(-1, 2)
    out[firsts[~kinds]] = points[:int((~kinds).sum())]
    if kinds.any():
        controls = np.array(curves, dtype=np.float64).reshape(-1, 4, 2)[:int(kinds.sum())]
        out[firsts[kinds][:, None] + np.arange(CURVE_STEPS)] = np.einsum("kj,njd->nkd", _CUBIC, controls)
    out.setflags(write=False)
    bounds = np.cumsum([0] + [n for n, _ in subpaths])
    return [(out[firsts[a]:ends[b - 1]], closed) for (a, b), (_, closed) in zip(zip(bounds[:-1], bounds[1:]), subpaths)]
