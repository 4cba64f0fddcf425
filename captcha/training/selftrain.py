"""Self-training: the site's unlabelled captchas, read by the model just trained, its surest readings kept as labels
(pseudo-labels) for rounds on labelled + pseudo-labelled captchas.

Rounds go by rank, not by a confidence a model from few labels seldom reaches: the surest ``ranked_counts`` readings,
growing round by round, each round's model reading for the next. Where a slice of the labelled captchas is held out
(never pseudo-labelled), it judges each round, and the rounds stop at the first it reads clearly worse; the
reported validation captchas decide nothing. From a handful (nothing held out to judge by) every round is kept, each a
labelled folder of the handful and the readings (``write_labelled``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..config import PSEUDO_CONFIDENCE, RANKED_FIRST, RANKED_GROWTH
from ..data.images import file_digest, is_image_name
from ..data.layout import LABELS_FILE, dataset_folder, labels_csv_text
from ..errors import DataError
from ..inference.batch import expand_inputs
from ..inference.solver import Solver


def unlabelled_images(folder: str | Path, labelled: str | Path | None = None) -> tuple[list[str], int]:
    """The image files under ``folder`` (recursively, sorted) but those whose content is an image under the
    ``labelled`` dataset's folder, and how many those were: read as unlabelled, the labelled folder's own
    captchas (the held-out slice among them) would be trained on under the model's readings, and the slice
    that decides whether that round is kept would have been learned."""
    try:
        root = dataset_folder(folder)
    except DataError as exc:  # an archive, a file or nothing there, said as for --data
        raise DataError(f"--unlabelled {exc}") from None
    paths = [p for p in expand_inputs([str(root)]) if is_image_name(p)]
    if not paths:
        raise DataError(f"--unlabelled {root}: no image files (png, jpg, bmp, gif) in it")
    if labelled is None or not Path(labelled).is_dir():
        return paths, 0
    known = {file_digest(p) for p in expand_inputs([str(labelled)]) if is_image_name(p)}
    kept = [p for p in paths if file_digest(p) not in known]
    if not kept:
        raise DataError(f"--unlabelled {root}: every image in it is one of the labelled captchas of {labelled}; give "
                        "a folder of the site's captchas with no labels")
    return kept, len(paths) - len(kept)


def _readings(solver: Solver, paths: list[str], failed: list[tuple[str, str]] | None) -> list[tuple[str, str, float]]:
    """(path, reading, confidence) of every captcha in ``paths`` that ``solver`` reads; unreadable files are skipped
    (and appended to ``failed`` as (path, error))."""
    read = []
    for r in solver.solve_batch(paths):
        if r.solution is None:
            if failed is not None:
                failed.append((r.source, r.error))
        else:
            read.append((r.source, r.solution.text, r.solution.raw_confidence))
    return read


def confident_readings(solver: Solver, paths: list[str], length: int | None = None,
                       threshold: float = PSEUDO_CONFIDENCE,
                       failed: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """(path, reading) of every captcha in ``paths`` that ``solver`` reads with at least ``threshold``
    confidence and, when ``length`` is set, that many characters; unreadable files are skipped (and appended to
    ``failed`` as (path, error))."""
    return [(path, text) for path, text, conf in _readings(solver, paths, failed)
            if conf >= threshold and (not length or len(text) == length)]


def surest_readings(solver: Solver, paths: list[str], lengths: set[int], count: int) -> list[tuple[str, str]]:
    """(path, reading) of the ``count`` captchas in ``paths`` that ``solver`` is surest of among those it reads with
    one of ``lengths`` characters, surest first; unreadable files are skipped."""
    read = sorted((r for r in _readings(solver, paths, None) if len(r[1]) in lengths), key=lambda r: -r[2])
    return [(path, text) for path, text, _ in read[:count]]


def ranked_counts(unlabelled: int) -> list[int]:
    """How many of ``unlabelled`` captchas each ranked round trains on: ``RANKED_FIRST``, then ``RANKED_GROWTH``
    times the last, until all of them."""
    counts = [min(RANKED_FIRST, unlabelled)]
    while counts[-1] < unlabelled:
        counts.append(min(counts[-1] * RANKED_GROWTH, unlabelled))
    return counts


def round_folder(out: str | Path, k: int) -> Path:
    """Where round ``k``'s pseudo-labelled captchas are written: ``<out stem>.round<k>/`` beside the model."""
    out = Path(out)
    return out.with_name(f"{out.stem}.round{k}")


def round_file(out: str | Path, k: int) -> Path:
    """Where round ``k``'s model is written beside the model ``out``: ``<out stem>.round<k>.pt``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.round{k}.pt")


def round_checkpoint(out: str | Path, k: int, rounds: int) -> Path:
    """Round ``k``'s model of ``rounds``: ``out`` itself for the last round, ``round_file`` beside it before."""
    return Path(out) if k == rounds else round_file(out, k)


def write_labelled(readings: list[tuple[str, str]], root: Path, folder: Path) -> Path:
    """A flat labelled folder of ``readings`` ((image path, text) of images under ``root``): each image linked
    (copied where links cannot be made) under its path below ``root`` flattened, and a labels.csv."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rows, taken = [], set()
    for k, (path, text) in enumerate(readings):
        name = Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root))).as_posix().replace("/", "_")
        if name in taken:  # a/b.png and a_b.png flatten alike
            name = f"{k}-{name}"
        taken.add(name)
        try:
            os.link(path, folder / name)
        except OSError:  # another file system, or one without hard links
            shutil.copyfile(path, folder / name)
        rows.append((name, text))
    (folder / LABELS_FILE).write_text(labels_csv_text(rows), encoding="utf-8")
    return folder


def readings_caveat(result: dict[str, Any]) -> str | None:
    """Where a run's training figures compare its model with readings rather than your labels (no labels at all, or
    rounds from a handful), the line that says so and how to measure it; None for any other run."""
    if result.get("no_labels"):
        what = "no labels: those figures compare the model with the readings it learned from, not with the truth"
    elif (result.get("self_training") or {}).get("ranked") and not result["self_training"].get("judged"):
        what = ("self-trained in rounds: most captchas those figures are measured on were labelled by the rounds' "
                "readings, not by you")
    else:
        return None
    return (f"{what}; to measure it, label a few dozen captchas it did not learn from and run `captcha eval --data DIR "
            f"--checkpoint {result['checkpoint']}`")
