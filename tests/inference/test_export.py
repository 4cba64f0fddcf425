import subprocess
import sys

import pytest
from fresh_process import run_cli

from captcha.errors import CheckpointError
from captcha.inference.backends import OnnxBackend, read_metadata
from captcha.inference.load import load_solver


def test_export_is_verified_and_self_describing(exported):
    assert exported["max_abs_diff"] < 1e-3
    meta = read_metadata(exported["onnx"])
    assert meta["charset"]["alphabet"] == "ABC123" and meta["length"] == 4 and meta["method"] == "classify"
    assert exported["int8_top1_agreement"] >= 0.95  # int8 vs fp32 top-1 on the fixed sample crops
    assert read_metadata(exported["int8"])["length"] == 4
    assert meta["general_reader"] is False  # a trained model: it learned its site, and says so
    # a classifier's file reads its own crop size alone (slimmed at it), and is checked at that size only
    assert not OnnxBackend(exported["onnx"]).any_width and "max_abs_diff_wide" not in exported


def test_onnx_solver_matches_pytorch(exported, tiny_model, tiny_data):
    paths = sorted(str(p) for p in (tiny_data / "captchas" / "val").glob("*.png"))
    torch_solver = load_solver(tiny_model, backend="torch")
    assert type(torch_solver.backend).__name__ == "TorchBackend"
    torch_texts = [r.solution.text for r in torch_solver.solve_batch(paths)]

    onnx_texts = [r.solution.text for r in load_solver(exported["onnx"]).solve_batch(paths)]
    assert onnx_texts == torch_texts


def test_int8_reads_what_fp32_reads(exported, tiny_data):
    paths = sorted(str(p) for p in (tiny_data / "captchas" / "val").glob("*.png"))
    fp32 = [r.solution.text for r in load_solver(exported["onnx"]).solve_batch(paths)]
    int8 = [r.solution.text for r in load_solver(exported["int8"]).solve_batch(paths)]
    assert sum(a == b for a, b in zip(fp32, int8)) >= len(paths) - 1


def test_int8_activation_ranges_are_one_of_two_calibrations(exported, tiny_model, tmp_path):
    """Percentile ranges by default (the check and solving); min-max on request (bench/int8.py compares)."""
    import inspect
    from pathlib import Path

    import numpy as np

    from captcha.inference.export import CALIBRATIONS, quantize_int8, sample_crops
    from captcha.nn.checkpoint import load_checkpoint

    assert inspect.signature(quantize_int8).parameters["ranges"].default == CALIBRATIONS[0] == "percentile"
    x = sample_crops(load_checkpoint(tiny_model), 48, seed=2)
    fp32 = OnnxBackend(exported["onnx"])(x).argmax(-1)
    minmax = quantize_int8(Path(exported["onnx"]), tmp_path / "mm.onnx", x, ranges="minmax")
    assert np.mean(OnnxBackend(minmax)(x).argmax(-1) == fp32) >= 0.9
    with pytest.raises(ValueError, match="percentile"):
        quantize_int8(Path(exported["onnx"]), tmp_path / "e.onnx", x, ranges="entropy")


def test_onnx_path_never_imports_torch(exported, tiny_data):
    """Through the library and through the CLI (`captcha solve --checkpoint model.onnx`)."""
    img = next((tiny_data / "captchas" / "val").glob("*.png"))
    code = ("import sys; from captcha.inference.load import load_solver; "
            f"print(load_solver({exported['onnx']!r}).solve({str(img)!r}).text); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert len(out[0]) == 4 and out[1] == "False"
    proc = run_cli(["solve", "--checkpoint", exported["onnx"], img])
    assert len(proc.stdout.strip()) == 4 and proc.stderr.strip().endswith("exit 0 False"), proc.stderr


def test_broken_onnx_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"nope")
    with pytest.raises(CheckpointError, match="not a loadable ONNX model"):
        load_solver(bad)


def test_training_checks_int8_on_held_out_captchas(tiny_model, exported):
    """The check ran at the end of training: calibration inputs and both precisions' readings stored."""
    import torch

    from captcha.inference.export import int8_passes
    from captcha.nn.checkpoint import load_checkpoint

    check = load_checkpoint(tiny_model)["int8"]
    assert check["inputs"].dtype == torch.uint8 and tuple(check["inputs"].shape[1:]) == (32, 32, 3)
    assert check["captchas"] > 0 and 0 <= check["int8"] <= 1 and 0 <= check["fp32"] <= 1
    fewer = round((check["fp32"] - check["int8"]) * check["captchas"])  # captchas int8 read fewer
    assert check["fp32_only"] - check["int8_only"] == fewer and check["fp32_only"] + check["int8_only"] <= check["captchas"]
    assert check["default"] == int8_passes(check)
    beside = exported["onnx"].replace(".onnx", ".int8.json")
    assert exported["int8_check"]["int8"] == check["int8"] and "int8_check" in open(beside).read()


@pytest.mark.parametrize("passed", [True, False])
def test_solving_uses_int8_only_when_its_check_passed(tiny_model, tmp_path, passed):
    from captcha.inference.load import OnnxCache
    from captcha.nn.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(tiny_model)
    # decided from the check's figures by today's rule, whatever the check decided when it ran
    fp32_only, int8_only = (3, 1) if passed else (10, 0)
    ck["int8"].update(fp32=0.9, int8=0.9 - (fp32_only - int8_only) / 1000, captchas=1000, fp32_only=fp32_only,
                      int8_only=int8_only, training=None, default=not passed)
    path = save_checkpoint(ck, tmp_path / "m.pt")
    cache = OnnxCache(tmp_path / "cache")
    auto = load_solver(path, backend="onnx", cache=cache)
    assert auto.backend_name == ("onnx-int8" if passed else "onnx")
    assert read_metadata(auto.backend.path)["precision"] == ("int8" if passed else "fp32")
    assert load_solver(path, backend="onnx", cache=cache, precision="fp32").backend_name == "onnx"
    assert load_solver(path, backend="onnx", cache=cache, precision="int8").backend_name == "onnx-int8"
    assert len(cache.entries()) == 3  # one compiled file per precision asked for


def test_clearly_more_is_a_difference_of_two_standard_errors_on_the_same_captchas():
    from captcha.inference.export import clearly_more

    assert not clearly_more(0, 0) and not clearly_more(10, 3) and clearly_more(11, 3)  # 7 < 2 * sqrt(13); 2 * sqrt(14) < 8
    assert not clearly_more(0, 5) and not clearly_more(3, 0) and clearly_more(4, 0)  # 3 < 2 * sqrt(3); 4 = 2 * sqrt(4)


@pytest.mark.parametrize("held,training,passes", [
    ((50, 2, 0), None, True),  # runs/s64's lso-eroded-band6: two flips of 50 are a draw (z = 1.4)
    ((50, 3, 0), None, False),  # six points lost: beyond INT8_MOST_LOST, noise or not
    ((50, 3, 1), (256, 0, 0), True),
    ((50, 1, 0), (256, 3, 0), False),  # four of four flips against int8: clearly worse, though the 50 cannot tell
    ((250, 6, 0), None, False), ((250, 6, 1), (256, 1, 0), False), ((250, 6, 2), (256, 1, 0), True),
    ((1000, 9, 3), None, True),
    ((10, 1, 0), None, True),  # one captcha of a small check is more than INT8_MOST_LOST, and noise
])
def test_int8_passes_unless_clearly_worse_on_the_same_captchas_or_beyond_what_it_may_lose(held, training, passes):
    """int8 is four times faster: only a loss the paired readings show, or one too large to risk, sends it to fp32."""
    from captcha.inference.export import int8_passes, int8_verdict

    captchas, fp32_only, int8_only = held
    check = {"fp32": 0.8, "int8": 0.8 - (fp32_only - int8_only) / captchas, "captchas": captchas,
             "fp32_only": fp32_only, "int8_only": int8_only,
             "training": dict(zip(("captchas", "fp32_only", "int8_only"), training)) if training else None}
    assert int8_passes(check) is passes
    assert int8_verdict(check).endswith(f"uses {'int8' if passes else 'fp32'} by default")
    assert f"{fp32_only} read right only in fp32, {int8_only} only in int8" in int8_verdict(check)


@pytest.mark.parametrize("captchas,fewer,passes", [(138, 1, True), (138, 2, False), (1000, 5, True), (1000, 6, False)])
def test_a_check_stored_before_paired_counts_passes_within_one_captcha_or_half_a_point(captchas, fewer, passes):
    """One captcha of a small check is noise, not a reason to solve at fp32's speed (runs/real-s16's sysu)."""
    from captcha.inference.export import int8_passes

    fp32 = 119 / captchas
    assert int8_passes({"fp32": fp32, "int8": fp32 - fewer / captchas, "captchas": captchas}) is passes
    assert int8_passes({"fp32": fp32, "int8": fp32 - fewer / captchas}) is (fewer / captchas <= 0.005)  # older still
    assert not int8_passes(None)


def test_a_damaged_quantisation_fails_the_int8_check(tiny_model, tiny_data):
    """Calibrated on inputs dimmed 16-fold, int8's activation ranges are too narrow: it reads clearly fewer of the
    same captchas than fp32, and solving stays in fp32. The same check with the stored inputs passes."""
    import numpy as np

    from captcha.charset import Charset
    from captcha.data.images import load_image
    from captcha.data.layout import read_captcha_labels
    from captcha.data.preprocess import Preprocess
    from captcha.data.segment import SegmentConfig
    from captcha.inference.export import int8_check
    from captcha.inference.solver import Preparer
    from captcha.nn.checkpoint import load_checkpoint

    ck = load_checkpoint(tiny_model)
    prep = Preparer(Preprocess.from_dict(ck["preprocess"]), int(ck["length"]), SegmentConfig.from_dict(ck["segment"]),
                    ck["method"])
    samples = read_captcha_labels(tiny_data / "captchas" / "val", Charset.from_dict(ck["charset"]), problems=[])
    x, labels = np.concatenate([prep.inputs(load_image(s.path)) for s in samples]), [s.label for s in samples]
    stored = ck["int8"]["inputs"]
    healthy, damaged = (int8_check(tiny_model, inputs, x, labels) for inputs in (stored, stored // 16))
    assert healthy["default"] and healthy["fp32_only"] <= 1
    assert not damaged["default"] and damaged["fp32_only"] >= damaged["int8_only"] + 4
    assert damaged["training"] is None and healthy["fp32"] == damaged["fp32"]


def test_solving_quantises_with_the_ranges_its_int8_check_read_with(tiny_model, tmp_path, monkeypatch):
    """A check records its activation ranges; one made before they were recorded used min-max."""
    import captcha.inference.export as export
    from captcha.nn.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(tiny_model)
    assert ck["int8"]["ranges"] == export.CALIBRATIONS[0] == "percentile"
    used = []
    real = export.quantize_int8
    monkeypatch.setattr(export, "quantize_int8", lambda src, dst, x, ranges: used.append(ranges) or real(src, dst, x, ranges))
    for stored in ("percentile", None):
        if stored is None:
            del ck["int8"]["ranges"]
        path = save_checkpoint(ck, tmp_path / f"{stored}.pt")
        assert export.compile_onnx(path, tmp_path / f"{stored}.onnx") == "int8"
    del ck["int8"]
    assert export.compile_onnx(save_checkpoint(ck, tmp_path / "none.pt"), tmp_path / "none.onnx", "int8") == "int8"
    assert used == ["percentile", "minmax", "percentile"]  # no check at all: the default ranges


def test_export_cli_says_what_the_int8_check_found(tiny_model, tmp_path):
    from click.testing import CliRunner

    from captcha.cli import main
    from captcha.nn.checkpoint import load_checkpoint

    res = CliRunner().invoke(main, ["export", "--checkpoint", str(tiny_model), "--out", str(tmp_path / "m.onnx"),
                                    "--int8"])
    check = load_checkpoint(tiny_model)["int8"]
    assert res.exit_code == 0, res.output
    assert f"int8 check at training (stored beside it): {100 * check['int8']:.2f}% against fp32 {100 * check['fp32']:.2f}%" \
        in res.output and f"{check['fp32_only']} read right only in fp32" in res.output
    assert (tmp_path / "m.int8.onnx").is_file() and (tmp_path / "m.int8.json").is_file()


def test_compiling_takes_the_file_the_int8_check_made_for_the_same_weights(tiny_model, tmp_path, monkeypatch):
    """Training's int8 check leaves the file solving will use in the cache; compiling the finished checkpoint (whose
    settings, not weights, changed since) takes it instead of exporting and quantising again, writes the finished
    checkpoint's settings into it, and reads exactly as a file made afresh. Other weights, or the other precision:
    made anew."""
    import numpy as np

    import captcha.inference.export as export
    from captcha.nn.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(tiny_model)
    checked = save_checkpoint(ck, tmp_path / "checked.pt")
    stash = tmp_path / "cache"
    x = export.sample_crops(ck, 8)
    monkeypatch.setattr(export, "reads_right", lambda *a: np.array([True, False]))  # int8 reads as fp32: int8 it is
    assert export.int8_check(checked, ck["int8"]["inputs"], x, ["AB12", "C3A1"], stash=stash)["default"]
    left = list(stash.glob(f"*{export.STASH_SUFFIX}"))
    assert len(left) == 1 and not list(stash.glob("*.tmp"))  # the int8 file alone, whole
    ck["temperature"], ck["metrics"] = 1.7, {**ck["metrics"], "string_acc": 0.5}  # as training ends
    final = save_checkpoint(ck, tmp_path / "final.pt")
    made = []
    for name in ("export_onnx", "quantize_int8"):
        real = getattr(export, name)
        monkeypatch.setattr(export, name, lambda *a, _real=real, _name=name, **k: made.append(_name) or _real(*a, **k))
    assert export.compile_onnx(final, tmp_path / "taken.onnx", "int8", stash=stash) == "int8"
    assert made == [] and not left[0].exists()  # taken, not copied
    meta = read_metadata(tmp_path / "taken.onnx")
    assert meta["temperature"] == 1.7 and meta["metrics"]["string_acc"] == 0.5 and meta["precision"] == "int8"
    assert meta == {**export.solving_metadata(ck), "precision": "int8", "source_sha256": meta["source_sha256"]}
    assert export.compile_onnx(final, tmp_path / "fresh.onnx", "int8") == "int8"
    assert made == ["export_onnx", "quantize_int8"]
    assert np.array_equal(OnnxBackend(tmp_path / "taken.onnx")(x), OnnxBackend(tmp_path / "fresh.onnx")(x))
    # where int8 read worse, the fp32 file is left instead; other weights do not take it
    monkeypatch.setattr(export, "reads_right", lambda model, *a: np.array(["int8" not in str(model.path)] * 2))
    assert not export.int8_check(checked, ck["int8"]["inputs"], x, ["AB12", "C3A1"], stash=stash)["default"]
    first = next(k for k in ck["model"] if k.endswith("weight"))
    other = {**ck, "model": {**ck["model"], first: ck["model"][first] * 1.01}}
    export.compile_onnx(save_checkpoint(other, tmp_path / "other.pt"), tmp_path / "other.onnx", "fp32", stash=stash)
    assert made[-1] == "export_onnx" and len(list(stash.glob(f"*{export.STASH_SUFFIX}"))) == 1
    made.clear()
    export.compile_onnx(final, tmp_path / "fp32.onnx", "fp32", stash=stash)
    assert made == [] and not list(stash.glob(f"*{export.STASH_SUFFIX}"))
