"""`captcha train`: the course's transfer learning, pretrained ResNet-18, frozen stages, new head.

``train(cfg)`` is the whole job. It reads the data (``dataset``), builds the network from a
pretrained source and freezes it by the course's rule, and steps through the one loop (``loop``).
With frozen stages, the frozen part is a fixed feature extractor: its output is computed once per
augmentation pass and the rest trains on that cache (same result, less work).
"""

from __future__ import annotations

import logging
import math
import os
import platform
import sys
import time
import warnings
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
from ..config import RESUME_OVERRIDES, SynthConfig, TrainConfig
from ..data.augment import TrainTransform
from ..data.preprocess import Preprocess, whole_captcha_size
from ..data.segment import SegmentConfig
from ..data.synth import seed_for, synth_dataset
from ..errors import DataError
from ..eval.metrics import score
from ..eval.plots import training_curve
from ..inference.solver import Preparer
from ..nn.checkpoint import load_checkpoint, save_checkpoint
from ..nn.device import barrier, distributed, leave_process_group, resolve_device
from ..nn.networks import ARCH, CharNet, build_model, new_model
from .dataset import TrainingData, load_training_data
from .loop import (
    CTCLoss,
    Trainable,
    frozen_outputs,
    indexed_batches,
    make_optimizer,
    make_schedule,
    train_one_epoch,
    validate,
)

log = logging.getLogger(__name__)


def default_freeze(method: str, single_chars: bool) -> str:
    """The course's rule, by how far the target is from the pretraining glyphs (measured, see README).

    Clean single-character images are close: freeze everything and train the head. Crops cut from
    real captchas (lines, noise, neighbours, other fonts) are far: fine-tune it all (sysu_alnum4,
    3 epochs: frozen 22.6%, layer3 45.7%, layer2 54.3%, nothing frozen 86.1% full-string).
    Whole captchas (ctc) likewise.
    """
    return "all" if single_chars and method == "classify" else "none"


def _pass_images(images: list, transform: TrainTransform, seed: int, pass_id: int) -> torch.Tensor:
    """One augmentation pass over the training crops, reproducible from (seed, pass)."""
    return torch.from_numpy(np.stack([transform(im, seed_for(seed, "aug", pass_id, i)) for i, im in enumerate(images)]))


def _order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed_for(seed, "order", epoch) % (2 ** 63))
    return torch.randperm(n, generator=g)


def environment() -> dict[str, str]:
    """Library versions recorded in checkpoints, for reproducibility."""
    return {"python": platform.python_version(), "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
            "numpy": np.__version__, "pillow": PIL.__version__, "albumentations": albumentations.__version__,
            "platform": platform.platform()}


def ensure_data(cfg: TrainConfig, say: Callable[[str], None]) -> None:
    """Generate the synthetic course dataset at ``cfg.data`` only when asked to and it is absent."""
    root = Path(cfg.data)
    if root.is_dir() and any(root.iterdir()):
        return
    if not cfg.synth_if_missing:
        what = "is empty" if root.is_dir() else "is not a folder" if root.exists() else "does not exist"
        raise DataError(f"--data {root}: the dataset folder {what}; check the path (without --data, "
                        "`captcha train` makes the synthetic course dataset in ./data)")
    say(f"{root} not found: generating the synthetic course dataset there first (captcha data synth --out {root})")
    synth_dataset(root, SynthConfig(seed=cfg.seed))


def train(cfg: TrainConfig, say: Callable[[str], None] = log.info, progress: bool = False) -> dict[str, Any]:
    """Train a recognizer as configured; writes the best checkpoint to ``cfg.out``; returns the result."""
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)  # a device that is not there fails before any work
    rank, world = distributed()
    if rank != 0:
        say, progress = (lambda _msg: None), False
    if rank == 0:
        ensure_data(cfg, say)
    barrier(world)
    out = Path(cfg.out)
    last_path = out.with_name(out.stem + ".last.pt")
    resume = load_checkpoint(last_path, kind="recognizer") if cfg.resume and last_path.is_file() else None
    if cfg.resume and resume is None:
        say(f"--resume: no {last_path} yet, starting afresh")
    if resume:
        cfg = resumed_config(cfg, resume["train_config"])
    charset = Charset(cfg.charset)
    data, model, source, freeze = _data_and_network(cfg, charset, resume, say)
    model.freeze(freeze)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    model = model.to(device, memory_format=torch.channels_last)
    default_size = whole_captcha_size([im.size for im in data.train_images]) if cfg.method == "ctc" else (32, 32)
    pre = Preprocess(size=cfg.size or default_size)
    transform = TrainTransform(pre, cfg.augment)
    augmenting = transform.aug is not None
    passes = 1 if not augmenting else (cfg.aug_passes or cfg.epochs)
    targets = torch.tensor(data.train_targets)
    stop = model.frozen_stages()[-1] if model.frozen_stages() else None
    cached = cfg.cache_features and stop is not None
    char_x, cap_x, cap_labels = _validation_inputs(data, Preparer(pre, data.length, data.segment, cfg.method))
    lr = cfg.peak_lr
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg.optimizer, lr, cfg.weight_decay)
    rank_batch = max(1, cfg.batch_size // world)  # the global batch is split across processes
    steps_per_epoch = math.ceil((len(targets) // world) / rank_batch)
    sched = make_schedule(opt, cfg.schedule, lr, steps_per_epoch * cfg.epochs)
    loss_fn = CTCLoss() if cfg.method == "ctc" else nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    history: list[dict[str, Any]] = []
    start_epoch, best = 0, (-2.0, -2.0)
    train_seconds = 0.0
    if resume:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        history = list(resume["history"])
        start_epoch = int(resume["epoch"]) + 1
        if resume["train_config"]["epochs"] == cfg.epochs:
            sched.load_state_dict(resume["scheduler"])
        elif start_epoch < cfg.epochs:  # a longer run: follow its schedule from the step reached
            fast_forward(sched, start_epoch * steps_per_epoch)
        train_seconds = float(resume["metrics"].get("train_seconds", 0.0))
        best = max((score(h) for h in history), default=best)
        say(f"resuming from {last_path} at epoch {start_epoch + 1}/{cfg.epochs}")
    unit = "whole captchas" if cfg.method == "ctc" else "character crops"
    say(f"training on {len(targets)} {unit} ({data.split['layout']} layout, input {pre.size[0]}x{pre.size[1]}), "
        f"validating on {len(data.char_images)} chars and {len(data.captchas)} captchas; "
        f"pretrained={source}, freeze={freeze}, {'cached features after ' + stop if cached else 'plain path'}"
        + (f", {world} processes" if world > 1 else ""))
    net: nn.Module = Trainable(model, stop if cached else None)
    if world > 1:
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    pass_cache: dict[int, torch.Tensor] = {}
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        pass_id = epoch % passes
        if pass_id not in pass_cache:
            x = _pass_images(data.train_images, transform, cfg.seed, pass_id)
            pass_cache = {pass_id: frozen_outputs(model, x, stop) if cached else x}
        inputs = pass_cache[pass_id]
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        running: list[float] = []

        def on_batch(b: int, loss: float, _seconds: float) -> None:
            if epoch == 0 and b == 0 and cfg.method == "classify":
                say(f"first batch loss {loss:.3f} (a fresh {len(charset)}-way head starts near "
                    f"ln({len(charset)}) = {math.log(len(charset)):.2f})")
            running.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(running[-20:]):.3f}")

        order = _order(len(targets), cfg.seed, epoch)
        order = order[: len(order) - len(order) % world][rank::world]
        loss = train_one_epoch(net, indexed_batches(inputs, targets, order, rank_batch), opt, sched, loss_fn,
                               on_batch=on_batch)
        bar.close()
        train_seconds += time.perf_counter() - t0
        if rank != 0:
            continue  # rank 0 validates and writes; DDP keeps every rank's weights identical
        metrics = validate(model, char_x, np.asarray(data.char_targets), cap_x, cap_labels, charset, data.length,
                           cfg.method)
        history.append({"epoch": epoch + 1, "loss": loss, "train_seconds": train_seconds, **metrics})
        char_acc = metrics.get("char_acc", metrics.get("captcha_char_acc", float("nan")))
        say(f"epoch {epoch + 1}/{cfg.epochs}: loss {loss:.4f}, val char acc {100 * char_acc:.2f}%, "
            f"full-string acc {100 * metrics.get('string_acc', float('nan')):.2f}% ({train_seconds:.1f}s)")
        payload = _payload(cfg, model, charset, pre, data, source, freeze, history, train_seconds)
        if score(metrics) > best:
            best = score(metrics)
            save_checkpoint(payload, out)
        save_checkpoint({**payload, "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, last_path)
    barrier(world)
    leave_process_group(world)
    if rank != 0:
        return {"checkpoint": str(out), "rank": rank, "train_seconds": train_seconds}
    final = load_checkpoint(out, kind="recognizer") if out.is_file() else None
    curve = out.with_name(out.stem + ".curve.png")
    training_curve(history, curve, title=f"{out.name}: pretrained={source}, freeze={freeze}")
    return {"checkpoint": str(out), "curve": str(curve), "history": history,
            "best": final["metrics"] if final else {}, "train_seconds": train_seconds}


def _data_and_network(cfg: TrainConfig, charset: Charset, resume: dict[str, Any] | None,
                      say: Callable[[str], None]) -> tuple[TrainingData, CharNet, str, str]:
    """The data, the network with its start weights, where they came from, and the freeze level."""
    if resume:
        # Everything that shaped the interrupted run comes from its checkpoint: its weights replace
        # the start point, and the splitter is not chosen again.
        data = load_training_data(cfg, charset, SegmentConfig.from_dict(resume["segment"]))
        return data, new_model(cfg.method, len(charset)), resume["pretrained"], resume["freeze"]
    data = load_training_data(cfg, charset)
    model, source = build_model(len(charset), cfg.pretrained, "none", cfg.method)
    if source == "none" and cfg.pretrained == "auto":
        say("no pretrained backbone found: training from random initialisation with full fine-tuning "
            "(get one with `captcha pretrain --source glyphs`, or put ImageNet's resnet18-f37072fd.pth "
            "in $TORCH_HOME/hub/checkpoints/)")
    # The course's rule: with a backbone pretrained on a similar task and little target data, freeze
    # it all and train the head; without one, train everything.
    freeze = cfg.freeze or ("none" if source == "none" else default_freeze(cfg.method, data.single_chars))
    return data, model, source, freeze


def _validation_inputs(data: TrainingData, preparer: Preparer) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Network inputs of the validation characters and captchas, prepared as solving prepares them."""
    char_x = torch.from_numpy(np.stack([preparer.pre(im) for im in data.char_images])) if data.char_images \
        else torch.zeros(0)
    cap_x = torch.from_numpy(np.concatenate([preparer.inputs(im) for im, _ in data.captchas])) if data.captchas \
        else torch.zeros(0)
    return char_x, cap_x, [lab for _, lab in data.captchas]


def resumed_config(given: TrainConfig, recorded: dict[str, Any]) -> TrainConfig:
    """The interrupted run's recorded config, with only :data:`RESUME_OVERRIDES` taken from ``given``."""
    cfg = TrainConfig.from_dict(recorded)
    for name in RESUME_OVERRIDES:
        setattr(cfg, name, getattr(given, name))
    return cfg


def fast_forward(sched: Any, steps: int) -> None:
    """Advance a fresh per-step schedule by ``steps`` without training (resuming with new --epochs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": intended here
        for _ in range(steps):
            sched.step()


def _payload(cfg: TrainConfig, model: CharNet, charset: Charset, pre: Preprocess, data: TrainingData, source: str,
             freeze: str, history: list[dict[str, Any]], train_seconds: float) -> dict[str, Any]:
    conf = cfg.to_dict()
    conf["size"] = list(pre.size)  # the size actually used (a resumed run keeps it)
    return {"kind": "recognizer", "arch": ARCH, "charset": charset.to_dict(), "preprocess": pre.to_dict(),
            "length": data.length, "segment": data.segment.to_dict(), "pretrained": source, "freeze": freeze,
            "method": cfg.method, "captcha_size": data.captcha_size, "train_config": conf, "epoch": history[-1]["epoch"] - 1,
            "metrics": {**history[-1], "train_seconds": train_seconds}, "history": history, "split": data.split,
            "environment": environment(), "command": " ".join(["captcha"] + sys.argv[1:]),
            "model": model.state_dict()}
