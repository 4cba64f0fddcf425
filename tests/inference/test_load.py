"""Loading is explicit: the backend policy, the compiled-model cache (reuse, invalidation, bounds)."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from fresh_process import run_cli
from PIL import Image, ImageDraw

import captcha.inference.load as load
from captcha.config import SHIPPED_READER, SHIPPED_READER_ONNX
from captcha.errors import CheckpointError, ConfigError
from captcha.inference.backends import DESCRIPTION_SUFFIX, onnx_runtime, read_metadata
from captcha.inference.load import (
    OnnxCache,
    general_reader_path,
    load_solver,
    resolve_backend,
    shipped_compiled,
)
from captcha.nn.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture
def exports(monkeypatch):
    """Counts the exports the cache runs."""
    import captcha.inference.export as export

    calls = []
    real = export.export_onnx

    def counting(*a, **k):
        calls.append(a[0])
        return real(*a, **k)

    monkeypatch.setattr(export, "export_onnx", counting)
    return calls


def retrained(tiny_model, folder, tag: int):
    """A copy of the tiny model whose file content differs (as a retrained model's would)."""
    ck = load_checkpoint(tiny_model)
    ck["metrics"] = {**ck["metrics"], "tag": tag}
    return save_checkpoint(ck, folder / f"m{tag}.pt")


def test_backend_policy():
    assert resolve_backend("auto", "cpu") == "onnx" and resolve_backend("torch", "cpu") == "torch"
    assert resolve_backend("auto", "cuda") == "torch"
    with pytest.raises(ConfigError, match="--backend onnx"):
        resolve_backend("onnx", "cuda")
    with pytest.raises(ConfigError, match="backend"):
        resolve_backend("tensorrt")


def test_compiled_once_then_reused_and_recompiled_when_the_checkpoint_changes(tiny_model, tmp_path, exports):
    cache = OnnxCache(tmp_path / "cache")
    first = cache.compiled(tiny_model)
    assert cache.compiled(tiny_model) == first and len(exports) == 1  # same content: no second export
    copy = tmp_path / "copy.pt"
    shutil.copy(tiny_model, copy)
    assert cache.compiled(copy) == first and len(exports) == 1  # keyed by content, not by path
    other = cache.compiled(retrained(tiny_model, tmp_path, 1))
    assert other != first and len(exports) == 2 and set(cache.entries()) == {first, other}
    assert load_solver(tiny_model, backend="onnx", cache=cache).backend_name.startswith("onnx") and len(exports) == 2


def test_a_compiled_checkpoint_is_solved_without_importing_torch(tiny_model, tiny_data, tmp_path):
    """Once the cache holds a checkpoint's model, solving it (library and CLI) never loads PyTorch."""
    OnnxCache(tmp_path / "cache").compiled(tiny_model)
    img = next((tiny_data / "captchas" / "val").glob("*.png"))
    env = {**os.environ, "CAPTCHA_CACHE": str(tmp_path / "cache")}
    proc = run_cli(["solve", "--checkpoint", tiny_model, img], env=env)
    assert len(proc.stdout.strip()) == 4 and proc.stderr.strip().endswith("exit 0 False"), proc.stderr
    assert len(list((tmp_path / "cache").glob("*.onnx"))) == 1  # read from the cache, not compiled again


def test_a_change_in_the_export_or_solver_code_compiles_again(tiny_model, tmp_path, monkeypatch):
    """A cached model compiled by other export code (int8 ranges changed, say), or whose recorded settings other
    solver code decided (whether it is the general reader, say), is not reused."""
    cache = OnnxCache(tmp_path / "cache")
    before = cache.key(tiny_model)
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    keys = set()
    for changed in ("export.py", "solver.py"):
        for code in ("export.py", "solver.py"):
            (pkg / code).write_bytes(Path(load.__file__).with_name(code).read_bytes()
                                     + (b"# changed" if code == changed else b""))
        monkeypatch.setattr(load, "__file__", str(pkg / "load.py"))
        keys.add(cache.key(tiny_model))
    assert len(keys) == 2 and before not in keys


def test_a_damaged_or_foreign_cache_file_is_rebuilt(tiny_model, tiny_data, tmp_path, exports):
    cache = OnnxCache(tmp_path / "cache")
    path = cache.compiled(tiny_model)
    other = cache.compiled(retrained(tiny_model, tmp_path, 2))
    shutil.copy(other, path)  # another model copied over this one's file
    assert cache.compiled(tiny_model) == path and len(exports) == 3
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    solver = load_solver(tiny_model, backend="onnx", cache=cache)
    assert len(exports) == 4 and len(solver.solve(next((tiny_data / "captchas" / "val").glob("*.png"))).text) == 4


def test_the_cache_stays_bounded_and_cleans_killed_exports(tiny_model, tmp_path, exports):
    cache = OnnxCache(tmp_path / "cache", keep=2)
    (tmp_path / "cache").mkdir()
    stale = tmp_path / "cache" / ".abc.onnx.tmp"
    stale.write_bytes(b"half an export")
    made = [cache.compiled(retrained(tiny_model, tmp_path, i)) for i in range(3)]
    assert cache.entries() == [made[2], made[1]] and not stale.exists()
    # OpenVINO's compiled networks of them, and what it read of their files, bounded alike
    blobs, described = cache.blob_files(), cache.blob_files(f"*{DESCRIPTION_SUFFIX}")
    if onnx_runtime() == "openvino":
        assert 1 <= len(blobs) <= 2 and len(described) == 2
    else:
        assert blobs == described == []
    assert cache.size() == sum(p.stat().st_size for p in made[1:] + blobs + described)
    assert len(cache.clear()) == 2 + len(blobs) + len(described) and cache.entries() == []
    assert cache.blob_files() == [] and cache.blob_files(f"*{DESCRIPTION_SUFFIX}") == []


def test_an_unwritable_cache_is_a_clear_error(tiny_model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointError, match="--backend torch"):
        OnnxCache(blocker / "cache").compiled(tiny_model)
    assert load_solver(tiny_model, backend="torch", cache=OnnxCache(blocker / "cache")).backend_name == "torch"
    # auto falls back to PyTorch with a warning; an explicit --backend onnx stays an error
    assert load_solver(tiny_model, cache=OnnxCache(blocker / "cache")).backend_name == "torch"
    with pytest.raises(CheckpointError, match="--backend torch"):
        load_solver(tiny_model, backend="onnx", cache=OnnxCache(blocker / "cache"))


def test_an_onnx_file_cannot_run_on_torch(tmp_path):
    with pytest.raises(ConfigError, match="ONNX Runtime"):
        load_solver(tmp_path / "m.onnx", backend="torch")
    assert load.cache_dir().name  # $CAPTCHA_CACHE (set by conftest) or ~/.cache/captcha


def test_the_shipped_reader_solves_from_its_compiled_file_as_pytorch_reads(tmp_path):
    """Solving with no training opens the compiled reader shipped beside it (nothing compiled, the cache
    untouched), made from the reader's weights as they are, and reading as PyTorch does."""
    reader = general_reader_path()
    assert read_metadata(reader.with_name(SHIPPED_READER_ONNX))["precision"] == "int8"
    cache = OnnxCache(tmp_path / "cache")
    solver = load_solver(cache=cache)
    assert solver.backend_name == "onnx-int8" and cache.entries() == []
    images, texts = [], ["7K2P", "X4B9", "M3QZ", "25HT", "WP8D", "C6NJ", "R7EU", "L2VA"]
    for k, text in enumerate(texts):
        img = Image.new("RGB", (120, 40), "white")
        ImageDraw.Draw(img).text((10 + k, 12), text, fill="black")
        images.append(img)
    images[0].save(tmp_path / "first.png")
    proc = run_cli(["solve", tmp_path / "first.png"], cwd=tmp_path,
                   env={**os.environ, "CAPTCHA_CACHE": str(tmp_path / "cache")})
    assert proc.stdout.strip() == texts[0] and proc.stderr.strip().endswith("exit 0 False"), proc.stderr
    assert cache.entries() == []  # the first solve after an install: nothing compiled, PyTorch never imported
    onnx = [r.solution.text for r in solver.solve_batch(images)]
    torch = [r.solution.text for r in load_solver(reader, backend="torch").solve_batch(images)]
    assert np.mean([a == b for a, b in zip(onnx, texts)]) >= 0.75, onnx  # each reads all eight here
    assert np.mean([a == b for a, b in zip(onnx, torch)]) >= 0.75, (onnx, torch)


def test_a_compiled_reader_not_made_from_these_weights_is_compiled_again(tmp_path, monkeypatch):
    """The shipped compiled file is used only beside the very weights it was made from, at its precision."""
    reader = general_reader_path()
    same, other = tmp_path / "same", tmp_path / "other"
    for folder in (same, other):
        folder.mkdir()
        shutil.copy(reader.with_name(SHIPPED_READER_ONNX), folder / SHIPPED_READER_ONNX)
    shutil.copy(reader, same / SHIPPED_READER)
    ck = load_checkpoint(reader, kind="recognizer")
    save_checkpoint({**ck, "metrics": {**ck.get("metrics", {}), "tag": 1}}, other / SHIPPED_READER)  # retrained
    assert shipped_compiled(same / SHIPPED_READER) is not None
    assert shipped_compiled(same / SHIPPED_READER, precision="fp32") is None
    assert shipped_compiled(other / SHIPPED_READER) is None
    (same / SHIPPED_READER_ONNX).write_bytes(b"damaged")
    assert shipped_compiled(same / SHIPPED_READER) is None
    compiled = []
    monkeypatch.setattr(OnnxCache, "backends", lambda cache, path, *a, **k: compiled.append(path) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        load_solver(other / SHIPPED_READER, backend="onnx")
    assert compiled == [other / SHIPPED_READER]
