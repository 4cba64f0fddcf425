"""When a run did not learn, say so loudly: the likely cause and what to try.

A checkpoint is written whatever happens; these warnings travel with it (``warnings``) and are
printed at the end of `captcha train`, so a model at chance is never shipped silently.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from ..charset import Charset
from ..data.layout import labelled_captchas, load_images
from ..inference.load import load_solver

FAIL_BELOW = 0.20  # final accuracy on the held-out slice under which the run counts as failed
NEAR_CHANCE = 2.0  # a probe scoring under this many times chance learned nothing
BLANK_STD = 6.0  # a crop whose grey levels vary less than this has no glyph in it
BLANK_SHARE = 0.25  # more blank crops than this: the characters are not where the splitter cut
HELD_SLICE = "the held-out slice of the training data"
READER_SURE = 0.9  # the general reader's readings at least this sure are evidence about the labels
READER_EVIDENCE = 10  # sure readings needed before the labels are judged by them
READER_AGREES = 0.2  # labels matching fewer than this share of the sure readings do not match their images


def _spread(items: Sequence, limit: int) -> list:
    """Up to about ``limit`` of ``items``, evenly spread (every k-th)."""
    return list(items[::max(1, len(items) // limit)])


def blank_share(images: Sequence[Image.Image], limit: int = 400) -> float:
    """Share of (up to ``limit``, evenly spread) crops with no visible ink."""
    if not images:
        return 0.0
    picked = _spread(images, limit)
    return sum(float(np.asarray(im.convert("L"), np.float32).std()) < BLANK_STD for im in picked) / len(picked)


def labels_against_reader(captchas: Sequence[tuple[Image.Image, str]], limit: int = 200) -> str | None:
    """Where the shipped general reader reads at least READER_EVIDENCE of (up to ``limit``, evenly spread) labelled
    captchas surely and fewer than READER_AGREES of those as labelled, a line saying so with an example: labels that
    do not match their images (rows shifted, another folder's labels.csv). None where it cannot tell: a site the
    reader is unsure of says nothing about the labels, nor does a label with characters the reader cannot read
    (``9+3=?``: the reader would read the ``+`` as another character)."""
    if len(captchas) < READER_EVIDENCE:
        return None
    reader = load_solver(backend="auto")
    picked = _spread([(img, label) for img, label in captchas if not reader.charset.unknown(label)], limit)[:limit]
    if len(picked) < READER_EVIDENCE:
        return None
    rows = reader.solve_batch([img for img, _ in picked])
    sure = [(label, row.solution.text) for (_, label), row in zip(picked, rows)
            if row.ok and row.solution.confidence >= READER_SURE]
    differ = [(label, text) for label, text in sure if label.upper() != text.upper()]
    if len(sure) < READER_EVIDENCE or len(sure) - len(differ) >= READER_AGREES * len(sure):
        return None
    label, text = differ[0]
    return (f"the shipped general reader reads {len(differ)} of the {len(sure)} captchas it is sure of otherwise than "
            f"labelled (one labelled {label!r} reads {text!r}): check that labels.csv (or the file names) name what "
            "each image shows, row by row.")


def dataset_against_reader(root: str | Path, charset: Charset, limit: int = 200) -> str | None:
    """:func:`labels_against_reader` on (up to ``limit``, evenly spread) labelled whole captchas of a dataset, for
    `captcha data check`: labels that do not match their images are found before any training."""
    picked = _spread(labelled_captchas(root, charset), limit)[:limit]
    images, kept = load_images(picked, on_error=lambda *_: None)
    return labels_against_reader([(img, s.label) for img, s in zip(images, kept)], limit)


def diagnose(num_classes: int, held_acc: float | None, probe_scores: Sequence[float] = (),
             losses: Sequence[float] = (), crops: Sequence[Image.Image] = (), other_lengths: int = 0,
             length: int = 0, method: str = "classify", where: str = HELD_SLICE,
             read_labels: Callable[[], str | None] | None = None) -> list[str]:
    """Warnings for a run that learned (next to) nothing, each naming a likely cause and a fix;
    ``held_acc`` is the accuracy of the data held out of training, ``where`` says which; ``probe_scores``
    (each recipe probe's share of characters read) judge the run only where nothing was held out: a few
    epochs of probing read little of a far site that the full run then learns. ``read_labels`` (called only
    for a failed run: :func:`labels_against_reader` on its captchas) says whether the labels match the images."""
    chance = 1.0 / max(num_classes, 1)
    probes_dead = held_acc is None and bool(probe_scores) and max(probe_scores) < NEAR_CHANCE * chance
    failed = held_acc is not None and held_acc < FAIL_BELOW
    if not (probes_dead or failed):
        return []
    seen = []
    if held_acc is not None:
        seen.append(f"{where} reads {100 * held_acc:.1f}%")
    if probes_dead:
        seen.append(f"the best recipe probe scored {100 * max(probe_scores):.1f}%")
    out = [f"this model has not learned to read these captchas: {'; '.join(seen)} (chance {100 * chance:.1f}%)."]
    blank = blank_share(crops) if method == "classify" else 0.0
    if blank > BLANK_SHARE:
        out.append(f"{100 * blank:.0f}% of the character crops are blank: the text probably sits in "
                   "a band of a larger image with empty margins, or the splitter cuts beside the characters. Crop the "
                   "images to their text, try another --split (cc, projection), or read whole captchas with "
                   "--method ctc.")
    if other_lengths:
        out.append(f"{other_lengths} training captchas have labels of another length than {length} and were left out: "
                   "if the site's captchas vary in length, use --method ctc; otherwise fix those labels.")
    mismatch = read_labels() if read_labels else None
    if mismatch:
        out.append(mismatch)
    elif losses and len(losses) >= 2 and losses[-1] > 0.8 * math.log(max(num_classes, 2)):
        out.append(f"the training loss stayed near ln({num_classes}) = {math.log(num_classes):.2f} (last "
                   f"{losses[-1]:.2f}): the network cannot even fit its training data. Check that labels.csv "
                   "(or the file names) match the images and that --length is the number of characters shown.")
    else:
        out.append(f"the training data was fitted but {where} was not: more labelled captchas, or "
                   "--epochs / --budget for a longer run, may help.")
    return out
