"""Font sources for pretraining: held-out families never used, every face covers the alphabet, licences known."""

from pathlib import Path

import pytest

from captcha.data.fonts import (
    HELD_OUT_PREFIXES,
    by_family,
    covers_alphabet,
    debian_faces,
    family_of,
    is_held_out,
    matplotlib_faces,
    pretraining_faces,
    pypi_faces,
)


def test_families_group_weights_and_styles():
    assert family_of("/x/Lato-BoldItalic.ttf") == family_of("/y/Lato-Hairline.ttf") == "lato"
    assert family_of("/x/STIXGeneralBolIta.ttf") == family_of("/x/STIXGeneral.ttf") == "stixgeneral"
    assert family_of("/x/AccanthisADFStdNo2-Bold.otf") == "accanthisadf"


def test_the_benchmark_families_are_held_out():
    for name in ("LiberationSans-Regular.ttf", "FreeMono.ttf", "NimbusRoman-Bold.otf", "C059-Roman.otf",
                 "Carlito-Bold.ttf", "texgyreheros-regular.otf", "URWGothic-Book.otf"):
        assert is_held_out("/usr/share/fonts/" + name), name
    assert not is_held_out("/usr/share/fonts/Lato-Regular.ttf")


def test_pretraining_faces_cover_the_alphabet_and_leave_the_held_out_families_alone():
    faces = pretraining_faces()
    assert len(faces) >= len([f for f in matplotlib_faces() if covers_alphabet(f.path)]) >= 8
    assert not [f.path for f in faces if Path(f.path).name.startswith(HELD_OUT_PREFIXES)]
    assert all(covers_alphabet(f.path) for f in faces)
    assert all(f.licence and f.licence != "unknown" for f in faces if f.source == "matplotlib")
    assert sum(len(v) for v in by_family(faces).values()) == len(faces)


def test_a_file_that_is_not_a_font_covers_nothing(tmp_path):
    bogus = tmp_path / "bogus.ttf"
    bogus.write_bytes(b"not a font")
    assert not covers_alphabet(str(bogus))


@pytest.mark.skipif(not (debian_faces() and pypi_faces()), reason="pretraining fonts not installed "
                    "(Debian fonts-* packages and the PyPI `pretrain` extra)")
def test_the_pretraining_machine_has_150_faces_from_three_sources():
    faces = pretraining_faces()
    assert len(faces) >= 150
    assert {f.source.split(":")[0] for f in faces} == {"matplotlib", "debian", "pypi"}
    assert all(f.licence != "unknown" for f in faces)
