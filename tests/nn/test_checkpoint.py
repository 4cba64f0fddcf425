import os
import pickle

import pytest
import torch

from captcha.errors import CheckpointError
from captcha.inference.load import load_solver
from captcha.nn.checkpoint import VERSION, load_checkpoint, save_checkpoint


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/captcha-pwned-by-checkpoint",))


def test_round_trip_and_atomic_write(tmp_path):
    path = save_checkpoint({"kind": "backbone", "arch": "resnet18", "model": {"w": torch.ones(2)}}, tmp_path / "b.pt")
    ck = load_checkpoint(path)
    assert ck["version"] == VERSION and torch.equal(ck["model"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["b.pt"]  # no temp file left behind


def test_pickle_payload_is_refused_without_running(tmp_path):
    marker = "/tmp/captcha-pwned-by-checkpoint"
    if os.path.exists(marker):
        os.unlink(marker)
    path = tmp_path / "evil.pt"
    torch.save({"format": "captcha-checkpoint", "version": 1, "kind": "recognizer", "x": _Evil()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not os.path.exists(marker)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not os.path.exists(marker)


def test_corrupt_foreign_newer_incomplete(tmp_path):
    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04 not really a zip")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    torch.save({"format": "captcha-checkpoint", "version": VERSION + 1, "kind": "recognizer"}, tmp_path / "newer.pt")
    torch.save({"format": "captcha-checkpoint", "version": VERSION, "kind": "recognizer", "arch": "resnet18"},
               tmp_path / "incomplete.pt")
    for name, needle in (("corrupt.pt", "corrupt"), ("foreign.pt", "not a captcha checkpoint"),
                         ("newer.pt", "newer"), ("incomplete.pt", "lacks"), ("absent.pt", "not found")):
        with pytest.raises(CheckpointError, match=needle):
            load_checkpoint(tmp_path / name)


def test_truncated_checkpoint_is_an_error(tiny_model, tmp_path):
    data = tiny_model.read_bytes()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_solver(tmp_path / "half.pt")


def test_head_charset_mismatch_is_an_error(tiny_model, tmp_path):
    ck = load_checkpoint(tiny_model)
    ck["charset"] = {"alphabet": "ABCDEFGH", "fold_case": True}
    save_checkpoint({k: v for k, v in ck.items() if k not in ("format", "version")}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="head has 6 outputs but the charset has 8"):
        load_solver(tmp_path / "m.pt")
