import shutil

from PIL import Image

from captcha.data.splits import trained_on


def test_evaluating_on_training_files_is_counted(flat_captchas, tiny_data, tmp_path):
    """`captcha eval --data` on a folder holding files the model trained on (copies count, re-saved pictures do
    not; what it held out does not) says how many; a course layout's val parts were never trained on."""
    names = sorted(p.name for p in flat_captchas.glob("*.png"))
    flat = {"split": {"layout": "flat", "root": str(flat_captchas), "val_files": names[:10]}}
    assert trained_on(flat, flat_captchas) == 30
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in names[5:15]:  # five held out, five trained on
        shutil.copy(flat_captchas / name, mixed / name)
    Image.open(flat_captchas / names[20]).save(mixed / "again.png", compress_level=1)
    assert trained_on(flat, mixed) == 5
    assert trained_on({**flat, "split": {**flat["split"], "val_files": []}}, mixed) == 10  # a refit trains on all
    assert trained_on({"split": {"layout": "flat", "root": str(tmp_path / "gone")}}, mixed) == 0
    course = {"split": {"layout": "course", "root": str(tiny_data)}}
    assert trained_on(course, tiny_data) == 0
    copy = tmp_path / "copy" / "chars" / "val"  # the training characters handed back as validation ones
    shutil.copytree(tiny_data / "chars" / "train", copy)
    assert trained_on(course, tmp_path / "copy") == len(list(copy.rglob("*.png"))) > 0
