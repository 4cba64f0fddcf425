"""The recipe chosen by measurement: the held-out slice, the candidates, the choice, the epochs."""

import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import captcha.training.recipe as recipe
from captcha.charset import Charset
from captcha.config import (
    EPOCH_OVERHEAD_SECONDS,
    HEAD_PASSES,
    PROBE_FREEZES,
    PROBE_SIZES,
    UNCHOSEN_EPOCHS,
    TrainConfig,
)
from captcha.data.preprocess import magnified_size
from captcha.data.synth import render_char
from captcha.nn.networks import resolve_pretrained
from captcha.training.dataset import hold_out_slice
from captcha.training.recipe import (
    Probe,
    augmentation_passes,
    auto_epochs,
    candidates,
    choose_recipe,
    ctc_sizes,
    plan_fits,
)


def test_the_slice_is_deterministic_and_keeps_a_captchas_crops_together():
    groups = [g for g in range(40) for _ in range(4)]  # 40 captchas of 4 crops
    fit, held = hold_out_slice(groups, 0.15, seed=0)
    assert (fit, held) == hold_out_slice(groups, 0.15, seed=0) and held != hold_out_slice(groups, 0.15, seed=1)[1]
    held_groups = {groups[i] for i in held}
    assert len(held_groups) == 6 and len(held) == 24 and not held_groups & {groups[i] for i in fit}
    assert hold_out_slice(list(range(5)), 0.15, seed=0) == ([0, 1, 2, 3, 4], [])  # too little to hold out


def test_a_slice_of_fewer_than_min_slice_captchas_is_none():
    """Fifteen percent of 20 training captchas (3) would measure nothing: none is held out; of 24 (4), it is."""
    from captcha.config import MIN_SLICE

    assert hold_out_slice(list(range(20)), 0.15, seed=0)[1] == [] and round(20 * 0.15) == MIN_SLICE - 1
    assert len(hold_out_slice(list(range(24)), 0.15, seed=0)[1]) == MIN_SLICE


def test_candidates():
    auto = TrainConfig()
    assert [(p.freeze, p.size) for p in candidates(auto, pretrained=True)] == \
        [(f, s) for s in PROBE_SIZES for f in PROBE_FREEZES]
    assert {p.freeze for p in candidates(auto, pretrained=False)} == {"none"}  # nothing to freeze
    assert len(candidates(TrainConfig(freeze="layer3", size=(48, 48)), pretrained=True)) == 1
    assert {p.freeze for p in candidates(TrainConfig(method="ctc"), pretrained=True)} == {"none"}


def test_the_best_probe_wins_and_ties_go_to_the_cheaper_recipe(monkeypatch):
    scores = {("all", 32): 0.90, ("layer2", 32): 0.95, ("none", 32): 0.95, ("all", 64): 0.5, ("layer2", 64): 0.7,
              ("none", 64): 0.8}

    def fake(probe, *a, **k):
        probe.score, probe.seconds, probe.samples = scores[(probe.freeze, probe.size[0])], 1.0, 100
        return probe

    monkeypatch.setattr(recipe, "run_probe", fake)
    said = []
    best, probes = choose_recipe(TrainConfig(), 6, {}, "test", ([0], [0]), ([0], [0]), torch.device("cpu"), said.append)
    assert (best.freeze, best.size) == ("layer2", (32, 32)) and len(probes) == len(said) == 6


def test_only_the_best_probe_keeps_its_weights_and_only_where_it_reads_better_than_the_start(monkeypatch):
    # training goes on from the chosen probe's weights; the others' are dropped (memory), and a probe that
    # reads the slice no better than the untrained start (whole captchas, then characters) keeps none
    scores = {32: 0.5, 64: 0.7}

    def fake(probe, *a, **k):
        probe.score, probe.seconds, probe.samples = scores[probe.size[0]], 1.0, 100
        probe.string_score, probe.char_score = probe.score, probe.score
        probe.state = {"w": torch.full((1,), probe.score)}
        return probe

    monkeypatch.setattr(recipe, "run_probe", fake)
    best, probes = choose_recipe(TrainConfig(freeze="none"), 6, {}, "test", ([0], [0]), ([0], [0]),
                                 torch.device("cpu"), lambda _: None)
    assert best.size == (64, 64) and best.state["w"].item() == pytest.approx(0.7)
    assert [p.state is None for p in probes] == [True, False]
    assert "state" not in best.to_dict()  # never stored in the checkpoint's recipe
    start = Probe("none", (64, 64), string_score=0.7, char_score=0.6)
    assert recipe.keep_warm(best, start).state is not None  # as many whole, more characters
    start.char_score = 0.7
    assert recipe.keep_warm(best, start).state is None  # no better than the start: training starts there
    assert recipe.keep_warm(Probe("none", (32, 32), state={}), None).state == {}  # nothing to compare with


def test_once_the_probes_share_of_the_budget_is_spent_the_rest_are_skipped(monkeypatch):
    clock = iter(range(100))
    ran = []

    def fake(probe, *a, **k):
        probe.score, probe.seconds, probe.samples = {"all": 0.5, "layer2": 0.9}.get(probe.freeze, 0.7), 1.0, 100
        ran.append((probe.freeze, probe.size[0]))
        return probe

    monkeypatch.setattr(recipe, "run_probe", fake)
    monkeypatch.setattr(recipe.time, "perf_counter", lambda: next(clock))  # a tick each time the clock is read
    said = []
    best, probes = choose_recipe(TrainConfig(), 6, {}, "test", ([0], [0]), ([0], [0]), torch.device("cpu"),
                                 said.append, until=1)
    assert ran == [("all", 32), ("layer2", 32)] and [(p.freeze, p.size[0]) for p in probes] == ran
    assert (best.freeze, best.size) == ("layer2", (32, 32))
    assert "skipped freeze=none input 32x32, freeze=all input 64x64" in said[-1]
    ran.clear()
    best, probes = choose_recipe(TrainConfig(), 6, {}, "test", ([0], [0]), ([0], [0]), torch.device("cpu"),
                                 said.append, until=-1)
    assert ran == [("all", 32)] and probes == [best]  # the first runs whatever the clock says


def test_classify_skips_larger_inputs_once_the_other_method_is_out_of_reach(monkeypatch):
    chars = {"all": 0.3, "layer2": 0.55, "none": 0.6}
    ran = []

    def fake(probe, *a, **k):
        ran.append((probe.freeze, probe.size[0]))
        probe.score = probe.char_score = chars[probe.freeze]
        probe.string_score, probe.seconds, probe.samples = 0.1, 1.0, 100
        return probe

    monkeypatch.setattr(recipe, "run_probe", fake)
    said = []
    best, probes = choose_recipe(TrainConfig(), 6, {}, "test", ([0], [0]), ([0], [0]), torch.device("cpu"),
                                 said.append, rival=(0.8, 0.76))
    assert ran == [(f, 32) for f in ("all", "layer2", "none")] and best.freeze == "none"  # a full sweep at 32 px
    assert "60.00% of characters is over 15 points short of the other method's 76.00%" in said[-1]
    assert said[-1].endswith("skipped freeze=all input 64x64, freeze=layer2 input 64x64, freeze=none input 64x64")
    for rival in [(0.8, 0.74), (0.1, 0.95), None]:  # within reach by characters, level whole, no rival: all six
        ran.clear()
        choose_recipe(TrainConfig(), 6, {}, "test", ([0], [0]), ([0], [0]), torch.device("cpu"), said.append,
                      rival=rival)
        assert len(ran) == 6
    # no captcha read whole by either: the characters decide the method, so the larger inputs may yet win
    assert recipe.out_of_reach([Probe("none", (32, 32), char_score=0.5, string_score=0.0)], (0.0, 0.75)) is False


def test_a_refit_is_planned_only_where_both_fits_get_enough_epochs():
    p = Probe("none", (48, 104), "ctc", score=0.5, seconds=10.0, samples=1000)  # 10 ms a sample
    # 200 s left; a fit of 1000 is 11 s, with a refit of 1500 planned 27 s an epoch: 7 epochs each
    assert plan_fits(TrainConfig(budget=240), p, 1000, spent=40, refit_samples=1500) == (18, False)
    assert plan_fits(TrainConfig(budget=800), p, 1000, spent=40, refit_samples=1500) == (28, None)  # 760 // 27
    # 20 each (560 // 27) is under REFIT_MIN_EPOCHS: one fit of 40, the most (560 // 11 = 50)
    assert plan_fits(TrainConfig(budget=600), p, 1000, spent=40, refit_samples=1500) == (40, False)
    assert plan_fits(TrainConfig(budget=240, refit=True), p, 1000, spent=40, refit_samples=1500) == (7, True)
    assert plan_fits(TrainConfig(budget=240), p, 1000, spent=40) == (18, None)  # none planned
    assert plan_fits(TrainConfig(budget=240, epochs=5), p, 1000, spent=40, refit_samples=1500) == (5, None)
    # the one fit also trains on the held-out slice (150) and no longer reads it: 200 // (11.5 + 1 s)
    assert plan_fits(TrainConfig(budget=240), p, 1000, spent=40, eval_samples=150, refit_samples=1500,
                     held=150) == (16, False)
    # ... and on 100 validation captchas, which it no longer reads either: 200 // (12.5 + 1 s)
    assert plan_fits(TrainConfig(budget=240), p, 1000, spent=40, eval_samples=250, refit_samples=1500,
                     held=150, validation=100) == (14, False)
    assert plan_fits(TrainConfig(budget=800), p, 1000, spent=40, refit_samples=1500, held=150) == (28, None)


def test_a_refit_stays_where_a_cap_not_the_budget_holds_the_fit(monkeypatch):
    """A few captchas with nothing held out train UNCHOSEN_EPOCHS at most: under REFIT_MIN_EPOCHS, one fit would be
    no longer than the fit before the refit, so the refit on every captcha stays."""
    monkeypatch.setattr(recipe, "REFIT_MIN_EPOCHS", UNCHOSEN_EPOCHS + 5)
    p = Probe("none", (48, 104), "ctc", score=0.5, seconds=10.0, samples=1000)
    assert plan_fits(TrainConfig(budget=100_000), p, 20, spent=0, refit_samples=25, keeps_last=True) == \
        (UNCHOSEN_EPOCHS, None)
    # where the budget holds the fit under the cap (10 s // (0.2 + 1 + 0.25 + 1 s): 4 each), one longer fit as
    # elsewhere, on 5 validation captchas too: 10 s // (0.25 + 1 s)
    assert plan_fits(TrainConfig(budget=10), p, 20, spent=0, refit_samples=25, validation=5, keeps_last=True) == \
        (8, False)


def test_ctc_probes_the_sizes_given_and_ties_on_whole_captchas_go_to_more_characters_read(monkeypatch):
    chars = {48: 0.05, 64: 0.29}

    def fake(probe, *a, **k):
        probe.score, probe.char_score, probe.seconds, probe.samples = 0.0, chars[probe.size[0]], 1.0, 100
        return probe

    monkeypatch.setattr(recipe, "run_probe", fake)
    cfg = TrainConfig(method="ctc")
    best, probes = choose_recipe(cfg, 6, {}, "test", ([0], [0]), ([0], [0]), torch.device("cpu"), lambda _m: None,
                                 sizes=[(48, 64), (64, 88)])
    assert [p.size for p in probes] == [(48, 64), (64, 88)] and best.size == (64, 88)
    assert [p.size for p in candidates(TrainConfig(method="ctc", size=(32, 96)), True, [(48, 64)])] == [(32, 96)]


def test_auto_epochs_fill_the_budget_within_bounds():
    p = Probe("none", (32, 32), score=1.0, seconds=10.0, samples=1000)  # 10 ms a sample
    assert auto_epochs(TrainConfig(budget=240), p, 1000, spent=40) == 18  # 200 s left / (10 + 1 s an epoch)
    assert auto_epochs(TrainConfig(budget=240), p, 1000, spent=40, eval_samples=1500) == 12  # + 5 s reading
    # reading timed by the probe (a frozen backbone trains on cached features; reading runs it all): 20 ms each
    timed = Probe("all", (32, 32), score=1.0, seconds=10.0, samples=1000, read_seconds=2.0, read_samples=100)
    assert auto_epochs(TrainConfig(budget=240), timed, 1000, spent=40, eval_samples=1500) == 4  # 10 + 30 + 1 s
    # a refit that validates too (the course layout): 41 s, and again 10 + 2 + 1 s for its 1000 and 100 reads
    assert auto_epochs(TrainConfig(budget=240), timed, 1000, spent=40, eval_samples=1500, refit_samples=1000,
                       refit_eval_samples=100) == 3
    assert auto_epochs(TrainConfig(budget=600), timed, 1000, spent=40, eval_samples=1500, refit_samples=1000,
                       refit_eval_samples=100) == 10  # 560 // 54
    # a refit planned on 1500 samples after each epoch's 11 s: 15 + 1 s more an epoch
    assert auto_epochs(TrainConfig(budget=240), p, 1000, spent=40, refit_samples=1500) == 7
    assert auto_epochs(TrainConfig(budget=240), p, 10_000, spent=40) == 3  # the least
    assert auto_epochs(TrainConfig(budget=100_000), p, 3000, spent=0) == 40  # the most
    # a small set: 100 samples are 2 steps of 64 an epoch, so up to 75 epochs make AUTO_MIN_STEPS (150) steps
    assert auto_epochs(TrainConfig(budget=100_000), p, 100, spent=0) == 75
    # ... unless nothing held out chooses the epoch: the last is kept, and a few captchas' many steps overfit them
    assert auto_epochs(TrainConfig(budget=100_000), p, 4, spent=0, keeps_last=True) == UNCHOSEN_EPOCHS < 40
    assert plan_fits(TrainConfig(budget=100_000), p, 4, spent=0, refit_samples=5, keeps_last=True) == \
        (UNCHOSEN_EPOCHS, None)
    assert auto_epochs(TrainConfig(budget=240), p, 1000, spent=40, keeps_last=True) == 18  # the budget binds first
    assert auto_epochs(TrainConfig(budget=100_000), p, 2000, spent=0) == 40  # 32 steps an epoch: the most
    assert auto_epochs(TrainConfig(epochs=7), p, 100, spent=0) == 7  # given: kept


def test_a_head_only_fit_prepares_its_passes_once_and_reads_from_the_cache():
    """Where only the head trains, its HEAD_PASSES passes are prepared once (augmenting, the frozen stages' pass)
    and each epoch after costs the head's steps alone; where stages are frozen, what is read each epoch is read
    whole once, then from their cached output, at the cost the probe timed for each."""
    cfg = TrainConfig(budget=240)
    assert HEAD_PASSES < 40
    # 10 ms a sample, 9 of them preparing: 1000 samples are 10 s an epoch, 1 s of it steps (+ 1 s an epoch unprobed)
    assert EPOCH_OVERHEAD_SECONDS == 1.0
    head = Probe("all", (64, 64), score=1.0, seconds=10.0, samples=1000, prepare_seconds=9.0)
    assert recipe.fit_seconds(cfg, head, 40, 1000, 0) == pytest.approx(HEAD_PASSES * 9 + 40 * 2)
    assert auto_epochs(cfg, head, 1000, spent=40) == 40  # 200 s left: 36 + 2 s an epoch
    assert auto_epochs(TrainConfig(budget=240, cache_features=False), head, 1000, spent=40) == 18  # 11 s an epoch
    partly = Probe("layer2", (64, 64), score=1.0, seconds=10.0, samples=1000, prepare_seconds=9.0)
    assert auto_epochs(cfg, partly, 1000, spent=40) == 18  # a pass an epoch: each prepared anew
    # reading 1500 inputs: 20 ms each whole (once, 30 s), 5 ms from the cache (7.5 s an epoch)
    read = Probe("layer2", (64, 64), score=1.0, seconds=10.0, samples=1000, read_seconds=2.0, read_samples=100,
                 cached_read_seconds=0.5)
    assert recipe.fit_seconds(cfg, read, 10, 1000, 1500) == pytest.approx(30 + 10 * (10 + 7.5 + 1))
    assert auto_epochs(cfg, read, 1000, spent=40, eval_samples=1500) == 9  # (200 - 30) // 18.5
    assert recipe.fit_seconds(TrainConfig(cache_features=False), read, 10, 1000, 1500) == pytest.approx(10 * 41)


@pytest.mark.parametrize("freeze,given,augment,expected", [("all", None, True, HEAD_PASSES),
                                                            ("layer4", None, True, HEAD_PASSES),
                                                            ("layer2", None, True, 40), ("none", None, True, 40),
                                                            ("all", 3, True, 3), ("layer2", 3, True, 3),
                                                            ("all", None, False, 1)])
def test_augmentation_passes(freeze, given, augment, expected):
    cfg = TrainConfig(freeze=freeze, epochs=40, aug_passes=given)
    assert augmentation_passes(cfg, augment) == expected
    # a fit of fewer epochs than that: one an epoch at most, unless --aug-passes says otherwise
    short = TrainConfig(freeze=freeze, epochs=2, aug_passes=given)
    assert augmentation_passes(short, augment) == (given if given and augment else min(expected, 2))


HUES = [(200, 40, 40), (40, 160, 40), (40, 40, 200), (190, 170, 30), (30, 160, 170), (170, 40, 170)]


def _glyph_set(n_per_class: int, far: bool, seed: int = 0) -> tuple[list, list]:
    """Six classes: clean glyphs like the pretraining ones, or (far) one glyph shape whose class is its
    colour, which the backbone learned to ignore (its pretraining drew every glyph in random colours)."""
    rng = random.Random(seed)
    images, targets = [], []
    for k, char in enumerate("ABC123"):
        for _ in range(n_per_class):
            if far:
                img = Image.new("RGB", (32, 32), (225, 225, 225))
                x, y = rng.randint(6, 10), rng.randint(2, 6)
                ImageDraw.Draw(img).text((x, y), rng.choice("XOX"), fill=HUES[k], font_size=22)
            else:
                img = render_char(char, rng)
            images.append(img)
            targets.append(k)
    return images, targets


def _probe_scores(far: bool) -> tuple[Probe, dict[str, float]]:
    source, state = resolve_pretrained("glyphs")
    fit, held = _glyph_set(80, far=far), _glyph_set(8, far=far, seed=1)
    cfg = TrainConfig(charset="ABC123", size=(32, 32), batch_size=32, method="classify")
    best, probes = choose_recipe(cfg, 6, state, source, fit, held, torch.device("cpu"), lambda _m: None)
    return best, {p.freeze: p.score for p in probes}


@pytest.mark.slow
def test_probes_pick_a_frozen_backbone_for_glyphs_like_its_own():
    """Real probes on a set drawn like the pretraining glyphs: freezing the backbone is as good as anything."""
    best, by = _probe_scores(far=False)
    assert best.freeze == "all" or by["all"] >= max(by.values()) - 0.05, by


@pytest.mark.slow
def test_probes_fine_tune_when_the_glyphs_are_far_from_the_backbones():
    """Real probes on a set whose classes the frozen glyph features ignore (colour): fine-tuning wins."""
    best, by = _probe_scores(far=True)
    assert best.freeze != "all" and by[best.freeze] > by["all"] + 0.1, by
    assert np.isfinite(list(by.values())).all()


def test_a_single_recipe_is_priced_by_timed_steps_unless_the_epochs_are_given(monkeypatch):
    """Nothing to choose between: not probed (nothing scored), but timed, so --epochs auto fits the budget."""
    monkeypatch.setattr(recipe, "run_probe", lambda *a, **k: pytest.fail("a single recipe is not probed"))
    fit, held = _glyph_set(20, far=False), _glyph_set(2, far=False, seed=1)
    cfg = TrainConfig(charset="ABC123", size=(32, 32), freeze="layer3", batch_size=16, method="classify", budget=60)
    said = []
    best, probes = choose_recipe(cfg, 6, None, "none", fit, held, torch.device("cpu"), said.append)
    assert probes == [] and said == [] and (best.freeze, best.size) == ("layer3", (32, 32))
    assert best.samples == recipe.PRICE_BATCHES * 16 and best.seconds > 0 and np.isnan(best.score)
    # priced, the epochs follow the budget (unpriced they would be the middle course, 20, either way)
    assert auto_epochs(TrainConfig(budget=1, batch_size=16), best, 120, spent=0) == 3
    assert auto_epochs(TrainConfig(budget=10 ** 6, batch_size=16), best, 120, spent=0) == 40
    assert auto_epochs(TrainConfig(budget=1, batch_size=16), Probe("layer3", (32, 32)), 120, spent=0) == 20
    given, _ = choose_recipe(TrainConfig(charset="ABC123", size=(32, 32), freeze="layer3", epochs=2), 6, None,
                             "none", fit, held, torch.device("cpu"), said.append)
    assert given.samples == 0  # --epochs given: nothing to price


@pytest.mark.parametrize("scores,expected", [({"classify": (0.5, 0.9), "ctc": (0.8, 0.9)}, "ctc"),
                                             ({"classify": (0.8, 0.9), "ctc": (0.5, 0.9)}, "classify"),
                                             # equal strings (a small slice): the characters decide
                                             ({"classify": (0.2, 0.4), "ctc": (0.2, 0.8)}, "ctc"),
                                             ({"classify": (0.2, 0.8), "ctc": (0.2, 0.4)}, "classify"),
                                             # none read whole: the characters do not rank the methods
                                             ({"classify": (0.0, 0.8), "ctc": (0.0, 0.4)}, "ctc"),
                                             # all equal: the quicker reader (here CTC: one input, not 4 crops)
                                             ({"classify": (0.7, 0.9), "ctc": (0.7, 0.9)}, "ctc")])
def test_method_auto_compares_whole_captchas_on_one_slice(flat_captchas, monkeypatch, scores, expected):
    seen = {}

    def fake(probe, cfg, num_classes, state, source, fit, held, device, length=0):
        seen.setdefault(cfg.method, (len(held[0]), length, probe.size))
        string, chars = scores[cfg.method]
        probe.score = probe.string_score = string - (0.1 if probe.freeze == "all" else 0)
        probe.char_score = chars
        probe.seconds, probe.samples = 1.0, 10
        return probe

    monkeypatch.setattr(recipe, "run_probe", fake)
    said = []
    choice = recipe.choose_method(TrainConfig(data=str(flat_captchas), charset="ABC123", pretrained="glyphs",
                                              size=(32, 32)), Charset("ABC123"), torch.device("cpu"), said.append)
    assert choice.method == expected and said[-1].endswith(f"chosen: {expected} (--method overrides)")
    assert ("none read whole" in said[-1]) == (max(s[0] for s in scores.values()) == 0)
    (n_crops, length, crop_size), (n_caps, _, ctc_size) = seen["classify"], seen["ctc"]
    assert n_crops == 4 * n_caps and length == 4 and n_caps == choice.held_out > 0  # the same captchas held out
    assert crop_size == (32, 32) and ctc_size[1] > ctc_size[0]  # ctc reads the whole captcha, not a crop
    assert [row["chosen"] for row in choice.table()] == [expected == "classify", expected == "ctc"]


def _choose_with_quick_probes(data, monkeypatch) -> tuple[recipe.MethodChoice, list[str], list[str]]:
    """``choose_method`` on ``data`` with every probe faked to read half the slice: (choice, methods probed, said)."""
    probed, said = [], []

    def fake(probe, cfg, num_classes, state, source, fit, held, device, length=0, epochs=None):
        probed.append(cfg.method)
        probe.score = probe.string_score = probe.char_score = 0.5 if held[0] else None
        probe.seconds, probe.samples = 1.0, 10
        return probe

    monkeypatch.setattr(recipe, "run_probe", fake)
    choice = recipe.choose_method(TrainConfig(data=str(data), charset="ABC123"), Charset("ABC123"),
                                  torch.device("cpu"), said.append)
    return choice, probed, said


def test_method_auto_on_a_site_whose_lengths_vary_is_ctc_without_probing_classify(mixed_captchas, monkeypatch):
    choice, probed, said = _choose_with_quick_probes(mixed_captchas, monkeypatch)
    assert choice.method == "ctc" and choice.data.length == 0 and set(probed) == {"ctc"}
    assert any("several lengths" in line and "ctc, which reads any length" in line for line in said)
    assert [row["method"] for row in choice.table()] == ["ctc"]


def test_method_auto_with_too_few_captchas_to_hold_any_out_is_ctc_without_probing_classify(six_captchas,
                                                                                          monkeypatch):
    """Six labelled captchas leave none for the slice: no probe can rank the methods, so CTC (whose start reads)."""
    choice, probed, said = _choose_with_quick_probes(six_captchas, monkeypatch)
    assert choice.method == "ctc" and choice.held_out == 0 and set(probed) <= {"ctc"}
    assert any("no training captchas held out to rank the methods" in line for line in said), said
    assert not any("-100.00%" in line for line in said)


def test_equal_methods_go_to_the_clearly_quicker_reader_else_classify():
    def probe(method, read_seconds):
        return Probe("none", (48, 96), method, read_seconds=read_seconds, read_samples=100)

    # classify reads 4 crops of a captcha: 4 x 5 ms against CTC's 30 ms a captcha; 4 x 10 ms against 10 ms
    assert recipe.quicker_reader({"classify": probe("classify", 0.5), "ctc": probe("ctc", 3.0)}, 4) == "classify"
    assert recipe.quicker_reader({"classify": probe("classify", 1.0), "ctc": probe("ctc", 1.0)}, 4) == "ctc"
    # within SPEED_TIE of each other (40 ms against 35 or 44): the course's method
    assert recipe.quicker_reader({"classify": probe("classify", 1.0), "ctc": probe("ctc", 3.5)}, 4) == "classify"
    assert recipe.quicker_reader({"classify": probe("classify", 1.0), "ctc": probe("ctc", 4.4)}, 4) == "classify"


def test_probes_one_slice_captcha_apart_and_level_in_characters_are_equal():
    # henan_digits4's probes: 180 and 179 of 180 slice captchas, every character of both
    assert recipe.level_methods({"classify": (1.0, 1.0), "ctc": (179 / 180, 1.0)}, 180) == ["classify", "ctc"]
    assert recipe.level_methods({"classify": (1.0, 1.0), "ctc": (0.9944, 1.0)}, 180) == ["classify", "ctc"]  # rounded
    assert recipe.level_methods({"classify": (178 / 180, 1.0), "ctc": (1.0, 1.0)}, 180) == ["ctc"]  # two apart
    assert recipe.level_methods({"classify": (1.0, 1.0), "ctc": (179 / 180, 0.99)}, 180) == ["classify"]  # characters
    assert recipe.level_methods({"classify": (0.25, 0.5), "ctc": (0.0, 0.7)}, 4) == ["classify"]
    assert recipe.level_methods({"classify": (0.5, 0.8), "ctc": (0.5, 0.8)}, 4) == ["classify", "ctc"]


@pytest.mark.parametrize("reads", [True, False])
def test_method_auto_counts_what_the_general_reader_reads_before_training(flat_captchas, monkeypatch, reads):
    # a short CTC probe from the reader can read the slice worse than the reader did before it (as on a
    # 100-captcha site: 30.6% of characters after the probe, 64.6% untrained); training keeps the better
    seen_lr = set()

    def fake(probe, cfg, num_classes, state, source, fit, held, device, length=0, epochs=recipe.PROBE_EPOCHS):
        if cfg.method == "ctc" and epochs:
            seen_lr.add(cfg.lr)
        untrained = {"classify": (0.0, 0.1), "ctc": (0.3, 0.65)}[cfg.method]
        trained = {"classify": (0.1, 0.5), "ctc": (0.0, 0.3)}[cfg.method]
        probe.string_score, probe.char_score = trained if epochs else untrained
        probe.score = probe.string_score if cfg.method == "ctc" else probe.char_score
        probe.seconds, probe.samples = 1.0, 10 * epochs
        probe.state = {"trained": torch.ones(1)} if epochs else None
        return probe

    monkeypatch.setattr(recipe, "run_probe", fake)
    monkeypatch.setattr(recipe, "reads_already", lambda source: reads)
    said = []
    choice = recipe.choose_method(TrainConfig(data=str(flat_captchas), charset="ABC123", pretrained="glyphs"),
                                  Charset("ABC123"), torch.device("cpu"), said.append)
    assert choice.method == ("ctc" if reads else "classify")
    assert any("before training" in line for line in said) == reads
    assert choice.probes["ctc"][0].samples > 0  # the recipe trained on is a probe that trained, never the start
    # training goes on from the chosen method's probe, unless it reads the slice worse than the reader did
    assert choice.probes["ctc"][0].state is None and (choice.probes["classify"][0].state is None) == reads
    if reads:  # its probes and training learn at the rate what it reads of the slice calls for
        assert choice.reading.char_score == 0.65 and choice.reading.samples == 0
        assert seen_lr == {recipe.start_lr(TrainConfig(), "reader:x", choice.reading)}


@pytest.mark.parametrize("chars", [0.2, 0.8])
def test_a_site_far_from_what_the_reader_knows_is_read_magnified(flat_captchas, monkeypatch, chars):
    # the reader reads under CTC_FAR_CHARS of the slice's characters untrained: CTC probes and trains on the
    # captchas read magnified (CTC_MAGNIFY: taller, and wider), and the rate follows what it reads at that size
    read_at = []

    def fake(probe, cfg, num_classes, state, source, fit, held, device, length=0, epochs=recipe.PROBE_EPOCHS):
        if not epochs and cfg.method == "ctc":
            read_at.append(probe.size)
        probe.string_score = 0.0 if not epochs else 0.2
        probe.char_score = (chars if len(read_at) == 1 else 0.1) if not epochs else 0.4
        probe.score = probe.string_score if cfg.method == "ctc" else probe.char_score
        probe.seconds, probe.samples = 1.0, 10 * epochs
        return probe

    monkeypatch.setattr(recipe, "run_probe", fake)
    said: list[str] = []
    choice = recipe.choose_method(TrainConfig(data=str(flat_captchas), charset="ABC123"), Charset("ABC123"),
                                  torch.device("cpu"), said.append)
    first = read_at[0]
    best, probes = choice.probes["ctc"]
    if chars < recipe.CTC_FAR_CHARS:
        big = magnified_size(first)
        assert best.size == big and big[0] > first[0] and big[1] > first[1] and [p.size for p in probes] == [big]
        assert read_at[:2] == [first, big] and choice.reading.char_score == 0.1  # read again where it trains
        assert any(f"read magnified, input {big[0]}x{big[1]}" in line for line in said)
    else:
        assert best.size == first and choice.reading.char_score == chars
        assert not any("magnified" in line for line in said)


def test_method_auto_probes_ctc_first_and_past_its_share_only_each_methods_first_recipe(flat_captchas, monkeypatch):
    ran = []

    def fake(probe, cfg, num_classes, state, source, fit, held, device, length=0, epochs=recipe.PROBE_EPOCHS):
        if epochs:
            ran.append(cfg.method)
        probe.string_score, probe.char_score, probe.score = 0.5, 0.5, 0.5
        probe.seconds, probe.samples = 1.0, 10 * epochs
        return probe

    monkeypatch.setattr(recipe, "run_probe", fake)
    choice = recipe.choose_method(TrainConfig(data=str(flat_captchas), charset="ABC123", pretrained="glyphs"),
                                  Charset("ABC123"), torch.device("cpu"), lambda _m: None, until=0.0)
    assert ran == ["ctc", "classify"] and [len(choice.probes[m][1]) for m in ("classify", "ctc")] == [1, 1]
    assert [row["method"] for row in choice.table()] == ["classify", "ctc"]


def test_method_auto_spares_classify_its_larger_inputs_when_ctc_is_far_ahead(flat_captchas, monkeypatch):
    ran = []

    def fake(probe, cfg, num_classes, state, source, fit, held, device, length=0, epochs=recipe.PROBE_EPOCHS):
        if epochs:
            ran.append((cfg.method, probe.size[0]))
        probe.string_score, probe.char_score = {"ctc": (0.9, 0.97), "classify": (0.1, 0.6)}[cfg.method]
        probe.score = probe.string_score if cfg.method == "ctc" else probe.char_score
        probe.seconds, probe.samples = 1.0, 10 * epochs
        return probe

    monkeypatch.setattr(recipe, "run_probe", fake)
    said = []
    choice = recipe.choose_method(TrainConfig(data=str(flat_captchas), charset="ABC123", pretrained="glyphs"),
                                  Charset("ABC123"), torch.device("cpu"), said.append)
    assert choice.method == "ctc" and ran[0][0] == "ctc"
    assert [size for method, size in ran if method == "classify"] == [32, 32, 32]
    assert any(line.startswith("probe classify: 60.00% of characters") for line in said), said


def test_the_rate_from_the_general_reader_rises_as_it_reads_less_of_the_site():
    cfg = TrainConfig()

    def lr(chars):
        return recipe.start_lr(cfg, "reader:x", Probe("none", (48, 96), "ctc", char_score=chars))

    assert lr(1.0) == pytest.approx(recipe.READER_LR) and lr(0.0) == pytest.approx(recipe.READER_LR_FAR)
    assert recipe.READER_LR < lr(0.9) < lr(0.5) < lr(0.1) < recipe.READER_LR_FAR
    assert recipe.start_lr(cfg, "reader:x") == recipe.READER_LR  # nothing read: the gentle rate
    assert recipe.start_lr(TrainConfig(lr=0.01), "reader:x", Probe("none", (48, 96), "ctc", char_score=0.0)) == 0.01
    assert recipe.start_lr(cfg, "glyphs-v2", None) is None  # other starts: the optimizer's own default


def test_method_auto_with_single_characters_to_learn_from_is_classify(tiny_data, tmp_path):
    from captcha.training.train import train

    out = tmp_path / "m.pt"
    res = train(TrainConfig(data=str(tiny_data), out=str(out), charset="ABC123", pretrained="none", freeze="none",
                            size=(32, 32), epochs=1, batch_size=16, aug_passes=1))
    assert res["method"] == "classify"


def test_ctc_sizes_make_room_for_the_longest_label():
    images = [Image.new("RGB", (83, 48))] * 3
    assert ctc_sizes(images, "none") == [(48, 80)]
    assert ctc_sizes(images, "none", [[1] * 4, [2] * 6, [3] * 5]) == [(48, 192)]  # 6 characters x 4 columns x 8 px
