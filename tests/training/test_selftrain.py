import shutil

import pytest
from PIL import Image

from captcha.data.layout import labels_csv_rows
from captcha.errors import DataError
from captcha.inference.decode import BatchResult, Solution
from captcha.training.selftrain import (
    confident_readings,
    ranked_counts,
    readings_caveat,
    surest_readings,
    unlabelled_images,
    write_labelled,
)


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


def test_a_rounds_folder_names_each_image_by_its_path_and_never_twice(tmp_path):
    root = tmp_path / "site"
    (root / "a").mkdir(parents=True)
    for rel in ("a/b.png", "a_b.png", "c.png"):
        Image.new("L", (8, 4), 255).save(root / rel)
    out = write_labelled([(str(root / "a/b.png"), "AB"), (str(root / "a_b.png"), "CD"), (str(root / "c.png"), "EF")],
                         root, tmp_path / "m.round1")
    assert (out / "labels.csv").read_text().splitlines() == ["filename,label", "a_b.png,AB", "1-a_b.png,CD",
                                                             "c.png,EF"]
    assert sorted(p.name for p in out.glob("*.png")) == ["1-a_b.png", "a_b.png", "c.png"]
    # written as CSV: a name with a comma reads back as the file it names
    Image.new("L", (8, 4), 255).save(root / "d,1.png")
    out = write_labelled([(str(root / "d,1.png"), "GH")], root, tmp_path / "m.round2")
    assert labels_csv_rows(out / "labels.csv") == [("d,1.png", "GH")] and (out / "d,1.png").is_file()


class _Reader:
    """A stand-in solver: reads each path as ``texts`` says, at ``sure`` confidence for each character."""

    def __init__(self, texts: dict[str, tuple[str, float]]):
        self.texts = texts

    def solve_batch(self, paths):
        for path in paths:
            text, sure = self.texts[path]
            yield BatchResult(path, Solution(text, [sure] * len(text)) if text else None, "" if text else "unreadable")


def test_confident_readings_keep_only_sure_readings_of_the_length_asked():
    reader = _Reader({"a": ("AB12", 0.99), "b": ("AB1", 0.999), "c": ("C123", 0.9), "d": ("", 0.0), "e": ("B123", 0.99)})
    failed: list = []
    assert confident_readings(reader, list("abcde"), 4, failed=failed) == [("a", "AB12"), ("e", "B123")]  # c: 0.9**4
    assert failed == [("d", "unreadable")]
    assert confident_readings(reader, list("abcde")) == [("a", "AB12"), ("b", "AB1"), ("e", "B123")]
    assert confident_readings(reader, list("abcde"), 4, threshold=0.5) == [("a", "AB12"), ("c", "C123"), ("e", "B123")]


def test_the_surest_readings_of_the_lengths_asked_for_come_first():
    solver = _Reader({"a": ("ABCD", 0.3), "b": ("ABCDE", 0.99), "c": ("BCDA", 0.8), "d": ("", 0.0), "e": ("CDAB", 0.5)})
    assert surest_readings(solver, list("abcde"), {4}, 2) == [("c", "BCDA"), ("e", "CDAB")]
    assert surest_readings(solver, list("abcde"), {4, 5}, 9) == [("b", "ABCDE"), ("c", "BCDA"), ("e", "CDAB"),
                                                                   ("a", "ABCD")]


def test_ranked_rounds_grow_threefold_from_fifty_to_every_unlabelled_captcha():
    assert ranked_counts(745) == [50, 150, 450, 745]
    assert ranked_counts(150) == [50, 150] and ranked_counts(151) == [50, 150, 151]
    assert ranked_counts(12) == [12]


def test_a_rounds_folder_from_two_folders_names_each_image_below_both(tmp_path):
    """The handful's captchas and the unlabelled ones lie in two folders: named by their paths below the folder that
    holds both, never hidden (a name starting with a dot) nor clashing."""
    for rel in ("labelled/x.png", "unlabelled/x.png"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        Image.new("L", (8, 4), 255).save(tmp_path / rel)
    out = write_labelled([(str(tmp_path / "labelled/x.png"), "AB"), (str(tmp_path / "unlabelled/x.png"), "CD")],
                         tmp_path, tmp_path / "m.round1")
    assert labels_csv_rows(out / "labels.csv") == [("labelled_x.png", "AB"), ("unlabelled_x.png", "CD")]


def test_a_run_whose_figures_come_from_readings_says_so_and_how_to_measure_it():
    tail = "label a few dozen captchas it did not learn from and run `captcha eval --data DIR --checkpoint m.pt`"
    no_labels = readings_caveat({"checkpoint": "m.pt", "no_labels": {"rounds": []}})
    assert no_labels.startswith("no labels: those figures compare the model with the readings it learned from")
    ranked = readings_caveat({"checkpoint": "m.pt", "self_training": {"ranked": [{"pseudo_labelled": 50}]}})
    assert ranked.startswith("self-trained in rounds: most captchas those figures are measured on were labelled")
    assert no_labels.endswith(tail) and ranked.endswith(tail)
    judged = {"kept": True, "judged": True, "ranked": [{"pseudo_labelled": 50}]}  # judged and measured on your labels
    assert readings_caveat({"checkpoint": "m.pt", "self_training": judged}) is None
    assert readings_caveat({"checkpoint": "m.pt"}) is None
