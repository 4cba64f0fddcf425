"""How the budget plans a run's fits: a refit's room and its epochs."""

import time

from captcha.config import REFIT_MIN_EPOCHS, TrainConfig
from captcha.training.budget import refit_epochs, refit_planned


def test_refit_only_when_it_fits_the_budget_or_is_asked_for():
    now, said = time.perf_counter(), []
    auto = TrainConfig(budget=100.0)
    ends = now + 100.0  # the budget's deadline
    # 10 s an epoch on 80 samples, 20 more: 12.5 s an epoch, 5 epochs kept = 62.5 s of the 100 left
    assert refit_epochs(auto, 5, 80, 20, 10.0, ends, said.append) == 5
    assert refit_epochs(auto, 0, 80, 20, 0.1, ends, said.append) == 0  # the untrained start was kept
    assert refit_epochs(auto, 5, 80, 0, 0.1, ends, said.append) == 0  # nothing held out to add
    assert refit_epochs(TrainConfig(budget=1.0, refit=True), 10, 80, 20, 10.0, now, said.append) == 10
    assert refit_epochs(TrainConfig(refit=False), 5, 80, 20, 0.1, now, said.append) == 0
    assert not said
    assert refit_epochs(TrainConfig(refit=True), 0, 80, 20, 0.1, now, said.append) == 0 and "untrained" in said[0]
    # 10 kept need 125 s of the 100 left, and 8 fit: under REFIT_MIN_EPOCHS, so none, and the run says why
    said.clear()
    assert refit_epochs(auto, 10, 80, 20, 10.0, ends, said.append) == 0
    assert said[0].startswith("no refit: 10 epochs") and "--budget" in said[0]
    # a first fit that kept more than REFIT_MIN_EPOCHS, one epoch short of room for all of them: the refit is
    # shortened to what the budget holds instead of dropped
    kept = REFIT_MIN_EPOCHS + 4
    room = time.perf_counter() + 12.5 * (kept - 1) + 6
    said.clear()
    assert refit_epochs(auto, kept, 80, 20, 10.0, room, said.append) == kept - 1
    assert said[0].startswith(f"refit shortened to {kept - 1} of the {kept} epochs")
    # ... but never below REFIT_MIN_EPOCHS
    tight = time.perf_counter() + 12.5 * (REFIT_MIN_EPOCHS - 1) + 6
    assert refit_epochs(auto, kept, 80, 20, 10.0, tight, said.append) == 0
    # after a self-training round that was not kept the refit runs past the budget, as that round did; --no-refit
    # still refuses it
    spent = time.perf_counter() - 900.0  # the deadline long past
    assert refit_epochs(auto, 10, 80, 20, 10.0, spent, said.append, past_budget=True) == 10
    assert refit_epochs(TrainConfig(refit=False), 10, 80, 20, 10.0, spent, said.append, past_budget=True) == 0


def test_the_budget_keeps_room_for_a_refit_unless_none_can_follow():
    assert refit_planned(TrainConfig(), 1) and refit_planned(TrainConfig(refit=True), 1)
    assert not refit_planned(TrainConfig(refit=False), 1)  # --no-refit: the first fit has the whole budget
    assert not refit_planned(TrainConfig(), 2)  # DDP: no refit follows
    assert not refit_planned(TrainConfig(unlabelled="u"), 1)  # self-training follows instead
