"""The wheel a user installs carries the shipped backbone, and a normal install finds it."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from captcha.config import SHIPPED_READER
from captcha.nn.networks import DEFAULT_GLYPHS, SHIPPED_BACKBONES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src") / "captcha-transfer"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                                             "data", "runs", "checkpoints", ".pytest_cache"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(src)], check=True, capture_output=True, text=True)
    (whl,) = out.glob("captcha_transfer-*.whl")
    return whl


def test_the_wheel_carries_the_backbone_and_its_card(wheel):
    with zipfile.ZipFile(wheel) as zf:
        sizes = {i.filename: i.file_size for i in zf.infolist()}
    for name in (*SHIPPED_BACKBONES.values(), SHIPPED_READER):  # every shipped backbone, the reader, their cards
        assert sizes[f"captcha/weights/{name}"] > 10_000_000
        assert f"captcha/weights/{name[:-3]}.md" in sizes


def test_an_installed_wheel_trains_from_the_shipped_backbone(wheel, tmp_path):
    """Installed outside the source tree, --pretrained auto resolves to the glyph backbone, not to random init."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, text=True)
    code = ("import captcha, captcha.nn.networks as m; print(captcha.__file__); print(m.shipped_backbone()); "
            "print(m.resolve_pretrained('auto')[0]); from captcha.inference.load import solving_checkpoint; "
            "print(solving_checkpoint(None))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": ""},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0].startswith(str(target)) and out[1].startswith(str(target))
    assert out[2] == f"glyphs:{SHIPPED_BACKBONES[DEFAULT_GLYPHS]}"
    assert out[3].startswith(str(target)) and out[3].endswith(SHIPPED_READER)  # solving with no training
