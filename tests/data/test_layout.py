import shutil

import pytest
from PIL import Image

from captcha.charset import Charset
from captcha.data.layout import (
    check_dataset,
    label_from_name,
    names_not_labels,
    ordered_holdout,
    read_captcha_labels,
    split_captcha_folder,
)
from captcha.errors import DataError

CS = Charset("ABC123")


def test_label_from_file_name():
    assert label_from_name("A7K2.png") == "A7K2"
    assert label_from_name("A7K2_0031.png") == "A7K2"
    assert label_from_name("A7K2 (2).png") == "A7K2" and label_from_name("a7k2.jpeg") == "a7k2"


def test_clean_dataset_is_usable(tiny_data):
    rep = check_dataset(tiny_data, CS)
    assert rep.usable, rep.problems
    assert rep.chars["train"] == {c: 12 for c in "ABC123"}
    assert rep.captchas["val"] == 20 and rep.lengths["val"] == {4: 20}


def test_broken_copy_lists_every_planted_problem(tiny_data, tmp_path):
    root = tmp_path / "broken"
    shutil.copytree(tiny_data, root)
    (root / "chars" / "train" / "A" / "0000.png").write_bytes(b"garbage")          # unreadable image
    (root / "chars" / "train" / "B" / "notes.txt").write_text("hi")                # non-image file
    for p in (root / "chars" / "train" / "C").iterdir():                           # empty class folder
        p.unlink()
    (root / "chars" / "train" / "misc").mkdir()                                    # unknown folder
    (root / "chars" / "train" / "Z").mkdir()                                        # not in charset
    labels = root / "captchas" / "val" / "labels.csv"
    lines = labels.read_text().splitlines()
    first = lines[1].split(",")[0]
    lines[1] = f"{first},AB?1"                                                       # char outside charset
    second = lines[2].split(",")[0]
    lines[2] = f"{second},AB1"                                                       # wrong length
    lines.append("ghost.png,ABC1")                                                   # listed but missing
    labels.write_text("\n".join(lines) + "\n")
    shutil.copy(root / "captchas" / "val" / first, root / "captchas" / "val" / "unlisted.png")  # not listed
    rep = check_dataset(root, CS)
    text = "\n".join(map(str, rep.problems))
    assert not rep.usable
    for needle in ("0000.png: ", "notes.txt: not an image", "C: empty class folder", "misc: folder name",
                   "Z: folder name", "'?'", "has 3 characters, expected 4", "ghost.png: listed in labels.csv but missing",
                   "unlisted.png: image not listed"):
        assert needle in text, needle


def test_a_site_whose_lengths_vary_is_usable_and_one_length_flags_the_others(mixed_captchas):
    rep = check_dataset(mixed_captchas, CS)
    assert rep.usable, rep.problems
    assert rep.lengths["all"] == {3: 20, 4: 20}
    told = check_dataset(mixed_captchas, CS, length=4)  # --length: the others are wrong
    assert not told.usable and sum("has 3 characters, expected 4" in str(p) for p in told.problems) == 20


def test_one_length_is_the_length_a_share_of_the_counts_have():
    from collections import Counter

    from captcha.config import BATCH_LENGTH_SHARE, ONE_LENGTH_SHARE
    from captcha.data.layout import one_length

    assert BATCH_LENGTH_SHARE < ONE_LENGTH_SHARE  # readings dilute a length with misreadings; labels do not
    assert one_length(Counter({6: 17, 5: 3})) is None and one_length(Counter({6: 17, 5: 3}), BATCH_LENGTH_SHARE) == 6
    assert one_length(Counter({6: 9, 5: 1})) == 6 and one_length(Counter({4: 7, 5: 7, 6: 6}), 0.3) == 4
    assert one_length(Counter()) is None and one_length(Counter({4: 3, 5: 2}), BATCH_LENGTH_SHARE) is None


def test_labels_csv_with_bom_and_crlf(tmp_path, tiny_data):
    src = next((tiny_data / "captchas" / "val").glob("*.png"))
    shutil.copy(src, tmp_path / "x.png")
    (tmp_path / "labels.csv").write_bytes("\ufefffilename,label\r\nx.png,a1b2\r\n".encode("utf-8"))
    samples = read_captcha_labels(tmp_path, Charset())
    assert [(s.path.name, s.label) for s in samples] == [("x.png", "A1B2")]
    (tmp_path / "labels.csv").write_text("name;label\n")
    with pytest.raises(DataError, match="header"):
        read_captcha_labels(tmp_path, Charset())


def _named_copy(src_folder, dest, n=12):
    """A flat folder whose labels are in the file names (no labels.csv)."""
    dest.mkdir()
    labels = dict(row.split(",") for row in (src_folder / "labels.csv").read_text().splitlines()[1:])
    for i, name in enumerate(sorted(labels)[:n]):
        shutil.copy(src_folder / name, dest / f"{labels[name]}_{i:03d}.png")
    return dest


def test_a_flat_folder_of_captchas_is_usable(flat_captchas, tmp_path):
    """Step 1 of the README's real-site recipe: labels.csv, or labels in the file names."""
    rep = check_dataset(flat_captchas, CS)
    assert rep.layout == "flat" and rep.captchas == {"all": 40} and rep.usable, rep.problems
    assert rep.labels_from == {"all": "labels.csv"}
    named = check_dataset(_named_copy(flat_captchas, tmp_path / "named"), CS)
    assert named.captchas == {"all": 12} and named.usable, named.problems
    assert named.labels_from == {"all": "file names"}
    empty = tmp_path / "only-labels"
    empty.mkdir()
    (empty / "labels.csv").write_text("filename,label\n")
    assert not check_dataset(empty, CS).usable  # nothing to train on


def test_file_names_that_number_the_images_are_not_taken_as_labels(flat_captchas, tmp_path):
    """A folder of 0001.png, 0002.png... with no labels.csv would train on its numbering: one line says so."""
    numbered = tmp_path / "numbered"
    numbered.mkdir()
    labels = dict(row.split(",") for row in (flat_captchas / "labels.csv").read_text().splitlines()[1:])
    for i, name in enumerate(sorted(labels), start=1):
        shutil.copy(flat_captchas / name, numbered / f"{i:04d}.png")
    with pytest.raises(DataError, match=r"no labels.csv, and its file names, read as labels, number the images "
                                        r"\(0001, \.\.\., 0040\).*labels.csv \(header 'filename,label'"):
        check_dataset(numbered, CS)
    with pytest.raises(DataError, match="number the images"):
        read_captcha_labels(numbered, Charset())
    (numbered / "labels.csv").write_text("filename,label\n" + "".join(
        f"{i:04d}.png,{labels[name]}\n" for i, name in enumerate(sorted(labels), start=1)))
    assert check_dataset(numbered, CS).usable  # the same names, with their labels beside them
    assert names_not_labels([f"shot-{i}" for i in range(3, 30)]).startswith("number the images (shot-3, ..., shot-29)")
    assert names_not_labels(["img"] * 11 + ["A7K2"]) == "give 11 of the 12 images the same label 'img'"
    # digits drawn at random, even many of them (names of one pattern), are labels
    rng = __import__("random").Random(0)
    assert names_not_labels([f"{rng.randrange(10_000):04d}" for _ in range(5000)]) is None
    assert names_not_labels([f"{i:04d}" for i in range(9)]) is None  # too few to tell
    assert check_dataset(_named_copy(flat_captchas, tmp_path / "named", n=40), CS).usable


@pytest.mark.parametrize("sep", ["_", "-"])
def test_file_names_numbered_before_the_label_give_the_label(flat_captchas, tmp_path, sep):
    """0001_A7K2.png, 0002_X9PQ.png...: the number numbers the files, the text after it is the label."""
    labels = dict(row.split(",") for row in (flat_captchas / "labels.csv").read_text().splitlines()[1:])
    numbered = tmp_path / "numbered"
    numbered.mkdir()
    for i, name in enumerate(sorted(labels), start=1):
        shutil.copy(flat_captchas / name, numbered / f"{i:04d}{sep}{labels[name]}.png")
    samples = read_captcha_labels(numbered, Charset())
    assert sorted(s.label for s in samples) == sorted(labels.values())
    assert all(s.path.stem.endswith(s.label) for s in samples)
    report = check_dataset(numbered, CS)
    assert report.usable and report.labels_from == {"all": "file names, after their numbers"}
    # numbers drawn at random before the text are labels' own, not a numbering: the name up to "_" stays the label
    from captcha.data.layout import labels_after_numbers
    rng = __import__("random").Random(0)
    assert labels_after_numbers([f"{rng.randrange(10_000):04d}_{i}.png" for i in range(40)]) is None
    assert labels_after_numbers([f"{i:04d}_AB12.png" for i in range(40)]) is None  # one text for all: no labels


@pytest.mark.parametrize("suffix", ["{i:04d}", "{h}", "{u}"])
def test_labels_before_an_id_of_each_file(flat_captchas, tmp_path, suffix):
    """A7K2-0001.png, A7K2-3f9c2a1b.png, A7K2-<uuid>.png: the text before the file's own id is the label."""
    import uuid

    from captcha.data.layout import labels_before_ids

    labels = dict(row.split(",") for row in (flat_captchas / "labels.csv").read_text().splitlines()[1:])
    named = tmp_path / "named"
    named.mkdir()
    for i, name in enumerate(sorted(labels)):
        u = uuid.UUID(int=i * 7919 + 1)
        shutil.copy(flat_captchas / name, named / f"{labels[name]}-{suffix.format(i=i, h=u.hex[-8:], u=u)}.png")
    samples = read_captcha_labels(named, Charset())
    assert sorted(s.label for s in samples) == sorted(labels.values())
    report = check_dataset(named, CS)
    assert report.usable and report.labels_from == {"all": "file names, before their ids"}
    # what is no id: digits drawn at random, hex of one text each, or one text for all
    rng = __import__("random").Random(0)
    texts = [f"AB{i:02d}" for i in range(40)]
    assert labels_before_ids([f"{t}-{rng.randrange(10_000):04d}.png" for t in texts]) is None
    assert labels_before_ids([f"{t}-{t}.png" for t in texts]) is None
    assert labels_before_ids([f"shot-{i:04d}.png" for i in range(40)]) is None


@pytest.mark.parametrize("listing, header, sep", [("labels.csv", "filename\tlabel\n", "\t"), ("labels.txt", "", " "),
                                                 ("labels.tsv", "", "\t"), ("labels.txt", "", "  ")])
def test_labels_listed_tab_or_space_separated_or_in_labels_txt(flat_captchas, tmp_path, listing, header, sep):
    """Other tools list labels one "file label" row a line, tab- or space-separated, often as labels.txt."""
    site = tmp_path / "site"
    shutil.copytree(flat_captchas, site)
    labels = dict(row.split(",") for row in (site / "labels.csv").read_text().splitlines()[1:])
    (site / "labels.csv").unlink()
    (site / listing).write_text(header + "".join(f"{name}{sep}{label}\n" for name, label in sorted(labels.items())))
    samples = read_captcha_labels(site, Charset())
    assert {s.path.name: s.label for s in samples} == labels
    report = check_dataset(site, CS)
    assert report.usable and report.labels_from == {"all": listing}
    (site / sorted(labels)[-1]).unlink()  # a listed file gone is a problem that names the list it is in
    problems = []
    read_captcha_labels(site, Charset(), problems)
    assert any(f"listed in {listing} but missing" in str(p) for p in problems)


def test_a_folder_of_site_folders_names_the_one_to_pass(flat_captchas, tmp_path):
    """A site split into train/ and test/ of its own: the error names them and the folder to pass."""
    root = tmp_path / "site"
    shutil.copytree(flat_captchas, root / "test")
    _named_copy(flat_captchas, root / "train")
    (root / "notes").mkdir()
    with pytest.raises(DataError, match=r"its folders test/, train/ hold some: pass one of them \(--data .*site/train\)"):
        check_dataset(root, CS)
    assert check_dataset(root / "train", CS).usable
    with pytest.raises(DataError, match="neither the course layout"):
        check_dataset(root / "notes", CS)


def test_ordered_holdout_takes_the_last_names():
    names = [f"{i:03d}.png" for i in range(10)][::-1]
    assert ordered_holdout(names, 0.3) == {"007.png", "008.png", "009.png"}
    assert ordered_holdout(names, 0) == set()


def test_split_folder_writes_both_parts_and_refuses_a_used_out(flat_captchas, tmp_path):
    held = ordered_holdout([p.name for p in flat_captchas.glob("*.png")], 0.25)
    out = tmp_path / "split"
    assert split_captcha_folder(flat_captchas, out, held, CS) == {"train": 30, "val": 10}
    val = read_captcha_labels(out / "captchas" / "val", CS)
    assert {s.path.name for s in val} == held
    src = {s.path.name: s.label for s in read_captcha_labels(flat_captchas, CS)}
    assert all(src[s.path.name] == s.label for s in val)
    with pytest.raises(DataError, match="--force"):
        split_captcha_folder(flat_captchas, out, set(), CS)
    # --force clears the old split first: no stale file stays behind in val
    assert split_captcha_folder(flat_captchas, out, set(list(held)[:2]), CS, force=True) == {"train": 38, "val": 2}
    assert len(list((out / "captchas" / "val").glob("*.png"))) == 2
    with pytest.raises(DataError, match="source"):
        split_captcha_folder(flat_captchas, flat_captchas.parent, held, CS, force=True)


@pytest.mark.parametrize("name", ["../outside.png", "/etc/hostname", "sub/../../outside.png"])
def test_labels_csv_cannot_name_files_outside_its_folder(tmp_path, name):
    from captcha.data.layout import read_captcha_labels

    (tmp_path / "outside.png").write_bytes(b"x")
    site = tmp_path / "site"
    site.mkdir()
    Image.new("RGB", (40, 20)).save(site / "ok.png")
    (site / "labels.csv").write_text(f"filename,label\nok.png,AB12\n{name},ABCD\n")
    problems = []
    samples = read_captcha_labels(site, problems=problems)
    assert [s.path.name for s in samples] == ["ok.png"]
    assert any("line 3" in str(p) and "not a file inside" in str(p) for p in problems)


@pytest.mark.parametrize("text", ["image,text\na.png,AB12\nb.png,C3\n", "Label,File\nAB12,a.png\nC3,b.png\n",
                                  "a.png,AB12\nb.png,C3\n", "id,file,width,code\n1,a.png,40,AB12\n2,b.png,40,C3\n"])
def test_labels_csv_as_other_tools_write_it(tmp_path, text):
    """Another header naming a file and a label column, in any order, or no header at all."""
    for k, name in enumerate(("a.png", "b.png")):
        Image.new("RGB", (40, 20), (k, k, k)).save(tmp_path / name)
    (tmp_path / "labels.csv").write_text(text)
    assert [(s.path.name, s.label) for s in read_captcha_labels(tmp_path, Charset())] == [("a.png", "AB12"),
                                                                                         ("b.png", "C3")]


def test_labels_csv_oddities_are_clear_errors(tmp_path):
    from captcha.data.layout import read_captcha_labels
    from captcha.errors import DataError

    Image.new("RGB", (40, 20)).save(tmp_path / "a.png")
    (tmp_path / "labels.csv").write_bytes("filename,label\na.png,ÄB12\n".encode("latin-1"))
    with pytest.raises(DataError, match="UTF-8"):
        read_captcha_labels(tmp_path, problems=[])
    (tmp_path / "labels.csv").write_text("filename,label\na.png," + "A" * 200_000 + "\n")
    with pytest.raises(DataError, match="CSV"):
        read_captcha_labels(tmp_path, problems=[])
    (tmp_path / "labels.csv").write_text("width,height\n40,20\n")
    with pytest.raises(DataError, match="first line must be the header 'filename,label'.*got \\['width', 'height'\\]"):
        read_captcha_labels(tmp_path, problems=[])
    (tmp_path / "labels.csv").write_text("c.png,AB12\n")  # headerless, but naming no image here
    with pytest.raises(DataError, match="first line must be the header"):
        read_captcha_labels(tmp_path, problems=[])
    (tmp_path / "labels.csv").write_text("filename,label\na.png,AB12\na.png,AB13\n")
    problems = []
    assert [s.label for s in read_captcha_labels(tmp_path, problems=problems)] == ["AB12"]
    assert any("listed again" in str(p) for p in problems)


def _relabelled(src, dst, relabel):
    """A copy of a flat folder whose labels.csv rows pass through ``relabel(index, label)``."""
    shutil.copytree(src, dst)
    rows = (dst / "labels.csv").read_text().splitlines()
    body = [r.split(",", 1) for r in rows[1:]]
    (dst / "labels.csv").write_text("\n".join([rows[0]] + [f"{n},{relabel(i, lab)}" for i, (n, lab) in
                                                           enumerate(body)]) + "\n")
    return dst


def test_the_charset_covers_what_the_labels_use(flat_captchas, tmp_path):
    from captcha.data.layout import dataset_labels, left_out, site_charset

    assert site_charset(flat_captchas) == Charset()  # ABC123 labels: the default covers them
    signs = _relabelled(flat_captchas, tmp_path / "signs", lambda i, lab: lab[:-1] + "+" if i % 2 else lab)
    assert sum(lab.endswith("+") for lab in dataset_labels(signs)) == 20
    cs = site_charset(signs)
    assert cs.alphabet == Charset().alphabet + "+"
    assert left_out(signs, cs) == (40, [])
    kept, problems = left_out(signs, CS)  # a given charset without "+": the 20 are left out, each named
    assert kept == 20 and len(problems) == 20 and "'+'" in str(problems[0])
    rep = check_dataset(signs)  # no charset: the one training would use, so nothing to report
    assert rep.usable and rep.alphabet == cs.alphabet, rep.problems
    assert len(check_dataset(signs, CS).problems) == 20


def test_the_labels_case_is_kept(flat_captchas, tmp_path):
    from captcha.charset import CASED_ALPHABET, LOWER_ALPHABET
    from captcha.data.layout import read_captcha_labels, site_charset

    lower = _relabelled(flat_captchas, tmp_path / "lower", lambda i, lab: lab.lower())
    cs = site_charset(lower)
    assert cs.alphabet == LOWER_ALPHABET and check_dataset(lower).alphabet == LOWER_ALPHABET
    assert all(s.label == s.label.lower() for s in read_captcha_labels(lower, cs))
    mixed = _relabelled(flat_captchas, tmp_path / "mixed", lambda i, lab: lab.lower() if i % 2 else lab)
    cs = site_charset(mixed)
    assert cs.alphabet == CASED_ALPHABET and not cs.fold_case
    labels = [s.label for s in read_captcha_labels(mixed, cs)]
    assert any(lab != lab.upper() for lab in labels) and any(lab != lab.lower() for lab in labels)


def test_class_folders_count_as_labels(tiny_data, tmp_path):
    from captcha.data.layout import site_charset

    root = tmp_path / "d"
    shutil.copytree(tiny_data, root)
    shutil.copytree(root / "chars" / "train" / "A", root / "chars" / "train" / "+")
    (root / "chars" / "train" / ".cache").mkdir()  # hidden folders are not classes
    assert site_charset(root).alphabet == Charset().alphabet + "+"


def test_decoding_once_decodes_each_file_once_and_reports_a_bad_one_each_time(flat_captchas, tmp_path):
    from captcha.data.layout import Sample, decoding_once, load_images

    for name in ("a.png", "b.png"):
        shutil.copy(next(flat_captchas.glob("*.png")), tmp_path / name)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    samples = [Sample(tmp_path / n, "ABCA") for n in ("a.png", "bad.png", "b.png")]
    bad: list[str] = []
    with decoding_once():
        first, kept = load_images(samples, on_error=lambda s, e: bad.append(s.path.name))
        with decoding_once():  # a nested scope reads the outer one's
            again, _ = load_images(samples, on_error=lambda s, e: bad.append(s.path.name))
    assert [s.path.name for s in kept] == ["a.png", "b.png"] and bad == ["bad.png", "bad.png"]
    assert all(x is y for x, y in zip(first, again))
    outside, _ = load_images(samples, on_error=lambda s, e: None)
    assert not any(x is y for x, y in zip(first, outside))


def _with_copies(flat_captchas, root, conflict: bool):
    """The flat captchas plus copies of two of them under other names: one labelled as its original, and one
    labelled otherwise (``conflict``) or alike."""
    shutil.copytree(flat_captchas, root)
    rows = (root / "labels.csv").read_text().splitlines()
    (a, la), (b, lb) = (r.split(",") for r in rows[1:3])
    shutil.copy(root / a, root / "again.png")
    shutil.copy(root / b, root / "other.png")
    wrong = next(c for c in "ABC123" if c != lb[0]) + lb[1:]
    rows += [f"again.png,{la.lower()}", f"other.png,{wrong if conflict else lb}"]  # a label's case is no difference
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root, a, b


def test_a_copy_of_a_captcha_is_read_once_and_one_labelled_otherwise_is_a_problem(flat_captchas, tmp_path):
    """A site that served a captcha twice: the copy would count twice, and could sit in training while its twin
    measures the model. Read once (a note: still usable); a copy labelled otherwise means one label is wrong."""
    from captcha.data.splits import read_parts

    root, a, b = _with_copies(flat_captchas, tmp_path / "alike", conflict=False)
    found: list = []
    names = [s.path.name for s in read_captcha_labels(root, CS, found)]
    assert len(names) == 40 and "again.png" not in names and "other.png" not in names
    assert [(p.blocking, p.message) for p in found] == [
        (False, f"a copy of {a} (the same file and label): read once"),
        (False, f"a copy of {b} (the same file and label): read once")]
    assert len(read_captcha_labels(root, CS)) == 40  # copies alone never raise
    assert len(read_captcha_labels(root, CS, [], copies=True)) == 42
    rep = check_dataset(root, CS)
    assert rep.usable and rep.captchas == {"all": 40} and len(rep.problems) == 2
    parts = read_parts(root, CS, 0.25, 0)
    assert len(parts.train_caps) + len(parts.val_caps) == 40

    root, a, b = _with_copies(flat_captchas, tmp_path / "apart", conflict=True)
    rep = check_dataset(root, CS)
    text = "\n".join(map(str, rep.problems))
    assert not rep.usable and rep.captchas == {"all": 39}  # both of the pair labelled apart are left out
    assert f"{b}: the same image as other.png, which is labelled" in text and "other.png: the same image as " in text
    assert "one label is wrong" in text
    with pytest.raises(DataError, match="one label is wrong"):
        read_captcha_labels(root, CS)


def test_a_validation_captcha_copied_from_training_is_a_problem(tiny_data, tmp_path):
    root = tmp_path / "course"
    shutil.copytree(tiny_data, root)
    train = root / "captchas" / "train"
    train.mkdir()
    val = root / "captchas" / "val"
    name, label = (val / "labels.csv").read_text().splitlines()[1].split(",")
    shutil.copy(val / name, train / "seen.png")
    (train / "labels.csv").write_text(f"filename,label\nseen.png,{label}\n")
    rep = check_dataset(root, CS)
    assert not rep.usable and [str(p) for p in rep.problems] == [
        f"{val / name}: a copy of {train / 'seen.png'} (training): it would measure a captcha trained on; "
        "remove one of them"]


def test_captchas_in_a_format_it_does_not_read_are_named_not_passed_over(flat_captchas, tmp_path):
    """A folder of TIFF captchas says what to convert them to; beside readable ones they are left out, each said."""
    tiffs = tmp_path / "tiffs"
    tiffs.mkdir()
    for p in sorted(flat_captchas.glob("*.png"))[:3]:
        Image.open(p).save(tiffs / f"{p.stem}.tiff")
    with pytest.raises(DataError, match=r"its captchas are \.tiff images, a format it does not read \(png, jpeg, bmp, "
                                        r"gif, webp, svg\): convert them to png \(e\.g\. `mogrify -format png"):
        check_dataset(tiffs, CS)
    mixed = tmp_path / "mixed"
    shutil.copytree(flat_captchas, mixed)
    shutil.copy(next(tiffs.glob("*.tiff")), mixed)
    report = check_dataset(mixed, CS)
    assert report.usable and report.captchas["all"] == len(list(flat_captchas.glob("*.png")))
    assert [p.message for p in report.problems if p.path.endswith(".tiff")] == [
        "a .tiff image, a format it does not read (png, jpeg, bmp, gif, webp, svg): convert it to png"]
