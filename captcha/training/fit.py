"""One fit: the epochs of training a network on a run's samples, judged on its held-out slice.

:class:`Fit` holds what one fit needs (each augmentation pass's inputs, the optimizer and its schedule,
the validation data) and runs its epochs with the one loop (``loop``), writing the epoch to keep
(:class:`EpochKeeper`) and the state to resume from as it goes. ``train`` builds it once the recipe is
chosen; a refit and a self-training round are fits of their own.
"""

from __future__ import annotations

import math
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import albumentations
import numpy as np
import PIL
import torch
import torchvision
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..charset import Charset
from ..config import (
    AUTO_EPOCHS,
    REFIT_MIN_EPOCHS,
    RESUME_SECONDS,
    WARM_LR_DIVISOR,
    WARMUP,
    TrainConfig,
)
from ..data.augment import TrainTransform
from ..data.preprocess import Preprocess
from ..data.synth import seed_for
from ..eval.metrics import score
from ..inference.solver import Preparer
from ..nn.checkpoint import save_checkpoint
from ..nn.device import device_of, train_in_bf16
from ..nn.networks import ARCH, CharNet, model_from_checkpoint
from .budget import RefitStopped, fit_epochs
from .dataset import TrainingData
from .loop import (
    CTCLoss,
    Trainable,
    frozen_outputs,
    indexed_batches,
    make_optimizer,
    make_schedule,
    target_tensor,
    train_one_epoch,
    validate,
)
from .recipe import augmentation_passes, pass_images


def _order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed_for(seed, "order", epoch) % (2 ** 63))
    return torch.randperm(n, generator=g)


def environment() -> dict[str, str]:
    """Library versions recorded in checkpoints, for reproducibility."""
    return {"python": platform.python_version(), "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
            "numpy": np.__version__, "pillow": PIL.__version__, "albumentations": albumentations.__version__,
            "platform": platform.platform()}


class Fit:
    """One fit's optimisation: the inputs of each augmentation pass, the optimizer and its schedule, the
    validation data and held-out slice each epoch is judged on, and the epoch kept (:class:`EpochKeeper`).

    ``cfg`` is the run's own copy: a fit the budget shortens sets its ``epochs``.
    """

    def __init__(self, cfg: TrainConfig, charset: Charset, data: TrainingData, fit: tuple[list, list],
                 held: tuple[list, list], model: CharNet, source: str, recipe: dict[str, Any], world: int) -> None:
        self.cfg, self.charset, self.data, self.fit, self.held = cfg, charset, data, fit, held
        self.model, self.source, self.recipe, self.world = model, source, recipe, world
        self.pre = Preprocess(size=cfg.size)
        self.transform = TrainTransform(self.pre, cfg.augment, whole=cfg.method == "ctc")
        self.passes = augmentation_passes(cfg, self.transform.aug is not None)
        self.targets = target_tensor(fit[1])
        frozen = model.frozen_stages()
        self.stop = frozen[-1] if frozen else None
        self.cached = cfg.cache_features and self.stop is not None
        self.bf16 = train_in_bf16(cfg.bf16)
        # passes cycled over the epochs are kept where they are the frozen stages' (small) output: computed once
        self.keeps_passes = self.cached and self.passes < cfg.epochs
        self.char_x, self.cap_x, self.cap_labels = _validation_inputs(
            data, Preparer(self.pre, data.length, data.segment, cfg.method))
        self.validated = len(data.char_targets) + len(self.cap_labels) > 0  # a refit on every captcha has none
        self.held_x = torch.from_numpy(np.stack([self.pre(im) for im in held[0]])) if held[0] else torch.zeros(0)
        # what trains and what validation reads: with frozen stages cached, from their output (for validation
        # computed once, ``read_inputs``) through the rest
        self.net = Trainable(model, self.stop if self.cached else None)
        self._read_inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._select = _selector(held[1], charset, data.length, cfg.method)
        self.went_on = bool(recipe.get("warm_start"))  # from the chosen probe's weights: warmed up already
        self.lr = cfg.peak_lr / WARM_LR_DIVISOR if self.went_on else cfg.peak_lr
        self.opt = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg.optimizer, self.lr,
                                  cfg.weight_decay)
        self.batch = max(1, cfg.batch // world)  # the global batch is split across processes
        self.steps_per_epoch = math.ceil((len(self.targets) // world) / self.batch)
        self.sched = self.schedule(cfg.epochs)
        self.loss_fn = CTCLoss() if cfg.method == "ctc" else nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.history: list[dict[str, Any]] = []
        self.first_epoch = 0
        self.keeper = EpochKeeper(len(held[0]), cfg.epochs)
        self.train_seconds = self.val_seconds = 0.0
        self._pass: dict[int, torch.Tensor] = {}
        self._written: float | None = None  # when the state to resume from was last written (this process)
        self._kept: dict[str, Any] | None = None  # the epoch kept, where it is not written yet

    def schedule(self, epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
        """The learning-rate schedule over ``epochs`` (no warm-up going on from the probe's weights)."""
        return make_schedule(self.opt, self.cfg.schedule, self.lr, self.steps_per_epoch * epochs,
                             warmup=0.0 if self.went_on else WARMUP)

    def restore(self, resume: dict[str, Any], last_path: Path, say: Callable[[str], None]) -> None:
        """Pick up an interrupted run from its last file: weights, optimizer, schedule, history and the epoch kept."""
        cfg = self.cfg
        self.model.load_state_dict(resume["model"])
        self.opt.load_state_dict(resume["optimizer"])
        self.history = list(resume["history"])
        self.first_epoch = int(resume["epoch"]) + 1
        if resume["train_config"]["epochs"] == cfg.epochs:
            self.sched.load_state_dict(resume["scheduler"])
        elif self.first_epoch < cfg.epochs:  # a longer run: follow its schedule from the step reached
            fast_forward(self.sched, self.first_epoch * self.steps_per_epoch)
        self.train_seconds = float(resume["metrics"].get("train_seconds", 0.0))
        for h in self.history:  # the same choice of the epoch kept as without the kill
            self.keeper.update(h.get("select", {}), h["epoch"])
        say(f"resuming from {last_path} at epoch {self.first_epoch + 1}/{cfg.epochs}" if self.first_epoch < cfg.epochs
            else f"resuming from {last_path}: all {cfg.epochs} epochs were trained already, so nothing more is "
            "(--epochs N with --resume trains on to epoch N)")

    def announcement(self) -> str:
        """What the fit trains on, how, and what judges it."""
        cfg, data, pre = self.cfg, self.data, self.pre
        unit = "whole captchas" if cfg.method == "ctc" else "character crops"
        held = len(self.held[0])
        choice = (f"choosing the epoch kept on {held} held out of them" if held else
                  "keeping the last epoch (none of them held out to choose by)")
        checks = " and ".join(f"{n} {what}" for n, what in ((len(data.char_images), "chars"),
                                                            (len(data.captchas), "captchas")) if n) or "nothing"
        return (f"training on {len(self.targets)} {unit} ({data.split['layout']} layout, input {pre.size[0]}x"
                f"{pre.size[1]}, {cfg.epochs} epochs"
                + (f", going on from the probe at a peak rate of {self.lr:.2g} with no warm-up" if self.went_on else "")
                + f"), {choice}, validating on {checks}; "
                f"pretrained={self.source}, freeze={cfg.freeze}, "
                f"{'cached features after ' + self.stop if self.cached else 'plain path'}"
                + (f", {self.model.width} channels in layer4 and {self.model.layer3_inner} inside each layer3 block"
                   if cfg.method == "ctc" else "")
                + (f", {self.world} processes" if self.world > 1 else ""))

    def read_inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What :attr:`net` reads of the validation characters, the validation captchas and the held-out slice:
        the inputs, or, where the fit caches the frozen stages' output, that output (computed at the first call:
        those stages never change)."""
        if self._read_inputs is None:
            xs = (self.char_x, self.cap_x, self.held_x)
            self._read_inputs = tuple(frozen_outputs(self.model, x, self.stop, self.bf16)
                                      if self.cached and len(x) else x for x in xs)  # type: ignore[assignment]
        return self._read_inputs  # type: ignore[return-value]

    def reader_of(self, ckpt: dict[str, Any]) -> nn.Module:
        """The network of ``ckpt`` (one of this fit's epochs) as it reads :meth:`read_inputs`: where the fit caches
        its frozen stages' output, from that output (the stages are the fit's, which never change)."""
        return Trainable(model_from_checkpoint(ckpt).to(device_of(self.model)), self.stop if self.cached else None)

    def scores(self) -> dict[str, Any]:
        """The model's figures on the validation data."""
        char_x, cap_x, _ = self.read_inputs()
        return validate(self.net, char_x, np.asarray(self.data.char_targets), cap_x, self.cap_labels,
                        self.charset, self.data.length, self.cfg.method)

    def select(self) -> dict[str, Any]:
        """The model's figures on the held-out slice, which choose the epoch kept."""
        return self._select(self.net, self.read_inputs()[2])

    def payload(self, history: list[dict[str, Any]], train_seconds: float) -> dict[str, Any]:
        """The checkpoint of the model as it is now."""
        return _payload(self.cfg, self.model, self.charset, self.pre, self.data, self.source, self.recipe, history,
                        train_seconds)

    def start_competes(self, out: Path, say: Callable[[str], None], from_probe: bool) -> None:
        """Score the untrained start as epoch 0 and write it as the checkpoint kept until an epoch beats it."""
        start = {"epoch": 0, "loss": None, "train_seconds": 0.0, "select": self.select(), **self.scores()}
        self.keeper.update(start["select"], 0)
        save_checkpoint(self.payload([start], 0.0), out)
        if self.held[0]:
            say(f"before training ({'the chosen probe' if from_probe else self.source}): held-out training slice "
                f"{100 * self.keeper.best_acc:.2f}%")

    def run_epochs(self, out: Path, last_path: Path, for_refit: dict[str, Any], rank: int, device: torch.device,
               deadline: float | None, refitting: bool, say: Callable[[str], None], progress: bool) -> None:
        """Train the planned epochs (fewer where ``deadline`` comes first), writing the epoch kept to ``out`` and
        the state to resume from to ``last_path`` (with ``for_refit``), as :meth:`judge` says."""
        cfg = self.cfg
        net: nn.Module = self.net
        if self.world > 1:
            net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        least = min(cfg.epochs, REFIT_MIN_EPOCHS) if refitting else AUTO_EPOCHS[0]
        if rank == 0:
            self.read_inputs()  # what validation reads, prepared once before the epochs' pace is timed
        paced = (time.perf_counter(), self.first_epoch)  # the pace of the epochs is timed from here
        for epoch in range(self.first_epoch, cfg.epochs):
            if epoch >= cfg.epochs:  # shortened below
                break
            if deadline is not None and epoch > paced[1]:
                self.hold_to(deadline, epoch, (time.perf_counter() - paced[0]) / (epoch - paced[1]), least,
                             refitting, say)
            kept_pass = self.keeps_passes and epoch % self.passes not in self._pass
            loss = self.one_epoch(net, epoch, rank, say, progress)
            if rank == 0:  # rank 0 validates and writes; DDP keeps every rank's weights identical
                self.judge(epoch, loss, out, last_path, for_refit, say)
            if kept_pass:  # the epochs after one that prepared a pass kept for them are quicker: timed apart
                paced = (time.perf_counter(), epoch + 1)

    def hold_to(self, deadline: float, epoch: int, epoch_seconds: float, least: int, refitting: bool,
                say: Callable[[str], None]) -> None:
        """Before ``epoch``: where the epochs left would end past ``deadline``, run only those that fit (never fewer
        than ``least`` in all, nor than one more), the rate annealed by the new last epoch; a refit that cannot
        have ``least`` stops (:class:`RefitStopped`), as one the budget cannot hold is not begun."""
        cfg = self.cfg
        epochs = fit_epochs(cfg.epochs, epoch, epoch_seconds, deadline)
        if refitting and epochs < least:
            raise RefitStopped({"planned": cfg.epochs, "after": epoch, "epoch_seconds": epoch_seconds, "fit": epochs})
        epochs = max(epochs, epoch + 1, least)  # one more at least, in which the rate anneals
        if epochs >= cfg.epochs:
            return
        say(f"the {'refit' if refitting else 'fit'}'s epochs take {epoch_seconds:.1f}s each, longer than "
            f"planned (a slower or busier machine): {epochs} of the {cfg.epochs} planned fit in --budget "
            f"{cfg.budget:g}s, and the rate now anneals by epoch {epochs} (a larger --budget trains all "
            f"{cfg.epochs})")
        self.recipe["shortened"] = {"planned": cfg.epochs, "epochs": epochs, "after": epoch,
                                    "epoch_seconds": epoch_seconds}
        cfg.epochs = self.keeper.epochs = epochs
        self.sched = self.schedule(epochs)
        fast_forward(self.sched, epoch * self.steps_per_epoch)

    def one_epoch(self, net: nn.Module, epoch: int, rank: int, say: Callable[[str], None], progress: bool) -> float:
        """One pass over the fit's samples (this process's share); returns its mean loss."""
        cfg = self.cfg
        t0 = time.perf_counter()
        pass_id = epoch % self.passes
        if pass_id not in self._pass:
            x = pass_images(self.fit[0], self.transform, cfg.seed, pass_id)
            x = frozen_outputs(self.model, x, self.stop, self.bf16) if self.cached else x
            self._pass = {**self._pass, pass_id: x} if self.keeps_passes else {pass_id: x}
        bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   leave=False)
        running: list[float] = []

        def on_batch(b: int, loss: float, _seconds: float) -> None:
            if epoch == 0 and b == 0 and cfg.method == "classify":
                classes = len(self.charset)
                say(f"first batch loss {loss:.3f} (a fresh {classes}-way head starts near "
                    f"ln({classes}) = {math.log(classes):.2f})")
            running.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(running[-20:]):.3f}")

        order = _order(len(self.targets), cfg.seed, epoch)
        order = order[: len(order) - len(order) % self.world][rank::self.world]
        loss = train_one_epoch(net, indexed_batches(self._pass[pass_id], self.targets, order, self.batch), self.opt,
                               self.sched, self.loss_fn, on_batch=on_batch, bf16=self.bf16)
        bar.close()
        self.train_seconds += time.perf_counter() - t0
        return loss

    def judge(self, epoch: int, loss: float, out: Path, last_path: Path, for_refit: dict[str, Any],
              say: Callable[[str], None]) -> None:
        """Score the epoch just trained, say so, and write the epoch kept to ``out`` and the state to resume from
        to ``last_path``: after the first and the last epoch, else once ``RESUME_SECONDS`` have passed since the
        last write."""
        t0 = time.perf_counter()
        metrics = self.scores()
        self.val_seconds += time.perf_counter() - t0
        held_metrics = self.select()
        self.history.append({"epoch": epoch + 1, "loss": loss, "train_seconds": self.train_seconds, **metrics,
                             "select": held_metrics})
        char_acc = metrics.get("char_acc", metrics.get("captcha_char_acc", float("nan")))
        held_acc = EpochKeeper.accuracy(held_metrics)
        held = bool(self.held[0])
        val = (("; " if held else ", ") + f"val char acc {100 * char_acc:.2f}%, full-string acc "
               f"{100 * metrics.get('string_acc', float('nan')):.2f}%") if self.validated else ""
        say(f"epoch {epoch + 1}/{self.cfg.epochs}: loss {loss:.4f}"
            + (f", held-out training slice {100 * held_acc:.2f}%" if held else "") + val
            + f" ({self.train_seconds:.1f}s)")
        payload = self.payload(self.history, self.train_seconds)
        # the val figures above are reported, never used to choose: the held-out slice chooses
        if self.keeper.update(held_metrics, epoch + 1):
            self._kept = payload
        if self._written is not None and epoch + 1 < self.cfg.epochs and \
                time.perf_counter() - self._written < RESUME_SECONDS:
            if self._kept is payload:  # written later, after the weights have moved on: a copy of these
                self._kept = {**payload, "history": list(self.history),
                              "model": {k: v.clone() for k, v in payload["model"].items()}}
            return
        if self._kept is not None:  # first: the file to resume from never names an epoch kept that is not written
            save_checkpoint(self._kept, out)
            self._kept = None
        save_checkpoint({**payload, "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                         **for_refit}, last_path)
        self._written = time.perf_counter()


@dataclass
class EpochKeeper:
    """Which epoch to keep, from the held-out slice's score after each epoch.

    The epoch kept is the one the slice scores best (every epoch when nothing is held out), except
    that the annealed last epoch wins when it is as good within the slice's noise as the best trained
    epoch (not as the start, epoch 0, which a fine-tune must at least match). Every planned epoch
    trains: the budget has already priced them, and a slice of a few dozen captchas dips by chance
    while the rate is high (stopping there, lso-halftone-upper6 from 200 captchas read 57.2%; with
    the schedule run out, 76.8%).
    """

    held: int  # samples in the slice
    epochs: int
    best: tuple[float, float] = (-2.0, -2.0)
    best_acc: float = 0.0
    best_epoch: int = -1

    @staticmethod
    def accuracy(metrics: dict[str, Any]) -> float:
        """The slice's accuracy: per character, or per whole captcha for ctc."""
        return metrics.get("char_acc", metrics.get("string_acc", float("nan")))

    def update(self, metrics: dict[str, Any], epoch: int) -> bool:
        """Record an epoch's slice metrics; True when it is the epoch to keep (so far)."""
        acc, scored = self.accuracy(metrics), score(metrics)
        # a trained epoch that reads the slice as well as the untrained start (epoch 0) replaces it: on
        # a slice of 3 captchas a tie says nothing, and the fine-tune has learned the site's labels
        keep = scored > self.best or not self.held or (self.best_epoch == 0 and scored == self.best)
        if keep:
            self.best = scored
        elif epoch == self.epochs and self.best_epoch > 0 and \
                acc >= self.best_acc - noise((self.best_acc + acc) / 2, self.held):
            # the spread of the difference is taken at the two epochs' pooled accuracy (a two-proportion
            # test), not at the best's: at a best of 100% the best's own spread is nil, and on a slice of 3
            # captchas an early epoch that read all three displaced the annealed last one that read one
            keep = True
        if keep:
            self.best_acc, self.best_epoch = acc, epoch
        return keep


def noise(accuracy: float, n: int) -> float:
    """How far an accuracy measured on ``n`` samples moves by chance: two standard errors, plus a
    sample and a half (near 100% the standard error alone would call one sample a change)."""
    n = max(n, 1)
    return 2 * math.sqrt(max(accuracy * (1 - accuracy), 0.0) / n) + 1.5 / n


def _selector(targets: list, charset: Charset, length: int,
              method: str) -> Callable[[nn.Module, torch.Tensor], dict[str, Any]]:
    """Scores a network on the held-out slice of the training data given its inputs (characters, or whole
    captchas for ctc), whose ``targets`` these are."""
    if not len(targets):
        return lambda _net, _x: {}
    if method == "ctc":
        labels = [charset.decode(t) for t in targets]
        return lambda net, x: validate(net, torch.zeros(0), np.zeros(0), x, labels, charset, length, method)
    y = np.asarray(targets)
    return lambda net, x: validate(net, x, y, torch.zeros(0), [], charset, length, method)


def _validation_inputs(data: TrainingData, preparer: Preparer) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Network inputs of the validation characters and captchas, prepared as solving prepares them."""
    char_x = torch.from_numpy(np.stack([preparer.pre(im) for im in data.char_images])) if data.char_images \
        else torch.zeros(0)
    cap_x = torch.from_numpy(np.concatenate([preparer.inputs(im) for im, _ in data.captchas])) if data.captchas \
        else torch.zeros(0)
    return char_x, cap_x, [lab for _, lab in data.captchas]


def fast_forward(sched: Any, steps: int) -> None:
    """Advance a fresh per-step schedule by ``steps`` without training (resuming with new --epochs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": intended here
        for _ in range(steps):
            sched.step()


def _payload(cfg: TrainConfig, model: CharNet, charset: Charset, pre: Preprocess, data: TrainingData, source: str,
             recipe: dict[str, Any], history: list[dict[str, Any]], train_seconds: float) -> dict[str, Any]:
    conf = cfg.to_dict()
    conf["size"] = list(pre.size)  # the size actually used (a resumed run keeps it)
    return {"kind": "recognizer", "arch": ARCH, "charset": charset.to_dict(), "preprocess": pre.to_dict(),
            "length": data.length, "segment": data.segment.to_dict(), "pretrained": source, "freeze": cfg.freeze,
            # where the lengths vary (length 0), the ones learned: solving holds a reading of another to them
            "lengths": sorted(data.label_lengths()) if cfg.method == "ctc" and not data.length else [],
            "recipe": recipe,
            "method": cfg.method, "width": model.width, "layer3_inner": model.layer3_inner,
            "captcha_size": data.captcha_size,
            "train_config": conf, "epoch": history[-1]["epoch"] - 1,
            "metrics": {**history[-1], "train_seconds": train_seconds}, "history": history, "split": data.split,
            "environment": environment(), "command": " ".join(["captcha"] + sys.argv[1:]),
            "model": model.state_dict()}
