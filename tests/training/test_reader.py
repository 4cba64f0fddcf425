"""The general reader: padded CTC targets, its pretraining loop, its head mapped onto a site's charset."""

import numpy as np
import pytest
import torch

from captcha.charset import Charset
from captcha.config import ReaderConfig
from captcha.inference.export import int8_passes
from captcha.nn.checkpoint import load_checkpoint, save_checkpoint
from captcha.nn.networks import (
    load_backbone,
    model_from_checkpoint,
    new_model,
    reader_state,
)
from captcha.training.loop import CTCLoss
from captcha.training.reader import encode_padded, pretrain_reader


def test_padded_targets_give_each_captcha_its_own_length():
    torch.manual_seed(0)
    logits = torch.randn(2, 12, 5)
    padded = torch.tensor([[0, 1, 2, -1], [3, 3, 1, 0]])
    loss = CTCLoss()(logits, padded)
    one = CTCLoss()(logits[:1], torch.tensor([[0, 1, 2]]))
    two = CTCLoss()(logits[1:], torch.tensor([[3, 3, 1, 0]]))
    # nn.CTCLoss's "mean" divides each sample's loss by its target length before averaging
    assert torch.isclose(loss, (one + two) / 2, atol=1e-5)
    assert encode_padded("ab1", Charset("AB12"), 5).tolist() == [0, 1, 2, -1, -1]


def test_pretraining_writes_a_reader_that_solving_can_load(tmp_path, monkeypatch, caplog):
    import captcha.data.fonts as fonts

    few = fonts.pretraining_faces()[:2]  # a machine with the pretraining font packages missing
    monkeypatch.setattr(fonts, "pretraining_faces", lambda: few)
    out = tmp_path / "reader.pt"
    info = pretrain_reader(ReaderConfig(out=str(out), steps=3, batch_size=4, eval_every=2, workers=0, heldout=8,
                                        alphabet="AB12", lengths=(2, 3)), progress=False)
    assert [h["step"] for h in info["history"]] == [2, 3]
    ckpt = load_checkpoint(out, kind="recognizer")
    assert ckpt["method"] == "ctc" and ckpt["length"] == 0 and ckpt["segment"]["crop"]
    assert model_from_checkpoint(ckpt, out).fc.out_features == 5  # 4 characters and the blank
    card = out.with_suffix(".md").read_text()
    assert "general reader" in card and "int8 check, on captchas read whole: " in card
    assert ckpt["layer4_order"].startswith("most-used first") and "layer4's channels stored most-used first" in card
    assert ckpt["layer3_order"] == ckpt["layer4_order"] and "inside each layer3 block stored most-used first" in card
    # said as it starts, and kept in the checkpoint and its card: nothing else shows a narrower synthesis
    assert "pretraining finds 2 font faces" in caplog.text
    assert ckpt["pretrain"]["fonts_warning"].startswith("pretraining finds 2 font faces")
    assert "Warning: pretraining finds 2 font faces" in card
    faces = ckpt["pretrain"]["face_list"]  # the faces it was made from, with their licences, on its card
    assert len(faces) == ckpt["pretrain"]["faces"] and all(f["licence"] for f in faces)
    assert "## Font faces" in card and f"| {faces[0]['family']} | {faces[0]['source']} | {faces[0]['licence']} |" in card
    check = ckpt["int8"]  # checked on its held-out synthetic captchas, calibrated on another seed's
    assert check["captchas"] == 8 and tuple(check["inputs"].shape) == (64, 48, 160, 3)
    assert check["default"] == int8_passes(check) and check["training"] is None
    assert check["fp32_only"] - check["int8_only"] == round(8 * (check["fp32"] - check["int8"]))


def _labelled_folder(folder, labels):
    from PIL import Image, ImageDraw

    folder.mkdir()
    rows = ["filename,label"]
    for i, label in enumerate(labels):
        img = Image.new("RGB", (90, 32), "white")
        ImageDraw.Draw(img).text((8 + i, 8), label, fill="black")  # moved a pixel each: no two files alike
        img.save(folder / f"{i:03d}.png")
        rows.append(f"{i:03d}.png,{label}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_watched_real_captchas_are_read_at_each_evaluation_and_shown_on_the_card(tmp_path):
    from captcha.data.preprocess import Preprocess
    from captcha.errors import DataError
    from captcha.training.reader import read_watched, watched_sets

    site = _labelled_folder(tmp_path / "site", ["ab", "ba", "abb", "bab", "aab", "bba", "ab", "ba"])
    charset = Charset("AB12")
    (w,) = watched_sets([str(site)], Preprocess(size=(48, 160)), charset)
    assert w.name == "site" and w.labels == ["AB", "BA"]  # the last quarter by name, folded to the reader's case
    assert w.x.shape == (2, 1, 3, 48, 160) and w.chars == "AB"  # read as solving prepares and --allow reads
    # a head that prefers "1" in every column reads "1" unrestricted; held to the folder's characters, "A"
    model = new_model("ctc", 4)
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.tensor([5.0, 0.0, 10.0, 0.0, 0.0]))
    only_a = _labelled_folder(tmp_path / "only-a", ["a"] * 8)
    (a,) = watched_sets([str(only_a)], Preprocess(size=(48, 160)), charset)
    assert read_watched(model, [a], charset, Preprocess(size=(48, 160))) == {"only-a": 1.0}
    out = tmp_path / "reader.pt"
    info = pretrain_reader(ReaderConfig(out=str(out), steps=2, batch_size=4, eval_every=1, workers=0, heldout=4,
                                        alphabet="AB12", lengths=(2, 3), watch=(str(site),)), progress=False)
    assert [sorted(h["watch"]) for h in info["history"]] == [["site"], ["site"]]
    assert all(0.0 <= h["watch"]["site"] <= 1.0 for h in info["history"])
    card = out.with_suffix(".md").read_text()
    assert "| site (watched) |" in card and "watched with no training at each evaluation" in card
    odd = _labelled_folder(tmp_path / "odd", ["AZ"] * 4)
    with pytest.raises(DataError, match="characters the reader does not read \\('Z'\\)"):
        watched_sets([str(odd)], Preprocess(size=(48, 160)), charset)


def test_a_site_charset_starts_from_the_readers_rows(tmp_path):
    model = new_model("ctc", 4)  # a reader over "AB12"
    with torch.no_grad():
        model.fc.weight.copy_(torch.arange(5).float()[:, None].expand(5, 512))
    path = tmp_path / "r.pt"
    save_checkpoint({"kind": "recognizer", "arch": "resnet18", "method": "ctc", "charset": Charset("AB12").to_dict(),
                     "preprocess": {}, "length": 0, "segment": {}, "model": model.state_dict()}, path)
    source, state = reader_state("2ac", fold_case=True, path=path)
    rows = state["fc.weight"][:, 0]
    assert source == "reader:r.pt" and rows[0] == 3 and rows[1] == 0 and rows[3] == 4  # "2", "a"->"A", blank
    site = new_model("ctc", 3)
    load_backbone(site, state, source)
    assert torch.equal(site.fc.weight, state["fc.weight"])
    plain = new_model("ctc", 3)
    load_backbone(plain, state, "file:r.pt")  # only the reader's head is ever taken
    assert not torch.equal(plain.fc.weight, state["fc.weight"])
    with pytest.raises(Exception, match="not a CTC reader"):
        bad = tmp_path / "c.pt"
        save_checkpoint({"kind": "recognizer", "arch": "resnet18", "method": "classify", "charset": {},
                         "preprocess": {}, "length": 4, "segment": {}, "model": {}}, bad)
        reader_state("AB", True, bad)
    assert np.isfinite(rows.numpy()).all()


def test_a_fine_tune_keeps_the_first_channels_of_a_reader_that_stores_them_most_used_first(tmp_path, caplog):
    """A reader recorded as ordered starts a narrower CTC model from the first channels of its layer4 and of
    each layer3 block's inside; one that is not keeps them all (with a line saying so); the channels a site's
    network gets follow the start's."""
    import logging

    from captcha.nn.networks import (
        LAYER3_ORDER,
        LAYER4_ORDER,
        narrowed,
        state_layer3_inner,
        state_width,
    )

    model = new_model("ctc", 4)
    payload = {"kind": "recognizer", "arch": "resnet18", "method": "ctc", "charset": Charset("AB12").to_dict(),
               "preprocess": {}, "length": 0, "segment": {}, "model": model.state_dict()}
    ordered, plain, four = tmp_path / "ordered.pt", tmp_path / "plain.pt", tmp_path / "four.pt"
    save_checkpoint({**payload, LAYER4_ORDER: "by hand", LAYER3_ORDER: "by hand"}, ordered)
    save_checkpoint(payload, plain)
    save_checkpoint({**payload, LAYER4_ORDER: "by hand"}, four)  # ordered before layer3 was
    _, state = reader_state("AB12", True, ordered, width=128, layer3_inner=64)
    expected = narrowed(model.state_dict(), 128, 64)
    assert (state_width(state), state_layer3_inner(state)) == (128, 64) and state["fc.weight"].shape == (5, 128)
    for key in ("layer4.1.conv2.weight", "layer3.1.conv2.weight", "layer3.0.bn1.running_var"):
        assert torch.equal(state[key], expected[key])
    site = new_model("ctc", 4, width=128, layer3_inner=64)
    load_backbone(site, state, "reader:ordered.pt")
    assert torch.equal(site.fc.weight, expected["fc.weight"])
    with caplog.at_level(logging.INFO, logger="captcha"):
        _, full = reader_state("AB12", True, plain, width=128, layer3_inner=64)
    assert (state_width(full), state_layer3_inner(full)) == (512, 256) and "keeps all 512" in caplog.text
    assert "layer3's channels most-used first: a fine-tune from it keeps all 256" in caplog.text
    _, half = reader_state("AB12", True, four, width=128, layer3_inner=64)
    assert (state_width(half), state_layer3_inner(half)) == (128, 256)
    whole = reader_state("AB12", True, ordered)[1]  # the reader whole, as pretraining goes on
    assert (state_width(whole), state_layer3_inner(whole)) == (512, 256)


def test_the_shipped_reader_stores_its_channels_most_used_first_and_fine_tunes_start_narrow():
    from captcha.config import CTC_LAYER3_INNER, CTC_WIDTH
    from captcha.nn.networks import (
        LAYER3_ORDER,
        LAYER4_ORDER,
        resolve_pretrained,
        resolve_start,
        shipped_reader,
        state_layer3_inner,
        state_width,
    )

    ckpt = load_checkpoint(shipped_reader(), kind="recognizer")
    assert ckpt.get(LAYER4_ORDER) and ckpt.get(LAYER3_ORDER)
    start = resolve_start("auto", "ctc", "AB12", True, CTC_LAYER3_INNER)[1]
    assert (state_width(start), state_layer3_inner(start)) == (CTC_WIDTH, CTC_LAYER3_INNER) < (512, 256)
    whole = resolve_pretrained("reader")[1]
    assert (state_width(whole), state_layer3_inner(whole)) == (512, 256)


def test_a_further_cycle_starts_from_the_shipped_reader_and_its_card_says_so(tmp_path):
    from captcha.nn.networks import shipped_reader

    shipped = load_checkpoint(shipped_reader(), kind="recognizer")
    out = tmp_path / "again.pt"
    info = pretrain_reader(ReaderConfig(out=str(out), pretrained="reader", steps=1, batch_size=2, eval_every=1,
                                        workers=0, heldout=4, lengths=(2, 3)), progress=False)
    before = info["earlier"][-1]
    assert before["steps"] == (shipped["pretrain"].get("steps") or shipped["pretrain"]["config"]["steps"])  # as run
    assert before["command"] == shipped["pretrain"]["config"]["command"]
    assert len(info["earlier"]) == len(shipped["pretrain"].get("earlier", [])) + 1
    assert load_checkpoint(out, kind="recognizer")["pretrained"].startswith("reader:")
    card = out.with_suffix(".md").read_text()
    assert f"continues stage {len(info['earlier'])}: `{before['command']}`" in card
    assert before["history"] == shipped["pretrain"]["history"]  # each stage's curve travels with it, and is shown
    assert f"Stage {len(info['earlier'])} (held-out" in card and card.count("| step | loss |") == 1 + len(info["earlier"])


def test_a_further_stage_goes_on_from_a_reader_file_head_and_all(tmp_path):
    """`--pretrained PATH` naming a reader this command wrote goes on from it whole (its head too, not a fresh one),
    and the new card lists the stages it was made in; a trunk file stays a trunk."""
    from captcha.nn.networks import reader_start

    first = tmp_path / "first.pt"
    pretrain_reader(ReaderConfig(out=str(first), steps=1, batch_size=2, eval_every=1, workers=0, heldout=4,
                                 lengths=(2, 3)), progress=False)
    source, state = reader_start(str(first))
    weights = load_checkpoint(first, kind="recognizer")["model"]
    assert source == f"reader:{first.resolve()}" and torch.equal(state["fc.weight"], weights["fc.weight"].float())
    out = tmp_path / "second.pt"  # a further stage may read at another size (`--input-size`): the head is per column
    info = pretrain_reader(ReaderConfig(out=str(out), pretrained=str(first), steps=1, batch_size=2, eval_every=1,
                                        workers=0, heldout=4, lengths=(2, 3), size=(64, 96)), progress=False)
    assert len(info["earlier"]) == 1 + len(load_checkpoint(first, kind="recognizer")["pretrain"].get("earlier", []))
    assert load_checkpoint(out, kind="recognizer")["preprocess"]["size"] == [64, 96]
    assert "continues stage" in out.with_suffix(".md").read_text() and "input 64x96" in out.with_suffix(".md").read_text()
    trunk = tmp_path / "trunk.pt"
    torch.save({k: v for k, v in weights.items() if not k.startswith("fc.")}, trunk)
    assert reader_start(str(trunk))[0] == f"file:{trunk}"


def test_the_replay_pool_follows_each_rendered_batch_with_redrawn_ones():
    from captcha.training.reader import ReplayPool

    fresh = [(torch.full((4, 1), float(i)), torch.full((4, 2), i)) for i in range(5)]
    pool = ReplayPool(iter(fresh), reuse=3, capacity=8, device=torch.device("cpu"), seed=0)
    out = list(pool)
    assert len(out) == 15 and pool.fresh == 5
    for i in range(5):
        assert torch.equal(out[3 * i][0], fresh[i][0])  # the rendered batch first, as it came
        for x, y in out[3 * i + 1:3 * i + 3]:
            kept = {float(v) for v in x.flatten()}
            # redrawn from the last 8 samples: this batch and the one before it
            assert kept <= {float(i), float(max(i - 1, 0))} and torch.equal(y[:, 0].float(), x[:, 0])
    assert len(list(ReplayPool(iter(fresh), 1, 8, torch.device("cpu"), 0))) == 5  # no reuse: as rendered


def test_the_clock_schedule_warms_up_then_anneals_over_the_budget():
    from captcha.training.reader import clock_onecycle

    spent = [0.0]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = clock_onecycle(opt, lambda: spent[0], warmup=0.1)
    rates = []
    for f in (0.0, 0.05, 0.1, 0.55, 1.0, 1.5):
        spent[0] = f
        opt.step()
        sched.step()
        rates.append(opt.param_groups[0]["lr"])
    assert rates[0] == pytest.approx(1 / 25) and rates[2] == pytest.approx(1.0)
    assert rates[0] < rates[1] < rates[2] > rates[3] > rates[4] and rates[4] == rates[5] == pytest.approx(1 / 25e4)


def test_a_timed_run_with_reuse_trains_until_its_minutes_are_spent(tmp_path):
    import time

    out = tmp_path / "timed.pt"
    t0 = time.perf_counter()
    info = pretrain_reader(ReaderConfig(out=str(out), minutes=0.05, reuse=2, pool_batches=2, batch_size=4,
                                        eval_every=2, workers=0, heldout=4, alphabet="AB12", lengths=(2, 3)),
                           progress=False)
    assert time.perf_counter() - t0 >= 3 and info["seconds"] > 2 and info["steps"] == info["history"][-1]["step"] >= 2
    assert all(b["step"] - a["step"] <= 2 for a, b in zip(info["history"], info["history"][1:]))
    card = out.with_suffix(".md").read_text()
    assert f"{info['steps']} steps of 4 (each rendered batch trained 2 times" in card
    last = load_checkpoint(tmp_path / "timed.last.pt", kind="recognizer")
    assert last["fresh"] * 2 >= last["step"] >= last["fresh"]  # where a resumed stream goes on


def test_a_fine_tune_from_few_labelled_captchas_keeps_all_the_channels_inside_layer3():
    from captcha.charset import Charset
    from captcha.config import (
        CTC_LAYER3_INNER,
        CTC_LAYER3_NARROW_FROM,
        CTC_WIDTH,
        TrainConfig,
    )
    from captcha.data.segment import SegmentConfig
    from captcha.nn.networks import state_layer3_inner, state_width
    from captcha.training.dataset import TrainingData
    from captcha.training.recipe import training_start

    def data(training: int, validation: int, extra: int = 0) -> TrainingData:
        return TrainingData([], [], [None] * validation, 4, SegmentConfig(), {"layout": "flat"},
                            train_groups=[g for g in range(training + extra) for _ in range(2)],
                            extra_groups=frozenset(range(training, training + extra)))

    def inner(d: TrainingData) -> tuple[int, int]:
        state = training_start(TrainConfig(method="ctc"), "ctc", Charset("AB12"), d)[1]
        return state_width(state), state_layer3_inner(state)

    few, enough = CTC_LAYER3_NARROW_FROM - 1, CTC_LAYER3_NARROW_FROM
    # a flat folder's validation share counts (the refit learns from it); synthetic or pseudo-labelled extras do not
    assert data(few - 20, 20, extra=50).labelled_captchas() == few
    assert inner(data(few - 20, 20, extra=50)) == (CTC_WIDTH, 256)
    assert inner(data(enough - 20, 20)) == (CTC_WIDTH, CTC_LAYER3_INNER)
    assert inner(data(enough, 0)) == (CTC_WIDTH, CTC_LAYER3_INNER)
