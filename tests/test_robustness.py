"""Interrupted runs: SIGKILL during training, during a checkpoint write, and during batch solving."""

import csv
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from captcha.nn.checkpoint import load_checkpoint, save_checkpoint

# --no-refit: the kill lands in the first fit, and a refit after it would double each of the three runs
# (resuming a run that then refits: tests/training/test_train.py's default-path resume)
TRAIN = ["--charset", "ABC123", "--pretrained", "none", "--freeze", "layer3", "--input-size", "32", "32", "--epochs", "3",
         "--batch-size", "16", "--aug-passes", "1", "--device", "cpu", "--no-refit"]


def _captcha(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "captcha", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _wait_for(pred, timeout=300.0, poll=0.02):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(poll)
    return False


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tiny_data, tmp_path):
    full = tmp_path / "full.pt"
    assert _captcha("train", "--data", str(tiny_data), "--out", str(full), *TRAIN).wait() == 0
    part = tmp_path / "part.pt"
    last = tmp_path / "part.last.pt"
    proc = _captcha("train", "--data", str(tiny_data), "--out", str(part), *TRAIN)
    assert _wait_for(last.exists)  # the first epoch is written (atomically): kill during the second
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ck = load_checkpoint(last)  # the last checkpoint still loads
    assert ck["epoch"] < 2
    resumed = _captcha("train", "--data", str(tiny_data), "--out", str(part), "--resume", *TRAIN)
    output = resumed.communicate()[0]
    assert resumed.returncode == 0, output
    assert "resuming from" in output
    a, b = load_checkpoint(full.with_name("full.last.pt")), load_checkpoint(last)
    assert [h["epoch"] for h in b["history"]] == [1, 2, 3]
    assert a["history"][-1]["char_acc"] == b["history"][-1]["char_acc"]
    assert a["history"][-1]["loss"] == pytest.approx(b["history"][-1]["loss"], abs=1e-4)


SLOW_WRITER = """
import sys, torch
from captcha.nn.checkpoint import save_checkpoint
big = {"kind": "backbone", "arch": "resnet18", "model": {f"w{i}": torch.randn(4_000_000) for i in range(60)}}
save_checkpoint(big, sys.argv[1])
"""


@pytest.mark.slow
def test_sigkill_mid_checkpoint_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint({"kind": "backbone", "arch": "resnet18", "model": {"w": torch.ones(3)}}, path)
    before = path.read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(path)])
    # wait until the temp file is being written, then kill the writer mid-write
    assert _wait_for(lambda: any(p.name.endswith(".tmp") and p.stat().st_size > 1_000_000 for p in tmp_path.iterdir()),
                     timeout=120)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert path.read_bytes() == before
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))


@pytest.mark.slow
def test_batch_killed_midway_then_resume_has_one_row_per_input(tiny_model, tiny_data, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    src = sorted((tiny_data / "captchas" / "val").glob("*.png"))
    for i in range(600):
        shutil.copy(src[i % len(src)], folder / f"{i:04d}.png")
    (folder / "0007.png").write_bytes(b"broken")
    out = tmp_path / "pred.csv"
    args = [str(folder), "--out", str(out), "--checkpoint", str(tiny_model), "--batch-size", "8"]
    proc = subprocess.Popen([sys.executable, "scripts/solve_batch.py", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    assert _wait_for(lambda: out.exists() and out.stat().st_size > 2000)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = out.read_text(encoding="utf-8").count("\n") - 1
    assert 0 < done < 600
    res = subprocess.run([sys.executable, "scripts/solve_batch.py", *args, "--resume"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    names = [r["filename"] for r in rows]
    assert len(names) == 600 and len(set(names)) == 600
    assert [r for r in rows if r["filename"].endswith("0007.png")][0]["error"]
    assert all(len(r["text"]) == 4 for r in rows if not r["filename"].endswith("0007.png"))


def test_data_check_and_training_loading_name_each_hostile_file(tiny_data, tmp_path, caplog):
    """`data check` lists every unreadable file with its reason; training loads the rest and says what it skipped."""
    import logging

    from hostile import make_corpus
    from PIL import Image

    from captcha.charset import Charset
    from captcha.data.layout import check_dataset, load_images, read_captcha_labels

    good = Image.open(next((tiny_data / "captchas" / "val").glob("*.png")))
    corpus = make_corpus(tmp_path / "flat", good)
    folder = tmp_path / "flat"
    rows = ["filename,label"] + [f"{p.name},AB12" for p, _ in corpus.values() if p.is_file()]
    (folder / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    report = check_dataset(folder, Charset())
    text = "\n".join(str(p) for p in report.problems if p.blocking)  # not the notes on the good file's copies
    for name, (path, ok) in corpus.items():
        if path.is_file():
            assert (str(path) in text) != ok, name  # exactly the unreadable ones are reported
    assert "empty file" in text and "not an image" in text and "huge image" in text
    with caplog.at_level(logging.WARNING):
        images, kept = load_images(read_captcha_labels(folder, Charset(), problems=[], copies=True))
    readable = [p for p, ok in corpus.values() if ok and p.is_file()]
    assert sorted(s.path for s in kept) == sorted(readable) and len(images) == len(readable)
    assert "bomb.png" in caplog.text and "truncated.jpg" in caplog.text
