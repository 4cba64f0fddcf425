"""The labels being made: DIR/labels.csv (the format `captcha train` reads) and DIR/unreadable.txt.

Every answer rewrites the file through a temp file and a rename, so a kill at any moment leaves
either the old file or the new one, never half of one; a restart reads both and goes on.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from ..charset import Charset
from ..data.images import READ_FORMATS, is_image_name
from ..data.layout import (
    LABELS_FILE,
    labels_csv_rows,
    labels_csv_text,
    labels_file,
    one_length,
    read_captcha_labels,
    write_atomically,
)
from ..errors import DataError

UNREADABLE_FILE = "unreadable.txt"


class LabelStore:
    """The images of a folder, the labels given so far, and those marked unreadable."""

    def __init__(self, folder: str | os.PathLike, charset: Charset, length: int | None = None) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(f"{self.folder}: not a folder; give the folder of captcha images to label")
        self.charset = charset
        self.images = sorted(p.name for p in self.folder.iterdir() if p.is_file() and is_image_name(p.name))
        self.names = frozenset(self.images)  # for the checks on every answer and request
        if not self.images:
            raise DataError(f"{self.folder}: no images ({READ_FORMATS}) to label")
        self.labels: dict[str, str] = {}
        self.kept: dict[str, str] = {}  # rows of labels.csv this charset cannot read: written back as they were
        listing = labels_file(self.folder)  # written back as labels.csv, which is then read first
        if listing:
            self.labels = {s.path.name: s.label for s in read_captcha_labels(self.folder, charset, [], copies=True)}
            self.kept = {n: lab for n, lab in labels_csv_rows(listing) if n not in self.labels}
        unreadable = self.folder / UNREADABLE_FILE
        self.unreadable = set(unreadable.read_text(encoding="utf-8").split()) if unreadable.is_file() else set()
        # a site whose lengths vary takes any
        self.length = length or one_length(Counter(len(v) for v in self.labels.values()))

    def check(self, label: str) -> str:
        """The label as stored (case-folded by the charset), or a DataError saying what is wrong."""
        label = label.strip()
        if not label:
            raise DataError("empty label")
        bad = self.charset.unknown(label)
        if bad:
            raise DataError(f"{', '.join(map(repr, bad))} not in the charset {self.charset.alphabet!r}")
        if self.length and len(label) != self.length:
            raise DataError(f"{len(label)} characters; these captchas have {self.length}")
        return self.charset.normalize(label)

    def set(self, name: str, label: str) -> str:
        """Store ``label`` for image ``name`` (checked), on disk at once."""
        self._known(name)
        label = self.check(label)
        self.labels[name] = label
        self.kept.pop(name, None)
        self.unreadable.discard(name)
        self._write()
        return label

    def mark_unreadable(self, name: str) -> None:
        """Leave image ``name`` out of training: no label, listed in unreadable.txt."""
        self._known(name)
        self.labels.pop(name, None)
        self.kept.pop(name, None)
        self.unreadable.add(name)
        self._write()

    def todo(self) -> list[str]:
        """Images with neither a label nor an unreadable mark."""
        return [n for n in self.images if n not in self.labels and n not in self.kept and n not in self.unreadable]

    def _known(self, name: str) -> None:
        if name not in self.names:
            raise DataError(f"{name!r} is not an image of {self.folder}")

    def _write(self) -> None:
        write_atomically(self.folder / LABELS_FILE, labels_csv_text(sorted({**self.kept, **self.labels}.items())))
        write_atomically(self.folder / UNREADABLE_FILE, "".join(f"{n}\n" for n in sorted(self.unreadable)))
