"""Self-training: the site's unlabelled captchas, read by the model just trained, the confident
readings kept as labels (pseudo-labels) for a second round on labelled + pseudo-labelled captchas.

The second round is kept only when the held-out slice of the *labelled* training captchas (never
pseudo-labelled) reads it better; the reported validation captchas are never used to decide.
"""

from __future__ import annotations

from pathlib import Path

from ..config import PSEUDO_CONFIDENCE
from ..data.images import file_digest, is_image_name, load_image
from ..data.layout import dataset_folder
from ..data.splits import Captcha
from ..errors import DataError
from ..inference.batch import expand_inputs
from ..inference.load import load_solver
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


def confident_readings(solver: Solver, paths: list[str], length: int | None = None,
                       threshold: float = PSEUDO_CONFIDENCE,
                       failed: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """(path, reading) of every captcha in ``paths`` that ``solver`` reads with at least ``threshold``
    confidence and, when ``length`` is set, that many characters; unreadable files are skipped (and appended to
    ``failed`` as (path, error))."""
    kept = []
    for r in solver.solve_batch(paths):
        if r.solution is None:
            if failed is not None:
                failed.append((r.source, r.error))
        elif r.solution.confidence >= threshold and (not length or len(r.solution.text) == length):
            kept.append((r.source, r.solution.text))
    return kept


def pseudo_labels(checkpoint: str | Path, paths: list[str], length: int,
                  threshold: float = PSEUDO_CONFIDENCE) -> list[Captcha]:
    """(image, reading) of every captcha in ``paths`` that ``checkpoint`` reads with at least ``threshold``
    confidence and, when ``length`` is set, that many characters (``confident_readings``)."""
    readings = confident_readings(load_solver(checkpoint, backend="torch"), paths, length, threshold)
    return [(load_image(path), text) for path, text in readings]
