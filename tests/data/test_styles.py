"""The held-out styles: deterministic per seed, each appearance family really changes the glyph, none of them
is named as a family the pretraining corpus draws (warped-mixed's warps, dots and curve, ruled-ripple's wave, lines
and background and negative-mixed's dark ground are like the synthesis's own by design: only their fonts are
unseen), and a colourful captcha inks each glyph in its own colour."""

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captcha.data.fonts import held_out_files
from captcha.data.styles import STYLES, HeldOutStyle, render_styled
from captcha.errors import DataError

try:
    held_out_files(("LiberationSans", "FreeSans"))
    HAVE_FONTS = True
except DataError:
    HAVE_FONTS = False

needs_fonts = pytest.mark.skipif(not HAVE_FONTS, reason="Debian font packages (fonts-liberation, fonts-freefont-ttf) "
                                                        "not installed")


def _pixels(img) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


@needs_fonts
@pytest.mark.parametrize("name", list(STYLES))
def test_each_style_is_deterministic_per_seed(name):
    style = STYLES[name]
    try:
        a, b = (render_styled("K", random.Random(7), style) for _ in range(2))
    except DataError as exc:
        pytest.skip(str(exc))
    assert a.size == style.cell and a.tobytes() == b.tobytes()
    assert a.tobytes() != render_styled("K", random.Random(8), style).tobytes()


FAMILIES = {"halftone": dict(halftone=3), "stripes": dict(stripes=5), "grid": dict(grid=9), "erode": dict(erode=0.3),
            "pixelate": dict(pixelate=2), "motion blur": dict(motion=5), "warp": dict(warp=0.2),
            "colourful": dict(colourful=True), "dots": dict(dots=30), "crossing": dict(crossing=True),
            "ripple": dict(ripple=0.15), "rules": dict(rules=3), "tinted": dict(tinted=True),
            "negative": dict(negative=True)}


@needs_fonts
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_distortion_family_changes_the_glyph(family):
    plain = HeldOutStyle("plain", ("LiberationSans", "FreeSans"), (40, 40), rotation=0.0)
    clean = _pixels(render_styled("K", random.Random(3), plain))
    changed = _pixels(render_styled("K", random.Random(3), dataclasses.replace(plain, **FAMILIES[family])))
    assert np.abs(changed - clean).mean() > 1.0, family


def test_missing_fonts_say_which_packages_to_install():
    with pytest.raises(DataError, match="fonts-liberation"):
        held_out_files(("NoSuchFontFamilyAnywhere",))


def test_held_out_styles_use_neither_pretraining_fonts_nor_corpus_families():
    from captcha.data.corpus import FAMILIES as CORPUS
    from captcha.data.fonts import is_held_out, pretraining_faces

    fields = {f.name for f in dataclasses.fields(HeldOutStyle)} - {"name", "families", "cell", "rotation"}
    assert not fields & set(CORPUS), fields & set(CORPUS)
    pretraining = {Path(f.path).name for f in pretraining_faces()}
    for style in STYLES.values():
        assert all(is_held_out(name + "-Regular.ttf") for name in style.families), style.name
        assert not any(name.startswith(style.families) for name in pretraining), style.name


@needs_fonts
def test_held_out_captcha_sets_are_the_same_on_every_run_and_labelled_in_their_alphabet(tmp_path):
    from captcha.charset import Charset
    from captcha.data.layout import read_captcha_labels
    from captcha.data.styles import CAPTCHA_STYLES, write_captcha_set

    for name, spec in CAPTCHA_STYLES.items():
        a, b = write_captcha_set(name, tmp_path / f"{name}-a", 6), write_captcha_set(name, tmp_path / f"{name}-b", 6)
        samples = sorted(read_captcha_labels(a, Charset(), problems=[]), key=lambda s: s.path.name)
        assert len(samples) == 6 and len({s.label for s in samples}) > 1
        lengths = {len(s.label) for s in samples}
        assert lengths <= set(range(spec.length, max(spec.length, spec.longest) + 1))
        assert len(lengths) > 1 if spec.longest else lengths == {spec.length}  # a site whose lengths vary, or one
        assert all(set(s.label) <= set(spec.alphabet.upper()) for s in samples)
        assert all((a / p.name).read_bytes() == (b / p.name).read_bytes() for p in (s.path for s in samples)), name
        assert (a / "labels.csv").read_text() == (b / "labels.csv").read_text()


@needs_fonts
def test_a_held_out_captcha_puts_its_glyphs_on_one_canvas_and_a_band_in_white_margins():
    from captcha.data.styles import CAPTCHA_STYLES, render_styled_captcha

    spec = dataclasses.replace(CAPTCHA_STYLES["lso-striped-upper4"], spacing=(0.0, 0.0))
    short, long = (render_styled_captcha(t, random.Random(1), spec) for t in ("AB", "ABABAB"))
    assert short.height == long.height and long.width > 2 * short.width  # one line, wider by its glyphs
    band = render_styled_captcha("AB", random.Random(1), dataclasses.replace(spec, band=True))
    white = (_pixels(band.convert("RGB")) == 255).all(-1).mean()
    assert band.height > short.height and white > 0.5  # at least 1.2 x 1.8 times its area, the rest white


@needs_fonts
def test_a_colourful_captcha_inks_each_glyph_in_its_own_colour(monkeypatch):
    from captcha.data.styles import CAPTCHA_STYLES, render_styled_captcha

    spec = dataclasses.replace(CAPTCHA_STYLES["lso-warped-upper4"], spacing=(0.5, 0.5), arc=0.0)
    quiet = dataclasses.replace(STYLES[spec.style], dots=0, crossing=False, warp=0.0, rotation=0.0)

    def ink_gap(style: HeldOutStyle) -> float:  # how far apart the two glyphs' inks are
        monkeypatch.setitem(STYLES, spec.style, style)
        img = _pixels(render_styled_captcha("HM", random.Random(2), spec).convert("RGB"))
        halves = img[:, : img.shape[1] // 2].reshape(-1, 3), img[:, img.shape[1] // 2:].reshape(-1, 3)
        inks = [np.median(h[h.sum(1) <= np.quantile(h.sum(1), 0.05)], 0) for h in halves]
        return float(np.abs(inks[0] - inks[1]).max())

    assert ink_gap(quiet) > 30
    assert ink_gap(dataclasses.replace(quiet, colourful=False)) < 10


def test_blinking_glyphs_are_each_fully_inked_in_one_frame_and_gone_in_another():
    from captcha.data.styles import blink_alphas

    alphas = blink_alphas(5, 5)
    assert alphas[0, 0] == 0.0  # the first frame lacks the first glyph
    assert (alphas.max(0) == 1.0).all() and (alphas.min(0) == 0.0).all()
    assert (alphas.sum(1) == alphas[0].sum()).all()  # every frame as inked as the next


@needs_fonts
def test_a_blinking_site_is_written_as_gifs_whose_first_frame_lacks_a_glyph_the_merge_shows(tmp_path):
    from captcha.data.images import load_image
    from captcha.data.styles import write_captcha_set

    out = write_captcha_set("lso-blink-upper5", tmp_path / "site", 2)
    gif = out / "00000.gif"
    with Image.open(gif) as img:
        assert img.n_frames == 5
        first = _pixels(img.convert("RGB")).astype(int)
    merged = _pixels(load_image(gif)).astype(int)
    ground = np.median(first[0], 0)
    left = np.s_[:, : first.shape[1] // 3]  # where the first glyph stands
    inked = [(np.abs(a[left] - ground).sum(-1) > 120).sum() for a in (merged, first)]
    assert inked[0] > 1.5 * inked[1]


@needs_fonts
def test_an_svg_site_is_written_as_svg_documents_of_outlines_that_are_read_as_drawn(tmp_path):
    from captcha.data.images import load_image
    from captcha.data.styles import CAPTCHA_STYLES, write_captcha_set

    out = write_captcha_set("lso-svg-upper5", tmp_path / "site", 2)
    doc = (out / "00000.svg").read_text()
    assert doc.startswith("<svg") and doc.count('<path fill="rgb') == CAPTCHA_STYLES["lso-svg-upper5"].length
    ink = _pixels(load_image(out / "00000.svg").convert("L"))
    assert (ink < 150).mean() > 0.05 and (ink > 200).mean() > 0.4  # glyphs filled on a light ground


@needs_fonts
def test_a_shadowed_svg_site_writes_each_outline_twice_and_its_glyphs_are_read_apart(tmp_path):
    from captcha.data.images import load_image
    from captcha.data.styles import CAPTCHA_STYLES, write_captcha_set

    spec = CAPTCHA_STYLES["lso-svg-shadow6"]
    out = write_captcha_set(spec.name, tmp_path / "site", 3)
    for k in range(3):
        doc = (out / f"{k:05d}.svg").read_text()
        assert doc.count('<path fill="rgb') == 2 * spec.length and doc.count("translate(") == spec.length
        ink = (_pixels(load_image(out / f"{k:05d}.svg").convert("L")) < 200).any(axis=0)  # the ground is lighter
        assert int(np.sum(ink[1:] & ~ink[:-1]) + ink[0]) == spec.length  # each glyph and its shadow one, apart


def test_an_svg_text_site_writes_a_text_element_a_glyph_each_drawn_in_its_cell(tmp_path):
    from captcha.data.images import load_image
    from captcha.data.styles import CAPTCHA_STYLES, STYLES, write_captcha_set

    spec = CAPTCHA_STYLES["lso-svgtext-upper5"]
    out = write_captcha_set(spec.name, tmp_path / "site", 2)
    doc = (out / "00000.svg").read_text()
    assert doc.count("<text ") == spec.length and doc.count("<circle ") >= 15
    ink = _pixels(load_image(out / "00000.svg", svg_apart=False).convert("L")) < 150  # the page as it shows
    w = STYLES[spec.style].cell[0]
    step = w * 0.85  # a cell a glyph, less the overlap the site draws
    cells = [ink[:, round(w * 0.6 + i * step):round(w * 0.6 + (i + 1) * step)].mean() for i in range(spec.length)]
    assert min(cells) > 0.12 and ink.mean() < 0.5  # every glyph inked where its cell is, on a light ground
