import hashlib
from pathlib import Path

from captcha.charset import Charset
from captcha.config import SynthConfig
from captcha.data.synth import MIN_FONTS, font_files, synth_dataset


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_fonts_come_from_packages():
    fonts = font_files()
    assert len(fonts) >= MIN_FONTS
    assert not any(f.startswith("/usr/share/fonts") for f in fonts)


def test_same_seed_gives_byte_identical_files(tmp_path):
    cfg = SynthConfig(seed=7, train_per_class=2, val_per_class=2, captchas=5, charset=Charset("AB3"))
    synth_dataset(tmp_path / "a", cfg)
    synth_dataset(tmp_path / "b", cfg)
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert a == b and len(a) == 3 * 2 * 2 + 5 + 1
    synth_dataset(tmp_path / "c", SynthConfig(seed=8, train_per_class=2, val_per_class=2, captchas=5, charset=Charset("AB3")))
    assert _digest(tmp_path / "c") != a


def test_layout_and_captchas_are_made_of_val_cells(tiny_data):
    from PIL import Image

    assert sorted(p.name for p in (tiny_data / "chars" / "train").iterdir()) == sorted("ABC123")
    labels = (tiny_data / "captchas" / "val" / "labels.csv").read_text().splitlines()
    assert labels[0] == "filename,label" and len(labels) == 21
    name, label = labels[1].split(",")
    assert name.startswith(label + "_")
    cap = Image.open(tiny_data / "captchas" / "val" / name)
    cell = Image.open(next((tiny_data / "chars" / "val" / label[0]).iterdir()))
    assert cap.size == (4 * cell.width, cell.height)
    # the first cell of the captcha is one of the validation images of its character
    first = cap.crop((0, 0, cell.width, cell.height)).tobytes()
    assert any(Image.open(p).convert("RGB").tobytes() == first for p in (tiny_data / "chars" / "val" / label[0]).iterdir())
