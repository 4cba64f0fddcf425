"""Font sources for pretraining: held-out families never used, every face covers the alphabet, licences known."""

from pathlib import Path

import pytest
from fontTools.fontBuilder import FontBuilder
from fontTools.pens.ttGlyphPen import TTGlyphPen

import captcha.data.fonts as fonts
from captcha.data.fonts import (
    HELD_OUT_PREFIXES,
    by_family,
    corpus_shortfall,
    covers_alphabet,
    family_of,
    is_held_out,
    matplotlib_faces,
    missing_font_packages,
    pretraining_faces,
    renders_text,
)


def test_families_group_weights_and_styles():
    assert family_of("/x/Lato-BoldItalic.ttf") == family_of("/y/Lato-Hairline.ttf") == "lato"
    assert family_of("/x/STIXGeneralBolIta.ttf") == family_of("/x/STIXGeneral.ttf") == "stixgeneral"
    assert family_of("/x/AccanthisADFStdNo2-Bold.otf") == "accanthisadf"


def test_the_benchmark_families_are_held_out():
    for name in ("LiberationSans-Regular.ttf", "FreeMono.ttf", "NimbusRoman-Bold.otf", "C059-Roman.otf",
                 "Carlito-Bold.ttf", "texgyreheros-regular.otf", "URWGothic-Book.otf"):
        assert is_held_out("/usr/share/fonts/" + name), name
    for name in ("Courier Prime Bold.otf", "Century-Catalogue.ttf", "SwitzeraADF-Regular.otf"):  # near copies
        assert is_held_out("/usr/share/fonts/" + name), name
    assert not is_held_out("/usr/share/fonts/Lato-Regular.ttf")


def test_pretraining_faces_cover_the_alphabet_and_leave_the_held_out_families_alone():
    faces = pretraining_faces()
    assert len(faces) >= len([f for f in matplotlib_faces() if covers_alphabet(f.path)]) >= 8
    assert not [f.path for f in faces if Path(f.path).name.startswith(HELD_OUT_PREFIXES)]
    assert all(covers_alphabet(f.path) for f in faces)
    assert all(f.licence and f.licence != "unknown" for f in faces if f.source == "matplotlib")
    assert sum(len(v) for v in by_family(faces).values()) == len(faces)


def _font(path: Path, draw) -> str:
    """A TrueType file mapping each of 0-9A-Za-z to a glyph that ``draw(pen)`` outlines (nothing: empty)."""
    names = [f"g{ord(c)}" for c in fonts.LATIN]
    builder = FontBuilder(1000, isTTF=True)
    builder.setupGlyphOrder([".notdef", *names])
    builder.setupCharacterMap({ord(c): n for c, n in zip(fonts.LATIN, names)})
    glyphs = {}
    for name in [".notdef", *names]:
        pen = TTGlyphPen(None)
        draw(pen)
        glyphs[name] = pen.glyph()
    builder.setupGlyf(glyphs)
    builder.setupHorizontalMetrics({n: (600, 0) for n in glyphs})
    builder.setupHorizontalHeader(ascent=800, descent=-200)
    builder.setupNameTable({"familyName": "Test", "styleName": "Regular"})
    builder.setupOS2()
    builder.setupPost()
    builder.save(str(path))
    return str(path)


def _box(pen, hole: bool = False) -> None:
    for (x0, y0, x1, y1), clockwise in (((50, 0, 550, 700), True), ((150, 150, 450, 550), False))[:1 + hole]:
        corners = [(x0, y0), (x0, y1), (x1, y1), (x1, y0)]
        pen.moveTo(corners[0])
        for xy in (corners[1:] if clockwise else corners[:0:-1]):
            pen.lineTo(xy)
        pen.closePath()


def test_a_face_must_draw_each_character_and_not_as_a_filled_box(tmp_path):
    """A cmap can cover the alphabet with empty outlines or with glyphs cut out of a black box (OCR-B's E and X
    cuts): neither teaches a letter's shape, so neither is a pretraining face."""
    assert renders_text(_font(tmp_path / "rings.ttf", lambda pen: _box(pen, hole=True)))
    assert not renders_text(_font(tmp_path / "empty.ttf", lambda pen: None))
    assert not renders_text(_font(tmp_path / "boxes.ttf", _box))
    assert covers_alphabet(str(tmp_path / "empty.ttf"))  # the cmap alone would have taken it
    assert not renders_text(str(tmp_path / "missing.ttf"))
    assert all(renders_text(f.path) for f in pretraining_faces())


def test_a_licence_named_on_the_line_after_its_field_or_in_prose_is_read():
    assert fonts._licence_in("Files: *\nLicense:\n    Public Domain.\n", "x") == "Public Domain"
    assert fonts._licence_in("License:\n This Font Software is licensed under the SIL Open Font License,\n", "x") \
        == "OFL-1.1"
    assert fonts._licence_in("free to distribute under the terms of the GNU General Public License.", "x") == "GPL"
    assert fonts._licence_in("License: MIT\n", "x") == "MIT"
    assert fonts._licence_in("no words about it", "/doc") == "see /doc"


def test_a_file_that_is_not_a_font_covers_nothing(tmp_path):
    bogus = tmp_path / "bogus.ttf"
    bogus.write_bytes(b"not a font")
    assert not covers_alphabet(str(bogus))


@pytest.mark.skipif(any(missing_font_packages()), reason="not every pretraining font package is installed (the Debian "
                    "fonts-* packages of captcha/data/fonts.py and the PyPI `pretrain` extra)")
def test_the_pretraining_machine_has_150_faces_from_three_sources():
    faces = pretraining_faces()
    assert len(faces) >= 150
    assert {f.source.split(":")[0] for f in faces} == {"matplotlib", "debian", "pypi"}
    assert all(f.licence != "unknown" for f in faces)


def test_missing_font_packages_are_named_and_a_package_counts_by_the_files_it_owns(monkeypatch):
    owners = {"/usr/share/fonts/truetype/tlwg/Purisa.ttf": "fonts-tlwg-purisa-ttf",
              "/usr/share/fonts/truetype/lato/Lato-Regular.ttf": "fonts-lato"}
    monkeypatch.setattr(fonts, "_debian_owners", lambda: owners)
    missing, pypi = missing_font_packages()
    assert all(p.startswith("fonts-") for p in missing) and not any(p.startswith("fonts-") for p in pypi)
    assert "fonts-tlwg-purisa" not in missing and "fonts-lato" not in missing  # purisa's fonts are in its -ttf package
    assert "fonts-noto-core" in missing and "fonts-go" in missing
    assert len(missing) >= len(fonts.SYSTEM_PACKAGES_PRETRAIN.split()) - 2


def test_fewer_faces_than_the_shipped_weights_were_made_from_is_said_with_its_fix(monkeypatch):
    found = len(pretraining_faces())
    assert corpus_shortfall(found) == ""
    monkeypatch.setattr(fonts, "missing_font_packages", lambda: (["fonts-lato", "fonts-go"], ["font-roboto"]))
    note = corpus_shortfall(found + 5)
    assert f"finds {found} font faces" in note and f"made from {found + 5}" in note
    assert "apt-get install fonts-lato fonts-go" in note and "pip install font-roboto" in note
