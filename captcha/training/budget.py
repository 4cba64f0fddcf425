"""How a run's time budget divides: the probes' share, the fit's epochs, and the refit's room.

``captcha train --budget`` holds a whole run (probes, one fit, and the refit on every labelled captcha)
when its epochs are auto. These are the sums behind that plan and behind holding each fit to it as it
goes: what a refit adds, whether one is planned, how many epochs it gets, and how many a fit that runs
slower than planned still has time for.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from ..config import ONE_FIT_VALIDATION, PROBE_SHARE, REFIT_MIN_EPOCHS, TrainConfig
from .dataset import TrainingData


def probes_until(cfg: TrainConfig, started: float) -> float:
    """When the probes' share of the budget is spent (a ``time.perf_counter`` reading); never with
    --epochs given, as nothing auto then needs the rest of the budget."""
    return math.inf if cfg.epochs else started + PROBE_SHARE * cfg.budget


def per_captcha(data: TrainingData, method: str) -> int:
    """Network inputs of a captcha: one for ctc, one per character crop for classify."""
    return 1 if method == "ctc" else data.length


def _val_samples(data: TrainingData, method: str) -> int:
    """Network inputs of the validation captchas."""
    return len(data.captchas) * per_captcha(data, method)


def one_fit_validation(cfg: TrainConfig, data: TrainingData) -> int:
    """Captchas of a flat folder's validation share that a run fitting once would train on: all but
    :data:`ONE_FIT_VALIDATION`, unless ``--val-fraction`` was given (the course layout's val folders stay out)."""
    if cfg.val_fraction is not None or refit_validates(data):
        return 0
    return max(0, len(data.captchas) - ONE_FIT_VALIDATION)


def val_reads(data: TrainingData, method: str) -> int:
    """Network inputs one validation pass reads: the val characters and the val captchas."""
    return len(data.char_images) + _val_samples(data, method)


def refit_validates(data: TrainingData) -> bool:
    """Whether a refit keeps validating: on the course layout's val folders yes; a flat folder's
    validation share is trained on instead."""
    return data.split.get("layout") != "flat"


def refit_adds(data: TrainingData, held: int, method: str) -> int:
    """Samples a refit trains on beyond the first fit's: the held-out slice, and a flat folder's
    validation share."""
    return held + (0 if refit_validates(data) else _val_samples(data, method))


def refit_planned(cfg: TrainConfig, world: int) -> bool:
    """Whether the budget keeps room for a refit: unless --no-refit, alone, and not self-training."""
    return cfg.refit is not False and world == 1 and not cfg.unlabelled


def refit_epochs(cfg: TrainConfig, kept_epoch: int, fit: int, added: int, epoch_seconds: float, deadline: float,
                  say: Callable[[str], None], past_budget: bool = False) -> int:
    """The epochs of a refit on every labelled sample, 0 for none: as ``--refit`` says, or (auto) where the first
    fit kept a trained epoch and there are held-out samples to add, the epochs it kept when the budget left holds
    them by the budget's ``deadline`` (``past_budget``: whatever the budget left). Where it holds fewer but still a
    long fit (REFIT_MIN_EPOCHS), that many: a plan of two fits that the first overran by an epoch would otherwise
    leave the rest of the budget and the held-out samples unused; where it holds fewer still, none. Either is
    said."""
    if kept_epoch <= 0 or not added:
        if cfg.refit:
            say("refit: nothing to do (" + ("the untrained start was kept" if kept_epoch <= 0 else
                                            "nothing was held out") + ")")
        return 0
    if cfg.refit is not None or past_budget:
        return kept_epoch if cfg.refit is not False else 0
    per_epoch = epoch_seconds * (fit + added) / max(fit, 1)
    left = deadline - time.perf_counter()
    fits = kept_epoch if per_epoch <= 0 else min(kept_epoch, int(max(left, 0.0) // per_epoch))
    if fits == kept_epoch:
        return fits
    if fits >= REFIT_MIN_EPOCHS:
        say(f"refit shortened to {fits} of the {kept_epoch} epochs the first fit kept: {left:.0f}s of --budget are "
            f"left, at {per_epoch:.1f}s an epoch on every labelled sample")
        return fits
    say(f"no refit: {kept_epoch} epochs on every labelled sample would take ~{kept_epoch * per_epoch:.0f}s and "
        f"{max(left, 0.0):.0f}s of --budget are left; the model is the first fit's, which did not train on the "
        f"{added} held-out samples (a larger --budget, or --refit, refits)")
    return 0


def fit_epochs(planned: int, done: int, epoch_seconds: float, deadline: float) -> int:
    """The epochs of the ``planned`` that a fit held to the budget has time for in all, now that ``done`` of them
    took ``epoch_seconds`` each: those done, and as many more as end by the ``deadline``."""
    left = deadline - time.perf_counter()
    return min(planned, done + int(max(left, 0.0) // epoch_seconds)) if epoch_seconds > 0 else planned


class RefitStopped(Exception):
    """A refit held to the budget that has time for fewer epochs than the least a refit is planned for: its
    ``record`` (planned, after which epoch, seconds an epoch, the epochs it had time for)."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(record)
        self.record = record
