"""The dataset layout: finding, validating and loading single characters and whole captchas.

Layout (see README)::

    DATA/chars/{train,val}/<C>/*.png|jpg|jpeg|bmp|gif   single characters, folder = character
    DATA/captchas/{train,val}/*.png... [+ labels.csv]    whole captchas (train optional)
    DATA/*.png... [+ labels.csv]                         or: a flat folder of labelled captchas

A captcha's label comes from ``labels.csv`` (header ``filename,label``, another naming a file and a label
column, or none; commas, tabs or spaces between them; ``labels.tsv`` or ``labels.txt`` where there is no
labels.csv) when present, else from its file name up to the first ``_``, space or ``.`` (after a leading
number that numbers the files: ``0001_A7K2.png``).
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import os
import re
import shutil
import tempfile
from collections import Counter
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import Callable, Iterable, Iterator, Sequence

from PIL import Image

from ..charset import DEFAULT_CHARSET, Charset, for_labels
from ..config import ONE_LENGTH_SHARE
from ..errors import DataError, ImageError
from .images import (
    IMAGE_SUFFIXES,
    READ_FORMATS,
    file_digest,
    is_image_name,
    is_refused_image_name,
    load_image,
    refused_format,
    unpack_hint,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
LABELS_FILE = "labels.csv"  # the labels file this package writes
# read where no labels.csv is: the names other tools give the same list (tab- or space-separated rows are read too)
LABELS_FILES = (LABELS_FILE, "labels.tsv", "labels.txt")


@dataclass
class Problem:
    """One thing wrong with a dataset, tied to the file or folder it is about; one that is not ``blocking`` (a copy
    of another captcha, read once) is said but leaves the dataset usable."""

    path: str
    message: str
    blocking: bool = True

    @classmethod
    def unreadable(cls, path: str | Path, exc: ImageError) -> Problem:
        """A file that does not decode: the image error's words, less the file name it starts with."""
        return cls(str(path), str(exc).split(": ", 1)[-1])

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Sample:
    """One labelled image on disk."""

    path: Path
    label: str


def label_from_name(name: str) -> str:
    """``A7K2_0031.png`` (or ``A7K2 (2).png``, as a browser saves a second copy) -> ``A7K2``: the file name up
    to the first ``_``, space or ``.``."""
    return re.split(r"[_ .]", name, maxsplit=1)[0]


NAMES_JUDGED_FROM = 10  # file names judged as labels (a numbering, one name for all) from this many images up


def names_not_labels(labels: Sequence[str]) -> str | None:
    """Why labels read from file names cannot be the captchas' text, or None where they may be: most share one
    label (``img_0001.png``, ``img_0002.png``: "img"), or they number the files (``0001.png``, ``0002.png``,
    ``shot-17.png``...: one pattern, its last number running on by one), which text drawn at random does not do."""
    if len(labels) < NAMES_JUDGED_FROM:
        return None
    common, n = Counter(labels).most_common(1)[0]
    if n > len(labels) / 2:
        return f"give {n} of the {len(labels)} images the same label {common!r}"
    numbered = _numbering(labels)
    if numbered:
        return f"number the images ({numbered[0]}, ..., {numbered[-1]}) rather than spell what each shows"
    return None


def _numbering(labels: Sequence[str]) -> list[str] | None:
    """``labels`` in the order of the number they end in, where they number files (one pattern, that number
    running on by one), else None."""
    patterns = {re.sub(r"\d+", "#", label) for label in labels}
    if len(labels) < NAMES_JUDGED_FROM or len(patterns) > 1 or "#" not in next(iter(patterns)):
        return None
    numbered = sorted((int(re.findall(r"\d+", label)[-1]), label) for label in labels)
    # drawn at random, k-digit labels run on by one about len/10**k of the time; a numbering nearly always does
    if sum(b[0] - a[0] == 1 for a, b in zip(numbered, numbered[1:])) >= 0.9 * (len(numbered) - 1):
        return [label for _, label in numbered]
    return None


NUMBER_PREFIX = re.compile(r"(?P<id>\d+)[_\- ](?P<text>[^_ .]+).*")
ID_SUFFIX = re.compile(r"(?P<text>[^_ .\-]+)-(?P<id>\d+|[0-9a-fA-F]{8,}(?:-[0-9a-fA-F]+)*)(?:[_ .].*)?")


def _texts_and_ids(pattern: re.Pattern, names: Sequence[str]) -> tuple[list[str], list[str]] | None:
    """The ``text`` and ``id`` groups of each of ``names`` where ``pattern`` matches every one whole, else None."""
    parts = [pattern.fullmatch(name) for name in names]
    if not names or not all(parts):
        return None
    return [m.group("text") for m in parts if m], [m.group("id") for m in parts if m]


def labels_after_numbers(names: Sequence[str]) -> list[str] | None:
    """Labels of files named ``<number>_<text>`` (``0001_A7K2.png``, ``17-A7K2.png``) where the numbers number the
    files, else None: the text after the numbering, up to the next ``_``, space or ``.``."""
    split = _texts_and_ids(NUMBER_PREFIX, names)
    if split and _numbering(split[1]) and names_not_labels(split[0]) is None:
        return split[0]
    return None


def labels_before_ids(names: Sequence[str]) -> list[str] | None:
    """Labels of files named ``<text>-<id>`` (``A7K2-0001.png``, ``A7K2-3f9c2a1b.png``, ``A7K2-<uuid>.png``: a
    second copy of a text stays a file of its own) where the ids are the files' own, else None: the text before
    the id. An id is a numbering of the files, or hex of eight digits or more, one length for all, each once."""
    split = _texts_and_ids(ID_SUFFIX, names)
    if not split:
        return None
    labels, ids = split
    numbered = all(i.isdigit() for i in ids) and _numbering(ids)
    hashed = len({len(i) for i in ids}) == 1 and len(ids[0]) >= 8 and len(set(ids)) == len(ids)
    if (numbered or hashed) and names_not_labels(labels) is None:
        return labels
    return None


def labels_file(folder: Path) -> Path | None:
    """The file listing ``folder``'s labels (:data:`LABELS_FILES`, the first there), or None."""
    return next((folder / name for name in LABELS_FILES if (folder / name).is_file()), None)


def labels_source(folder: Path) -> str:
    """Where a folder's labels are read from, as :func:`read_captcha_labels` reads them: its labels file's name, or
    the file names (after the number of each, where one numbers them)."""
    listing = labels_file(folder)
    return listing.name if listing else _labels_from_names(_image_files(folder))[1]


def _labels_from_names(images: Sequence[Path]) -> tuple[list[tuple[str, str]], str]:
    """(file name, label) of each image read from its name, and how: after the number of each where the numbers
    number the files, before the id of each where a ``-`` joins one to each text, else up to the first ``_``,
    space or ``.``."""
    names = [p.name for p in images]
    for read, how in ((labels_after_numbers, "file names, after their numbers"),
                      (labels_before_ids, "file names, before their ids")):
        labels = read(names)
        if labels:
            return list(zip(names, labels)), how
    return [(name, label_from_name(name)) for name in names], "file names"


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image_name(p.name))


def write_labels_csv(folder: Path, rows: Iterable[tuple[str, str]]) -> Path:
    """Write ``folder``/labels.csv from (file name, label) rows, as :func:`read_captcha_labels` reads it."""
    path = folder / LABELS_FILE
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("filename", "label"))
        writer.writerows(rows)
    return path


FILE_COLUMNS = ("filename", "file", "file_name", "image", "img", "image_name", "name", "path")
LABEL_COLUMNS = ("label", "text", "code", "captcha", "answer", "value", "solution")


def _label_columns(header: list[str] | None, labels_path: Path) -> tuple[int, int, bool]:
    """(file column, label column, whether the first row is already data) of a labels.csv: the header names
    them (``filename,label``, or as other tools write it: ``image,text``, ``label,file``...), or there is no
    header and each row is ``file,label`` (its first cell names an image beside it)."""
    names = [h.strip().lower() for h in header or []]
    file_col = next((i for i, h in enumerate(names) if h in FILE_COLUMNS), None)
    label_col = next((i for i, h in enumerate(names) if h in LABEL_COLUMNS), None)
    if file_col is not None and label_col is not None:
        return file_col, label_col, False
    if len(names) >= 2 and is_image_name(names[0]) and (labels_path.parent / header[0].strip()).is_file():
        return 0, 1, True
    raise DataError(f"{labels_path}: first line must be the header 'filename,label' (or one naming a file and a "
                    f"label column, such as 'image,text'), or a first row 'file,label' of an image here (tabs or spaces "
                    f"may separate them); got {header!r}")


def _read_labels_csv(labels_path: Path, found: list[Problem]) -> list[tuple[str, str]]:
    """(file name, label) rows of a labels.csv; rows naming files outside its folder, or one file
    twice with different labels, become problems."""
    pairs: dict[str, str] = {}
    try:
        # utf-8-sig strips a BOM; newline="" lets csv handle CRLF files.
        with open(labels_path, newline="", encoding="utf-8-sig") as fh:
            first = fh.readline()
            fh.seek(0)
            # other tools list labels tab- or space-separated ("0001.png A7K2"); a CSV's first line has its comma
            reader = (csv.reader(fh, delimiter="\t") if "\t" in first else csv.reader(fh) if "," in first
                      else csv.reader(fh, delimiter=" ", skipinitialspace=True))
            header = next(reader, None)
            file_col, label_col, headerless = _label_columns(header, labels_path)
            rows = enumerate(itertools.chain([header] if headerless else [], reader), start=1 if headerless else 2)
            for lineno, row in rows:
                if not row or not "".join(row).strip():
                    continue
                if len(row) <= max(file_col, label_col):
                    found.append(Problem(str(labels_path), f"line {lineno}: expected 'filename,label', got {row!r}"))
                    continue
                name, label = row[file_col].strip(), row[label_col].strip()
                where = PurePath(name)
                if where.is_absolute() or ".." in where.parts or not where.parts:
                    found.append(Problem(str(labels_path), f"line {lineno}: {name!r} is not a file inside "
                                                           f"{labels_path.parent}; name files relative to it"))
                    continue
                if name in pairs and pairs[name] != label:
                    found.append(Problem(str(labels_path), f"line {lineno}: {name!r} listed again with another label "
                                                           f"({pairs[name]!r}, then {label!r}); keep one row"))
                    continue
                pairs[name] = label
    except UnicodeDecodeError:
        raise DataError(f"{labels_path}: not UTF-8 text; save it as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{labels_path}: not a readable CSV ({exc}); one 'filename,label' row per image") from None
    return list(pairs.items())


def labels_csv_rows(labels_path: str | Path) -> list[tuple[str, str]]:
    """(file name, label) rows of a labels.csv as written, whatever characters the labels hold."""
    return _read_labels_csv(Path(labels_path), [])


def labels_csv_text(rows: Iterable[tuple[str, str]]) -> str:
    """A labels.csv's text for (file name, label) ``rows``: the header, then each row quoted as CSV needs (a name
    or a label holding a comma or a quote reads back as written)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("filename", "label"))
    writer.writerows(rows)
    return buf.getvalue()


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file beside it and a rename: a kill at any moment leaves the old
    file or the new one whole, never half of one (a temp file cut short is removed where it can be)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_captcha_labels(folder: str | Path, charset: Charset = DEFAULT_CHARSET,
                        problems: list[Problem] | None = None, copies: bool = False) -> list[Sample]:
    """Labelled captchas of one folder, from labels.csv or file names; a copy of another file is read once
    (unless ``copies``: every labelled file, as the labelling page lists them).

    Problems (missing files, unlisted images, labels outside the charset) are appended to
    ``problems`` and the offending entries left out; without a list they raise :class:`DataError`.
    """
    folder = Path(folder)
    found: list[Problem] = []
    pairs = _label_pairs(folder, found)
    listing = (labels_file(folder) or folder / LABELS_FILE).name
    samples = []
    for name, label in pairs:
        path = folder / name
        if not path.is_file():
            found.append(Problem(str(path), f"listed in {listing} but missing"))
            continue
        if not label:
            found.append(Problem(str(path), "empty label"))
            continue
        bad = charset.unknown(label)
        if bad:
            found.append(Problem(str(path), f"label {label!r} has characters not in the charset: {', '.join(map(repr, bad))}"))
            continue
        samples.append(Sample(path, charset.normalize(label)))
    if not copies:
        samples = _read_once(samples, found)
    blocking = [p for p in found if p.blocking]
    if problems is not None:
        problems.extend(found)
    elif blocking:
        raise DataError("; ".join(map(str, blocking[:5])) + (f" (and {len(blocking) - 5} more)" if len(blocking) > 5 else ""))
    return samples


def _read_once(samples: list[Sample], found: list[Problem]) -> list[Sample]:
    """``samples`` with a file that repeats another's bytes read once: a site that serves a captcha twice, or one
    saved twice, would otherwise count it twice and could put one copy in the captchas held out to measure and the
    other in training. Copies labelled apart are problems (one label is wrong), left out, every one of them."""
    sizes = [s.path.stat().st_size for s in samples]
    repeated = Counter(sizes)
    keys = [(size, file_digest(s.path) if repeated[size] > 1 else "") for s, size in zip(samples, sizes)]
    copies: dict[tuple[int, str], list[Sample]] = {}
    for s, key in zip(samples, keys):
        copies.setdefault(key, []).append(s)
    kept = []
    for s, key in zip(samples, keys):
        group = copies[key]
        other = next((c for c in group if c.label != s.label), None)
        if other is not None:
            found.append(Problem(str(s.path), f"the same image as {other.path.name}, which is labelled {other.label!r} "
                                              f"(here {s.label!r}): one label is wrong; correct it or remove the copy"))
        elif s is group[0]:
            kept.append(s)
        else:
            found.append(Problem(str(s.path), f"a copy of {group[0].path.name} (the same file and label): read once",
                                 blocking=False))
    return kept


def _label_pairs(folder: Path, found: list[Problem]) -> list[tuple[str, str]]:
    """(file name, label) of each captcha of one folder, from labels.csv or the file names, unchecked."""
    if not folder.is_dir():
        raise DataError(f"{folder}: captcha folder does not exist")
    images = _image_files(folder)
    found += [Problem(str(p), refused_format(p), blocking=False)
              for p in sorted(folder.iterdir()) if is_refused_image_name(p.name)]
    labels_path = labels_file(folder)
    if labels_path is None:
        pairs, how = _labels_from_names(images)
        wrong = None if how != "file names" else names_not_labels([label for _, label in pairs])
        if wrong:
            raise DataError(f"{folder}: no {LABELS_FILE}, and its file names, read as labels, {wrong}: put each "
                            f"image's text in {folder / LABELS_FILE} (header 'filename,label'; `captcha label "
                            f"{folder}` helps), or name each file by its text (A7K2.png, A7K2_2.png)")
        return pairs
    pairs = _read_labels_csv(labels_path, found)
    listed = {name for name, _ in pairs}
    for img in images:
        if img.name not in listed:
            found.append(Problem(str(img), f"image not listed in {labels_path.name}; add a row for it or remove it"))
    return pairs


def _label_folders(root: Path) -> tuple[list[Path], list[Path]]:
    """(single-character splits, captcha folders) that hold a dataset's labels: a flat folder is one
    captcha folder."""
    if detect_layout(root) == "flat":
        return [], [root]
    chars, caps = ([root / kind / split for split in SPLITS if (root / kind / split).is_dir()]
                   for kind in ("chars", "captchas"))
    return chars, caps


def dataset_labels(root: str | Path) -> list[str]:
    """Every label a dataset gives, either layout (a class folder's name counts as one), unchecked:
    what its charset has to cover."""
    chars, caps = _label_folders(Path(root))
    return ([sub.name for d in chars for sub in d.iterdir() if sub.is_dir() and not sub.name.startswith(".")]
            + [label for d in caps for _, label in _label_pairs(d, [])])


def labelled_captchas(root: str | Path, charset: Charset) -> list[Sample]:
    """Every whole captcha a dataset labels (a flat folder's, or the course layout's captchas/ splits) that
    ``charset`` can spell, in folder and file-name order; what it cannot read is left out."""
    return [s for d in _label_folders(Path(root))[1] for s in read_captcha_labels(d, charset, [])]


def site_charset(root: str | Path) -> Charset:
    """The charset a dataset's labels ask for when none is given (:func:`captcha.charset.for_labels`): 0-9
    and the letters in the labels' case, both cases apart where they use both, plus any other character."""
    return for_labels(dataset_labels(root))


def left_out(root: str | Path, charset: Charset) -> tuple[int, list[Problem]]:
    """(labelled images kept, problems that leave entries out) when training reads ``root`` with
    ``charset``: labels it cannot spell, missing or unlisted files; images are not decoded."""
    chars, caps = _label_folders(Path(root))
    found: list[Problem] = []
    kept = sum(len(read_char_folder(d, charset, found)) for d in chars)
    kept += sum(len(read_captcha_labels(d, charset, found)) for d in caps)
    return kept, found


def left_out_note(problems: Sequence[Problem], root: str | Path | None = None) -> str:
    """One line for the entries a command leaves out: the first, and how many more (and, given the dataset's
    ``root``, how to list them: `data check` judges by the labels' own characters, not a model's)."""
    more = len(problems) - 1
    problems = sorted(problems, key=lambda p: not p.blocking)  # a copy read once is the least of them
    listing = f": `captcha data check --data {root}` lists them" if root is not None else ""
    return f"{problems[0]}" + (f"; and {more} more{listing}" if more else "")


def read_char_folder(split_dir: str | Path, charset: Charset = DEFAULT_CHARSET,
                     problems: list[Problem] | None = None) -> list[Sample]:
    """Single-character images of one split (``chars/train``); folder names are the classes."""
    split_dir = Path(split_dir)
    found: list[Problem] = []
    samples: list[Sample] = []
    for sub in sorted(split_dir.iterdir()):
        if not sub.is_dir():
            found.append(Problem(str(sub), "stray file in a split folder; character images go in <split>/<C>/"))
            continue
        if len(sub.name) != 1 or sub.name not in charset:
            found.append(Problem(str(sub), f"folder name is not a character of the charset {charset.alphabet!r}"))
            continue
        files = sorted(sub.iterdir())
        images = [p for p in files if is_image_name(p.name) and p.is_file()]
        for p in files:
            if p not in images:
                found.append(Problem(str(p), f"not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})"))
        if not images:
            found.append(Problem(str(sub), "empty class folder"))
        label = charset.normalize(sub.name)
        samples.extend(Sample(p, label) for p in images)
    if problems is not None:
        problems.extend(found)
    elif found:
        raise DataError("; ".join(map(str, found[:5])))
    return samples


@dataclass
class DatasetReport:
    """What `captcha data check` finds: counts and every problem."""

    root: str
    layout: str  # "course" or "flat"
    alphabet: str = DEFAULT_CHARSET.alphabet  # the characters it was checked against
    chars: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> count
    captchas: dict[str, int] = field(default_factory=dict)  # split -> count
    lengths: dict[str, dict[int, int]] = field(default_factory=dict)  # split -> length -> count
    labels_from: dict[str, str] = field(default_factory=dict)  # split -> where its labels are read (labels_source)
    problems: list[Problem] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        # a flat folder ("all") is trained on after `captcha train` holds out its validation share
        has_train = any(self.chars.get("train", {}).values()) or bool(self.captchas.get("train")) \
            or bool(self.captchas.get("all"))
        return has_train and not any(p.blocking for p in self.problems)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["problems"] = [asdict(p) for p in self.problems]
        d["usable"] = self.usable
        return d


def detect_layout(root: Path) -> str:
    """``course`` when ``chars/`` or ``captchas/`` exist, ``flat`` for a folder of captchas."""
    if (root / "chars").is_dir() or (root / "captchas").is_dir():
        return "course"
    if labels_file(root) or any(is_image_name(p.name) for p in root.iterdir()):
        return "flat"
    refused = sorted({p.suffix.lower() for p in root.iterdir() if is_refused_image_name(p.name)})
    if refused:
        raise DataError(f"{root}: its captchas are {', '.join(refused)} images, a format it does not read "
                        f"({READ_FORMATS}): convert them to png "
                        f"(e.g. `mogrify -format png {root}/*{refused[0]}`)")
    # a site's captchas split into folders of its own naming (train/, test/): which one to pass
    holding = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                     and (labels_file(p) or any(is_image_name(q.name) for q in p.iterdir())))
    if holding:
        named = ", ".join(f"{name}/" for name in holding[:4]) + (", ..." if len(holding) > 4 else "")
        example = "train" if "train" in holding else holding[0]
        raise DataError(f"{root}: no captchas here, but its folders {named} hold some: pass one of them "
                        f"(--data {root / example})")
    raise DataError(
        f"{root}: neither the course layout (chars/, captchas/) nor a folder of captchas; "
        "see README 'Dataset layout' or run `captcha data synth --out DIR`"
    )


def dataset_folder(root: str | Path, hint: str = "") -> Path:
    """``root`` as a Path when it is a folder, else a DataError saying it is an archive, a file or missing (then
    ``hint``)."""
    root = Path(root)
    if root.is_dir():
        return root
    unpack = unpack_hint(root) if root.exists() else None
    if unpack:
        raise DataError(f"{root}: an archive, not a dataset folder: unpack it first ({unpack}) and pass the folder "
                        "that holds the captchas")
    if root.exists():
        inside = f" (--data {root.parent})" if root.name in LABELS_FILES or is_image_name(root.name) else ""
        raise DataError(f"{root}: a file, not a dataset folder: pass the folder that holds the captchas{inside}")
    raise DataError(f"{root}: dataset folder does not exist{hint}")


def check_dataset(root: str | Path, charset: Charset | None = None, length: int | None = None,
                  decode: bool = True) -> DatasetReport:
    """Scan a dataset, counting what is there and listing every problem; decodes every image. With no
    ``charset``, the one training would read it with (:func:`site_charset`)."""
    root = dataset_folder(root, f" (make one with `captcha data synth --out {root}`)")
    charset = charset or site_charset(root)
    report = DatasetReport(str(root), detect_layout(root), charset.alphabet)
    problems = report.problems
    all_samples: list[Sample] = []
    if report.layout == "flat":
        caps = read_captcha_labels(root, charset, problems)
        report.captchas["all"] = len(caps)
        report.labels_from["all"] = labels_source(root)
        report.lengths["all"] = dict(Counter(len(s.label) for s in caps))
        all_samples += caps
        _check_lengths(caps, length, problems)
    else:
        split_caps: dict[str, list[Sample]] = {}
        for entry in sorted(root.iterdir()):
            if entry.name not in ("chars", "captchas") and not entry.name.startswith("."):
                problems.append(Problem(str(entry), "unknown entry; the layout has only chars/ and captchas/"))
        for kind in ("chars", "captchas"):
            base = root / kind
            if not base.is_dir():
                continue
            for entry in sorted(base.iterdir()):
                if entry.name not in SPLITS:
                    problems.append(Problem(str(entry), f"unknown entry; {kind}/ holds only {' and '.join(SPLITS)}/"))
        for split in SPLITS:
            d = root / "chars" / split
            if d.is_dir():
                chars = read_char_folder(d, charset, problems)
                counts = Counter(s.label for s in chars)
                report.chars[split] = {c: counts.get(c, 0) for c in charset.alphabet}
                all_samples += chars
            d = root / "captchas" / split
            if d.is_dir():
                caps = split_caps[split] = read_captcha_labels(d, charset, problems)
                report.captchas[split] = len(caps)
                report.labels_from[split] = labels_source(d)
                report.lengths[split] = dict(Counter(len(s.label) for s in caps))
                all_samples += caps
                _check_lengths(caps, length, problems)
        problems += _trained_on(*(split_caps.get(split, []) for split in SPLITS))
        if not (root / "chars" / "train").is_dir() and not (root / "captchas" / "train").is_dir():
            problems.append(Problem(str(root), "no training data: expected chars/train/<C>/ or captchas/train/"))
    if decode:
        for s in all_samples:
            try:
                load_image(s.path)
            except ImageError as exc:
                problems.append(Problem.unreadable(s.path, exc))
    return report


def _trained_on(train: list[Sample], val: list[Sample]) -> list[Problem]:
    """A validation captcha that is a copy of a training one (the same file) is a problem: it measures a captcha
    the model learned, not a new one."""
    if not train or not val:
        return []
    trained = {file_digest(s.path): s for s in train}
    return [Problem(str(s.path), f"a copy of {trained[d].path} (training): it would measure a captcha trained on; "
                                 "remove one of them") for s in val if (d := file_digest(s.path)) in trained]


def one_length(counts: Counter, share: float = ONE_LENGTH_SHARE) -> int | None:
    """The captcha length at least ``share`` of the labels (or readings) counted (length -> how many) have; None
    where none is that common (a site whose lengths vary) or nothing is counted."""
    if not counts:
        return None
    common, n = counts.most_common(1)[0]
    return common if n >= share * sum(counts.values()) else None


def _check_lengths(samples: Sequence[Sample], length: int | None, problems: list[Problem]) -> None:
    """A label of another length than ``length`` (else than :func:`one_length`'s) is a problem; where no one
    length is that common the site's lengths vary, which CTC learns."""
    expected = length or one_length(Counter(len(s.label) for s in samples))
    if not expected:
        return
    for s in samples:
        if len(s.label) != expected:
            problems.append(Problem(str(s.path), f"label {s.label!r} has {len(s.label)} characters, expected {expected}"))


_decoded: ContextVar[dict[Path, Image.Image | ImageError] | None] = ContextVar("decoded", default=None)


@contextmanager
def decoding_once() -> Iterator[None]:
    """Within it, ``load_images`` decodes each file once, however often it is asked (nested: the outer scope's).

    A training run reads its folder once for each method it probes and again for its fit: three reads of 6,000
    captchas took 2.45 s, 0.97 s decoding once (docs/measurements.md). The images are the same objects each time,
    which no reader changes in place."""
    token = _decoded.set({}) if _decoded.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _decoded.reset(token)


def load_images(samples: Iterable[Sample], on_error: Callable[[Sample, ImageError], None] | None = None):
    """Decode samples into RGB images, leaving out (and reporting) the unreadable ones."""
    images, kept = [], []
    decoded = _decoded.get()
    for s in samples:
        got = decoded.get(s.path) if decoded is not None else None
        if got is None:
            try:
                got = load_image(s.path)
            except ImageError as exc:
                got = exc
            if decoded is not None:
                decoded[s.path] = got
        if isinstance(got, ImageError):
            if on_error:
                on_error(s, got)
            else:
                log.warning("skipping %s", got)
            continue
        images.append(got)
        kept.append(s)
    return images, kept


def split_captcha_folder(src: str | Path, out: str | Path, val_names: set[str], charset: Charset = DEFAULT_CHARSET,
                         link: bool = False, force: bool = False) -> dict[str, int]:
    """Write a flat folder of labelled captchas as ``out/captchas/{train,val}`` (course layout).

    A non-empty ``out`` is refused (its old files would mix with the new split) unless ``force``,
    which clears it first.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not force:
            raise DataError(f"--out {out}: already exists and is not empty; choose a new folder, "
                            "or pass --force to replace its contents")
        if out.resolve() in (Path(src).resolve(), *Path(src).resolve().parents):
            raise DataError(f"--out {out}: holds the source folder {src}; --force would delete it")
        if out.is_dir() and not out.is_symlink():
            shutil.rmtree(out)
        else:
            out.unlink()
    samples = read_captcha_labels(src, charset, problems=[])
    counts = {"train": 0, "val": 0}
    rows: dict[str, list[tuple[str, str]]] = {"train": [], "val": []}
    for s in samples:
        split = "val" if s.path.name in val_names else "train"
        dest = out / "captchas" / split
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / s.path.name
        if target.exists() or target.is_symlink():
            target.unlink()
        if link:
            target.symlink_to(s.path.resolve())
        else:
            shutil.copy2(s.path, target)
        rows[split].append((s.path.name, s.label))
        counts[split] += 1
    for split, items in rows.items():
        if items:
            _write_labels(out / "captchas" / split, items)
    return counts


def _write_labels(folder: Path, items: list[tuple[str, str]]) -> None:
    with open(folder / LABELS_FILE, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(("filename", "label"))
        w.writerows(items)


def first_captchas(data: str | Path, count: int, out: str | Path, charset: Charset = DEFAULT_CHARSET) -> Path:
    """A course-layout view (symlinks) of ``data`` with only its first ``count`` training captchas
    by file name, and the same validation captchas: the small-data side of a learning curve."""
    data, out = Path(data), Path(out)
    samples = sorted(read_captcha_labels(data / "captchas" / "train", charset, problems=[]),
                     key=lambda s: s.path.name)[:count]
    dest = out / "captchas" / "train"
    dest.mkdir(parents=True)
    for s in samples:
        (dest / s.path.name).symlink_to(s.path.resolve())
    _write_labels(dest, [(s.path.name, s.label) for s in samples])
    (out / "captchas" / "val").symlink_to((data / "captchas" / "val").resolve())
    return out


def ordered_holdout(names: Sequence[str], fraction: float) -> set[str]:
    """The last ``fraction`` of file names in sorted order (the benchmark's fixed test part)."""
    order = sorted(names)
    return set(order[len(order) - round(len(order) * fraction):]) if fraction > 0 else set()
