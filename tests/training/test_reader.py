"""The general reader: padded CTC targets, its pretraining loop, its head mapped onto a site's charset."""

import numpy as np
import pytest
import torch

from captcha.charset import Charset
from captcha.config import ReaderConfig
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


def test_pretraining_writes_a_reader_that_solving_can_load(tmp_path):
    out = tmp_path / "reader.pt"
    info = pretrain_reader(ReaderConfig(out=str(out), steps=3, batch_size=4, eval_every=2, workers=0, heldout=8,
                                        alphabet="AB12", lengths=(2, 3)), progress=False)
    assert [h["step"] for h in info["history"]] == [2, 3]
    ckpt = load_checkpoint(out, kind="recognizer")
    assert ckpt["method"] == "ctc" and ckpt["length"] == 0 and ckpt["segment"]["crop"]
    assert model_from_checkpoint(ckpt, out).fc.out_features == 5  # 4 characters and the blank
    card = out.with_suffix(".md").read_text()
    assert "general reader" in card and "int8 check:" in card
    check = ckpt["int8"]  # checked on its held-out synthetic captchas, calibrated on another seed's
    assert check["captchas"] == 8 and tuple(check["inputs"].shape) == (64, 48, 160, 3)
    assert check["default"] == (check["int8"] >= check["fp32"] - 0.002)


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


def test_a_further_cycle_starts_from_the_shipped_reader_and_its_card_says_so(tmp_path):
    from captcha.nn.networks import shipped_reader

    shipped = load_checkpoint(shipped_reader(), kind="recognizer")
    out = tmp_path / "again.pt"
    info = pretrain_reader(ReaderConfig(out=str(out), pretrained="reader", steps=1, batch_size=2, eval_every=1,
                                        workers=0, heldout=4, lengths=(2, 3)), progress=False)
    before = info["earlier"][-1]
    assert before["steps"] == shipped["pretrain"]["config"]["steps"]
    assert before["command"] == shipped["pretrain"]["config"]["command"]
    assert len(info["earlier"]) == len(shipped["pretrain"].get("earlier", [])) + 1
    assert load_checkpoint(out, kind="recognizer")["pretrained"].startswith("reader:")
    card = out.with_suffix(".md").read_text()
    assert f"continues stage {len(info['earlier'])}: `{before['command']}`" in card
    assert before["history"] == shipped["pretrain"]["history"]  # each stage's curve travels with it, and is shown
    assert f"Stage {len(info['earlier'])} (held-out" in card and card.count("| step | loss |") == 1 + len(info["earlier"])
