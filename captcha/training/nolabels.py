"""Learning a site from its captchas alone, no label given: the shipped general reader reads them, the
readings it is sure of become the labels of a first model, and that model, which has learned the site's
glyphs, reads them all again for a second (``UNLABELLED_ROUNDS``).

Each round's pseudo-labelled captchas are written as an ordinary labelled folder beside the model
(``<out>.round<k>/``: the images and a labels.csv of the readings) and trained on as `captcha train
--data` trains on any folder, so each checkpoint records the data it learned from, and a user can correct
the labels.csv and train on it again. With no labels nothing measures accuracy: the held-out figures of
each round compare the model with the readings it learned from, and are reported as such.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import (
    PSEUDO_CONFIDENCE,
    UNLABELLED_LENGTH_SHARE,
    UNLABELLED_MIN,
    UNLABELLED_ROUNDS,
    TrainConfig,
)
from ..data.layout import dataset_folder, labels_file
from ..errors import DataError
from ..inference.load import general_reader_path, load_solver
from .selftrain import (
    confident_readings,
    round_checkpoint,
    round_folder,
    unlabelled_images,
    write_labelled,
)
from .train import train


def site_lengths(readings: list[tuple[str, str]], told: int | None = None) -> list[int]:
    """The lengths a site's captchas have, from sure readings of them: ``told``, else each length read at least
    ``UNLABELLED_LENGTH_SHARE`` as often as the commonest (sorted; none without readings)."""
    if told:
        return [told]
    counts = Counter(len(text) for _, text in readings)
    return sorted(n for n, c in counts.items() if c >= UNLABELLED_LENGTH_SHARE * max(counts.values()))


def train_unlabelled(cfg: TrainConfig, say: Callable[[str], None] = print, progress: bool = False) -> dict[str, Any]:
    """Train on ``cfg.unlabelled``'s captchas with no labels (see the module); returns the last round's result
    with a ``no_labels`` record of every round. ``cfg.data`` is not read; ``cfg.length`` and ``cfg.charset``,
    when given, hold the readings to that length and those characters."""
    paths, _ = unlabelled_images(cfg.unlabelled)  # a wrong folder is said as --unlabelled's
    root = dataset_folder(cfg.unlabelled)
    listing = labels_file(root)
    if listing:
        say(f"--unlabelled {root}: its {listing.name} is not read (learning with no labels; `captcha train --data "
            f"{root}` trains on those labels)")
    out = Path(cfg.out)
    reader: Path = general_reader_path()
    rounds: list[dict[str, Any]] = []
    result: dict[str, Any] = {}
    for k in range(1, UNLABELLED_ROUNDS + 1):
        started = time.perf_counter()
        solver = load_solver(reader)
        if cfg.charset:
            solver = solver.allow(cfg.charset)
        if cfg.length:
            solver = solver.expect_length(cfg.length)
        failed: list[tuple[str, str]] = []
        readings = confident_readings(solver, paths, cfg.length, failed=failed)
        if failed and k == 1:  # the same files fail every round: said once
            path, error = failed[0]
            say(f"left out of {root} ({len(failed)} of its {len(paths)} images could not be read): {error or path}"
                + (f"; and {len(failed) - 1} more" if len(failed) > 1 else ""))
        lengths = site_lengths(readings, cfg.length)
        readings = [(path, text) for path, text in readings if len(text) in lengths]
        length = lengths[0] if len(lengths) == 1 else None
        by = "the general reader" if k == 1 else f"round {k - 1}'s model"
        if k == 1 and len(readings) < UNLABELLED_MIN:
            raise DataError(
                f"--unlabelled {root}: {by} read only {len(readings)} of its {len(paths)} captchas with confidence >= "
                f"{PSEUDO_CONFIDENCE}, too few to learn the site from (at least {UNLABELLED_MIN}); label some of them "
                f"(`captcha label {root}`, then `captcha train --data {root}`)")
        if k > 1 and len(readings) < UNLABELLED_MIN:
            # a round model sure of too few captchas (a budget too short to learn the site) has nothing to teach
            # another round: it is kept as it is rather than a round trained on next to nothing
            kept = out.with_name(f".{out.name}.tmp")
            shutil.copyfile(reader, kept)
            os.replace(kept, out)
            say(f"no labels, round {k} of {UNLABELLED_ROUNDS}: {by} read only {len(readings)} of {len(paths)} captchas "
                f"with confidence >= {PSEUDO_CONFIDENCE}, too few for another round (at least {UNLABELLED_MIN}); "
                f"{out} is round {k - 1}'s model (a longer --budget learns more)")
            result["checkpoint"] = str(out)
            break
        folder = write_labelled(readings, root, round_folder(out, k))
        what = f"{length} characters" if length else \
            f"lengths that vary ({', '.join(map(str, lengths))} characters; --length N holds one)"
        say(f"no labels, round {k} of {UNLABELLED_ROUNDS}: {by} read {len(readings)} of {len(paths)} captchas with "
            f"confidence >= {PSEUDO_CONFIDENCE} and {what}; training on those readings ({folder})")
        # each round gets --budget: a first round given half read lso-striped-arc6's captchas for the second
        # round less (204 sure against 256; 28 epochs and no refit against 40 and a refit, on 129 captchas)
        step = dataclasses.replace(cfg, data=str(folder), synth_if_missing=False, unlabelled=None, length=length,
                                   out=str(round_checkpoint(out, k, UNLABELLED_ROUNDS)))
        result = train(step, say, progress)
        rounds.append({"reader": str(reader), "read": len(paths), "pseudo_labelled": len(readings), "length": length,
                       "folder": str(folder), "checkpoint": result["checkpoint"],
                       "seconds": round(time.perf_counter() - started, 1)})
        reader = Path(result["checkpoint"])
    result["no_labels"] = {"unlabelled": len(paths), "rounds": rounds}
    result["train_seconds"] = sum(r["seconds"] for r in rounds)
    return result

