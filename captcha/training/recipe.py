"""Choosing the recipe by measurement on the user's own data: freeze level, input size, epochs.

The course's rule (freeze it all when the target task is close to the source, fine-tune more when
it is far) needs to know how close the user's glyphs are to the ones the backbone learned. Rather
than assume it, `--freeze auto` and `--input-size auto` run short probes: each candidate recipe
trains briefly on part of the training data and is scored on a slice of the *training* data held
out for the purpose (never on the validation data whose accuracy is reported). The best probe
wins; ties go to the cheaper recipe. `--epochs auto` then gives the winner as many epochs as the
time budget allows, from the probe's own timing. What a probe is too short to see is decided by what
the general reader reads of the slice before training: the peak rate, and for a site far from what it
knows, a magnified input.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..charset import Charset
from ..config import (
    AUTO_EPOCHS,
    AUTO_MIN_STEPS,
    CTC_FAR_CHARS,
    CTC_LAYER3_INNER,
    CTC_LAYER3_NARROW_FROM,
    EPOCH_OVERHEAD_SECONDS,
    HEAD_ONLY,
    HEAD_PASSES,
    METHODS,
    MIN_SLICE,
    NONE_WHOLE,
    ONE_LENGTH_SHARE,
    PRICE_BATCHES,
    PROBE_EPOCHS,
    PROBE_FREEZES,
    PROBE_SAMPLES,
    PROBE_SIZE_GAIN,
    PROBE_SIZES,
    READER_LR,
    READER_LR_FAR,
    REFIT_MIN_EPOCHS,
    UNCHOSEN_EPOCHS,
    TrainConfig,
)
from ..data.augment import TrainTransform
from ..data.preprocess import Preprocess, magnified_size, whole_captcha_sizes
from ..data.segment import SegmentConfig
from ..data.synth import seed_for
from ..eval.metrics import string_metrics
from ..inference.decode import decode
from ..nn.device import train_in_bf16
from ..nn.networks import (
    LAYER3_INNER,
    CharNet,
    load_backbone,
    network_shape,
    new_model,
    reads_already,
    resolve_start,
    start_height,
)
from .dataset import TrainingData, hold_out_slice, load_training_data
from .loop import (
    CTCLoss,
    Trainable,
    frozen_outputs,
    indexed_batches,
    make_optimizer,
    make_schedule,
    predict,
    target_tensor,
    train_one_epoch,
)

log = logging.getLogger(__name__)

# Methods that read the held-out slice equally well go to the one that reads a captcha this many times faster:
# henan_digits4 (once the cut read its ground inside the frame) tied at 100% and went to classify, which solved
# 89 captchas/s (int8; ddddocr 58/s in the same run); with this rule CTC, 100% at 237/s (ddddocr 68/s).
SPEED_TIE = 1.25
# Probes level in characters and at most this many slice captchas apart in full-string score are equal too: one
# captcha of a slice is no evidence. henan_digits4 (tuned-on: the only such case seen), classify's probe reading 180
# of 180 slice captchas and CTC's 179, every character of both, chose classify: 100% at 2.8x ddddocr's rate; with
# this rule CTC, 100% at 5.2x (docs/measurements.md, "A classifier that fit once was not calibrated").
TIE_CAPTCHAS = 1
COST = {"all": 0, "layer4": 1, "layer3": 2, "layer2": 3, "layer1": 4, "none": 5}  # cheaper first on ties


@dataclass
class Probe:
    """One candidate recipe and what its short run measured."""

    freeze: str
    size: tuple[int, int]
    method: str = "classify"
    score: float = float("nan")  # accuracy on the held-out slice of the training data (characters; ctc: strings)
    string_score: float | None = None  # full-string accuracy on the slice's captchas, comparable across methods
    char_score: float | None = None  # character accuracy on the slice's captchas (position by position)
    seconds: float = 0.0
    samples: int = 0  # training samples it went through
    prepare_seconds: float = 0.0  # of ``seconds``: augmenting the samples and the frozen stages' pass over them
    read_seconds: float = 0.0  # the forward pass over the slice, timed apart: it runs the whole network
    read_samples: int = 0
    cached_read_seconds: float = 0.0  # of ``read_seconds``: the stages after the frozen ones (0: none frozen)
    # the weights its short run ended with: training goes on from the chosen probe's instead of starting over
    # (kept for each method's best probe only; never stored)
    state: dict[str, torch.Tensor] | None = field(default=None, repr=False, compare=False)

    @property
    def seconds_per_sample(self) -> float:
        return self.seconds / max(self.samples, 1)

    @property
    def seconds_per_read(self) -> float:
        """One network input read (no gradients, nothing cached), as measured; else a third of a training sample."""
        return self.read_seconds / self.read_samples if self.read_samples else self.seconds_per_sample / 3

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "state"}
        d["size"] = list(self.size)
        return d


def start_lr(cfg: TrainConfig, source: str, reading: Probe | None = None) -> float | None:
    """``--lr`` as given; else, from the general reader, a peak rate set by how much of the site it reads
    before training (``reading``, see :func:`start_reading`): the gentle :data:`READER_LR` where it reads
    every character of the held-out slice, rising geometrically to :data:`READER_LR_FAR` where it reads none
    (no reading: the gentle one)."""
    if cfg.lr is not None or not reads_already(source):
        return cfg.lr
    near = 1.0 if reading is None else min(max(_or(reading.char_score), 0.0), 1.0)
    return READER_LR_FAR ** (1 - near) * READER_LR ** near


def start_reading(cfg: TrainConfig, num_classes: int, state: dict[str, torch.Tensor] | None, source: str,
                  fit: tuple[list, list], held: tuple[list, list], device: torch.device, length: int,
                  size: tuple[int, int]) -> Probe | None:
    """What a start that reads already (the general reader) reads of the held-out slice before any
    training, at input ``size``: how close the site is to what it knows. None for any other start."""
    if cfg.method != "ctc" or not reads_already(source) or not held[0]:
        return None
    return run_probe(Probe("none", tuple(size), cfg.method), cfg, num_classes, state, source, fit, held, device,
                     length, epochs=0)


def candidates(cfg: TrainConfig, pretrained: bool, sizes: Sequence[tuple[int, int]] = ()) -> list[Probe]:
    """The recipes worth probing: every auto setting's choices (input ``sizes`` when given, else
    :data:`PROBE_SIZES`), the fixed ones as given."""
    if cfg.freeze != "auto":
        freezes: tuple[str, ...] = (cfg.freeze,)
    else:
        freezes = PROBE_FREEZES if pretrained and cfg.method != "ctc" else ("none",)
    sizes = (tuple(cfg.size),) if cfg.size else tuple(sizes) or PROBE_SIZES
    return [Probe(f, tuple(s), cfg.method) for s in sizes for f in freezes]


def far_sizes(cfg: TrainConfig, num_classes: int, state: dict[str, torch.Tensor] | None, source: str,
              fit: tuple[list, list], held: tuple[list, list], device: torch.device, length: int,
              sizes: list[tuple[int, int]], reading: Probe | None,
              say: Callable[[str], None]) -> tuple[list[tuple[int, int]], Probe | None]:
    """The input sizes to train CTC at, and the start's ``reading`` of the slice at the first: where the start
    reads under :data:`CTC_FAR_CHARS` of its characters (a site far from what it knows), the first size
    magnified by :data:`CTC_MAGNIFY` (alone: the short probes cannot tell the sizes apart), read again."""
    if reading is None or not sizes or _or(reading.char_score) >= CTC_FAR_CHARS:
        return sizes, reading
    big = magnified_size(sizes[0])
    if big == sizes[0]:
        return sizes, reading
    say(f"the start reads {100 * _or(reading.char_score):.2f}% of the held-out characters (under "
        f"{100 * CTC_FAR_CHARS:.0f}%): a site far from what it knows, read magnified, input {big[0]}x{big[1]} "
        f"(`--method ctc --input-size H W` overrides)")
    return [big], start_reading(cfg, num_classes, state, source, fit, held, device, length, big)


def ctc_sizes(images: list, source: str, targets: Sequence[Sequence[int]] = ()) -> list[tuple[int, int]]:
    """Whole-captcha input sizes to probe for ``images`` read from ``source``: at the start's height (and
    a taller one for tall captchas), wide enough for the longest of their ``targets`` (see
    :func:`whole_captcha_sizes`)."""
    return whole_captcha_sizes([im.size for im in images], height=start_height(source),
                               length=max(map(len, targets), default=0))


def training_start(cfg: TrainConfig, method: str, charset: Charset,
                   data: TrainingData) -> tuple[str, dict[str, torch.Tensor] | None]:
    """Where training ``method`` on ``data`` starts (:func:`resolve_start`): a CTC fine-tune from the general
    reader keeps :data:`CTC_LAYER3_INNER` channels inside each layer3 block from CTC_LAYER3_NARROW_FROM labelled
    captchas up, all of them from fewer (the first fit and its refit count the same captchas)."""
    inner = CTC_LAYER3_INNER if data.labelled_captchas() >= CTC_LAYER3_NARROW_FROM else LAYER3_INNER
    return resolve_start(cfg.pretrained, method, charset.alphabet, bool(charset.fold_case), layer3_inner=inner)


def make_network(cfg: TrainConfig, num_classes: int, state: dict[str, torch.Tensor] | None, source: str,
                 freeze: str, shape: tuple[int, int] | None = None) -> CharNet:
    """A fresh network for ``cfg.method`` with the pretrained ``state`` loaded and ``freeze`` applied; a CTC one
    with the channels of ``state`` (or ``shape``, layer4's and those inside layer3, with no state: a resumed
    run's)."""
    model = new_model(cfg.method, num_classes, *(shape if shape and cfg.method == "ctc" else
                                                 network_shape(cfg.method, state)))
    if state is not None:
        load_backbone(model, state, source)
    return model.freeze(freeze)


def run_probe(probe: Probe, cfg: TrainConfig, num_classes: int, state: dict[str, torch.Tensor] | None, source: str,
              fit: tuple[list, list], held: tuple[list, list], device: torch.device, length: int = 0,
              epochs: int = PROBE_EPOCHS) -> Probe:
    """Train ``probe``'s recipe briefly on ``fit`` (images, targets) and score it on ``held``; with the
    captcha ``length`` (held-out crops in whole captchas) also per whole captcha. With no ``epochs``,
    the start as it is."""
    model, pre = train_briefly(probe, cfg, num_classes, state, source, fit, device, epochs, PROBE_SAMPLES)
    if epochs:
        probe.state = model.state_dict()  # detached; the probe's network is not used again
    held_x = np.stack([pre(im) for im in held[0]])
    frozen = model.frozen_stages()
    t0 = time.perf_counter()
    if frozen and cfg.cache_features:  # as the fit will validate: the frozen stages' output once, then the rest
        features = frozen_outputs(model, torch.from_numpy(held_x), frozen[-1], train_in_bf16(cfg.bf16))
        t1 = time.perf_counter()
        logits = predict(Trainable(model, frozen[-1]), features)
        probe.cached_read_seconds = time.perf_counter() - t1
    else:
        logits = predict(model, held_x)
    probe.read_seconds, probe.read_samples = time.perf_counter() - t0, len(held_x)
    if cfg.method == "ctc":
        charset = Charset(cfg.charset)
        read = string_metrics([s.text for s in decode(logits, charset, "ctc")], [charset.decode(y) for y in held[1]])
        probe.score = probe.string_score = read["string_acc"]
        probe.char_score = read["captcha_char_acc"]
        return probe
    right = logits.argmax(1) == np.asarray(held[1])
    probe.score = probe.char_score = float(right.mean())
    if length and len(right) % length == 0:
        probe.string_score = float(right.reshape(-1, length).all(1).mean())
    return probe


def train_briefly(probe: Probe, cfg: TrainConfig, num_classes: int, state: dict[str, torch.Tensor] | None,
                  source: str, fit: tuple[list, list], device: torch.device, epochs: int, samples: int,
                  timing: dict[str, Any] | None = None) -> tuple[CharNet, Preprocess]:
    """``probe``'s recipe trained for ``epochs`` on at most ``samples`` of ``fit``, timed into the probe;
    ``timing`` gets the seconds building the network took ("build") and each optimizer step's ("steps")."""
    timing = {} if timing is None else timing
    step_seconds = timing.setdefault("steps", [])
    t0 = time.perf_counter()
    torch.manual_seed(seed_for(cfg.seed, "probe-init") % 2 ** 63)  # a fresh head: the same probe, whatever ran before
    rng = random.Random(seed_for(cfg.seed, "probe"))
    pick = sorted(rng.sample(range(len(fit[0])), min(samples, len(fit[0]))))
    images, targets = [fit[0][i] for i in pick], target_tensor([fit[1][i] for i in pick])
    model = make_network(cfg, num_classes, state, source, probe.freeze).to(device, memory_format=torch.channels_last)
    timing["build"] = time.perf_counter() - t0
    pre = Preprocess(size=probe.size)
    transform = TrainTransform(pre, cfg.augment, whole=probe.method == "ctc")
    stop = model.frozen_stages()[-1] if model.frozen_stages() else None
    net = Trainable(model, stop)
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg.optimizer, cfg.peak_lr,
                         cfg.weight_decay)
    steps = math.ceil(len(images) / cfg.batch)
    sched = make_schedule(opt, cfg.schedule, cfg.peak_lr, max(steps * epochs, 1))
    loss_fn = CTCLoss() if cfg.method == "ctc" else nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    bf16 = train_in_bf16(cfg.bf16)
    for epoch in range(epochs):
        x = pass_images(images, transform, cfg.seed, epoch)
        inputs = frozen_outputs(model, x, stop, bf16) if stop else x
        order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed_for(cfg.seed, "probe", epoch)))
        train_one_epoch(net, indexed_batches(inputs, targets, order, cfg.batch), opt, sched, loss_fn,
                        on_batch=lambda _b, _loss, seconds: step_seconds.append(seconds),
                        bf16=bf16)
    probe.seconds = time.perf_counter() - t0
    probe.samples = len(images) * epochs
    probe.prepare_seconds = max(probe.seconds - timing["build"] - sum(step_seconds), 0.0)
    return model, pre


def price(probe: Probe, cfg: TrainConfig, num_classes: int, state: dict[str, torch.Tensor] | None, source: str,
          fit: tuple[list, list], device: torch.device) -> Probe:
    """``probe`` with its training speed measured on :data:`PRICE_BATCHES` batches and nothing scored: what
    `--epochs auto` prices a recipe by when there was nothing to choose between. The first step (which
    also sets up the kernels) and building the network are left out; preparing the samples is not."""
    timing: dict[str, Any] = {}
    train_briefly(probe, cfg, num_classes, state, source, fit, device, 1, PRICE_BATCHES * cfg.batch, timing)
    steps = timing["steps"]
    timed = steps[1:] or steps
    prepare = probe.prepare_seconds  # augmenting (and the frozen stages' pass)
    probe.seconds = prepare + sum(timed) / len(timed) * len(steps)
    return probe


def choose_recipe(cfg: TrainConfig, num_classes: int, state: dict[str, torch.Tensor] | None, source: str,
                  fit: tuple[list, list], held: tuple[list, list], device: torch.device,
                  say: Callable[[str], None], length: int = 0, always: bool = False,
                  sizes: Sequence[tuple[int, int]] = (), until: float = math.inf,
                  rival: tuple[float, float] | None = None) -> tuple[Probe, list[Probe]]:
    """Probe every candidate (when there is more than one, or ``always``, and a slice to score on); the
    best wins, then the better character accuracy (CTC's score is whole captchas), then the cheaper.
    A single candidate is only priced (:func:`price`; unless --epochs is given).
    Once the clock (``time.perf_counter``) passes ``until`` the candidates not yet probed are skipped;
    the first always runs. Given the other method's reading of the slice, ``rival`` (whole captchas,
    characters), the next input size is skipped once it is far out of reach (:func:`out_of_reach`)."""
    todo = candidates(cfg, state is not None, sizes)
    if (len(todo) == 1 and not always) or not held[0]:
        # nothing to choose between (or to score on): still timed, for --epochs auto to price the fit
        return (todo[0] if cfg.epochs else price(todo[0], cfg, num_classes, state, source, fit, device)), []
    probes: list[Probe] = []
    for p in todo:
        why = ""
        if probes and time.perf_counter() >= until:
            why = "the probes' share of --budget is spent"
        elif rival and probes and p.size != probes[-1].size and out_of_reach(probes, rival):
            why = (f"{100 * max(_or(q.char_score) for q in probes):.2f}% of characters is over "
                   f"{100 * PROBE_SIZE_GAIN:.0f} points short of the other method's {100 * rival[1]:.2f}%")
        if why:
            skipped = todo[len(probes):]
            say(f"probe {cfg.method}: {why}; skipped "
                + ", ".join(f"freeze={q.freeze} input {q.size[0]}x{q.size[1]}" for q in skipped))
            break
        probes.append(p)
        run_probe(p, cfg, num_classes, state, source, fit, held, device, length)
        unit = "captchas" if cfg.method == "ctc" else "characters"
        whole = "" if cfg.method == "ctc" or p.string_score is None else \
            f", {100 * p.string_score:6.2f}% of whole captchas"
        say(f"probe {cfg.method} freeze={p.freeze:<6} input {p.size[0]}x{p.size[1]}: {100 * p.score:6.2f}% of "
            f"{len(held[0])} held-out training {unit}{whole} ({p.seconds:.1f}s)")
    best = max(probes, key=lambda p: (round(p.score, 4), round(_or(p.char_score), 4), -COST[p.freeze], -p.size[0]))
    for p in probes:
        if p is not best:
            p.state = None
    return best, probes


def keep_warm(best: Probe, start: Probe | None) -> Probe:
    """``best`` keeps its trained weights for training to go on from only where it reads the held-out slice
    better than the untrained ``start`` did (whole captchas, then characters): from a few captchas a short
    run can read a site the start reads already worse than the start."""
    if start is not None and _standing(best) <= _standing(start):
        best.state = None
    return best


def _standing(probe: Probe) -> tuple[float, float]:
    """What ``probe`` read of the slice: whole captchas, then characters (to 4 places, as probes are ranked)."""
    return round(_or(probe.string_score), 4), round(_or(probe.char_score), 4)


def out_of_reach(probes: Sequence[Probe], rival: tuple[float, float]) -> bool:
    """True when the best of ``probes`` reads fewer of the slice's captchas whole than ``rival`` (whole
    captchas, characters) and more than :data:`PROBE_SIZE_GAIN` fewer of its characters: further input
    sizes are not worth their time."""
    whole = max(_or(p.string_score) for p in probes)
    chars = max(_or(p.char_score) for p in probes)
    return whole < rival[0] and chars + PROBE_SIZE_GAIN < rival[1]


def auto_epochs(cfg: TrainConfig, probe: Probe, train_samples: int, spent: float, eval_samples: int = 0,
                refit_samples: int = 0, refit_eval_samples: int = 0, keeps_last: bool = False) -> int:
    """As many epochs as the rest of the budget allows at the probe's measured speeds: each trains on
    ``train_samples`` and then reads ``eval_samples`` (validation and the held-out slice, at the cost of
    the probe's own reading of the slice), as :func:`fit_seconds` prices them, and a refit planned after it
    trains as many epochs on ``refit_samples`` (reading ``refit_eval_samples`` after each); at most
    :data:`AUTO_EPOCHS`'s, or on a small set as many as make
    :data:`AUTO_MIN_STEPS` optimizer steps; where nothing held out chooses the epoch (``keeps_last``), at most
    :data:`UNCHOSEN_EPOCHS`."""
    if cfg.epochs:
        return cfg.epochs
    lo, hi = AUTO_EPOCHS[0], most_epochs(cfg, train_samples, keeps_last)
    if not probe.samples:
        return hi if probe.freeze == "all" else max(lo, hi // 2)  # nothing measured: a middle course

    def seconds(epochs: int) -> float:
        return fit_seconds(cfg, probe, epochs, train_samples, eval_samples) + \
            (fit_seconds(cfg, probe, epochs, refit_samples, refit_eval_samples) if refit_samples else 0.0)

    left = cfg.budget - spent
    return next((e for e in range(hi, lo, -1) if seconds(e) <= left), lo)


def most_epochs(cfg: TrainConfig, train_samples: int, keeps_last: bool = False) -> int:
    """The most epochs :func:`auto_epochs` gives a fit of ``train_samples``, whatever the budget."""
    if keeps_last:
        return min(AUTO_EPOCHS[1], UNCHOSEN_EPOCHS)
    return max(AUTO_EPOCHS[1], math.ceil(AUTO_MIN_STEPS / math.ceil(max(train_samples, 1) / cfg.batch)))


def fit_seconds(cfg: TrainConfig, probe: Probe, epochs: int, train_samples: int, eval_samples: int) -> float:
    """How long a fit of ``epochs`` takes at the probe's measured speeds: each epoch trains on ``train_samples``
    and reads ``eval_samples``, plus :data:`EPOCH_OVERHEAD_SECONDS` (what the probe does not time: the epoch's
    start, bookkeeping and writes). Where stages are frozen and cached, the
    samples of an augmentation pass the fit keeps (:func:`augmentation_passes`) are prepared once, and the
    inputs read are read whole once, then from the frozen stages' output."""
    cached = cfg.cache_features and probe.freeze != "none"
    passes = augmentation_passes(dataclasses.replace(cfg, freeze=probe.freeze, epochs=epochs), cfg.augment.enabled)
    prepared = probe.prepare_seconds / max(probe.samples, 1) * train_samples
    steps = (probe.seconds_per_sample * train_samples - prepared) * epochs
    preparing = prepared * (passes if cached and passes < epochs else epochs)
    if cached and probe.cached_read_seconds:  # timed apart by the probe
        reading = probe.seconds_per_read * eval_samples + \
            probe.cached_read_seconds / probe.read_samples * eval_samples * epochs
    else:
        reading = probe.seconds_per_read * eval_samples * epochs
    return steps + preparing + reading + EPOCH_OVERHEAD_SECONDS * epochs


def augmentation_passes(cfg: TrainConfig, augmenting: bool) -> int:
    """The distinct augmentation passes a fit of ``cfg.epochs`` cycles over: one without augmentation;
    ``--aug-passes`` where given; :data:`HEAD_PASSES` where only the head trains, on the cached output of the
    whole backbone (each pass is then computed once and kept); else one an epoch."""
    if not augmenting:
        return 1
    if cfg.aug_passes:
        return cfg.aug_passes
    return min(cfg.epochs, HEAD_PASSES) if cfg.cache_features and cfg.freeze in HEAD_ONLY else cfg.epochs


def plan_fits(cfg: TrainConfig, probe: Probe, train_samples: int, spent: float, eval_samples: int = 0,
              refit_samples: int = 0, refit_eval_samples: int = 0, held: int = 0,
              validation: int = 0, keeps_last: bool = False) -> tuple[int, bool | None]:
    """The first fit's epochs (:func:`auto_epochs`) and ``--refit`` as it then stands: where a refit is
    planned (``refit_samples``) but would leave each fit fewer than :data:`REFIT_MIN_EPOCHS`, no refit
    (False) and one longer fit instead (unless :func:`most_epochs` is what holds it there), which also trains on
    the ``held`` samples of the held-out slice and on ``validation`` samples of the validation share (both read by
    ``eval_samples`` after each epoch until then). ``keeps_last``: nothing is held out to choose the epoch by
    (see :func:`auto_epochs`)."""
    epochs = auto_epochs(cfg, probe, train_samples, spent, eval_samples, refit_samples, refit_eval_samples, keeps_last)
    # where the most epochs a fit gets (UNCHOSEN_EPOCHS), not the budget, hold it under REFIT_MIN_EPOCHS, one fit
    # would be no longer: the refit stays
    if refit_samples and cfg.refit is None and not cfg.epochs and \
            epochs < min(REFIT_MIN_EPOCHS, most_epochs(cfg, train_samples, keeps_last)):
        moved = held + validation
        return auto_epochs(cfg, probe, train_samples + moved, spent, eval_samples - moved, keeps_last=keeps_last), False
    return epochs, cfg.refit


def pass_images(images: list, transform: TrainTransform, seed: int, pass_id: int) -> torch.Tensor:
    """One augmentation pass over training images, reproducible from (seed, pass)."""
    return torch.from_numpy(np.stack([transform(im, seed_for(seed, "aug", pass_id, i)) for i, im in enumerate(images)]))


def _or(score: float | None) -> float:
    return -1.0 if score is None else score


@dataclass
class MethodChoice:
    """What `--method auto` measured: each method's best probe, and the splitter classify would use;
    the chosen method's training data and start, read once, for training to go on with."""

    method: str
    probes: dict[str, tuple[Probe, list[Probe]]]  # method -> (its best probe, all its probes)
    segment: SegmentConfig  # classify's splitter (ctc never splits)
    held_out: int  # captchas in the slice
    data: TrainingData  # the chosen method's
    start: tuple[str, dict[str, torch.Tensor] | None]  # the chosen method's (source, weights)
    reading: Probe | None  # what the chosen method's start read of the slice before training (``start_reading``)

    def table(self) -> list[dict[str, Any]]:
        """One row per method: its best probe, as stored in the checkpoint's recipe."""
        return [{**self.probes[m][0].to_dict(), "chosen": m == self.method} for m in METHODS if m in self.probes]


def level_methods(ranked: dict[str, tuple[float, float]], held: int) -> list[str]:
    """The methods whose probes read the slice best, by (full-string, character) score: the best, and any level
    with it in characters and at most :data:`TIE_CAPTCHAS` of the ``held`` slice captchas behind it whole."""
    best = max(METHODS, key=lambda m: ranked[m])
    slack = TIE_CAPTCHAS / max(held, 1) + 1e-4  # the scores are rounded to 4 decimals
    return [m for m in METHODS
            if m == best or (ranked[m][1] == ranked[best][1] and ranked[m][0] >= ranked[best][0] - slack)]


def quicker_reader(best: dict[str, Probe], length: int) -> str:
    """The method whose probe read a captcha SPEED_TIE times faster than the other's (classify reads
    ``length`` crops of one), else classify."""
    per_captcha = {m: p.seconds_per_read * (length if m == "classify" else 1) for m, p in best.items()}
    fast, slow = sorted(per_captcha, key=per_captcha.get)
    return fast if per_captcha[fast] * SPEED_TIE < per_captcha[slow] else "classify"


def choose_method(cfg: TrainConfig, charset: Charset, device: torch.device, say: Callable[[str], None],
                  extra: list | None = None, until: float = math.inf) -> MethodChoice:
    """``--method auto``: split-and-classify against whole-captcha CTC, each probed briefly from its own
    start (the glyph backbone; the general reader) and scored by full-string accuracy on the same
    held-out slice of the training captchas; a start that reads already (the general reader) scores at
    least what it reads before training. Where neither reads a single captcha of the slice whole, CTC:
    such short probes have barely begun (:data:`NONE_WHOLE`). Other equal full-string scores (likely on
    the few captchas of a small set's slice) go to the better character accuracy, then to the method
    that reads a captcha clearly faster (:func:`quicker_reader`), else to classify, the course's method;
    scores level in characters and one slice captcha apart whole count as equal (:func:`level_methods`).
    With too few captchas to hold any out, nothing ranks them: CTC, as where the lengths vary.
    CTC is probed first: past ``until`` (see :func:`choose_recipe`) each method probes only its first recipe,
    and classify stops before a larger input size once CTC is far out of its reach (:func:`out_of_reach`)."""
    probes: dict[str, tuple[Probe, list[Probe]]] = {}
    datas: dict[str, TrainingData] = {}
    starts: dict[str, tuple[str, dict[str, torch.Tensor] | None]] = {}
    scores: dict[str, tuple[float, float]] = {}  # method -> (whole captchas, characters) read of the slice
    readings: dict[str, Probe | None] = {}
    held_n = 0
    for method in sorted(METHODS, key=lambda m: m != "ctc"):
        if method == "classify" and not (datas["ctc"].length and held_n):  # the lengths vary: said below
            if datas["ctc"].length:  # one length, but nothing held out to rank the methods on
                say(f"method auto: no training captchas held out to rank the methods on (a slice of fewer than "
                    f"{MIN_SLICE} would measure nothing), so ctc (--method overrides)")
            return MethodChoice("ctc", probes, datas["ctc"].segment, held_n, datas["ctc"], starts["ctc"],
                                readings["ctc"])
        mcfg = dataclasses.replace(cfg, method=method)
        data = datas[method] = load_training_data(mcfg, charset, extra=extra)
        if method == "ctc" and not data.length:
            lengths = data.label_lengths()
            say(f"the labels have several lengths ({', '.join(f'{n} of {k}' for k, n in sorted(lengths.items()))} "
                f"characters; no one length is {100 * ONE_LENGTH_SHARE:.0f}% of them): ctc, which reads any length "
                "(split-and-classify cuts a fixed number; --length N keeps one)")
        fit_idx, held_idx = hold_out_slice(data.train_groups, cfg.select_fraction, cfg.seed, data.extra_groups)
        fit = ([data.train_images[i] for i in fit_idx], [data.train_targets[i] for i in fit_idx])
        held = ([data.train_images[i] for i in held_idx], [data.train_targets[i] for i in held_idx])
        held_n = len(set(data.train_groups[i] for i in held_idx))
        source, state = starts[method] = training_start(cfg, method, charset, data)
        sizes: list[tuple[int, int]] = []
        if method == "ctc":  # a given --input-size is for character crops; CTC reads whole captchas
            mcfg.size = None
            sizes = ctc_sizes(fit[0], source, fit[1])
        first = start_reading(mcfg, len(charset), state, source, fit, held, device, data.length,
                              sizes[0]) if sizes else None
        sizes, first = far_sizes(mcfg, len(charset), state, source, fit, held, device, data.length, sizes, first, say)
        readings[method] = first
        mcfg.lr = start_lr(mcfg, source, first)  # the probes learn at the rate training will
        probes[method] = choose_recipe(mcfg, len(charset), state, source, fit, held, device, say, data.length,
                                       always=True, sizes=sizes, until=until, rival=scores.get("ctc"))
        best = probes[method][0]
        scores[method] = (_or(best.string_score), _or(best.char_score))
        if first is not None:
            # training keeps the untrained reader when no epoch reads the slice better (epoch 0), so the
            # method is worth at least what the reader reads before training; a short probe can read less
            start = first if best.size == first.size else \
                start_reading(mcfg, len(charset), state, source, fit, held, device, data.length, best.size)
            say(f"the start ({source}) before training: {100 * _or(start.string_score):.2f}% of the held-out "
                f"training captchas ({100 * _or(start.char_score):.2f}% of characters); peak learning rate "
                f"{mcfg.lr:.2g}")
            scores[method] = max(scores[method], (_or(start.string_score), _or(start.char_score)))
            keep_warm(best, start)
    ranked = {m: (round(scores[m][0], 4), round(scores[m][1], 4)) for m in METHODS}
    quicker = quicker_reader({m: probes[m][0] for m in METHODS}, datas["classify"].length)
    none_whole = not any(ranked[m][0] for m in METHODS)
    tied = level_methods(ranked, held_n)
    method = NONE_WHOLE if none_whole else quicker if len(tied) > 1 else tied[0]
    for m in METHODS:
        if m != method:
            probes[m][0].state = None
    say("method auto: " + ", ".join(f"{m} {100 * scores[m][0]:.2f}% ({100 * scores[m][1]:.2f}% of characters)"
                                    for m in METHODS)
        + f" of {held_n} held-out training captchas read whole"
        + (f"; none read whole, so {NONE_WHOLE}" if none_whole else
           "; equal, so the clearly quicker reader (else classify)" if len(tied) > 1 else "")
        + f"; chosen: {method} (--method overrides)")
    return MethodChoice(method, probes, datas["classify"].segment, held_n, datas[method], starts[method],
                        readings[method])
