"""The CLI's error contract: a user mistake is one line on stderr, exit code 2, never a traceback."""

import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from captcha.cli import main

# (arguments, words the one line must contain); {data}, {model}, {img}, {tmp} are filled in per test
BAD = [
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--lr", "-0.01"], "--lr"),
    (["train", "--val-fraction", "1.5"], "--val-fraction"),
    (["train", "--charset", "AAB"], "repeats 'A'"),
    (["train", "--data", "{tmp}/no-such-folder"], "does not exist"),
    (["train", "--data", "{data}", "--charset", "ABC123", "--length", "5", "--out", "{tmp}/m.pt"], "--length 5"),
    (["solve", "{img}", "--checkpoint", "{tmp}/none.pt"], "checkpoint not found"),
    (["solve-batch", "{img}", "--out", "{tmp}/o.csv", "--checkpoint", "{tmp}/none.pt"], "checkpoint not found"),
    (["serve", "--checkpoint", "{tmp}/none.pt"], "checkpoint not found"),
    (["solve", "--checkpoint", "{tmp}/hello.pt", "{img}"], "not a checkpoint"),
    (["solve", "--checkpoint", "{tmp}/random.pt", "{img}"], "not a checkpoint"),
    (["solve-batch", "{img}", "--out", "{tmp}/o.csv", "--checkpoint", "{model}", "--shard", "5/2"], "--shard"),
    (["solve-batch", "{img}", "--out", "{tmp}/o.csv", "--checkpoint", "{model}", "--shard", "x"], "--shard"),
    (["solve-batch", "{tmp}/nothing-here", "--out", "{tmp}/o.csv", "--checkpoint", "{model}"], "could be read"),
    (["solve-batch", "{img}", "--out", "{tmp}/o.csv", "--checkpoint", "{model}", "--workers", "many"], "or auto"),
    (["visualize", "{img}", "--checkpoint", "{model}", "--layers", "layer9"], "layer9"),
    (["merge-results", "{tmp}/hello.pt", "--out", "{tmp}/m.csv"], "not a solve-batch CSV"),
    (["eval", "--checkpoint", "{model}"], "nothing to evaluate"),
    (["eval", "--data", "{tmp}/no-such-folder", "--checkpoint", "{model}"], "does not exist"),
    (["eval", "--data", "{img}", "--checkpoint", "{model}"], "a file, not a dataset folder"),
    (["data", "check", "--data", "{img}"], "a file, not a dataset folder"),
    (["train", "--data", "{img}"], "a file, not a dataset folder: pass the folder that holds the captchas (--data "),
    (["train", "--data", "{tmp}/site.zip"], "an archive, not a dataset folder: unpack it first (unzip "),
    (["data", "check", "--data", "{tmp}/site.tar.gz"], "an archive, not a dataset folder: unpack it first (tar xf "),
    (["solve", "{img}", "--checkpoint", "{model}", "--backend", "onnx", "--device", "cuda"], "--backend onnx"),
    (["no-such-command"], "No such command"),
    (["train", "{data}"], "unexpected argument {data}: name the dataset folder with --data (`captcha train --data {data}`)"),
    (["data", "check", "{data}"], "(`captcha data check --data {data}`)"),
    (["eval", "--data", "{data}", "{img}"], "unexpected argument {img} ("),
    (["eval", "{data}", "{img}"], "unexpected arguments {data} {img} ("),
    (["data", "check", "--data", "{tmp}/no-such-folder"], "does not exist"),
    (["pretrain", "--sizes", "32,big"], "--sizes"),
    (["pretrain", "--sizes", "8"], "--sizes"),
    (["pretrain", "--pretrained", "reader"], "--source captchas"),
    (["pretrain", "--reuse", "2", "--minutes", "1"], "--minutes, --reuse: only for --source captchas"),
    (["pretrain", "--watch", "{tmp}"], "--watch: only for --source captchas"),
    (["pretrain", "--input-size", "96", "288"], "--input-size: only for --source captchas"),
    (["pretrain", "--source", "captchas", "--watch", "{tmp}/no-such-folder", "--out", "{tmp}/r.pt"], "no-such-folder"),
    (["solve", "{img}", "--checkpoint", "{model}", "--recheck", "sometimes"], "--recheck"),
    (["pretrain", "--source", "captchas", "--pretrained", "{tmp}/no-reader.pt", "--out", "{tmp}/r.pt"], "no-reader.pt"),
    (["bench", "generalize", "--sets", "no-such-set", "--out-dir", "{tmp}/g"], "no-such-set"),
    # an --out that cannot be written is said before any training, not at the first checkpoint
    (["train", "--data", "{data}", "--charset", "ABC123", "--out", "{img}/m.pt"], "cannot write there"),
    (["pretrain", "--steps", "1", "--out", "{img}/b.pt"], "cannot write there"),
    (["pretrain", "--source", "captchas", "--steps", "1", "--out", "{img}/r.pt"], "cannot write there"),
]
if not torch.cuda.is_available():
    BAD.append((["train", "--device", "cuda"], "CUDA"))
    BAD.append((["pretrain", "--source", "captchas", "--device", "cuda", "--out", "{tmp}/r.pt"], "CUDA"))


@pytest.fixture
def place(tmp_path, tiny_data, tiny_model, monkeypatch):
    """A fresh working folder (no checkpoints/model.pt, no data/) and the files the cases name."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hello.pt").write_text("hello\n")
    (tmp_path / "random.pt").write_bytes(os.urandom(3000))
    for archive in ("site.zip", "site.tar.gz"):
        (tmp_path / archive).write_bytes(os.urandom(100))
    img = next((tiny_data / "captchas" / "val").glob("*.png"))
    return {"data": str(tiny_data), "model": str(tiny_model), "img": str(img), "tmp": str(tmp_path)}


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(a)[:50] for a, _ in BAD])
def test_a_mistake_is_one_line_and_exit_2(place, args, needle):
    res = CliRunner().invoke(main, [a.format(**place) for a in args], prog_name="captcha")
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle.format(**place) in lines[0], res.stderr
    assert "Traceback" not in res.output


def test_a_missing_data_path_is_never_filled_with_synthetic_data(place, tmp_path):
    CliRunner().invoke(main, ["train", "--data", str(tmp_path / "typo"), "--epochs", "1"])
    assert not (tmp_path / "typo").exists() and not (tmp_path / "data").exists()


def test_the_first_command_a_new_user_types(tmp_path, tiny_data):
    """In a real process: `captcha solve x.png` with no model yet reads it with the shipped general
    reader, and says so in one line; a checkpoint that is not there is one line, exit 2."""
    img = next((tiny_data / "captchas" / "val").glob("*.png"))
    proc = subprocess.run([sys.executable, "-m", "captcha", "solve", str(img)], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stdout.strip()) >= 3 and "shipped general reader" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "captcha", "solve", str(img), "--checkpoint", "checkpoints/model.pt"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: checkpoints/model.pt: checkpoint not found; train one with "
        "`captcha train --out checkpoints/model.pt`, or pass --checkpoint PATH"]
