"""SVG captchas: drawn by the package's own renderer as a browser shows them, read wherever an image is read, and
untrusted SVG refused with one clear error."""

import base64

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFont

from captcha.data.images import is_image_name, load_image
from captcha.data.svg import CURVE_STEPS, SUPERSAMPLE, path_outline, render_svg
from captcha.errors import ImageError

RING = "M10 10 H50 V50 H10 Z M20 20 H40 V40 H20 Z"  # a square with a square hole, as a glyph's counter


def shown(src, **kw):
    """A document decoded as the page shows it (the renderer's own tests; glyphs drawn apart are tested apart)."""
    return load_image(src, svg_apart=False, **kw)


def _svg(body: str, size: str = 'width="60" height="60"', box: str = "0 0 60 60") -> bytes:
    return f'<svg xmlns="http://www.w3.org/2000/svg" {size} viewBox="{box}">{body}</svg>'.encode()


def test_a_filled_outline_keeps_its_holes_and_strokes_and_the_ground_are_drawn():
    body = f'<rect width="100%" height="100%" fill="#e0d0c0"/><path fill="#c03030" d="{RING}"/>' \
           '<line x1="0" y1="55" x2="60" y2="55" stroke="rgb(0,0,200)" stroke-width="2"/>'
    img = np.asarray(shown(_svg(body)))
    assert tuple(img[15, 15]) == (192, 48, 48)  # the ring
    assert tuple(img[30, 30]) == (224, 208, 192)  # its hole shows the ground
    assert tuple(img[5, 5]) == (224, 208, 192)
    assert img[55, 30, 2] > 150 and img[55, 30, 0] < 60  # the stroke


def test_relative_commands_curves_and_the_viewbox_draw_what_absolute_ones_do():
    assert path_outline("M0 0 H10 V10 Z L20 0 L20 20 Z")[1][0].tolist() == [[0, 0], [20, 0], [20, 20]]  # on from Z
    assert [(p.tolist(), closed) for p, closed in path_outline("M1 1 M2 2 L3 3 M4 4")] == [([[2, 2], [3, 3]], False)]
    relative = path_outline("m10 10 h40 v40 h-40 z m10 10 h20 v20 h-20 z")
    absolute = path_outline(RING)
    assert [p.tolist() for p, _ in relative] == [p.tolist() for p, _ in absolute]
    # a circle as four cubic curves and as an element cover the same pixels, here in a viewBox four times smaller
    k = 0.5523 * 5
    arcs = f"M15 10 C15 {10 + k} {10 + k} 15 10 15 S5 {10 + k} 5 10 S{10 - k} 5 10 5 S15 {10 - k} 15 10 Z"
    size, box = 'width="80" height="80"', "0 0 20 20"
    drawn = [np.asarray(shown(_svg(f'<path fill="black" d="{arcs}"/>', size, box)).convert("L")) < 128,
             np.asarray(shown(_svg('<circle cx="10" cy="10" r="5" fill="black"/>', size, box)).convert("L")) < 128]
    assert abs(drawn[0].sum() - np.pi * 20 ** 2) < 0.05 * np.pi * 20 ** 2
    assert (drawn[0] != drawn[1]).sum() < 0.04 * drawn[1].sum()
    quadratic = path_outline("M0 0 Q10 20 20 0 T40 0")[0][0]
    assert len(quadratic) == 1 + 2 * CURVE_STEPS and quadratic[:, 1].max() == pytest.approx(10, abs=0.1)  # a peak
    t = np.arange(1, CURVE_STEPS + 1) / CURVE_STEPS  # the smooth one mirrors the first: its points are the parabola's
    assert np.allclose(quadratic[1 + CURVE_STEPS:], np.stack([20 + 20 * t, -40 * t * (1 - t)], 1))


def test_an_svg_is_read_from_a_file_of_any_name_from_base64_and_by_the_batch(tmp_path):
    data = _svg(f'<path fill="#000" d="{RING}"/>')
    (tmp_path / "a.svg").write_bytes(data)
    (tmp_path / "b.png").write_bytes(data)  # saved under another name
    url = "data:image/svg+xml;base64," + base64.b64encode(data).decode()
    read = [np.asarray(shown(src)) for src in (tmp_path / "a.svg", tmp_path / "b.png", url, data)]
    assert all((r == read[0]).all() for r in read) and read[0].shape == (60, 60, 3)
    assert tuple(read[0][15, 15]) == (0, 0, 0) and tuple(read[0][30, 30]) == (255, 255, 255)  # onto white
    assert is_image_name("site/0001.svg")
    declared = b'<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" ' \
               b'"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n' + data  # as editors save it: nothing fetched
    assert (np.asarray(shown(declared)) == read[0]).all()
    assert (np.asarray(shown(declared[declared.index(b"<!DOCTYPE"):])) == read[0]).all()


@pytest.mark.parametrize("data,message", [
    (b'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><svg width="9" height="9">&b;</svg>',
     "entities"),
    (_svg("", 'width="9000" height="9000"', "0 0 9000 9000"), "over the limit"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'><rect width='5' height='5'/></svg>", "neither a size nor a viewBox"),
    (_svg('<path d="M0 0 L5 5')[:-20], "not a well-formed SVG"),
    (b"<svg" + b" " * 3_000_000 + b"/>", "over the limit of"),
])
def test_untrusted_svg_is_refused_with_one_clear_error(data, message):
    with pytest.raises(ImageError, match=message):
        shown(data, max_pixels=4096 * 4096)


def test_too_many_points_is_refused_and_truncated_documents_read_or_raise_image_error():
    curves = "C1 2 3 4 5 6 " * 3000  # each curve drawn as CURVE_STEPS points: a small file that draws a lot
    body = "".join(f'<path fill="black" d="M0 0 {curves}Z"/>' for _ in range(15))
    with pytest.raises(ImageError, match="points"):
        render_svg(_svg(body), "many.svg", 4096 * 4096)
    data = _svg(f'<rect width="100%" height="100%" fill="#fff"/><path fill="#123" d="{RING} C1 2 3 4 5 6 Q1 2 3"/>')
    for cut in range(0, len(data), 7):
        try:
            assert shown(data[:cut]).mode == "RGB"
        except ImageError:
            pass


def test_hostile_numbers_and_nesting_are_drawn_or_refused_never_a_crash():
    huge = _svg('<path fill="red" d="M1e999 0 L-1e999 1e308 L5 nan Z"/><rect x="10" y="10" width="1e300" height="20"/>')
    assert shown(huge).size == (60, 60)
    wide = _svg('<line x1="0" y1="0" x2="60" y2="60" stroke="black" stroke-width="1e300"/>')
    assert np.asarray(shown(wide)).mean() < 5  # drawn, not refused: a stroke wider than the canvas inks it
    assert shown(_svg("", 'width="1e999" height="nan"', "0 0 40 30")).size == (40, 30)  # the viewBox's size
    nested = _svg("<g>" * 5000 + '<rect width="5" height="5"/>' + "</g>" * 5000)
    with pytest.raises(ImageError, match="nested"):
        shown(nested)
    junk = np.asarray(shown(_svg('<rect width="abc%" height="5%"/><rect x="z" width="9" height="9" fill="x"/>')))
    assert tuple(junk[30, 30]) == (255, 255, 255) and junk[4, 4].max() < 255  # a junk size skips the shape, as browsers do


@settings(max_examples=150, deadline=None)
@given(d=st.text(alphabet="MmLlHhVvCcSsQqTtAaZz0123456789.-+eE ,", max_size=120),
       attrs=st.text(alphabet='abcdefghijklmnopqrstuvwxyz="#%0123456789. -', max_size=40))
def test_any_path_and_attributes_read_or_raise_image_error(d, attrs):
    try:
        img = shown(_svg(f'<path {attrs} d="{d}"/><circle {attrs} r="3"/><text {attrs}>{d}<tspan {attrs}>A</tspan>'
                              '</text>'))
    except ImageError:
        return
    assert img.mode == "RGB" and img.size == (60, 60)


def test_transforms_move_turn_and_scale_shapes_and_their_strokes_composing_down_groups():
    def inked(body: str) -> np.ndarray:
        return np.asarray(shown(_svg(body)).convert("L")) < 128

    bar = inked('<rect x="10" y="25" width="40" height="10" transform="rotate(90 30 30)"/>')  # turned upright
    assert bar[15, 30] and bar[45, 30] and not bar[30, 15] and not bar[30, 45]
    nested = inked('<g transform="translate(20,0)"><rect width="10" height="10" transform="scale(2)"/></g>')
    assert nested[10, 30] and nested[18, 38] and not nested[10, 10] and not nested[30, 30]
    assert (inked('<rect width="10" height="10" transform="matrix(2 0 0 2 20 0)"/>') == nested).all()
    thin = inked('<line x1="0" y1="5" x2="15" y2="5" stroke="black"/>')
    thick = inked('<line x1="0" y1="5" x2="15" y2="5" stroke="black" transform="scale(4)"/>')
    assert thick[:, 30].sum() >= 3 * thin[:, 5].sum()  # the stroke is four times as wide too
    assert (inked('<rect width="9" height="9" transform="rotate(oops) skewX()"/>')[4, 4])  # junk functions left out


def _ink(body: str, size: tuple[int, int] = (60, 60)) -> np.ndarray:
    w, h = size
    return np.asarray(shown(_svg(body, f'width="{w}" height="{h}"', f"0 0 {w} {h}")).convert("L")) < 128


def test_text_is_drawn_as_pillows_own_font_draws_it_whatever_family_it_names():
    drawn = _ink('<text x="10" y="45" font-size="40" font-family="Georgia, serif">K</text>')
    k = SUPERSAMPLE  # as every shape: drawn k times larger, then reduced
    direct = Image.new("L", (60 * k, 60 * k), 255)
    ImageDraw.Draw(direct).text((10 * k, 45 * k), "K", fill=0, font=ImageFont.load_default(40 * k), anchor="ls")
    direct = np.asarray(direct.resize((60, 60), Image.BOX)) < 128
    assert (drawn & direct).sum() > 0.95 * (drawn | direct).sum() > 100  # the same glyph, in the same place
    assert (_ink('<text x="10" y="45" font-size="40" font-family="monospace">K</text>') == drawn).all()
    # the text's paint, size, weight and slant, from attributes or from a style, and a group's paint passed on
    styled = _ink('<g fill="black"><text x="10" y="45" style="font-size:40px">K</text></g>')
    assert (styled == drawn).all()
    assert (_ink('<text x="10" y="45" font-size="30pt">K</text>') == drawn).all()  # 30 pt is 40 px
    assert (_ink('<text x="10" y="45" style="font: 30pt/1.2 \'Times New Roman\', serif">K</text>') == drawn).all()
    bold = _ink('<text x="10" y="45" font-size="40" font-weight="bold">K</text>')
    assert (_ink('<text x="10" y="45" font="bold 40px Arial">K</text>') == bold).all()
    assert bold.sum() > 1.2 * drawn.sum()
    italic = _ink('<text x="10" y="45" font-size="40" font-style="italic">I</text>')
    rows = np.nonzero(italic.any(axis=1))[0]
    top, bottom = (np.nonzero(italic[r])[0].mean() for r in (rows[2], rows[-3]))
    assert top > bottom + 4  # leaning right
    assert not _ink('<text x="10" y="45" font-size="40" fill="none">K</text>').any()


def test_text_positions_anchors_turns_and_spans_place_each_character():
    one = _ink('<text x="30" y="45" font-size="40" text-anchor="middle">H</text>')
    cols = np.nonzero(one.any(axis=0))[0]
    assert abs((cols[0] + cols[-1]) / 2 - 30) <= 2  # centred on its x
    middle = np.nonzero(_ink('<text x="5" y="30" font-size="30" dominant-baseline="middle">H</text>').any(axis=1))[0]
    assert abs((middle[0] + middle[-1]) / 2 - 30) <= 2
    # a position a character, a shift, a turn a character, and a tspan in its own paint drawn where its x says
    apart = _ink('<text x="5 70" y="40" font-size="30">I<tspan fill="none">I</tspan>I</text>', (120, 60))
    cols = np.nonzero(apart.any(axis=0))[0]
    assert cols[0] < 20 and not apart[:, 20:76].any()  # the tspan's I, at its parent's second x, is not inked
    assert 76 < cols[-1] < 90  # the third I goes on from the second, the tspan's, placed by its parent's list
    shifted, plain = (_ink(f'<text x="5 70" {dx} y="40" font-size="30">II</text>', (120, 60))
                      for dx in ('dx="0 10"', ""))
    assert (shifted[:, 70:] == plain[:, 60:-10]).all() and (shifted[:, :30] == plain[:, :30]).all()
    turned = _ink('<text x="20" y="50" font-size="40" rotate="30">l</text>')
    same = _ink('<text x="20" y="50" font-size="40" transform="rotate(30 20 50)">l</text>')
    assert (turned == same).all()
    rows = np.nonzero(turned.any(axis=1))[0]
    assert np.nonzero(turned[rows[1]])[0].mean() > np.nonzero(turned[rows[-2]])[0].mean() + 8  # clockwise
    assert (_ink('<text x="5" y="40" font-size="20">  A \n\t B </text>') ==
            _ink('<text x="5" y="40" font-size="20">A B</text>')).all()  # white space collapsed


@pytest.mark.parametrize("body", [
    '<text x="0" y="50" font-size="1e308">W</text>', '<text font-size="nan" x="inf">A</text>',
    '<text x="5" y="40" font-size="30" transform="scale(0)">A</text>', "<text>" + "<tspan>A" * 100 + "</tspan>" * 100
    + "</text>", '<text x="5" y="40" font-size="30" transform="matrix(1e9 0 0 1e9 0 0)">A</text>'])
def test_hostile_text_is_drawn_or_refused_never_a_crash(body):
    try:
        assert shown(_svg(body)).size == (60, 60)
    except ImageError:
        pass


def test_much_text_is_refused_by_the_points_budget():
    with pytest.raises(ImageError, match="points"):
        render_svg(_svg('<text x="0" y="50" font-size="60">' + "W" * 20_000 + "</text>"), "wordy.svg", 4096 * 4096)


def test_uses_draw_what_they_point_at_as_cairo_and_matplotlib_write_glyphs():
    # cairo: glyphs as symbols in defs, each placed by a use at x, y, painted by the use's group
    cairo = ('<defs><g><symbol id="glyph0-1"><path d="M0 0 H10 V-20 H0 Z"/></symbol></g></defs>'
             '<g style="fill:rgb(100%,0%,0%)"><use xlink:href="#glyph0-1" x="10" y="40"/>'
             '<use href="#glyph0-1" x="40" y="40" transform="scale(1)"/></g>')
    drawn = np.asarray(shown(_svg(cairo).replace(b"<svg", b'<svg xmlns:xlink="http://www.w3.org/1999/xlink"')))
    assert tuple(drawn[30, 15]) == (255, 0, 0) and tuple(drawn[30, 45]) == (255, 0, 0)
    assert tuple(drawn[30, 30]) == (255, 255, 255) and tuple(drawn[10, 15]) == (255, 255, 255)  # defs never drawn
    assert not _ink('<g id="a"><use href="#a"/><use href="#nowhere"/></g>').any()  # pointing back, or at nothing
    bomb = '<g id="l0"><rect width="1" height="1"/></g>' + "".join(
        f'<g id="l{i}">' + f'<use href="#l{i - 1}"/>' * 10 + "</g>" for i in range(1, 9))
    with pytest.raises(ImageError, match="elements"):
        shown(_svg(f"<defs>{bomb}</defs><use href='#l8'/>"))


def test_a_matplotlib_svg_of_text_reads_as_its_own_png():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2.0, 0.5), dpi=96)  # 144 pt wide: 192 px at CSS's 96 px an inch, as the png
    fig.text(0.1, 0.3, "AB12", fontsize=20, rotation=10, color="#a03030")
    svg, png = io.BytesIO(), io.BytesIO()
    fig.savefig(svg, format="svg")
    fig.savefig(png, format="png", dpi=96)
    plt.close(fig)
    drawn, own = (np.asarray(shown(b.getvalue()).convert("L")) < 128 for b in (svg, png))
    assert drawn.shape == own.shape == (48, 192)
    assert (drawn & own).sum() > 0.6 * (drawn | own).sum() > 200


def test_style_sheets_paint_what_their_rules_select_in_css_order():
    sheet = ("<style>/* a comment */ .a { fill: #00f } rect.a#b{fill:rgb(0,200,0)} path, .c {fill:red !important}"
             " g > rect {fill: #fff} text{font-size:40px}</style>")
    body = (f'<defs>{sheet}</defs><rect class="a" width="10" height="10" fill="black"/>'
            '<rect class="a x" id="b" x="20" width="10" height="10"/><rect class="c" x="40" width="10" height="10"/>'
            '<g><rect class="a" y="20" width="10" height="10" style="fill:#ff0"/></g>'
            '<rect class="z" x="20" y="20" width="10" height="10"/>')
    img = np.asarray(shown(_svg(body)))
    assert tuple(img[5, 5]) == (0, 0, 255)  # the sheet beats the attribute
    assert tuple(img[5, 25]) == (0, 200, 0)  # the more specific rule wins
    assert tuple(img[5, 45]) == (255, 0, 0)
    assert tuple(img[25, 5]) == (255, 255, 0)  # the element's own style beats the sheet; "g > rect" is skipped
    assert tuple(img[25, 25]) == (0, 0, 0)  # no rule: the default fill
    assert (_ink(f'{sheet}<text x="10" y="45">K</text>') == _ink('<text x="10" y="45" font-size="40">K</text>')).all()


def test_a_gradient_is_drawn_as_its_mean_colour_and_an_unknown_paint_server_as_its_fallback():
    defs = ('<defs><linearGradient id="g"><stop offset="0" stop-color="#fff"/><stop offset="50%" '
            'style="stop-color:#000"/></linearGradient><radialGradient id="h" xlink:href="#g"/></defs>')
    body = (f'{defs}<rect width="30" height="20" fill="url(#g)"/><rect x="30" width="30" height="20" '
            'style="fill:url(\'#h\')"/><rect y="30" width="10" height="10" fill="url(#nowhere) #f00"/>'
            '<rect x="20" y="30" width="10" height="10" fill="url(#nowhere)"/>')
    img = np.asarray(shown(_svg(body).replace(b"<svg", b'<svg xmlns:xlink="http://www.w3.org/1999/xlink"')))
    # white to black over the first half, black after: a quarter of white on average
    assert tuple(img[10, 10]) == (64, 64, 64) and tuple(img[10, 40]) == (64, 64, 64)  # the stops it points at
    assert tuple(img[35, 5]) == (255, 0, 0) and tuple(img[35, 25]) == (0, 0, 0)
    loop = '<defs><linearGradient id="a" href="#b"/><linearGradient id="b" href="#a"/></defs>'
    assert _ink(f'{loop}<rect width="10" height="10" fill="url(#a)"/>')[5, 5]  # stops never found: drawn as ink


def test_an_image_in_a_data_url_is_drawn_where_it_is_placed_and_nothing_outside_is_read(tmp_path):
    import io

    raster = Image.new("RGBA", (20, 10), (0, 0, 255, 255))
    raster.paste((255, 0, 0, 0), (10, 0, 20, 10))  # its right half transparent
    png = io.BytesIO()
    raster.save(png, "PNG")
    url = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    body = (f'<rect width="60" height="60" fill="#0f0"/><image x="10" y="10" width="40" height="20" href="{url}"/>'
            f'<image x="0" y="40" width="20" height="20" preserveAspectRatio="none" xlink:href="{url}"/>')
    img = np.asarray(shown(_svg(body).replace(b"<svg", b'<svg xmlns:xlink="http://www.w3.org/1999/xlink"')))
    assert tuple(img[20, 15]) == (0, 0, 255)  # fitted whole into 40x20: its blue half
    assert tuple(img[20, 45]) == (0, 255, 0)  # its transparent half shows the ground
    assert tuple(img[55, 5]) == (0, 0, 255) and tuple(img[45, 15]) == (0, 255, 0)  # stretched to 20x20
    (tmp_path / "blue.png").write_bytes(png.getvalue())
    nested = base64.b64encode(_svg('<rect width="60" height="60"/>')).decode()
    outside = _svg(f'<image width="60" height="60" href="{tmp_path / "blue.png"}"/>'
                   '<image width="60" height="60" href="data:image/png;base64,!!!"/>'
                   f'<image width="60" height="60" href="data:image/svg+xml;base64,{nested}"/>')
    assert tuple(np.asarray(shown(outside))[30, 30]) == (255, 255, 255)  # a file, junk, an SVG: none drawn


def _inked_columns(img: Image.Image, ground: tuple[int, int, int]) -> np.ndarray:
    a = np.asarray(img).astype(int)
    return (np.abs(a - ground).sum(axis=2) > 60).any(axis=0)


def _runs(columns: np.ndarray) -> int:
    """Runs of inked columns: glyphs with blank columns between them."""
    return int(np.sum(columns[1:] & ~columns[:-1]) + columns[0])


GROUND = (240, 230, 220)
# two bars as glyphs, the second overlapping the first by a third of its width, a curve struck across both, and dots
OVERLAPPING = (f'<rect width="100%" height="100%" fill="rgb{GROUND}"/>'
               '<path d="M2 30 C40 10,80 50,118 30" stroke="rgb(0,160,0)" stroke-width="2" fill="none"/>'
               '<path fill="rgb(200,0,0)" d="M20 8 H50 V52 H20 Z"/><path fill="rgb(0,0,200)" d="M40 10 H70 V50 H40 Z"/>'
               '<circle cx="100" cy="10" r="1.5" fill="black"/><circle cx="10" cy="55" r="1.5" fill="black"/>')


def test_glyphs_drawn_apart_stand_alone_side_by_side_without_noise():
    doc = _svg(OVERLAPPING, 'width="120" height="60"', "0 0 120 60")
    page, apart = shown(doc), load_image(doc)
    assert _runs(_inked_columns(page, GROUND)) == 1  # as the page shows it: one blot of ink, the curve across
    cols = _inked_columns(apart, GROUND)
    assert _runs(cols) == 2 and apart.height == 60
    a = np.asarray(apart).astype(int)
    first, second = np.flatnonzero(cols)[[0, -1]]
    assert tuple(a[30, first + 2]) == (200, 0, 0) and tuple(a[30, second - 2]) == (0, 0, 200)  # each glyph whole
    assert tuple(a[30, first - 1]) == GROUND  # the ground is the page's commonest colour
    assert not ((a[..., 1] > 100) & (a[..., 0] < 60)).any()  # the green curve is gone
    assert not (a.max(axis=2) < 40).any()  # and the black dots
    assert cols.sum() == 62  # 30 + 30 units wide, each whole: the blue one no longer hides part of the red


def test_a_glyph_drawn_twice_stays_one_and_shapes_that_are_no_glyphs_draw_the_page():
    shadowed = (f'<rect width="100%" height="100%" fill="rgb{GROUND}"/>'
                '<path fill="gray" d="M21 9 H51 V53 H21 Z"/><path fill="rgb(200,0,0)" d="M20 8 H50 V52 H20 Z"/>'
                '<path fill="gray" d="M71 11 H91 V51 H71 Z"/><path fill="rgb(0,0,200)" d="M70 10 H90 V50 H70 Z"/>'
                # a narrow glyph, its shadow moved a third of its width: their boxes' union is twice their overlap
                '<path fill="gray" d="M102 12 H108 V52 H102 Z"/><path fill="rgb(0,120,0)" d="M100 10 H106 V50 H100 Z"/>')
    doc = _svg(shadowed, 'width="120" height="60"', "0 0 120 60")
    assert _runs(_inked_columns(load_image(doc), GROUND)) == 3  # each glyph with its shadow, not six
    # one element holding all the text (too wide to be one glyph), beside glyph-like shapes or alone; one glyph; ten
    # glyph-like shapes heaped up (more than GLYPH_PAGES pages of them); forty thin ones (more pages wide, drawn
    # apart); strokes; dots: the page as it shows
    text = '<path fill="black" d="M5 10 H30 V50 H5 Z M40 10 H65 V50 H40 Z M75 10 H100 V50 H75 Z"/>'
    blots = '<ellipse cx="20" cy="30" rx="8" ry="12" fill="rgb(0,0,200)"/><ellipse cx="90" cy="30" rx="8" ry="12"/>'
    stacked = "".join(f'<rect x="{k}" y="5" width="45" height="50" fill="rgb({20 * k},0,0)"/>' for k in range(10))
    combed = "".join(f'<rect x="{3 * k}" y="20" width="1" height="20"/>' for k in range(40))  # apart: 3.4 pages wide
    for body in (text, text + blots, blots[:blots.index("/>") + 2], stacked, combed,  # stacked: more ink than glyphs have
                 '<path d="M10 10 L10 50 M30 10 L30 50" stroke="black" stroke-width="4" fill="none"/>',
                 '<circle cx="30" cy="30" r="2"/><circle cx="60" cy="30" r="2"/>'):
        doc = _svg(body, 'width="120" height="60"', "0 0 120 60")
        assert (np.asarray(load_image(doc)) == np.asarray(shown(doc))).all()


def test_text_characters_are_glyphs_of_their_own_when_drawn_apart():
    doc = _svg('<text x="4" y="44" font-size="40" letter-spacing="-8">WM</text>', 'width="90" height="60"',
               "0 0 90 60")
    assert _runs(_inked_columns(shown(doc), (255, 255, 255))) == 1  # drawn close, they touch
    assert _runs(_inked_columns(load_image(doc), (255, 255, 255))) == 2
