"""When a run did not learn, say so loudly: the likely cause and what to try.

A checkpoint is written whatever happens; these warnings travel with it (``warnings``) and are
printed at the end of `captcha train`, so a model at chance is never shipped silently.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image

FAIL_BELOW = 0.20  # final accuracy on the held-out slice under which the run counts as failed
NEAR_CHANCE = 2.0  # a probe scoring under this many times chance learned nothing
BLANK_STD = 6.0  # a crop whose grey levels vary less than this has no glyph in it
BLANK_SHARE = 0.25  # more blank crops than this: the characters are not where the splitter cut
HELD_SLICE = "the held-out slice of the training data"


def blank_share(images: Sequence[Image.Image], limit: int = 400) -> float:
    """Share of (up to ``limit``, evenly spread) crops with no visible ink."""
    if not images:
        return 0.0
    step = max(1, len(images) // limit)
    picked = images[::step]
    return sum(float(np.asarray(im.convert("L"), np.float32).std()) < BLANK_STD for im in picked) / len(picked)


def diagnose(num_classes: int, held_acc: float | None, probe_scores: Sequence[float] = (),
             losses: Sequence[float] = (), crops: Sequence[Image.Image] = (), other_lengths: int = 0,
             length: int = 0, method: str = "classify", where: str = HELD_SLICE) -> list[str]:
    """Warnings for a run that learned (next to) nothing, each naming a likely cause and a fix;
    ``held_acc`` is the accuracy of the data held out of training, ``where`` says which; ``probe_scores``
    (each recipe probe's share of characters read) judge the run only where nothing was held out: a few
    epochs of probing read little of a far site that the full run then learns."""
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
    if losses and len(losses) >= 2 and losses[-1] > 0.8 * math.log(max(num_classes, 2)):
        out.append(f"the training loss stayed near ln({num_classes}) = {math.log(num_classes):.2f} (last "
                   f"{losses[-1]:.2f}): the network cannot even fit its training data. Check that labels.csv "
                   "(or the file names) match the images and that --length is the number of characters shown.")
    else:
        out.append(f"the training data was fitted but {where} was not: more labelled captchas, or "
                   "--epochs / --budget for a longer run, may help.")
    return out
