"""Shared by the inference tests: a solver over the tiny model, the tiny model exported (fp32 and int8), and a
corpus of odd image files."""

import pytest
from hostile import make_corpus
from PIL import Image

from captcha.inference.export import export_onnx
from captcha.inference.load import load_solver


@pytest.fixture(scope="module")
def solver(tiny_model):
    return load_solver(tiny_model)


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "m.onnx"
    return export_onnx(tiny_model, out, quantize=True)


@pytest.fixture(scope="module")
def corpus(tiny_data, tmp_path_factory):
    good = next((tiny_data / "captchas" / "val").glob("*.png"))
    return make_corpus(tmp_path_factory.mktemp("odd"), Image.open(good))
