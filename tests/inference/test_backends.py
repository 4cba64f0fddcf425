"""The two runtimes of an exported file: the same readings, the same file described alike, and the choice between them."""

import importlib.util
import threading

import numpy as np
import pytest

from captcha.config import ONNX_RUNTIME_ENV
from captcha.errors import ConfigError
from captcha.inference import backends
from captcha.inference.backends import OnnxBackend, onnx_runtime
from captcha.inference.load import general_reader_path, load_solver
from captcha.inference.solver import Solver

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="OpenVINO is not installed")
RUNTIMES = ("openvino", "onnxruntime")


@pytest.fixture(scope="module")
def reader_file():
    path = general_reader_path().with_name("reader-ctc.int8.onnx")
    if not path.is_file():
        pytest.skip("the shipped reader's compiled file is not in this checkout")
    return path


def _crops(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, h, w)).astype(np.float32)


@needs_openvino
def test_a_float_file_reads_the_same_on_both_runtimes(exported):
    ov, ort = (OnnxBackend(exported["onnx"], runtime=r) for r in RUNTIMES)
    x = _crops(8, *ov.metadata()["preprocess"]["size"])
    # a float file runs all in fp32 on OpenVINO too: it must match ONNX Runtime (and so PyTorch) closely
    np.testing.assert_allclose(ov(x), ort(x), atol=1e-4)
    assert (ov.runtime, ort.runtime) == RUNTIMES and ov.name == ort.name == "onnx"
    assert ov.metadata() == ort.metadata() and ov.classes == ort.classes and ov.any_width is ort.any_width is False
    assert ov.stored("no such entry") is None and ort.stored("no such entry") is None


@needs_openvino
def test_an_int8_file_of_any_width_reads_alike_on_both_runtimes(reader_file):
    ov, ort = (OnnxBackend(reader_file, runtime=r) for r in RUNTIMES)
    assert ov.name == ort.name == "onnx-int8" and ov.any_width and ort.any_width and ov.classes == ort.classes
    for width in (160, 224):  # one compiled file serves every width and batch size
        x = _crops(3, 48, width, seed=width)
        a, b = ov(x), ort(x)
        assert a.shape == b.shape and np.mean(a.argmax(-1) == b.argmax(-1)) >= 0.95
    assert ov(_crops(0, 48, 160)).shape == ort(_crops(0, 48, 160)).shape == (0, 20, ov.classes)


@needs_openvino
def test_openvino_reads_a_batch_in_parts_of_powers_of_two_as_it_would_whole(reader_file):
    """Memory OpenVINO keeps for each batch size it meets stays bounded: 37 captchas are read as 32 + 4 + 1, each
    row as it reads alone."""
    backend = OnnxBackend(reader_file, runtime="openvino")
    sizes = []
    infer = backend.session._infer
    backend.session._infer = lambda x: sizes.append(len(x)) or infer(x)
    x = _crops(37, 48, 160, seed=1)
    whole = backend(x)
    assert sizes == [32, 4, 1] and whole.shape[0] == 37
    np.testing.assert_allclose(whole[33:37], backend(x[33:37]), atol=1e-5)


@needs_openvino
def test_the_shipped_reader_solves_alike_on_both_runtimes(tiny_data, reader_file):
    paths = sorted(str(p) for p in (tiny_data / "captchas" / "val").glob("*.png"))[:12]
    read = {}
    for runtime in RUNTIMES:
        backend = OnnxBackend(reader_file, runtime=runtime)
        solver = Solver.from_metadata(backend, backend.metadata())
        assert solver.runtime == runtime
        read[runtime] = [r.solution.text for r in solver.solve_batch(paths)]
    assert np.mean([a == b for a, b in zip(*read.values())]) >= 0.9


@needs_openvino
def test_threads_calling_one_backend_at_once_each_get_their_own_answer(exported):
    backend = OnnxBackend(exported["onnx"], runtime="openvino")
    inputs = [_crops(4, *backend.metadata()["preprocess"]["size"], seed=i) for i in range(8)]
    expected = [backend(x) for x in inputs]
    got: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        for _ in range(5):
            got[i] = backend(inputs[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        np.testing.assert_array_equal(got[i], expected[i])


def test_the_runtime_is_openvino_where_installed_else_onnx_runtime(monkeypatch):
    monkeypatch.delenv(ONNX_RUNTIME_ENV, raising=False)
    installed = {"onnxruntime"}
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: object() if name in installed else None)
    assert onnx_runtime() == "onnxruntime"
    installed.add("openvino")
    assert onnx_runtime() == "openvino"
    monkeypatch.setenv(ONNX_RUNTIME_ENV, "onnxruntime")
    assert onnx_runtime() == "onnxruntime" and onnx_runtime("openvino") == "openvino"
    monkeypatch.setenv(ONNX_RUNTIME_ENV, "tensorrt")
    with pytest.raises(ConfigError, match="unknown ONNX runtime 'tensorrt'.*openvino, onnxruntime"):
        onnx_runtime()
    installed.discard("openvino")
    monkeypatch.setenv(ONNX_RUNTIME_ENV, "openvino")
    with pytest.raises(ConfigError, match="openvino is not installed.*pip install openvino"):
        onnx_runtime()


def test_the_environment_picks_the_runtime_a_solver_loads(exported, monkeypatch):
    monkeypatch.setenv(ONNX_RUNTIME_ENV, "onnxruntime")
    assert load_solver(exported["onnx"]).runtime == "onnxruntime"
    assert load_solver(exported["onnx"], backend="auto").backend_name == "onnx"


@needs_openvino
def test_openvino_keeps_its_compiled_network_where_it_can_and_loads_without_where_it_cannot(exported, tmp_path):
    x = _crops(2, *OnnxBackend(exported["onnx"], runtime="onnxruntime").metadata()["preprocess"]["size"])
    kept = OnnxBackend(exported["onnx"], runtime="openvino", blobs=tmp_path / "blobs")
    assert list((tmp_path / "blobs").glob("*.blob"))
    again = OnnxBackend(exported["onnx"], runtime="openvino", blobs=tmp_path / "blobs")  # from the kept network
    np.testing.assert_array_equal(kept(x), again(x))
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    np.testing.assert_array_equal(OnnxBackend(exported["onnx"], runtime="openvino", blobs=blocker)(x), kept(x))


@needs_openvino
def test_an_onnx_file_runs_on_the_threads_the_process_is_given(exported, monkeypatch):
    from captcha.config import THREADS_ENV

    def used(backend: OnnxBackend) -> int:
        session = backend.session
        if backend.runtime == "openvino":
            return int(session.compiled.get_property("INFERENCE_NUM_THREADS"))
        return session.session.get_session_options().intra_op_num_threads

    for value, expected in (("1", 1), ("2", 2), ("", None), ("0", None), ("four", None)):
        monkeypatch.setenv(THREADS_ENV, value)
        assert backends.process_threads() == expected
        for runtime in RUNTIMES:
            if expected is not None:
                assert used(OnnxBackend(exported["onnx"], runtime=runtime)) == expected, (runtime, value)
                assert used(OnnxBackend(exported["onnx"], 3 - expected, runtime=runtime)) == 3 - expected  # asked for


@needs_openvino
def test_a_file_opened_again_from_the_kept_network_is_not_read_and_a_changed_file_is(exported, reader_file, tmp_path,
                                                                                      monkeypatch):
    import shutil

    import openvino as ov

    from captcha.inference.export import set_metadata

    blobs = tmp_path / "blobs"
    local = shutil.copy(exported["onnx"], tmp_path / "m.onnx")
    first = OnnxBackend(local, runtime="openvino", blobs=blobs)
    int8 = OnnxBackend(reader_file, runtime="openvino", blobs=blobs)
    reads = []
    real = ov.Core.read_model
    monkeypatch.setattr(ov.Core, "read_model", lambda core, *a, **k: reads.append(a) or real(core, *a, **k))
    again, int8_again = (OnnxBackend(f, runtime="openvino", blobs=blobs) for f in (local, reader_file))
    assert reads == []  # what compiling needs and the stored settings came from the description kept
    assert again.metadata() == first.metadata() and (again.classes, again.any_width) == (first.classes, first.any_width)
    x = _crops(2, *first.metadata()["preprocess"]["size"])
    np.testing.assert_array_equal(again(x), first(x))
    y = _crops(2, 48, 160)
    np.testing.assert_array_equal(int8_again(y), int8(y))
    hint = [b.session.compiled.get_property("INFERENCE_PRECISION_HINT") for b in (again, int8_again)]
    assert str(hint[0]) == "<Type: 'float32'>" and str(hint[1]) != str(hint[0])  # a float file in fp32, as before
    set_metadata(local, temperature=2.5)  # written again: read again, its new settings with it
    assert OnnxBackend(local, runtime="openvino", blobs=blobs).metadata()["temperature"] == 2.5 and len(reads) == 1
