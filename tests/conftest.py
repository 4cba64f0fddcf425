"""Small data made by the tests themselves: a tiny synthetic course dataset and a tiny model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def _share_the_cores() -> None:
    """Under pytest-xdist, give each worker its share of the cores: workers that each start a thread per
    core would fight over them (set before torch is imported; a thread count set by the user stays)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        per = str(max(1, cores // workers))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, per)


_share_the_cores()


@pytest.fixture(autouse=True, scope="session")
def _private_torch_home(tmp_path_factory):
    """Keep tests away from the user's real caches (torch's, with its ImageNet file if any, and ours)."""
    saved = {k: os.environ.get(k) for k in ("TORCH_HOME", "CAPTCHA_CACHE")}
    os.environ["TORCH_HOME"] = str(tmp_path_factory.mktemp("torch-home"))
    os.environ["CAPTCHA_CACHE"] = str(tmp_path_factory.mktemp("captcha-cache"))
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def no_int8_check(monkeypatch):
    """Training as on a machine without ONNX Runtime: no int8 check at the end of each run (2-3 s of a test-sized run,
    most of it ONNX Runtime's quantiser). For tests about something else; the check itself is tested in
    tests/inference/test_export.py and by the training tests that keep it (the default path's among them)."""
    import captcha.training.train as train_module

    monkeypatch.setattr(train_module, "has_onnxruntime", lambda: False)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A course-layout dataset over 6 characters: 12 train / 4 val images each, 20 val captchas."""
    from captcha.charset import Charset
    from captcha.config import SynthConfig
    from captcha.data.synth import synth_dataset

    root = tmp_path_factory.mktemp("tiny") / "data"
    synth_dataset(root, SynthConfig(seed=3, train_per_class=12, val_per_class=4, captchas=20,
                                    charset=Charset("ABC123")))
    return root


@pytest.fixture(scope="session")
def tiny_model(tiny_data, tmp_path_factory) -> Path:
    """A recognizer on the shipped glyph backbone, frozen (head only), 32 px, for 3 quick epochs, not
    refit (quick, and weak enough to misread a few captchas)."""
    from captcha.config import TrainConfig
    from captcha.training.train import train

    out = tmp_path_factory.mktemp("model") / "model.pt"
    train(TrainConfig(data=str(tiny_data), out=str(out), charset="ABC123", pretrained="glyphs", freeze="all",
                      size=(32, 32), epochs=3, batch_size=16, aug_passes=1, refit=False))
    return out


@pytest.fixture(scope="session")
def flat_captchas(tmp_path_factory):
    """A flat folder of 40 labelled captchas (labels in labels.csv), as a real site's set would be."""
    from captcha.charset import Charset
    from captcha.config import SynthConfig
    from captcha.data.synth import synth_dataset

    root = tmp_path_factory.mktemp("flat")
    synth_dataset(root / "src", SynthConfig(seed=5, train_per_class=8, val_per_class=1, captchas=1,
                                            train_captchas=40, charset=Charset("ABC123")))
    return root / "src" / "captchas" / "train"


@pytest.fixture(scope="session")
def mixed_captchas(flat_captchas, tmp_path_factory):
    """The flat captchas with every other one cut to its first three cells: a site whose lengths vary (3 and 4)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("mixed")
    rows = ["filename,label"]
    for line in (flat_captchas / "labels.csv").read_text().splitlines()[1:]:
        name, label = line.split(",")
        img = Image.open(flat_captchas / name)
        if len(rows) % 2:
            img, label = img.crop((0, 0, img.width * 3 // 4, img.height)), label[:3]
        img.save(root / name)
        rows.append(f"{name},{label}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="session")
def six_captchas(flat_captchas, tmp_path_factory):
    """The first six flat captchas: too few to hold any out (`config.MIN_SLICE`)."""
    import shutil

    root = tmp_path_factory.mktemp("six")
    lines = (flat_captchas / "labels.csv").read_text().splitlines()[:7]
    for line in lines[1:]:
        shutil.copy(flat_captchas / line.split(",")[0], root)
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root
