import os
import shutil
import socket
import subprocess
import sys

import pytest

from captcha.nn.checkpoint import load_checkpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tiny_data, tmp_path):
    """`torchrun --nproc_per_node 2 -m captcha train` on gloo gives a working checkpoint like one process."""
    torchrun = shutil.which("torchrun") or f"{sys.executable} -m torch.distributed.run"
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the glyph backbone with layer4 and the head trainable: DDP syncs real gradients and the
    # result must read well above chance (1/6), not just exist
    cmd = torchrun.split() + ["--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                              "-m", "captcha", "train", "--data", str(tiny_data), "--out", str(out),
                              "--charset", "ABC123", "--pretrained", "glyphs", "--freeze", "layer3", "--epochs", "2",
                              "--batch-size", "16", "--aug-passes", "1", "--device", "cpu", "--input-size", "32", "32"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 processes" in proc.stdout and proc.stdout.count("epoch 2/2") == 1  # only rank 0 reports
    ck = load_checkpoint(out, kind="recognizer")
    assert ck["metrics"]["chars"] == 24 and ck["metrics"]["char_acc"] >= 0.5
    assert ck["train_config"]["batch_size"] == 16
