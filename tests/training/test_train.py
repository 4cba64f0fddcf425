import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from captcha.config import (
    CONFIDENCE_MAP_MIN,
    CTC_LAYER3_INNER,
    CTC_WIDTH,
    HEAD_PASSES,
    READER_LR,
    READER_LR_FAR,
    WARM_LR_DIVISOR,
    TrainConfig,
)
from captcha.nn.checkpoint import last_file, load_checkpoint
from captcha.nn.networks import DEFAULT_GLYPHS, SHIPPED_BACKBONES
from captcha.training.train import train

DEFAULT_SOURCE = f"glyphs:{SHIPPED_BACKBONES[DEFAULT_GLYPHS]}"


def _cfg(data, out, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), charset="ABC123", pretrained="none", epochs=2, batch_size=16,
                aug_passes=1, size=(32, 32))
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.usefixtures("no_int8_check")
def test_cached_features_match_the_plain_path(tiny_data, tmp_path):
    """Frozen stages cached once per augmentation pass give the same model as running them every batch
    (in fp32: in bf16 the two paths round the frozen stages' output at different places)."""
    results = {}
    for cache in (True, False):
        out = tmp_path / f"cache{cache}" / "m.pt"
        train(_cfg(tiny_data, out, freeze="layer3", cache_features=cache, epochs=2, aug_passes=2, bf16=False,
                   refit=False))  # the first fit is compared: a refit after it would double the test
        results[cache] = load_checkpoint(out.with_name("m.last.pt"))
    a, b = results[True], results[False]
    for k in a["model"]:
        assert torch.allclose(a["model"][k].float(), b["model"][k].float(), atol=2e-4), k
    assert [round(h["loss"], 4) for h in a["history"]] == pytest.approx([round(h["loss"], 4) for h in b["history"]], abs=1e-3)
    # validation and the held-out slice, read from the frozen stages' output computed once, read the same
    for key in ("char_acc", "string_acc"):
        assert [h[key] for h in a["history"]] == [h[key] for h in b["history"]], key
    assert [h["select"] for h in a["history"]] == [h["select"] for h in b["history"]]


@pytest.mark.usefixtures("no_int8_check")
def test_a_fit_writes_its_files_at_most_every_resume_seconds_and_loses_no_epoch_kept(tiny_data, tmp_path,
                                                                                      monkeypatch):
    """Held to RESUME_SECONDS, a fit writes the state to resume from after its first and last epochs only, and the
    epoch kept (written late, after the weights moved on) is the same file as a fit that writes every epoch leaves."""
    import captcha.training.fit as fit_module

    real_save, real_update = fit_module.save_checkpoint, fit_module.EpochKeeper.update
    runs = {}
    for every in (0.0, 1e9):
        written = []

        def save(payload, path, written=written):
            written.append((Path(path).name, payload["epoch"]))
            return real_save(payload, path)

        def update(keeper, metrics, epoch):  # the second epoch is the one kept: later epochs move the weights on
            real_update(keeper, metrics, epoch)
            return epoch == 2

        monkeypatch.setattr(fit_module, "save_checkpoint", save)
        monkeypatch.setattr(fit_module.EpochKeeper, "update", update)
        monkeypatch.setattr(fit_module, "RESUME_SECONDS", every)
        out = tmp_path / f"every{every:g}" / "m.pt"
        train(_cfg(tiny_data, out, freeze="layer3", epochs=4, refit=False))
        runs[every] = (written, load_checkpoint(out), load_checkpoint(last_file(out)))
    assert runs[0.0][0] == [("m.last.pt", 0), ("m.pt", 1), ("m.last.pt", 1), ("m.last.pt", 2), ("m.last.pt", 3)]
    assert runs[1e9][0] == [("m.last.pt", 0), ("m.pt", 1), ("m.last.pt", 3)]  # epochs count from 0 in the file
    (_, kept, last), (_, late_kept, late_last) = runs[0.0], runs[1e9]
    assert kept["epoch"] == late_kept["epoch"] == 1 and [h["epoch"] for h in late_kept["history"]] == [1, 2]
    for k in kept["model"]:
        assert torch.equal(kept["model"][k], late_kept["model"][k]), k
        assert torch.equal(last["model"][k], late_last["model"][k]), k
    assert not all(torch.equal(late_kept["model"][k], late_last["model"][k]) for k in kept["model"])


@pytest.mark.usefixtures("no_int8_check")
def test_a_head_only_fit_prepares_each_kept_pass_once(tiny_data, tmp_path, monkeypatch):
    """Where only the head trains, HEAD_PASSES augmentation passes are prepared, once each, whatever the epochs;
    with stages left to train, one an epoch, as before."""
    import captcha.training.fit as fit_module

    made = []
    real = fit_module.pass_images
    monkeypatch.setattr(fit_module, "pass_images", lambda *a: made.append(a[-1]) or real(*a))
    for freeze, expected in (("all", list(range(HEAD_PASSES))), ("layer3", list(range(HEAD_PASSES + 2)))):
        made.clear()
        train(_cfg(tiny_data, tmp_path / freeze / "m.pt", freeze=freeze, epochs=HEAD_PASSES + 2, aug_passes=None,
                   refit=False))
        assert made == expected, freeze


def test_tiny_run_beats_chance_and_describes_itself(tiny_model):
    ck = load_checkpoint(tiny_model, kind="recognizer")
    m = ck["metrics"]
    assert m["char_acc"] > 4 * (1 / 6), m   # chance is 1/6 on 6 classes
    assert ck["charset"]["alphabet"] == "ABC123" and ck["length"] == 4
    assert ck["preprocess"]["size"] == [32, 32] and ck["segment"]["method"] == "equal"
    assert ck["pretrained"] == DEFAULT_SOURCE and ck["freeze"] == "all"
    assert ck["train_config"]["seed"] == 0 and "torch" in ck["environment"]
    assert ck["split"]["layout"] == "course"
    assert tiny_model.with_name("model.curve.png").stat().st_size > 1000


@pytest.mark.usefixtures("no_int8_check")
def test_first_batch_loss_is_reported_near_ln_classes(tiny_data, tmp_path):
    said = []
    train(_cfg(tiny_data, tmp_path / "m.pt", freeze="all", epochs=1), say=said.append)
    line = next(s for s in said if s.startswith("first batch loss"))
    loss = float(line.split()[3])
    assert abs(loss - math.log(6)) < 1.0 and "ln(6)" in line


# probes choose the start's freeze level (the input size is given: its 64 px probes would cost most of the
# test; test_resume_with_more_epochs_on_the_default_path runs all six probes through the CLI)
RESUMED = {"default path": dict(pretrained="auto", freeze="auto", size=(32, 32)),
           "random start": dict(pretrained="none", freeze="layer3"),
           # whole captchas (CTC) resume as identically
           "ctc": dict(pretrained="none", freeze="layer3", method="ctc", size=(32, 96))}


@pytest.mark.parametrize("start", list(RESUMED))
@pytest.mark.usefixtures("no_int8_check")
def test_resume_finishes_an_interrupted_run_identically(tiny_data, flat_captchas, tmp_path, start):
    if start == "ctc":
        tiny_data = flat_captchas
    full = tmp_path / "full" / "m.pt"
    train(_cfg(tiny_data, full, epochs=3, **RESUMED[start]))
    part = tmp_path / "part" / "m.pt"
    # run only the first epoch of a 3-epoch schedule by stopping after it, then resume
    cfg = _cfg(tiny_data, part, epochs=3, **RESUMED[start])
    import captcha.training.fit as tr  # where each epoch is validated

    calls = {"n": 0}
    real = tr.validate

    def stop_after_first(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # epoch 1 validated (val, then the held-out slice) and written
            raise KeyboardInterrupt
        return real(*a, **k)

    tr.validate = stop_after_first
    try:
        with pytest.raises(KeyboardInterrupt):
            train(cfg)
    finally:
        tr.validate = real
    cfg.resume = True
    train(cfg)
    a = load_checkpoint(full.with_name("m.last.pt"))
    b = load_checkpoint(part.with_name("m.last.pt"))
    assert [h["epoch"] for h in b["history"]] == [1, 2, 3]
    assert (b["pretrained"], b["freeze"]) == (a["pretrained"], a["freeze"])  # recorded, not re-derived
    probed = [[(p["freeze"], p["size"], p["score"]) for p in ck["recipe"]["probes"]] for ck in (a, b)]
    assert probed[0] == probed[1] and (len(probed[1]) == 3) == (start == "default path")  # the same, timings aside
    # the epoch kept is chosen as without the kill (the resumed run replays the slice's history)
    assert load_checkpoint(part)["metrics"]["epoch"] == load_checkpoint(full)["metrics"]["epoch"]
    acc = "captcha_char_acc" if start == "ctc" else "char_acc"
    assert a["history"][-1][acc] == b["history"][-1][acc]
    for k in a["model"]:
        assert torch.allclose(a["model"][k].float(), b["model"][k].float(), atol=1e-5), k
    # and the refit after it too: it goes on from the chosen probe's weights, which the last file kept
    assert ("warm" in b) == bool(b["recipe"].get("warm_start")) == (start == "default path")
    kept = load_checkpoint(full), load_checkpoint(part)
    assert kept[0]["refit"]["epochs"] == kept[1]["refit"]["epochs"]
    for k in kept[0]["model"]:
        assert torch.allclose(kept[0]["model"][k].float(), kept[1]["model"][k].float(), atol=1e-5), k


@pytest.mark.usefixtures("no_int8_check")
def test_same_seed_same_metrics(tiny_data, tmp_path):
    runs = []
    for i in range(2):
        out = tmp_path / f"r{i}" / "m.pt"
        train(_cfg(tiny_data, out, freeze="layer4", epochs=1))
        runs.append(load_checkpoint(out)["metrics"])
    assert runs[0]["char_acc"] == runs[1]["char_acc"] and runs[0]["loss"] == runs[1]["loss"]


def test_training_from_whole_captchas_with_a_recorded_split(flat_captchas, tmp_path):
    from captcha.eval.evaluate import evaluate_checkpoint

    out = tmp_path / "flat.pt"
    train(_cfg(flat_captchas, out, freeze="layer3", val_fraction=0.25, split="auto", seed=4, refit=False))
    ck = load_checkpoint(out)
    assert ck["split"]["layout"] == "flat" and len(ck["split"]["val_files"]) == 10
    assert ck["segment"]["method"] in ("equal", "projection", "components") and ck["segment"]["trim"]
    assert ck["length"] == 4 and ck["metrics"]["captchas"] == 10
    # the same held-out captchas, from the checkpoint, read by the same fp32 network as training read them
    # (by default solving may read in int8, which its check lets read a captcha or so otherwise)
    rep = evaluate_checkpoint(out, backend="torch")
    assert rep.captchas["captchas"] == 10
    assert rep.captchas["string_acc"] == pytest.approx(ck["metrics"]["string_acc"])
    # int8 against fp32 on the held-out captchas and, paired, on captchas it trained on (none of them twice)
    check, trained = ck["int8"], ck["int8"]["training"]
    assert check["on"] == "held-out" and 0 < trained["captchas"] <= 40 - check["captchas"]
    assert trained["fp32_only"] + trained["int8_only"] <= trained["captchas"]


def test_ctc_reads_whole_captchas(flat_captchas, tmp_path):
    from captcha.inference.load import load_solver

    out = tmp_path / "ctc.pt"
    # the default start for CTC: the general reader (its trunk, and its head rows mapped onto ABC123), read
    # at the reader's own 48 px and at the rate what it reads of the site before training calls for; it
    # reads these captchas before training, so a few epochs show the fine-tune keeps what it reads
    train(_cfg(flat_captchas, out, method="ctc", pretrained="auto", epochs=3, batch_size=8, val_fraction=0.25,
               size=None, refit=False))
    ck = load_checkpoint(out)
    assert ck["method"] == "ctc" and ck["pretrained"] == "reader:reader-ctc.pt"
    near = ck["recipe"]["start_reading"]["char_score"]  # the share of the slice the reader read untrained
    assert ck["preprocess"]["size"][0] == 48 and ck["recipe"]["start_reading"]["samples"] == 0
    assert ck["train_config"]["lr"] == pytest.approx(READER_LR_FAR ** (1 - near) * READER_LR ** near)
    assert ck["model"]["fc.weight"].shape == (7, CTC_WIDTH) == (7, ck["width"])  # 6 characters + the CTC blank,
    # read from the reader's first CTC_WIDTH layer4 channels; from 40 captchas its layer3 blocks keep all 256 inside
    assert ck["model"]["layer3.1.conv1.weight"].shape[0] == 256 == ck["layer3_inner"] > CTC_LAYER3_INNER
    assert ck["metrics"]["captcha_char_acc"] >= 0.6, ck["metrics"]  # chance is 1/6 per character
    # too few captchas held out to fit a confidence map on: none is stored, and solving reports the network's own
    assert len(ck["split"]["val_files"]) + ck["recipe"]["held_out"] < CONFIDENCE_MAP_MIN and "confidence_map" not in ck
    held = [flat_captchas / name for name in ck["split"]["val_files"]]
    sols = [r.solution for r in load_solver(out).solve_batch(held)]
    assert sum(len(s.text) == 4 for s in sols) >= 8 and all(len(s.confidences) == len(s.text) for s in sols)
    assert all(s.calibration is None and s.confidence == s.raw_confidence for s in sols)


@pytest.mark.usefixtures("no_int8_check")
def test_a_narrow_ctc_run_resumes_at_its_own_width(flat_captchas, tmp_path, monkeypatch):
    """A resumed CTC run rebuilds its network as wide as the checkpoint it goes on from records."""
    import captcha.training.recipe as recipe

    monkeypatch.setattr(recipe, "CTC_LAYER3_NARROW_FROM", 1)  # narrowed inside layer3 too, from these 40 captchas
    out = tmp_path / "ctc.pt"
    cfg = _cfg(flat_captchas, out, method="ctc", pretrained="auto", epochs=1, batch_size=8, size=None, refit=False)
    train(cfg)
    cfg.epochs, cfg.resume = 2, True
    said: list[str] = []
    train(cfg, say=said.append)
    assert any(line.startswith("resuming from") and "epoch 2/2" in line for line in said), said
    ck = load_checkpoint(out.with_name("ctc.last.pt"))
    assert [h["epoch"] for h in ck["history"]] == [1, 2] and ck["width"] == CTC_WIDTH
    assert ck["model"]["layer4.1.conv2.weight"].shape[:2] == (CTC_WIDTH, CTC_WIDTH)
    assert ck["layer3_inner"] == CTC_LAYER3_INNER == ck["model"]["layer3.0.bn1.weight"].shape[0]


def test_ctc_on_a_site_whose_lengths_vary_learns_and_reads_every_length(mixed_captchas, tmp_path):
    from captcha.inference.backends import OnnxBackend, read_metadata
    from captcha.inference.export import export_onnx
    from captcha.inference.load import load_solver

    out = tmp_path / "mixed.pt"
    train(_cfg(mixed_captchas, out, method="ctc", pretrained="auto", epochs=3, batch_size=8, val_fraction=0.25,
               size=None, refit=False))
    ck = load_checkpoint(out)
    assert ck["length"] == 0 and ck["metrics"]["captchas"] == 10  # every val captcha, whatever its length
    assert ck["lengths"] == [3, 4]  # solving holds a reading of another length to the nearest of these
    report = export_onnx(out, tmp_path / "mixed.onnx")
    assert read_metadata(tmp_path / "mixed.onnx")["lengths"] == [3, 4]
    # a CTC file reads any width, checked against PyTorch at twice its own (Solver.roomy widens inputs)
    assert OnnxBackend(tmp_path / "mixed.onnx").any_width and report["max_abs_diff_wide"] < 1e-3
    labels = dict(line.split(",") for line in (mixed_captchas / "labels.csv").read_text().splitlines()[1:])
    val = ck["split"]["val_files"]
    sols = [r.solution for r in load_solver(out).solve_batch([mixed_captchas / n for n in val])]
    assert {len(labels[n]) for n in val} == {3, 4} and not any(s.warnings for s in sols)
    assert sum(len(s.text) == len(labels[n]) for s, n in zip(sols, val)) >= 8  # read at their own lengths


@pytest.mark.usefixtures("no_int8_check")
def test_a_fine_tune_worse_than_the_reader_keeps_the_reader(flat_captchas, tmp_path):
    """The general reader competes as epoch 0: a fine-tune that wrecks it (an absurd rate) is not kept."""
    out = tmp_path / "wrecked.pt"
    said: list[str] = []
    res = train(_cfg(flat_captchas, out, method="ctc", pretrained="auto", epochs=2, batch_size=8, size=None,
                     lr=50.0, select_fraction=0.3), say=said.append)
    ck = load_checkpoint(out)
    start = next(line for line in said if line.startswith("before training (reader:"))
    assert ck["history"][-1]["epoch"] == 0 and ck["metrics"]["loss"] is None, (start, res["history"])
    assert all(h["select"]["captcha_char_acc"] < ck["metrics"]["select"]["captcha_char_acc"] for h in res["history"])


def test_resume_with_more_epochs_on_the_default_path(tiny_data, tmp_path):
    """`captcha train --epochs 2` then `--epochs 3 --resume`: continues the same run for one more epoch."""
    from click.testing import CliRunner

    from captcha.cli import main

    out = tmp_path / "r.pt"
    args = ["train", "--data", str(tiny_data), "--charset", "ABC123", "--out", str(out), "--batch-size", "16"]
    res = CliRunner().invoke(main, args + ["--epochs", "2", "--json"])
    assert res.exit_code == 0 and "int8" in load_checkpoint(out)
    assert json.loads(res.stdout)["checkpoint"] == str(out)  # nothing else on stdout (the int8 quantiser prints)
    first = load_checkpoint(out.with_name("r.last.pt"))
    res = CliRunner().invoke(main, args + ["--epochs", "3", "--resume"])
    assert res.exit_code == 0, res.output
    said = [line for line in res.output.splitlines() if line.startswith("kept epoch")]
    assert "(the best on the held-out slice of the training data)" in res.output  # a slice chose the epoch kept
    ck = load_checkpoint(out.with_name("r.last.pt"))
    assert [h["epoch"] for h in ck["history"]] == [1, 2, 3] and ck["history"][:2] == first["history"]
    assert ck["pretrained"] == DEFAULT_SOURCE and ck["freeze"] == first["freeze"] != "auto"
    assert ck["recipe"] == first["recipe"] and len(ck["recipe"]["probes"]) == 6  # chosen once, then kept
    assert ck["train_config"]["epochs"] == 3 and ck["train_config"]["pretrained"] == "auto"
    assert "refit" in load_checkpoint(out)  # the refit replaced the first fit's checkpoint, which went on above
    kept = out.read_bytes()
    res = CliRunner().invoke(main, args + ["--resume"])  # a finished run: nothing more to train
    assert res.exit_code == 0 and "is a finished run of 3 epochs, so nothing is trained again" in res.output, res.output
    assert [line for line in res.output.splitlines() if line.startswith("kept epoch")] == said  # the same report
    assert "epoch 1/3" not in res.output
    assert out.read_bytes() == kept and "refit:" not in res.output  # neither trained nor refit again


def _reader_checked(monkeypatch, read: int, reader: int | None, fine_tuned: int | None) -> list:
    """The reader check as if the untrained reader read ``read`` training captchas right, ``reader`` of them read by
    it only, and ``fine_tuned`` by the fine-tunes only; returns the list its calls are recorded in."""
    from captcha.training import train as train_module
    from captcha.training.readercheck import ReaderCheck

    calls = []

    def checked(cfg, charset, state, source, fit, length, device, reader_):
        calls.append((len(fit[0]), source, reader_[0]))
        return ReaderCheck(len(fit[0]), read, reader, fine_tuned, cfg.epochs)

    monkeypatch.setattr(train_module, "check_reader", checked)
    return calls


def test_too_few_captchas_to_hold_any_out_train_ctc_for_a_few_epochs(six_captchas, tmp_path, monkeypatch):
    """Plain `captcha train` on six labelled captchas: nothing is held out to rank the methods or choose the epoch,
    so CTC from the general reader, for at most UNCHOSEN_EPOCHS (its least number of steps would overfit them),
    unless the untrained reader, reading little of them, reads clearly more than fine-tunes on the rest (here it
    reads one of five, and no more than they do)."""
    from captcha.config import UNCHOSEN_EPOCHS

    calls = _reader_checked(monkeypatch, read=1, reader=1, fine_tuned=0)  # under 30% and not clearly more
    said: list[str] = []
    train(TrainConfig(data=str(six_captchas), out=str(tmp_path / "six.pt"), charset="ABC123"), say=said.append)
    ck = load_checkpoint(tmp_path / "six.pt")
    assert ck["method"] == "ctc" and ck["pretrained"] == "reader:reader-ctc.pt"
    assert ck["train_config"]["epochs"] == UNCHOSEN_EPOCHS == ck["refit"]["epochs"], said
    # checked once, on the five training captchas (the sixth is validation), not again in the refit
    assert calls == [(5, "reader:reader-ctc.pt", "reader:reader-ctc.pt")]
    assert ck["recipe"]["reader_check"] == {"captchas": 5, "reader_read": 1, "reader_only": 1, "fine_tuned_only": 0,
                                            "epochs": UNCHOSEN_EPOCHS, "kept": False}
    assert any("the reader reads under 30% of them, and did not read clearly more" in line for line in said), said


def test_too_few_captchas_that_the_untrained_reader_reads_better_keep_it(six_captchas, tmp_path, monkeypatch):
    """Where the untrained reader reads clearly more of the training captchas than fine-tunes on the rest of them,
    the run keeps it, nothing trained: the whole solving reader, its head on the site's characters, held to the site's length,
    measured on the validation captchas like any model."""
    from captcha.inference.load import load_solver

    _reader_checked(monkeypatch, read=4, reader=None, fine_tuned=None)  # as five captchas settle it: no fine-tune
    said: list[str] = []
    out = tmp_path / "kept.pt"
    result = train(TrainConfig(data=str(six_captchas), out=str(out), charset="ABC123"), say=said.append)
    assert any("read them all; the reader read 4 of 5, more than any fine-tune could outweigh, so no fine-tune was "
               "trained: keeping the reader" in line for line in said), said
    ck = load_checkpoint(out)
    assert result["kept_reader"] and not result.get("refit") and result["train_seconds"] == 0.0
    assert ck["pretrained"] == "reader:reader-ctc.pt" and ck["train_config"]["epochs"] == 0
    assert (ck["width"], ck["layer3_inner"], ck["length"]) == (512, 256, 4)
    assert ck["recipe"]["reader_check"]["kept"] and "string_acc" in ck["metrics"]
    assert not any(s.startswith("training on") for s in said), said
    # none of its six labelled captchas trained it: its confidences are shifted to how it reads them all
    from captcha.config import BATCH_WIDTHS

    mapped = ck["confidence_map"]
    widths = len({160, *BATCH_WIDTHS})  # its own and those a batch may be read at
    assert mapped["a"] == 1.0 and mapped["captchas"] == 6 * widths and mapped["right"] >= 5 * widths, said
    assert load_solver(out).confidence_map == (1.0, mapped["b"])
    image = sorted(six_captchas.glob("*.png"))[0]
    assert len(load_solver(out).solve(image).text) == 4
    said.clear()  # --resume of the finished run: the same result, the check not made again
    again = train(TrainConfig(data=str(six_captchas), out=str(out), charset="ABC123", resume=True), say=said.append)
    assert again == result and len(said) == 1 and "is a finished run of 0 epochs" in said[0], said


def test_a_kept_reader_gets_a_shift_only_where_it_reads_most_of_enough_captchas(monkeypatch, tmp_path):
    """A kept reader's map is fitted from KEPT_MAP_MIN labelled captchas, and kept only where it reads KEPT_MAP_SHARE of
    them: from fewer, or fewer right, its confidences stand as they are."""
    from captcha.config import KEPT_MAP_MIN, KEPT_MAP_SHARE
    from captcha.training import train as train_module

    def fitted(right):
        return lambda out, read, kept_reader: {"a": 1.0, "b": 0.5, "captchas": len(read[1]), "right": right,
                                               "ece": 0.2, "ece_fitted": 0.05}

    def run(n: int, right: int) -> tuple[dict, list[str]]:
        final, said = {}, []
        monkeypatch.setattr(train_module, "_confidence_map", fitted(right))
        train_module._kept_reader_map(final, tmp_path / "m.pt", (torch.zeros(n, 3, 4, 4), ["AB"] * n), said.append)
        return final, said

    assert run(KEPT_MAP_MIN - 1, KEPT_MAP_MIN - 1) == ({}, [])
    n = 10
    final, said = run(n, round(KEPT_MAP_SHARE * n))
    assert final["confidence_map"]["b"] == 0.5 and "a shift fitted" in said[0]
    final, said = run(n, round(KEPT_MAP_SHARE * n) - 1)
    assert final == {} and "confidence map: none" in said[0] and f"under {KEPT_MAP_SHARE:.0%}" in said[0]


def test_the_reader_check_is_skipped_where_the_start_was_asked_for(six_captchas, tmp_path, monkeypatch):
    calls = _reader_checked(monkeypatch, read=4, reader=4, fine_tuned=0)
    train(TrainConfig(data=str(six_captchas), out=str(tmp_path / "asked.pt"), charset="ABC123", pretrained="reader",
                      epochs=1))
    assert calls == [] and load_checkpoint(tmp_path / "asked.pt")["train_config"]["epochs"] == 1


@pytest.mark.usefixtures("no_int8_check")
def test_self_training_with_a_held_out_slice_goes_in_judged_rounds(flat_captchas, tmp_path):
    """Enough labelled captchas to hold a slice out: the rounds on the surest readings are judged by it, and the
    model and its checkpoint say which were kept; no round's files are left beside it."""
    import shutil

    rows = (flat_captchas / "labels.csv").read_text().splitlines()
    header, body = rows[0], rows[1:]
    labelled, unlabelled = tmp_path / "labelled", tmp_path / "unlabelled"
    labelled.mkdir()
    unlabelled.mkdir()
    for line in body[:34]:  # enough to hold a slice out to judge the rounds by
        shutil.copy(flat_captchas / line.split(",")[0], labelled)
    for line in body[34:]:
        shutil.copy(flat_captchas / line.split(",")[0], unlabelled)
    (labelled / "labels.csv").write_text("\n".join([header] + body[:34]) + "\n")
    out = tmp_path / "self.pt"
    said = []
    res = train(_cfg(labelled, out, pretrained="glyphs", freeze="all", method="classify", split="equal", epochs=3,
                     unlabelled=str(unlabelled)), say=said.append)
    info = res["self_training"]
    assert info["unlabelled"] == 6 and info["judged"] and [r["pseudo_labelled"] for r in info["ranked"]] == [6], info
    assert info["held_out_acc"][1:] == [r["held_out_acc"] for r in info["ranked"]]
    assert info["kept"] == info["ranked"][0]["kept"]
    assert info["kept"] or info["held_out_acc"][1] < info["held_out_acc"][0]  # a round not kept reads the slice worse
    assert any(s.startswith("self-training, round 1 of 1 (6 readings): held-out slice") for s in said), said
    assert out.is_file() and sorted(p.name for p in tmp_path.glob("self.round*")) == ["self.round1.curve.png"]
    if info["kept"]:  # the round's checkpoint says what it learned from
        assert load_checkpoint(out)["self_training"] == info
    with pytest.raises(Exception, match="--unlabelled"):
        train(_cfg(labelled, tmp_path / "x.pt", freeze="all", method="classify", split="equal", epochs=1,
                   unlabelled=str(tmp_path / "nowhere")))


def test_judged_rounds_go_on_unless_the_slice_reads_a_round_clearly_worse(tmp_path, monkeypatch):
    """Each round reads the unlabelled captchas with the model kept so far; a round becomes the model unless the slice
    reads it worse than the best so far by more than chance moves a slice of 100 (a point or five does not), and the
    first it does ends the rounds, its files gone; a round whose budget held one fit, trained on the slice too, is kept
    unjudged."""
    import captcha.training.selftrain as selftrain
    import captcha.training.train as train_module

    monkeypatch.setattr(selftrain, "RANKED_FIRST", 1)
    image = tmp_path / "u.png"
    Image.new("RGB", (40, 20), "white").save(image)
    out = tmp_path / "m.pt"
    out.write_text("first fit")
    slice_reads, asked_for, read_with = iter([0.45, None, 0.6, 0.4]), [], []

    def round_trained(cfg, say, progress, pseudo):
        asked_for.append(len(pseudo))
        Path(cfg.out).write_text(f"round {len(asked_for)}")
        last_file(Path(cfg.out)).write_text("last")
        return {"checkpoint": cfg.out, "held_out_acc": next(slice_reads), "train_seconds": 1.0}

    monkeypatch.setattr(train_module, "train", round_trained)
    monkeypatch.setattr(train_module, "load_solver", lambda path, **kw: read_with.append(Path(path).read_text()))
    monkeypatch.setattr(train_module, "surest_readings",
                        lambda solver, paths, lengths, count: [(str(image), "AB")] * count)
    monkeypatch.setattr(train_module, "save_checkpoint", lambda ckpt, path: None)
    monkeypatch.setattr(train_module, "load_checkpoint", lambda path: {})
    cfg = _cfg(tmp_path, out, method="ctc")
    data = SimpleNamespace(train_targets=["AB", "BA"], length=2)  # what the rounds read of the training data
    said: list[str] = []
    first = {"held_out_acc": 0.5, "held_out_samples": 100, "train_seconds": 2.0}
    res = train_module.judged_rounds(cfg, data, [str(image)] * 40, first, said.append, False, cfg)
    assert asked_for == [1, 3, 9, 27] and read_with == ["first fit", "round 1", "round 2", "round 3"]
    assert [r["kept"] for r in res["self_training"]["ranked"]] == [True, True, True, False]
    assert res["self_training"]["held_out_acc"] == [0.5, 0.45, None, 0.6, 0.4]
    assert res["self_training"]["pseudo_labelled"] == 9 and "nothing to judge it by; kept" in said[-3]
    assert out.read_text() == "round 3" and res["checkpoint"] == str(out) and res["held_out_acc"] == 0.6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "u.png"]  # no round's files left
    assert said[-1].endswith("held-out slice 60.00% -> 40.00%; not kept (clearly worse than the best so far), the "
                             "rounds stop"), said


def _ranked(monkeypatch, flat_captchas: Path, tmp_path: Path, count: int) -> tuple[Path, list]:
    """Ranked rounds from 8 readings up over ``count`` unlabelled captchas (flat ones the handful does not hold):
    their folder, and the list each model that reads them is recorded in, as (file name, what it started from, the
    backend that read)."""
    import captcha.training.selftrain as selftrain
    import captcha.training.train as train_module

    monkeypatch.setattr(selftrain, "RANKED_FIRST", 8)
    read_by: list[tuple[str, str, str]] = []
    real_load = train_module.load_solver

    def recorded(path, **kw):
        solver = real_load(path, **kw)
        read_by.append((Path(path).name, load_checkpoint(path)["pretrained"], solver.backend_name))
        return solver

    monkeypatch.setattr(train_module, "load_solver", recorded)
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    for k, path in enumerate(sorted(flat_captchas.glob("*.png"))[10:10 + count]):
        Image.open(path).save(unlabelled / f"u{k:02d}.png", compress_level=1)
    return unlabelled, read_by


@pytest.mark.usefixtures("no_int8_check")
@pytest.mark.parametrize("epochs", [None, 2])
def test_a_handful_with_unlabelled_captchas_checks_the_reader_and_learns_in_rounds_from_its_readings(
        six_captchas, flat_captchas, tmp_path, monkeypatch, epochs):
    """Unlabelled captchas beside a handful of labelled ones do not skip the reader check; where it keeps the
    reader, the readings it is surest of teach the ranked rounds, each round's recipe as the run was asked for it
    (the kept reader trained no epochs)."""

    _reader_checked(monkeypatch, read=4, reader=None, fine_tuned=None)
    unlabelled, read_by = _ranked(monkeypatch, flat_captchas, tmp_path, 8)
    out = tmp_path / "few.pt"
    said: list[str] = []
    res = train(TrainConfig(data=str(six_captchas), out=str(out), charset="ABC123", unlabelled=str(unlabelled),
                            budget=20, epochs=epochs), say=said.append)
    assert any("keeping the reader, nothing trained" in line for line in said), said
    # the kept reader read them (and, before, its labelled captchas for its confidence map)
    assert {r[:2] for r in read_by} == {("few.pt", "reader:reader-ctc.pt")} and len(read_by) <= 2
    assert res["self_training"]["kept"] and [r["pseudo_labelled"] for r in res["self_training"]["ranked"]] == [8]
    assert any("the 8 readings the general reader is surest of and the 6 labelled captchas" in line
               for line in said), said
    ck = load_checkpoint(out)
    assert ck["self_training"]["pseudo_labelled"] == 8 and ck["train_config"]["epochs"] > 0
    assert epochs is None or ck["train_config"]["epochs"] == epochs  # as asked, not the kept reader's 0


@pytest.mark.usefixtures("no_int8_check")
def test_a_handful_fine_tuned_learns_in_rounds_from_the_unlabelled_captchas_it_is_surest_of(
        six_captchas, flat_captchas, tmp_path, monkeypatch):
    """Where the reader is not kept and nothing is held out, each round trains as on a labelled folder of the handful
    (their own labels) and the unlabelled captchas the last model is surest of, growing to all of them; the last
    round is the model, and each round's folder records what it learned from."""
    from captcha.data.layout import labels_csv_rows

    _reader_checked(monkeypatch, read=1, reader=1, fine_tuned=0)  # under 30%, not clearly more: fine-tuned
    unlabelled, read_by = _ranked(monkeypatch, flat_captchas, tmp_path, 20)
    out = tmp_path / "m.pt"
    said: list[str] = []
    res = train(TrainConfig(data=str(six_captchas), out=str(out), charset="ABC123", unlabelled=str(unlabelled),
                            epochs=1), say=said.append)
    info = res["self_training"]
    assert [r["pseudo_labelled"] for r in info["ranked"]] == [8, 20] and info["kept"], info
    assert [name for name, _, _ in read_by] == ["m.pt", "m.round1.pt"]  # the handful's fine-tune, then round 1's
    assert all(backend.startswith("onnx") for _, _, backend in read_by), read_by  # read as `captcha solve` reads
    assert any("2 rounds on the readings of the 20 unlabelled captchas the last model is surest of, 8 then 20" in line
               for line in said), said
    handful = dict(labels_csv_rows(six_captchas / "labels.csv"))
    for k, count in ((1, 8), (2, 20)):
        rows = labels_csv_rows(tmp_path / f"m.round{k}" / "labels.csv")
        assert len(rows) == 6 + count
        assert {name.split("_", 1)[1]: label for name, label in rows[:6]} == handful  # their own labels
        assert all(len(label) == 4 for _, label in rows[6:])
    ck = load_checkpoint(out)
    assert res["checkpoint"] == str(out) and ck["train_config"]["data"] == str(tmp_path / "m.round2")
    assert ck["self_training"]["ranked"] == info["ranked"]  # the model says how it was made
    assert res["train_seconds"] >= sum(r["seconds"] for r in info["ranked"])


@pytest.mark.usefixtures("no_int8_check")
def test_rounds_not_kept_leave_the_first_fit_refit_as_without_unlabelled(flat_captchas, tmp_path, monkeypatch):
    """Self-training takes the refit's place in the plan; where no round is kept, the first fit is refit on every
    labelled captcha as a run without --unlabelled is."""
    import captcha.training.train as train_module

    not_kept = {"unlabelled": 1, "pseudo_labelled": 0, "kept": False}
    monkeypatch.setattr(train_module, "judged_rounds",
                        lambda cfg, data, paths, first, *a: {**first, "self_training": not_kept})
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    Image.open(next(flat_captchas.glob("*.png"))).save(unlabelled / "a.png", compress_level=1)  # not a labelled file
    out = tmp_path / "m.pt"
    said: list[str] = []
    res = train(_cfg(flat_captchas, out, pretrained="glyphs", freeze="all", method="classify", split="equal", epochs=2,
                     val_fraction=0.25, unlabelled=str(unlabelled)), say=said.append)
    assert res["self_training"] == not_kept
    assert any(line.startswith("refit: training again") for line in said), said
    assert res["refit"]["epochs"] == load_checkpoint(out)["refit"]["epochs"] >= 1
    said.clear()  # --no-refit still means none
    res = train(_cfg(flat_captchas, out, pretrained="glyphs", freeze="all", method="classify", split="equal", epochs=2,
                     val_fraction=0.25, unlabelled=str(unlabelled), refit=False), say=said.append)
    assert "refit" not in res and not any(line.startswith("refit:") for line in said)


@pytest.mark.usefixtures("no_int8_check")
def test_a_judged_rounds_refit_learns_its_pseudo_labelled_captchas_too(flat_captchas, tmp_path, monkeypatch):
    """A round trains on the labelled captchas and its readings, holding out labelled ones only; its refit on every
    labelled captcha learns the readings again (a refit on the labelled alone dropped what they taught)."""
    import captcha.training.selftrain as selftrain
    import captcha.training.train as train_module

    monkeypatch.setattr(selftrain, "RANKED_FIRST", 6)
    rows = [line.split(",") for line in (flat_captchas / "labels.csv").read_text().splitlines()[1:7]]
    monkeypatch.setattr(train_module, "surest_readings",
                        lambda solver, paths, lengths, count: [(str(flat_captchas / n), lab) for n, lab in rows])
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    Image.open(next(flat_captchas.glob("*.png"))).save(unlabelled / "a.png", compress_level=1)  # not a labelled file
    said: list[str] = []
    res = train(_cfg(flat_captchas, tmp_path / "m.pt", pretrained="glyphs", freeze="all", method="classify",
                     split="equal", epochs=2, val_fraction=0.25, unlabelled=str(unlabelled)), say=said.append)
    fits = [line for line in said if line.startswith("training on ")]
    assert fits[0].startswith("training on 104 character crops")  # the first fit: 26 of the 40 labelled
    assert fits[1].startswith("training on 128 character crops")  # the round: those 26 and the 6 readings
    assert "validating on 10 captchas;" in fits[1]  # labelled ones only
    assert fits[2].startswith("training on 184 character crops")  # its refit: all 40 and the 6 readings
    assert [r["pseudo_labelled"] for r in res["self_training"]["ranked"]] == [6]


def test_a_small_set_is_refit_on_every_labelled_captcha(flat_captchas, tmp_path):
    """Auto refit (the budget has time): after the epochs are chosen on the held-out captchas, the model is
    trained again on all 40 of them (the slice and the validation share too); the first fit's figures stay as
    the estimate, and `eval --val` says there is nothing left to validate on instead of reading trained-on ones."""
    from captcha.errors import DataError
    from captcha.eval.evaluate import evaluate_checkpoint

    out = tmp_path / "refit.pt"
    said: list[str] = []
    res = train(_cfg(flat_captchas, out, pretrained="glyphs", freeze="all", method="classify", split="equal",
                     epochs=2, val_fraction=0.25), say=said.append)
    fits = [line for line in said if line.startswith("training on ")]
    assert fits[0].startswith("training on 104 character crops")  # 26 of 40 captchas
    assert "validating on 10 captchas;" in fits[0]
    assert fits[1].startswith("training on 160 character crops") and "validating on nothing;" in fits[1]  # all 40
    ck = load_checkpoint(out)
    assert res["refit"]["epochs"] == ck["refit"]["epochs"] == ck["history"][-1]["epoch"] >= 1
    assert ck["refit"]["estimate"]["val_captchas"] == 10 and ck["refit"]["estimate"]["val"]["captchas"] == 10
    assert ck["split"]["val_files"] == [] and len(ck["recipe"]["probes"]) == 0 and ck["recipe"]["held_out"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["refit.curve.png", "refit.last.pt", "refit.pt"]
    assert "second" not in ck  # split-and-classify keeps the refit alone (mixed on two course-layout sets)
    if "int8" in ck:
        assert ck["int8"]["on"] == "training" and ck["int8"]["captchas"] == 40
    with pytest.raises(DataError, match="refit"):
        evaluate_checkpoint(out)


@pytest.mark.usefixtures("no_int8_check")
def test_training_and_its_refit_go_on_from_the_chosen_probes_weights(flat_captchas, tmp_path, monkeypatch):
    """The probes' short runs are not thrown away: the first fit starts from the chosen probe's trained
    weights, and the refit on every captcha from the same ones."""
    import captcha.training.fit as fit_module
    import captcha.training.recipe as recipe

    probes, starts = [], []
    run_probe, one_epoch = recipe.run_probe, fit_module.train_one_epoch
    monkeypatch.setattr(recipe, "run_probe", lambda probe, *a, **k: probes.append(run_probe(probe, *a, **k)) or probe)

    def recording(net, *a, **k):
        starts.append(net.model.fc.weight.detach().clone())
        return one_epoch(net, *a, **k)

    monkeypatch.setattr(fit_module, "train_one_epoch", recording)
    said: list[str] = []
    out = tmp_path / "warm.pt"
    train(_cfg(flat_captchas, out, pretrained="glyphs", freeze="auto", method="classify", split="equal", epochs=2,
               val_fraction=0.25, refit=True), say=said.append)
    chosen = [p for p in probes if p.state is not None]
    assert len(probes) == 3 and len(chosen) == 1  # one probe a freeze level; the others dropped their weights
    assert any(line.startswith("training goes on from the chosen probe's weights") for line in said)
    assert len(starts) == 4  # two epochs of the first fit, two of the refit
    assert torch.equal(starts[0], chosen[0].state["fc.weight"]) and torch.equal(starts[2], starts[0])
    assert not torch.equal(starts[1], starts[0])  # it trained
    assert load_checkpoint(out)["recipe"]["warm_start"]
    last = load_checkpoint(out.with_name("warm.last.pt"))  # the first fit's (the refit's is removed)
    peak = TrainConfig.from_dict(last["train_config"]).peak_lr
    assert last["optimizer"]["param_groups"][0]["max_lr"] == pytest.approx(peak / WARM_LR_DIVISOR)
    assert last["scheduler"]["_schedule_phases"][0]["end_step"] <= 1.5  # no second warm-up: two steps at most
    assert sum("going on from the probe at a peak rate" in line for line in said) == 2


def test_a_ctc_refit_keeps_the_first_fit_to_read_the_unsure_captchas(flat_captchas, tmp_path, caplog, monkeypatch):
    """A CTC refit stores the first fit's weights as the checkpoint's second network (half precision); solving
    loads both on either backend, `export` writes the second beside the main file, and an exported model whose
    second file is missing reads with the main one and says so. Layer3 is narrowed from CTC_LAYER3_NARROW_FROM
    labelled captchas, here 40: the first fit (a slice and a validation share held out) and the refit on all 40
    count them alike, so the refit goes on from the first fit's probe and both networks are narrowed."""
    import captcha.training.recipe as recipe
    import captcha.training.train as train_module
    from captcha.config import SECOND
    from captcha.inference.backends import second_path
    from captcha.inference.decode import calibrated
    from captcha.inference.export import export_onnx
    from captcha.inference.load import OnnxCache, load_solver

    monkeypatch.setattr(recipe, "CTC_LAYER3_NARROW_FROM", 40)
    monkeypatch.setattr(train_module, "CONFIDENCE_MAP_MIN", 10)  # the first fit holds out 10 + its slice of 4
    out = tmp_path / "ctc.pt"
    said: list[str] = []
    res = train(_cfg(flat_captchas, out, method="ctc", pretrained="auto", epochs=2, batch_size=8, size=None,
                     val_fraction=0.25), say=said.append)
    shape = f"{CTC_WIDTH} channels in layer4 and {CTC_LAYER3_INNER} inside each layer3 block"
    assert sum(line.startswith("training on") and shape in line for line in said) == 2, said  # the fit and the refit
    ck, first = load_checkpoint(out), load_checkpoint(out.with_name("ctc.last.pt"))
    assert res["refit"]["epochs"] >= 1 and ck[SECOND]["epoch"] >= 1 and ck[SECOND]["captchas"] == 40
    assert any(line.startswith("kept the first fit beside the refit: from 40 captchas") for line in said)
    assert ck[SECOND]["model"]["fc.weight"].dtype == torch.float16 and ck["model"]["fc.weight"].dtype == torch.float32
    assert ck["layer3_inner"] == CTC_LAYER3_INNER == ck[SECOND]["model"]["layer3.1.conv1.weight"].shape[0]
    if ck[SECOND]["epoch"] == first["epoch"]:  # the kept epoch was the last: the first fit's last weights
        assert torch.equal(ck[SECOND]["model"]["fc.weight"], first["model"]["fc.weight"].half())
    assert not torch.equal(ck[SECOND]["model"]["fc.weight"], ck["model"]["fc.weight"].half())  # another network
    # the confidence map the first fit's held-out readings fitted is the refit's: solving reads through it
    mapped = ck["confidence_map"]
    assert mapped["captchas"] == 10 + first["recipe"]["held_out"] and 0 <= mapped["right"] <= mapped["captchas"]
    assert mapped["a"] > 0 and any(line.startswith(f"confidence map: fitted on how the {mapped['captchas']} captchas")
                                   for line in said)
    held = sorted(flat_captchas.glob("*.png"))[:6]
    hashed, key = [], OnnxCache.key
    monkeypatch.setattr(OnnxCache, "key", lambda cache, path: hashed.append(path) or key(cache, path))
    onnx, torch_ = load_solver(out, precision="fp32"), load_solver(out, backend="torch")
    assert onnx.second is not None and torch_.second is not None and hashed == [out]  # one hash for both networks
    x = np.stack([onnx.inputs(p) for p in held])
    assert np.allclose(onnx.second(x[:, 0]), torch_.second(x[:, 0]), atol=1e-2)
    assert not np.allclose(torch_.second(x[:, 0]), torch_.backend(x[:, 0]), atol=1e-2)
    assert [s.text for s in onnx.rechecking("all").read(x)] == [s.text for s in torch_.rechecking("all").read(x)]
    for sol in onnx.read(x):
        assert sol.calibration == (mapped["a"], mapped["b"])
        assert sol.confidence == pytest.approx(calibrated(sol.raw_confidence, mapped["a"], mapped["b"]))
    exported = tmp_path / "m.onnx"
    rep = export_onnx(out, exported, quantize=True, with_second=True)
    assert load_solver(exported).confidence_map == (mapped["a"], mapped["b"])  # exported files carry it
    assert rep[SECOND]["onnx"] == str(second_path(exported)) == str(tmp_path / "m.second.onnx")
    assert rep[SECOND]["int8"] == str(second_path(rep["int8"])) == str(tmp_path / "m.second.int8.onnx")
    assert load_solver(exported).second is not None and load_solver(rep["int8"]).second is not None
    second_path(exported).unlink()
    assert load_solver(exported).second is None and "second network" in caplog.text


@pytest.mark.usefixtures("no_int8_check")
def test_a_ctc_refit_on_more_captchas_than_the_limit_keeps_no_second(flat_captchas, tmp_path, monkeypatch):
    """Beyond SECOND_MAX_CAPTCHAS labelled captchas the refit is kept alone: there the two fits' average read
    the leave-style-out sites no better."""
    import captcha.training.train as training
    from captcha.config import SECOND
    from captcha.inference.load import load_solver

    monkeypatch.setattr(training, "SECOND_MAX_CAPTCHAS", 39)
    out = tmp_path / "many.pt"
    res = train(_cfg(flat_captchas, out, method="ctc", pretrained="auto", epochs=1, batch_size=8, size=None,
                     val_fraction=0.25))
    assert res["refit"]["epochs"] == 1 and SECOND not in load_checkpoint(out)
    assert load_solver(out, backend="torch").second is None


@pytest.mark.usefixtures("no_int8_check")
def test_one_fit_instead_of_a_refit_trains_on_the_held_out_slice_too(flat_captchas, tmp_path):
    """Auto epochs with no room for a refit (a 1 s budget): the slice that chose the recipe joins the one fit,
    every epoch is kept in turn (the last stays), and the validation share, never trained on, judges the run."""
    out = tmp_path / "one.pt"
    said: list[str] = []
    train(_cfg(flat_captchas, out, pretrained="glyphs", freeze="all", method="classify", split="equal",
               epochs=None, budget=1.0, val_fraction=0.25), say=said.append)
    fits = [line for line in said if line.startswith("training on ")]
    assert len(fits) == 1 and fits[0].startswith("training on 120 character crops")  # all 30 training captchas
    assert "keeping the last epoch (none of them held out" in fits[0] and "validating on 10 captchas;" in fits[0]
    assert any(line.startswith("no refit:") and "held-out slice (16 samples)" in line for line in said)
    ck = load_checkpoint(out)
    assert ck["train_config"]["select_fraction"] == 0.0 and ck["train_config"]["refit"] is False
    assert ck["recipe"]["held_out"] == 16 and "refit" not in ck  # the slice chose, then was trained on
    assert ck["metrics"]["epoch"] == ck["history"][-1]["epoch"] == ck["train_config"]["epochs"] == 3
    assert ck["metrics"]["captchas"] == 10


@pytest.mark.usefixtures("no_int8_check")
def test_one_fit_trains_on_all_but_a_few_of_the_validation_captchas_too(flat_captchas, tmp_path, monkeypatch):
    """Told no --val-fraction, a run that fits once also trains on the validation captchas it needs no more of to be
    measured: all but ONE_FIT_VALIDATION (4 here) of the 8 a default split holds out; the checkpoint records the
    smaller share, `captcha eval --val` reads the four, and the epoch kept is said to be the last."""
    from click.testing import CliRunner

    import captcha.training.budget as budget_module
    import captcha.training.train as train_module
    from captcha.cli import main
    from captcha.data.splits import flat_split, validation_data

    for module in (train_module, budget_module):
        monkeypatch.setattr(module, "ONE_FIT_VALIDATION", 4)
    out = tmp_path / "one.pt"
    res = CliRunner().invoke(main, ["train", "--data", str(flat_captchas), "--out", str(out), "--charset", "ABC123",
                                    "--pretrained", "glyphs", "--freeze", "all", "--method", "classify", "--split",
                                    "equal", "--budget", "1", "--batch-size", "16", "--aug-passes", "1",
                                    "--input-size", "32", "32"])
    assert res.exit_code == 0, res.output
    said = res.output.splitlines()
    assert "(the last: nothing was held out to choose by)" in res.output
    assert any(line.startswith("no refit:") and "and on 4 of the 8 validation captchas (4 measure it" in line
               for line in said)
    fits = [line for line in said if line.startswith("training on ")]
    assert len(fits) == 1 and fits[0].startswith("training on 144 character crops")  # 32 + 4 captchas
    assert "validating on 4 captchas;" in fits[0]
    ck = load_checkpoint(out)
    assert ck["train_config"]["val_fraction"] == pytest.approx(4 / 40) and ck["metrics"]["captchas"] == 4
    names = [line.split(",")[0] for line in (flat_captchas / "labels.csv").read_text().splitlines()[1:]]
    assert len(ck["split"]["val_files"]) == 4 and set(ck["split"]["val_files"]) < flat_split(names, 0.2, 0)
    assert len(validation_data(ck).captchas) == 4


@pytest.mark.usefixtures("no_int8_check")
def test_a_fit_slower_than_its_probe_is_held_to_the_budget(tiny_data, tmp_path, monkeypatch):
    """Epochs planned from a probe's speed that then run slower (a busier machine) are cut to what the budget
    still holds, and the rate is annealed by the new last epoch; the checkpoint and `captcha train --json` say so."""
    import json
    import time
    import types

    from click.testing import CliRunner

    import captcha.training.budget as budget_module
    import captcha.training.fit as fit_module
    import captcha.training.train as train_module
    from captcha.cli import main
    from captcha.training.budget import fit_epochs

    # training's clock runs 10 s further with each epoch (the probes, timed on the real one, planned fast epochs)
    late = {"by": 0.0}
    clock = types.SimpleNamespace(perf_counter=lambda: time.perf_counter() + late["by"])
    for module in (train_module, fit_module, budget_module):
        monkeypatch.setattr(module, "time", clock)
    real_epoch = fit_module.train_one_epoch

    def slow_epoch(*args, **kwargs):
        late["by"] += 10.0
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(fit_module, "train_one_epoch", slow_epoch)
    out = tmp_path / "m.pt"
    res = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--out", str(out), "--charset", "ABC123",
                                    "--pretrained", "glyphs", "--freeze", "all", "--budget", "60", "--no-refit",
                                    "--batch-size", "16", "--aug-passes", "1", "--input-size", "32", "32", "--json"])
    assert res.exit_code == 0, res.output
    ck = load_checkpoint(out)
    cut = ck["recipe"]["shortened"]
    # its one augmentation pass, kept for every epoch (only the head trains), is prepared in the first epoch, which
    # is timed apart: the pace is the second's
    assert cut["planned"] > 6 and cut["after"] == 2 and cut["epoch_seconds"] >= 10.0
    result = json.loads(res.stdout)
    assert len(result["history"]) == cut["epochs"] == ck["train_config"]["epochs"] <= 6 and result["shortened"] == cut
    assert any(line.startswith("the fit's epochs take") and f"{cut['epochs']} of the {cut['planned']} planned" in line
               for line in res.stderr.splitlines()), res.stderr
    # the arithmetic: 11 s left at 2 s an epoch after 3 done holds 5 more; never fewer than one more nor the least
    late["by"] = 0.0
    ends = time.perf_counter() + 11.0
    assert fit_epochs(20, 3, 2.0, ends) == 8
    assert fit_epochs(6, 3, 2.0, ends) == 6  # as planned: it fits
    assert fit_epochs(20, 3, 2.0, ends - 20.0) == 3  # none more (the fit runs one more all the same)


def test_a_refit_slower_than_its_first_fit_is_held_to_the_budget(tiny_data, tmp_path, monkeypatch):
    """A refit whose epochs the budget set, that then runs slower than its first fit did, is cut to what the
    budget still holds (never below REFIT_MIN_EPOCHS); the checkpoint's refit record and `captcha train` say so."""
    import time
    import types

    from click.testing import CliRunner

    import captcha.training.budget as budget_module
    import captcha.training.fit as fit_module
    import captcha.training.train as train_module
    from captcha.cli import main

    late, refitting = {"by": 0.0}, {"now": False}
    clock = types.SimpleNamespace(perf_counter=lambda: time.perf_counter() + late["by"])
    for module in (train_module, fit_module, budget_module):
        monkeypatch.setattr(module, "time", clock)
    real_epoch, real_refit = fit_module.train_one_epoch, train_module.refit

    def slow_epoch(*args, **kwargs):  # the refit's epochs, and only they, take 10 s more than the first fit's
        late["by"] += 10.0 if refitting["now"] else 0.0
        return real_epoch(*args, **kwargs)

    def watched_refit(*args, **kwargs):
        refitting["now"] = True
        return real_refit(*args, **kwargs)

    monkeypatch.setattr(fit_module, "train_one_epoch", slow_epoch)
    monkeypatch.setattr(train_module, "refit", watched_refit)
    monkeypatch.setattr(budget_module, "refit_epochs", lambda *args, **kwargs: 8)  # the plan: 8 epochs fit
    for module in (train_module, fit_module):  # the least a refit runs, and what the run says of it
        monkeypatch.setattr(module, "REFIT_MIN_EPOCHS", 3)
    out = tmp_path / "m.pt"
    res = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--out", str(out), "--charset", "ABC123",
                                    "--pretrained", "glyphs", "--freeze", "all", "--epochs", "2", "--budget", "60",
                                    "--batch-size", "16", "--aug-passes", "1", "--input-size", "32", "32"])
    assert res.exit_code == 0, res.output
    said = res.output.splitlines()
    record = load_checkpoint(out)["refit"]
    cut = record["shortened"]
    # as for a first fit: its first epoch prepares the one pass kept for all, and is timed apart
    assert cut["planned"] == 8 and cut["after"] == 2 and cut["epoch_seconds"] >= 10.0
    assert 3 <= record["epochs"] == cut["epochs"] < 8
    assert any(line.startswith("the refit's epochs take") and f"{cut['epochs']} of the 8 planned" in line
               for line in said), said
    assert f"for {cut['epochs']} epochs (of the 8 planned: the rest did not fit in --budget)" in res.output
    # --refit asks for the epochs the first fit kept whatever the budget: not held to it
    late["by"], refitting["now"] = 0.0, False
    said = []
    train(_cfg(tiny_data, out, pretrained="glyphs", freeze="all", epochs=2, budget=60.0, refit=True), say=said.append)
    record = load_checkpoint(out)["refit"]
    assert record["shortened"] is None and record["epochs"] == 8
    assert not any("epochs take" in line for line in said)
    # where the budget holds fewer than the least a refit is planned for, it stops and the first fit stands, checked
    # for int8 as a run of one fit is
    for module in (train_module, fit_module):
        monkeypatch.setattr(module, "REFIT_MIN_EPOCHS", 7)
    late["by"], refitting["now"] = 0.0, False
    said = []
    res = train(_cfg(tiny_data, out, pretrained="glyphs", freeze="all", epochs=2, budget=60.0), say=said.append)
    ck = load_checkpoint(out)
    stop = ck["recipe"]["refit_stopped"]
    assert "refit" not in ck and res["refit_stopped"] == stop and "refit" not in res
    assert stop["planned"] == 8 and stop["after"] == 2 and stop["fit"] < 7 and ck["int8"]["captchas"] > 0
    assert len(ck["history"]) == 2 and not list(tmp_path.glob("m.refit*"))
    assert any(line.startswith("refit stopped after 2 of its 8 epochs") for line in said), said


@pytest.mark.usefixtures("no_int8_check")
def test_a_course_layout_refit_keeps_its_validation_folders_out(tiny_data, tmp_path):
    """In the course layout the refit adds the held-out slice of chars/train only: chars/val and
    captchas/val stay out, so its own figures on them are reported and `eval --val` still measures it."""
    from captcha.eval.evaluate import evaluate_checkpoint

    out = tmp_path / "course.pt"
    said: list[str] = []
    res = train(_cfg(tiny_data, out, pretrained="glyphs", freeze="all", epochs=2, refit=True), say=said.append)
    fits = [line for line in said if line.startswith("training on ")]
    assert len(fits) == 2 and all("and 20 captchas" in line for line in fits), fits
    ck = load_checkpoint(out)
    assert ck["refit"]["validation_trained_on"] is False and "first_fit" in ck["refit"]
    assert res["best"] == ck["metrics"] and ck["metrics"]["captchas"] == 20  # the refit's own figures
    assert evaluate_checkpoint(out).captchas["captchas"] == 20


@pytest.mark.usefixtures("no_int8_check")
def test_labels_beyond_the_charset_are_read_or_reported(flat_captchas, tmp_path):
    """No --charset: a site's "+" becomes a class; a given charset without it: each captcha left out is said."""
    import shutil

    from captcha.charset import DEFAULT_CHARSET
    from captcha.training.train import training_charset

    data = tmp_path / "signs"
    shutil.copytree(flat_captchas, data)
    rows = (data / "labels.csv").read_text().splitlines()
    rows[1::2] = [row[:-1] + "+" for row in rows[1::2]]  # every other captcha's last character is a "+"
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    said: list[str] = []
    out = tmp_path / "signs.pt"
    train(_cfg(data, out, charset=None, method="classify", split="equal", epochs=1, refit=False), say=said.append)
    ck = load_checkpoint(out)
    assert ck["charset"]["alphabet"] == DEFAULT_CHARSET.alphabet + "+" and ck["charset"]["fold_case"]
    assert ck["model"]["fc.weight"].shape[0] == len(DEFAULT_CHARSET) + 1
    assert any("the labels ask for 37 characters" in line and "+'" in line and "case folded" in line
               for line in said), said
    assert not any(line.startswith("left out") for line in said)
    said.clear()
    assert training_charset(_cfg(data, out), said.append).alphabet == "ABC123"
    assert len(said) == 1 and said[0].startswith(f"left out of {data} (20 labelled images kept)")
    assert "'+'" in said[0] and "and 19 more" in said[0]


@pytest.mark.usefixtures("no_int8_check")
def test_captchas_left_out_are_said_once_even_with_a_refit(flat_captchas, tmp_path):
    """A label of another length than most is left out of training and said (it was silent unless training
    failed), and a labels.csv row for a missing file too: once each, not again by the refit's inner run."""
    import shutil

    data = tmp_path / "site"
    shutil.copytree(flat_captchas, data)
    rows = (data / "labels.csv").read_text().splitlines()
    for k in (1, 2, 3):  # three captchas cut to their first three cells, in the training share or the slice
        name, label = rows[k].split(",")
        img = Image.open(data / name)
        img.crop((0, 0, img.width * 3 // 4, img.height)).save(data / name)
        rows[k] = f"{name},{label[:3]}"
    rows.append("gone.png,ABCA")
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    said: list[str] = []
    train(_cfg(data, tmp_path / "m.pt", method="classify", split="equal", epochs=1, val_fraction=0.1), say=said.append)
    assert sum(line.startswith("refit:") for line in said) == 1
    missing = [line for line in said if line.startswith("left out of")]
    assert len(missing) == 1 and "gone.png: listed in labels.csv but missing" in missing[0]
    lengths = [line for line in said if line.startswith("left out") and "another length than 4" in line]
    assert len(lengths) == 1 and int(lengths[0].split()[2]) >= 1


@pytest.mark.usefixtures("no_int8_check")
def test_labels_in_lower_case_train_a_model_that_answers_in_lower_case(flat_captchas, tmp_path):
    """No --charset: a site labelled in lower case is read, and answered, in lower case."""
    import shutil

    from captcha.charset import LOWER_ALPHABET
    from captcha.inference.load import load_solver

    data = tmp_path / "lower"
    shutil.copytree(flat_captchas, data)
    rows = (data / "labels.csv").read_text().splitlines()
    (data / "labels.csv").write_text("\n".join(rows[:1] + [row.lower() for row in rows[1:]]) + "\n")
    said: list[str] = []
    out = tmp_path / "lower.pt"
    train(_cfg(data, out, charset=None, method="classify", split="equal", epochs=1, refit=False), say=said.append)
    ck = load_checkpoint(out)
    assert ck["charset"] == {"alphabet": LOWER_ALPHABET, "fold_case": True}
    assert any("lower case, as labelled" in line for line in said), said
    solver = load_solver(out)
    texts = [r.solution.text for r in solver.solve_batch(sorted(data.glob("*.png"))[:4])]
    assert solver.charset.lower_case and len(texts) == 4 and all(t and t == t.lower() for t in texts)


def test_the_batch_follows_the_method_unless_given():
    """Whole captchas train 16 to a step, character crops 64, unless --batch-size says otherwise."""
    from captcha.config import TRAIN_BATCH
    assert TrainConfig(method="ctc").batch == TRAIN_BATCH["ctc"] == 16
    assert TrainConfig(method="classify").batch == TRAIN_BATCH["classify"] == 64
    assert TrainConfig(method="auto").batch == 64 and TrainConfig(method="ctc", batch_size=8).batch == 8


@pytest.mark.usefixtures("no_int8_check")
def test_ctc_steps_through_its_own_batch_and_records_it(flat_captchas, tmp_path):
    """With no --batch-size a CTC run takes TRAIN_BATCH's 16 captchas a step, and the checkpoint says so."""
    import re

    from captcha.config import TRAIN_BATCH
    out = tmp_path / "b.pt"
    said: list[str] = []
    train(_cfg(flat_captchas, out, method="ctc", pretrained="auto", epochs=2, batch_size=None, size=None,
               val_fraction=0.25, refit=False), say=said.append)
    last = load_checkpoint(out.with_name("b.last.pt"))
    n = int(re.search(r"training on (\d+) whole captchas", "\n".join(said)).group(1))
    assert last["train_config"]["batch_size"] == TRAIN_BATCH["ctc"]
    assert last["scheduler"]["total_steps"] == 2 * math.ceil(n / TRAIN_BATCH["ctc"]) and n > TRAIN_BATCH["ctc"]


@pytest.mark.usefixtures("no_int8_check")
def test_a_run_decodes_its_folder_once(flat_captchas, tmp_path, monkeypatch):
    """The probes, the fit and its refit each read the folder; each image is decoded once for all of them."""
    from collections import Counter

    import captcha.data.layout as layout

    decoded: Counter = Counter()
    real = layout.load_image

    def counting(path, *args, **kwargs):
        decoded[str(path)] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(layout, "load_image", counting)
    said: list[str] = []
    train(_cfg(flat_captchas, tmp_path / "m.pt", pretrained="glyphs", split="auto", epochs=1, val_fraction=0.25),
          say=said.append)
    assert sum(line.startswith("probe ") for line in said) >= 2 and sum(line.startswith("refit:") for line in said) == 1
    assert len(decoded) == 40 and set(decoded.values()) == {1}


def test_a_run_made_before_glyphs_were_drawn_apart_resumes_as_the_package_decodes_now(tiny_data, tmp_path):
    """A checkpoint that records no ``apart`` (made before SVG glyphs were drawn apart) goes on with its captchas
    decoded as the package decodes them now: the checkpoint it writes records the package's drawing."""
    from captcha.config import SVG_APART
    from captcha.nn.checkpoint import save_checkpoint

    out = tmp_path / "m.pt"
    train(_cfg(tiny_data, out, epochs=1, split="equal", pretrained="none", freeze="none"))
    last = last_file(out)
    old = load_checkpoint(last)
    old["segment"].pop("apart")
    save_checkpoint(old, last)
    train(_cfg(tiny_data, out, epochs=2, split="equal", pretrained="none", freeze="none", resume=True))
    assert load_checkpoint(last)["segment"]["apart"] is SVG_APART and [h["epoch"] for h in
                                                                        load_checkpoint(last)["history"]] == [1, 2]
