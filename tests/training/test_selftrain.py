import shutil

import pytest
from PIL import Image

from captcha.errors import DataError
from captcha.training.selftrain import unlabelled_images


def test_the_labelled_captchas_are_never_read_as_unlabelled(flat_captchas, tmp_path):
    """Copies of the labelled folder's own captchas (its held-out slice among them) are left out of --unlabelled
    and counted; a folder of nothing else is one clear error."""
    names = sorted(p.name for p in flat_captchas.glob("*.png"))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in names[:3]:
        shutil.copy(flat_captchas / name, mixed / f"copy-{name}")
    for k, name in enumerate(names[3:5]):  # the same pictures saved again: other files, as a site would serve them
        Image.open(flat_captchas / name).save(mixed / f"new-{k}.png", compress_level=1)
    paths, copies = unlabelled_images(mixed, flat_captchas)
    assert copies == 3 and sorted(p.rsplit("/", 1)[1] for p in paths) == ["new-0.png", "new-1.png"]
    assert unlabelled_images(mixed) == (sorted(str(p) for p in mixed.iterdir()), 0)
    with pytest.raises(DataError, match="every image in it is one of the labelled captchas"):
        unlabelled_images(flat_captchas, flat_captchas)


def test_an_archive_or_a_file_given_as_the_unlabelled_folder_is_one_clear_error(tmp_path):
    (tmp_path / "site.zip").write_bytes(b"PK\x03\x04")
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(DataError, match=r"--unlabelled .*site.zip: an archive, not a dataset folder: unpack it first "
                                        r"\(unzip "):
        unlabelled_images(tmp_path / "site.zip")
    with pytest.raises(DataError, match=r"--unlabelled .*notes.txt: a file, not a dataset folder"):
        unlabelled_images(tmp_path / "notes.txt")
    with pytest.raises(DataError, match=r"--unlabelled .*nowhere: dataset folder does not exist"):
        unlabelled_images(tmp_path / "nowhere")
