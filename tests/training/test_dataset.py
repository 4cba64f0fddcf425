import random
import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from captcha.charset import Charset
from captcha.config import TrainConfig
from captcha.data.splits import flat_split, validation_data
from captcha.training.dataset import (
    _length,
    backbone_features,
    choose_splitter,
    linear_probe,
    load_training_data,
)

CS = Charset("ABC123")


def _cfg(data, **kw) -> TrainConfig:
    return TrainConfig(data=str(data), charset=CS.alphabet, pretrained="none", **kw)


def test_flat_split_is_deterministic():
    names = [f"{i:04d}.png" for i in range(100)]
    a = flat_split(names, 0.25, seed=1)
    assert a == flat_split(list(reversed(names)), 0.25, seed=1) and len(a) == 25
    assert a != flat_split(names, 0.25, seed=2)
    with pytest.raises(ValueError):
        flat_split(names, 1.5, 0)


def test_length_comes_from_labels(tmp_path, flat_captchas):
    folder = tmp_path / "five"
    folder.mkdir()
    rows = ["filename,label"]
    for i, src in enumerate(sorted(flat_captchas.glob("*.png"))[:12]):
        shutil.copy(src, folder / f"{i:03d}.png")
        rows.append(f"{i:03d}.png,{'ABC12' if i % 2 else 'C3B21'}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    data = load_training_data(_cfg(folder, val_fraction=0.25, split="equal"), CS)
    assert data.length == 5 and len(data.train_images) == 9 * 5 and len(data.captchas) == 3
    ctc = load_training_data(_cfg(folder, val_fraction=0.25, method="ctc"), CS)
    assert len(ctc.train_images) == 9 and ctc.train_targets[0] in (CS.encode("ABC12"), CS.encode("C3B21"))


def test_a_site_whose_lengths_vary_trains_ctc_on_every_length(mixed_captchas, flat_captchas):
    ctc = load_training_data(_cfg(mixed_captchas, val_fraction=0.25, method="ctc"), CS)
    assert ctc.length == 0 and ctc.other_lengths == 0 and len(ctc.train_images) == 30
    assert {len(t) for t in ctc.train_targets} == {3, 4}
    crops = load_training_data(_cfg(mixed_captchas, val_fraction=0.25, split="equal"), CS)  # a fixed number of cuts
    assert crops.length in (3, 4) and 0 < crops.other_lengths < 30
    # one captcha in 40 of another length is a mislabelled one, not a site of two lengths: left out
    assert _length(None, [(None, "ABCD")] * 39 + [(None, "ABC")], flat_captchas, "ctc") == 4
    assert _length(None, [(None, "ABCD")] * 30 + [(None, "ABC")] * 10, flat_captchas, "ctc") == 0
    assert _length(3, [(None, "ABCD")] * 30 + [(None, "ABC")] * 10, flat_captchas, "ctc") == 3  # --length keeps one


def test_validation_reads_exactly_the_held_out_captchas(flat_captchas):
    data = load_training_data(_cfg(flat_captchas, val_fraction=0.25, seed=3, split="equal"), CS)
    ckpt = {"split": data.split, "charset": CS.to_dict(), "length": data.length, "segment": data.segment.to_dict(),
            "train_config": {"data": str(flat_captchas), "val_fraction": 0.25, "seed": 3}}
    val = validation_data(ckpt)
    assert [lab for _, lab in val.captchas] == [lab for _, lab in data.captchas]
    assert [im.tobytes() for im, _ in val.captchas] == [im.tobytes() for im, _ in data.captchas]
    # the recorded file list wins over the seed, so a changed seed cannot move the held-out set
    ckpt["train_config"]["seed"] = 99
    names = [p.name for p in flat_captchas.glob("*.png")]
    assert flat_split(names, 0.25, 99) != set(data.split["val_files"])  # seed 99 alone would hold out others
    again = validation_data(ckpt)
    assert [im.tobytes() for im, _ in again.captchas] == [im.tobytes() for im, _ in data.captchas]
    assert [lab for _, lab in again.captchas] == [lab for _, lab in data.captchas]


def _uneven_captcha(text: str, rng: random.Random) -> Image.Image:
    """Characters at uneven gaps, so that equal cells cut through them and ink gaps do not."""
    font = ImageFont.load_default(size=26)
    img = Image.new("RGB", (170, 40), (240, 240, 235))
    d = ImageDraw.Draw(img)
    x = rng.randint(2, 8)
    for ch in text:
        d.text((x, 5), ch, fill=(20, 30, 80), font=font)
        x += int(d.textlength(ch, font=font)) + rng.choice([3, 6, 25, 40])
    return img


def test_auto_split_prefers_the_splitter_that_finds_the_characters():
    rng = random.Random(0)
    labels = ["".join(rng.choice(CS.alphabet) for _ in range(4)) for _ in range(120)]
    caps = [(_uneven_captcha(t, rng), t) for t in labels]
    chosen = choose_splitter(caps, 4, CS, backbone_features("none"))
    assert chosen.method in ("projection", "components") and chosen.trim


def test_linear_probe_reads_classes_a_line_separates_and_not_noise():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (5, 20))
    y = rng.integers(0, 5, 400)
    x = centres[y] + rng.normal(0, 1, (400, 20))
    yq = rng.integers(0, 5, 200)
    assert (linear_probe(x, y, centres[yq] + rng.normal(0, 1, (200, 20)), 5) == yq).mean() > 0.95
    noise = rng.normal(0, 1, (400, 20))  # features that say nothing of the class read near chance
    assert (linear_probe(noise, y, rng.normal(0, 1, (200, 20)), 5) == yq).mean() < 0.4
