import random

import numpy as np
import pytest
from PIL import Image, ImageDraw

from captcha.config import SPLITTERS
from captcha.data import segment
from captcha.data.segment import (
    SegmentConfig,
    components,
    ink_mask,
    split,
    split_boxes,
    without_specks,
)


def _blocks(xs: list[tuple[int, int]], width: int = 200, height: int = 50) -> Image.Image:
    """Dark bars at known column spans on a light background (characters with known cuts)."""
    img = Image.new("RGB", (width, height), (235, 235, 220))
    d = ImageDraw.Draw(img)
    for x0, x1 in xs:
        d.rectangle([x0, 12, x1 - 1, 38], fill=(30, 40, 90))
    return img


SPANS = [(20, 45), (60, 80), (95, 130), (150, 172)]


def test_equal_untrimmed_gives_the_course_cells():
    img = Image.new("RGB", (160, 40), "white")
    assert split_boxes(img, 4, SegmentConfig("equal")) == [(0, 0, 40, 40), (40, 0, 80, 40), (80, 0, 120, 40), (120, 0, 160, 40)]


def test_equal_trimmed_spans_the_ink():
    boxes = split_boxes(_blocks(SPANS), 4, SegmentConfig("equal", trim=True, context=0))
    assert boxes[0][0] == 20 and boxes[-1][2] == 172


@pytest.mark.parametrize("method", ["projection", "components"])
def test_smart_splitters_find_the_gaps(method):
    boxes = split_boxes(_blocks(SPANS), 4, SegmentConfig(method, trim=True, context=0))
    for (x0, _, x1, _), (a, b) in zip(boxes, SPANS):
        assert x0 <= a + 1 and x1 >= b - 1, (method, boxes)
        # and no box reaches into the next character
        assert x1 - x0 <= (b - a) + 20


def test_components_merges_fragments_and_cuts_wide_blobs():
    # a character broken in two (close fragments) plus one blob that holds two characters
    spans = [(20, 30), (31, 44), (60, 80), (95, 170)]
    boxes = split_boxes(_blocks(spans), 4, SegmentConfig("components", trim=True, context=0))
    assert boxes[0][0] <= 20 and boxes[0][2] >= 44
    assert boxes[2][0] >= 90 and boxes[3][2] >= 168 and abs(boxes[2][2] - 132) <= 3


def test_components_join_diagonal_neighbours_and_count_each_blob():
    mask = np.zeros((8, 12), bool)
    mask[1, 1] = mask[2, 2] = mask[3, 3] = True  # a diagonal stroke: one component
    mask[1:5, 7:10] = True  # a 4x3 block
    mask[6, 11] = True  # a speck
    labels, stats = components(mask)
    assert len(stats) == 4 and stats[0, 4] == (~mask).sum()  # the ground first
    assert sorted(map(tuple, stats[1:, [0, 2, 4]])) == [(1, 3, 3), (7, 3, 12), (11, 1, 1)]  # left, width, area
    assert (labels[mask] > 0).all() and len(set(labels[1:4, 1:4][mask[1:4, 1:4]])) == 1
    assert without_specks(np.zeros((5, 5), bool)).sum() == 0  # no ink: nothing to take away


def test_blank_and_tiny_images_still_give_n_boxes():
    for method in SPLITTERS:
        for img in (Image.new("RGB", (160, 40), "white"), Image.new("RGB", (3, 3), "black"), Image.new("RGB", (1, 1))):
            crops = split(img, 4, SegmentConfig(method, trim=True))
            assert len(crops) == 4 and all(c.width >= 1 and c.height >= 1 for c in crops)


def test_ink_mask_finds_dark_text_on_noise():
    rng = random.Random(0)
    img = _blocks(SPANS)
    for _ in range(200):
        img.putpixel((rng.randrange(200), rng.randrange(50)), (220, 225, 215))
    mask = ink_mask(img)
    assert mask[12:38, 20:45].mean() > 0.95 and mask[:10].mean() < 0.01


@pytest.mark.parametrize("size", [1, 2, 545, 546])
def test_the_median_is_numpys(size):
    values = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8)
    assert segment._median(values) == np.median(values)


def test_the_grey_counts_are_exact_either_way(monkeypatch):
    g = np.random.default_rng(0).integers(0, 256, (61, 97), dtype=np.uint8)
    counted = np.bincount(g.ravel(), minlength=256)
    assert np.array_equal(segment._grey_counts(g), counted)
    monkeypatch.setattr(segment, "FLOAT32_EXACT", 0)  # as for an image too large for float32 counts
    assert np.array_equal(segment._grey_counts(g), counted)


def test_unknown_splitter_is_named():
    with pytest.raises(ValueError, match="equal, projection, components"):
        SegmentConfig("magic")


def test_content_box_finds_a_captcha_in_a_band_of_a_larger_canvas():
    from captcha.data.segment import content_box, to_content

    canvas = Image.new("RGB", (400, 200), (250, 250, 250))
    canvas.paste(_blocks(SPANS), (100, 120))  # the 200x50 captcha low in a blank canvas
    x0, y0, x1, y1 = content_box(canvas)
    assert 100 <= x0 <= 100 + SPANS[0][0] and 100 + SPANS[-1][1] <= x1 <= 300
    assert 120 <= y0 <= 132 and 158 <= y1 <= 172  # the bars' rows (12..38) and a small margin
    assert to_content(canvas, SegmentConfig(crop=False)) is canvas
    assert to_content(canvas, SegmentConfig(crop=True)).size == (x1 - x0, y1 - y0)


def test_content_box_keeps_a_captcha_that_fills_its_image_and_ignores_specks():
    from captcha.data.segment import content_box

    full = Image.new("RGB", (100, 40), "white")
    ImageDraw.Draw(full).rectangle([2, 2, 97, 37], fill="black")
    assert content_box(full) == (0, 0, 100, 40)
    img = Image.new("RGB", (300, 120), "white")
    ImageDraw.Draw(img).rectangle([100, 40, 200, 80], fill="black")
    img.putpixel((5, 5), (0, 0, 0))  # one stray speck far away
    x0, y0, x1, y1 = content_box(img)
    assert x0 > 80 and y0 > 30 and x1 < 220 and y1 < 90


def test_crop_applies_before_splitting():
    canvas = Image.new("RGB", (400, 200), (250, 250, 250))
    canvas.paste(_blocks(SPANS), (100, 120))
    crops = split(canvas, 4, SegmentConfig("projection", trim=True, crop=True))
    assert all(c.height < 60 for c in crops)  # the blank rows above the band are gone


def _ruled(size: tuple[int, int], step: int, kind: str = "grid") -> Image.Image:
    """A light canvas ruled with thin grey lines every ``step`` pixels: a grid, ruled paper (rows only), or
    only a 1-px frame, inset 2 px (at the very edge a frame is what the ink mask takes for the background)."""
    w, h = size
    img = Image.new("RGB", size, (245, 245, 250))
    d = ImageDraw.Draw(img)
    xs, ys = ((2, w - 3), (2, h - 3)) if kind == "frame" else (range(3, w, step), range(3, h, step))
    xs = () if kind == "rows" else xs
    for x in xs:
        d.line([(x, 0), (x, h - 1)], fill=(120, 120, 130))
    for y in ys:
        d.line([(0, y), (w - 1, y)], fill=(120, 120, 130))
    return img


@pytest.mark.parametrize("kind", ["grid", "rows", "frame"])
def test_content_box_looks_past_a_grid_or_a_frame_spanning_the_image(kind):
    from captcha.data.segment import content_box, to_content

    img = _ruled((240, 140), 9, kind)
    for a, b in SPANS:  # the bars drawn over the lines (which run on behind them), rows 72..98
        ImageDraw.Draw(img).rectangle([20 + a, 72, 20 + b - 1, 98], fill=(30, 40, 90))
    assert content_box(img, lines=False) == (0, 0, 240, 140)  # the lines carry too much ink to trim
    x0, y0, x1, y1 = content_box(img)
    assert 20 <= x0 <= 20 + SPANS[0][0] and 20 + SPANS[-1][1] <= x1 <= 230
    assert 60 <= y0 <= 72 and 98 <= y1 <= 112
    assert to_content(img, SegmentConfig(crop=True)).size == (x1 - x0, y1 - y0)
    assert to_content(img, SegmentConfig(crop=True, lines=False)) is img


def test_content_box_finds_the_text_in_a_ruled_band_of_a_larger_canvas():
    from captcha.data.segment import content_box

    img = Image.new("RGB", (300, 220), "white")
    img.paste(_ruled((240, 140), 9), (30, 50))  # a gridded captcha low in a blank canvas
    for a, b in SPANS:
        ImageDraw.Draw(img).rectangle([50 + a, 122, 50 + b - 1, 148], fill=(30, 40, 90))
    x0, y0, x1, y1 = content_box(img)
    assert 50 <= x0 <= 50 + SPANS[0][0] and 50 + SPANS[-1][1] <= x1 <= 260
    assert 110 <= y0 <= 122 and 148 <= y1 <= 162
    x0, y0, x1, y1 = content_box(img, lines=False)
    assert (x0, y0) <= (32, 52) and (x1, y1) >= (268, 188)  # the grid's own extent


def test_a_lone_line_across_the_text_is_not_a_ruled_line():
    """Across the text's own extent a glyph's stem spans it too: one line each way is left in the ink."""
    from captcha.data.segment import content_box, ink_mask, ruled_lines

    img = Image.new("RGB", (200, 60), "white")
    d = ImageDraw.Draw(img)
    for x in (20, 70, 120, 170):  # tall stems, each spanning the ink's full height
        d.rectangle([x, 10, x + 2, 50], fill="black")
    d.line([(20, 30), (172, 30)], fill="black")  # one strike-through across them
    assert not ruled_lines(ink_mask(img)).any()
    assert content_box(img) == content_box(img, lines=False)


def test_content_box_keeps_a_ground_that_reads_as_ink():
    """henan_digits4's light ground inside a dark 1-px frame at the edge: read without ``frame``, the ground
    is ink (the border's median is the frame) and its rows between the digits are nearly full, yet they
    are not ruled lines; with ``frame`` (the default) the ground is read inside the frame, and the cut
    holds the digits."""
    from pathlib import Path

    from captcha.data.segment import content_box

    henan = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "henan_digits4"
    if not henan.is_dir():
        pytest.skip("../shared/datasets/henan_digits4 is not here")
    cut = 0
    for path in sorted(henan.glob("*.jpg"))[:300]:
        img = Image.open(path).convert("RGB")
        assert content_box(img, frame=False) == content_box(img, lines=False, frame=False) == (0, 0) + img.size
        x0, y0, x1, y1 = content_box(img)
        cut += (x0, y0) > (0, 0) and x1 < img.width and y1 < img.height
        assert x1 - x0 >= 0.7 * img.width and y1 - y0 >= 0.5 * img.height, path.name  # four digits kept
    assert cut >= 150


def _framed_band(edge=(20, 20, 20), ground=(235, 235, 225), sides=4) -> Image.Image:
    """Bars in a band low in a light canvas, with a 1-px frame drawn along ``sides`` of its edges."""
    img = Image.new("RGB", (300, 200), ground)
    d = ImageDraw.Draw(img)
    for a, b in SPANS:
        d.rectangle([60 + a, 130, 60 + b - 1, 160], fill=(30, 40, 90))
    for line in [[(0, 0), (299, 0)], [(0, 199), (299, 199)], [(0, 0), (0, 199)], [(299, 0), (299, 199)]][:sides]:
        d.line(line, fill=edge)
    return img


@pytest.mark.parametrize("edge, ground", [((20, 20, 20), (235, 235, 225)), ((255, 255, 255), (170, 200, 215))])
def test_the_cut_reads_the_ground_inside_a_frame_round_the_edge(edge, ground):
    from captcha.data.segment import content_box, ground_level, to_content

    img = _framed_band(edge, ground)
    g = np.asarray(img.convert("L"), dtype=np.int16)
    assert abs(ground_level(g) - g[0, 0]) < 5 and abs(ground_level(g, frame=True) - g[100, 30]) < 5
    if edge[0] < 128:  # a dark frame on a light ground: without the rule the ground reads as ink, nothing is cut
        assert content_box(img, frame=False) == (0, 0, 300, 200)
        old = SegmentConfig.from_dict({"method": "equal", "crop": True, "lines": True})  # made before the rule
        assert to_content(img, old) is img
    x0, y0, x1, y1 = content_box(img)
    assert 50 <= x0 <= 60 + SPANS[0][0] and 60 + SPANS[-1][1] <= x1 <= 290 and 118 <= y0 <= 130 and 160 <= y1 <= 175
    assert to_content(img, SegmentConfig(crop=True)).size == (x1 - x0, y1 - y0)


def test_a_frame_round_a_gridded_band_goes_first_then_the_grid():
    from captcha.data.segment import content_box

    img = Image.new("RGB", (300, 220), "white")
    img.paste(_ruled((240, 140), 9), (30, 50))  # a gridded captcha in a blank canvas ...
    ImageDraw.Draw(img).rectangle([0, 0, 299, 219], outline=(20, 20, 20))  # ... with a frame round its edge
    for a, b in SPANS:
        ImageDraw.Draw(img).rectangle([50 + a, 122, 50 + b - 1, 148], fill=(30, 40, 90))
    x0, y0, x1, y1 = content_box(img)
    assert 50 <= x0 <= 50 + SPANS[0][0] and 50 + SPANS[-1][1] <= x1 <= 260
    assert 110 <= y0 <= 122 and 148 <= y1 <= 162
    assert content_box(img, frame=False) == (0, 0, 300, 220)  # as before the rule: nothing cut


def _dotted_band(density: float, seed: int = 0) -> Image.Image:
    """Bars in a band low in a light canvas, with dark noise dots strewn over ``density`` of its pixels."""
    img = Image.new("RGB", (300, 200), (240, 240, 235))
    for a, b in SPANS:
        ImageDraw.Draw(img).rectangle([60 + a, 130, 60 + b - 1, 160], fill=(30, 40, 90))
    px = np.asarray(img).copy()
    px[np.random.default_rng(seed).random(px.shape[:2]) < density] = (40, 40, 40)
    return Image.fromarray(px)


@pytest.mark.parametrize("density", [0.005, 0.01, 0.02])
def test_the_cut_looks_past_noise_dots_strewn_over_the_canvas(density):
    from captcha.data.segment import content_box, to_content

    img = _dotted_band(density)
    x0, y0, x1, y1 = content_box(img, specks=False)  # the dots hold the ink's margins out at the edges
    assert y0 < 60 and (x0, x1) == (0, 300)
    x0, y0, x1, y1 = content_box(img)
    assert 50 <= x0 <= 60 + SPANS[0][0] and 60 + SPANS[-1][1] <= x1 <= 290 and 118 <= y0 <= 130 and 160 <= y1 <= 175
    old = SegmentConfig.from_dict({"method": "equal", "crop": True, "lines": True, "frame": True})
    assert old.specks is False and to_content(img, old).size != (x1 - x0, y1 - y0)


def test_text_in_fragments_is_not_taken_for_specks():
    """Glyphs broken into pieces as small as specks (eroded fonts) keep the cut they had."""
    from captcha.data.segment import content_box

    img = Image.new("RGB", (200, 80), "white")
    d = ImageDraw.Draw(img)
    for x in range(20, 180, 2):  # text of single-pixel pieces, as an eroded stroke breaks up
        for y in range(30, 50, 2):
            d.point((x, y), fill="black")
    assert content_box(img) == content_box(img, specks=False) != (0, 0, 200, 80)


@pytest.mark.parametrize("sides", [1, 2, 3])
def test_a_line_along_some_edges_is_no_frame(sides):
    """Only all four edges in one colour make a frame: a grid line along an edge leaves the ground as it was."""
    from captcha.data.segment import ground_level

    g = np.asarray(_framed_band(sides=sides).convert("L"), dtype=np.int16)
    assert ground_level(g, frame=True) == ground_level(g)


def test_a_checkpoints_splitter_from_before_lines_crops_as_it_did():
    old = {"method": "equal", "trim": True, "crop": True, "context": 0.1}
    assert SegmentConfig.from_dict(old).lines is False and SegmentConfig.from_dict(old).frame is False
    assert SegmentConfig.from_dict({**old, "lines": True}).frame is False  # made before the frame rule
    assert SegmentConfig.from_dict(SegmentConfig(crop=True).to_dict()).lines is True
