import io
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from captcha.config import PretrainConfig
from captcha.data.cifar import CLASSES, load_cifar10
from captcha.nn.checkpoint import load_checkpoint
from captcha.nn.networks import build_model
from captcha.training.pretrain import pretrain


def _pickles(root, n=20):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": data, "labels": list(rng.integers(0, 10, n))}, fh)
    return root


def _tar(root):
    path = root / "c.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            for c, name in enumerate(CLASSES[:3]):
                buf = io.BytesIO()
                Image.new("RGB", (32, 32), (c * 80, 0, 0)).save(buf, "JPEG")
                info = tarfile.TarInfo(f"{split}/{name}/0001.jpg")
                info.size = len(buf.getvalue())
                tar.addfile(info, io.BytesIO(buf.getvalue()))
    return path


def test_reads_torchvision_pickles_only_when_trusted(tmp_path):
    from captcha.errors import DataError

    root = _pickles(tmp_path)
    with pytest.raises(DataError, match="--trust-pickle"):
        load_cifar10(root, "train")
    x, y = load_cifar10(root, "train", trust_pickle=True)
    assert x.shape == (100, 32, 32, 3) and x.dtype == np.uint8 and y.shape == (100,)
    tx, _ = load_cifar10(root / "cifar-10-batches-py", "test", trust_pickle=True)
    assert tx.shape == (20, 32, 32, 3)


def test_a_pickle_payload_never_runs_without_trust(tmp_path):
    from captcha.errors import DataError

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(Payload()))
    with pytest.raises(DataError):
        load_cifar10(tmp_path, "train")
    assert not marker.exists()


def test_reads_tar_and_unpacked_folder(tmp_path):
    path = _tar(tmp_path)
    x, y = load_cifar10(path, "train")
    assert x.shape == (3, 32, 32, 3) and list(y) == [0, 1, 2]
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    fx, fy = load_cifar10(tmp_path / "unpacked", "test")
    assert list(fy) == [0, 1, 2] and abs(int(fx[1, 0, 0, 0]) - 80) < 8


def test_the_pretraining_loop_learns(tmp_path, monkeypatch):
    """On a fixed batch of 4 glyph classes (also the held-out set, at its own 32 px), 60 steps
    memorise it: the loop's gradients, optimiser, schedule and held-out accuracy all work."""
    import captcha.training.pretrain as pt
    from captcha.data.preprocess import Preprocess
    from captcha.training.pretrain import render_glyph_sample

    pre = Preprocess()
    samples = [render_glyph_sample(i, 7, pre) for i in range(400)]
    picked = [(x, y) for x, y in samples if y < 4][:16]
    x = torch.from_numpy(np.stack([s[0] for s in picked]))
    y = torch.tensor([s[1] for s in picked])
    assert len(set(y.tolist())) == 4

    def fixed(cfg, pre, start=0):
        return iter(lambda: (x, y), None), 4, (x, y), "fixed"

    monkeypatch.setattr(pt, "_batches", fixed)
    info = pretrain(PretrainConfig(steps=60, batch_size=16, eval_every=10, lr=0.05, workers=0, sizes=(32,),
                                   out=str(tmp_path / "fixed.pt")), progress=False)
    accs = [h["acc"] for h in info["history"]]
    assert accs[-1] >= 0.9 and accs[-1] > accs[0], accs  # chance is 0.25


def test_tiny_glyph_pretrain_makes_a_backbone_train_accepts(tmp_path, monkeypatch):
    import captcha.data.fonts as fonts
    from captcha.nn.networks import shipped_backbone, shipped_reader

    few = fonts.pretraining_faces()[:3]  # the font packages missing: said, with the shipped weights' count
    monkeypatch.setattr(fonts, "pretraining_faces", lambda: few)
    made = max(len(load_checkpoint(shipped_backbone("glyphs"), kind="backbone")["pretrain"]["corpus"]["faces"]),
               load_checkpoint(shipped_reader(), kind="recognizer")["pretrain"]["faces"])
    out = tmp_path / "bb.pt"
    info = pretrain(PretrainConfig(steps=3, batch_size=8, eval_every=3, workers=0, heldout=2, out=str(out)),
                    progress=False)
    assert info["history"][-1]["step"] == 3 and info["heldout"]["acc"] == info["history"][-1]["acc"]
    assert len(info["history"]) == 1 and info["classes"] == 62
    ck = load_checkpoint(out, kind="backbone")
    assert all(v.dtype.is_floating_point is False or str(v.dtype) == "torch.float16"
               for v in ck["model"].values())
    assert not any(k.startswith("fc.") for k in ck["model"])
    assert out.with_suffix(".md").read_text().startswith("# bb.pt")
    warning = ck["pretrain"]["corpus"]["warning"]
    assert warning.startswith("pretraining finds 3 font faces") and f"made from {made}:" in warning
    assert f"Warning: {warning}." in out.with_suffix(".md").read_text()
    model, source = build_model(36, str(out), "all")
    assert source == f"file:{out}"
    assert np.allclose(model.conv1.weight.detach().numpy(), ck["model"]["conv1.weight"].float().numpy())


def test_cifar_pretrain_needs_data():
    from captcha.errors import DataError

    with pytest.raises(DataError, match="--data"):
        pretrain(PretrainConfig(source="cifar10", steps=1), progress=False)


def test_a_killed_pretraining_resumes_to_the_same_backbone(tmp_path, monkeypatch):
    import captcha.training.pretrain as pt

    kw = dict(steps=4, batch_size=8, eval_every=2, workers=0, heldout=2)
    full = tmp_path / "full.pt"
    pretrain(PretrainConfig(out=str(full), **kw), progress=False)
    part = tmp_path / "part.pt"
    real, calls = pt.glyph_accuracy, []

    def dies_at_the_second_evaluation(*a):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a)

    monkeypatch.setattr(pt, "glyph_accuracy", dies_at_the_second_evaluation)
    with pytest.raises(KeyboardInterrupt):
        pretrain(PretrainConfig(out=str(part), **kw), progress=False)
    monkeypatch.setattr(pt, "glyph_accuracy", real)
    assert load_checkpoint(part.with_name("part.last.pt"))["step"] == 2 and not part.exists()
    info = pretrain(PretrainConfig(out=str(part), resume=True, **kw), progress=False)
    assert [h["step"] for h in info["history"]] == [2, 4]
    a, b = load_checkpoint(full)["model"], load_checkpoint(part)["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-3) for k in a)
