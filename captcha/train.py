"""Training the per-character classifier the course's way: pretrained ResNet-18, frozen stages, new head.

``train(cfg)`` is the whole job behind `captcha train`; ``train_one_epoch`` and ``validate`` are the
plain loop functions. With frozen stages, the frozen part is a fixed feature extractor: its output
is computed once per augmentation pass and the rest trains on that cache (same result, less work).
"""

from __future__ import annotations

import logging
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .charset import DEFAULT_ALPHABET, Charset
from .checkpoint import load_checkpoint, save_checkpoint
from .errors import ConfigError, DataError
from .evaluate import char_metrics, string_metrics
from .model import ARCH, CharNet, build_model, new_model
from .solve import captcha_inputs
from .synth import seed_for
from .segment import SegmentConfig
from .trainset import TrainingData, load_training_data
from .transforms import AugmentConfig, Preprocess, TrainTransform, whole_captcha_size

log = logging.getLogger(__name__)

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("onecycle", "cosine", "constant")


@dataclass
class TrainConfig:
    """Everything that defines a training run; stored in the checkpoint."""

    data: str = "data"
    out: str = "checkpoints/model.pt"
    charset: str = DEFAULT_ALPHABET
    pretrained: str = "auto"
    freeze: str | None = None  # None: all with a pretrained backbone, none without
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float | None = None  # None: 2e-3 for AdamW, 0.05 for SGD
    schedule: str = "onecycle"
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    seed: int = 0
    size: tuple[int, int] | None = None  # None: 32x32 crops (classify); whole captchas (ctc) near native scale
    method: str = "classify"  # or "ctc": segmentation-free, reads the whole captcha
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    aug_passes: int | None = None  # distinct augmentation passes cycled over the epochs (None: one per epoch)
    cache_features: bool = True
    length: int | None = None  # None: from the labels (4 for the course data)
    split: str = "auto"  # auto: equal cells for course data, else the splitter a quick probe reads best
    val_fraction: float = 0.2  # flat folders of captchas only
    resume: bool = False
    synth_if_missing: bool = False  # the CLI sets it when --data is not given
    device: str = "auto"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """The config a checkpoint recorded (``asdict`` form), ignoring keys this version does not know."""
        known = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in known}
        kw["augment"] = AugmentConfig.from_dict(d.get("augment") or {})
        kw["size"] = tuple(d["size"]) if d.get("size") else None
        return cls(**kw)


RESUME_OVERRIDES = ("epochs", "out", "device", "resume", "synth_if_missing")  # what a --resume command may change; the rest is recorded


def default_freeze(method: str, single_chars: bool) -> str:
    """The course's rule, by how far the target is from the pretraining glyphs (measured, see README).

    Clean single-character images are close: freeze everything and train the head. Crops cut from
    real captchas (lines, noise, neighbours, other fonts) are far: fine-tune it all (sysu_alnum4,
    3 epochs: frozen 22.6%, layer3 45.7%, layer2 54.3%, nothing frozen 86.1% full-string).
    Whole captchas (ctc) likewise.
    """
    return "all" if single_chars and method == "classify" else "none"


def make_optimizer(params, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW (default) or the course's SGD with momentum 0.9."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer {name!r}; only {', '.join(OPTIMIZERS)} are supported")


def make_schedule(opt: torch.optim.Optimizer, name: str, lr: float, total_steps: int):
    """Per-step learning-rate schedule."""
    if name == "onecycle":
        if total_steps < 4:  # too short to warm up and anneal
            return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
        # at least two warm-up steps: OneCycleLR divides by (warm-up steps - 1)
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps,
                                                   pct_start=max(0.2, 2.5 / total_steps))
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps))
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    raise ConfigError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")


def _pass_images(images: list, transform: TrainTransform, seed: int, pass_id: int) -> torch.Tensor:
    """One augmentation pass over the training crops, reproducible from (seed, pass)."""
    return torch.from_numpy(np.stack([transform(im, seed_for(seed, "aug", pass_id, i)) for i, im in enumerate(images)]))


def _order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed_for(seed, "order", epoch) % (2 ** 63))
    return torch.randperm(n, generator=g)


class CTCLoss(nn.Module):
    """CTC over per-column logits (N, T, chars + blank) with fixed-length targets (N, L)."""

    def __init__(self) -> None:
        super().__init__()
        self.ctc = nn.CTCLoss(zero_infinity=True)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        n, t, c = logits.shape
        self.ctc.blank = c - 1
        log_probs = logits.log_softmax(-1).transpose(0, 1)
        return self.ctc(log_probs, targets, torch.full((n,), t, dtype=torch.long),
                        torch.full((n,), targets.shape[1], dtype=torch.long))


class Trainable(nn.Module):
    """What trains: from an image, or from the cached output of frozen stage ``start``, to the logits.

    Wrapping this (not the whole model) in DDP keeps frozen stages out of gradient sync.
    """

    def __init__(self, model: CharNet, start: str | None = None) -> None:
        super().__init__()
        self.model, self.start = model, start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.head_from(x, self.start) if self.start is not None else self.model(x)


def train_one_epoch(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, order: torch.Tensor,
                    opt: torch.optim.Optimizer, sched, loss_fn: nn.Module, batch_size: int,
                    on_batch: Callable[[int, float], None] | None = None) -> float:
    """One pass of ``net`` (a :class:`Trainable`, maybe DDP-wrapped) over ``inputs``; returns mean loss."""
    net.train()
    dev = _device_of(net)
    total, count = 0.0, 0
    for b, i in enumerate(range(0, len(order), batch_size)):
        idx = order[i:i + batch_size]
        x = inputs[idx].to(dev, non_blocking=True)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(dev):
            logits = net(x)
            loss = loss_fn(logits.float(), targets[idx].to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += loss.item() * len(idx)
        count += len(idx)
        if on_batch:
            on_batch(b, loss.item())
    return total / max(count, 1)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here (use auto or cpu)")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return torch.device(name)


def distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun (gloo on CPU, nccl on GPU)."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _autocast(dev: torch.device):
    """Mixed precision (bf16) on CUDA; full precision on the CPU, where bf16 convolutions are slower here."""
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")


@torch.inference_mode()
def frozen_outputs(model: CharNet, x: torch.Tensor, stop: str, batch_size: int = 512) -> torch.Tensor:
    """Outputs of the frozen stages up to ``stop`` (the cached features)."""
    model.eval()
    dev = _device_of(model)
    with _autocast(dev):
        outs = [model.forward_stages(x[i:i + batch_size].to(dev).contiguous(memory_format=torch.channels_last),
                                     stop=stop).float() for i in range(0, len(x), batch_size)]
    return torch.cat(outs).contiguous()


@torch.inference_mode()
def validate(model: CharNet, char_x: torch.Tensor, char_y: np.ndarray, cap_x: torch.Tensor,
             cap_labels: list[str], charset: Charset, length: int, method: str = "classify") -> dict[str, Any]:
    """Character accuracy on val crops and full-string accuracy on val captchas."""
    model.eval()
    dev = _device_of(model)

    def forward(x):
        with _autocast(dev):
            return model(x.to(dev).contiguous(memory_format=torch.channels_last)).float().cpu().numpy()

    out: dict[str, Any] = {}
    if len(char_x):
        pred = np.concatenate([forward(char_x[i:i + 512]) for i in range(0, len(char_x), 512)]).argmax(1)
        out.update(char_metrics(pred, char_y))
    if len(cap_x):
        logits = np.concatenate([forward(cap_x[i:i + 512]) for i in range(0, len(cap_x), 512)])
        if method == "ctc":
            from .solve import _softmax, ctc_decode

            texts = [s.text for s in ctc_decode(_softmax(logits), charset)]
        else:
            texts = [charset.decode(r) for r in logits.argmax(1).reshape(-1, length)]
        out.update(string_metrics(texts, cap_labels))
    return out


def _score(m: dict[str, Any]) -> tuple[float, float]:
    s = m.get("string_acc", float("nan"))
    c = m.get("char_acc", m.get("captcha_char_acc", float("nan")))
    return (s if s == s else -1.0, c if c == c else -1.0)


def environment() -> dict[str, str]:
    """Library versions recorded in checkpoints, for reproducibility."""
    import albumentations
    import PIL
    import torchvision

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
    from .synth import SynthConfig, synth_dataset

    say(f"{root} not found: generating the synthetic course dataset there first (captcha data synth --out {root})")
    synth_dataset(root, SynthConfig(seed=cfg.seed))


def train(cfg: TrainConfig, say: Callable[[str], None] = log.info, progress: bool = False) -> dict[str, Any]:
    """Train a recognizer as configured; writes the best checkpoint to ``cfg.out``; returns the result."""
    torch.manual_seed(cfg.seed)
    rank, world = distributed()
    if rank != 0:
        say, progress = (lambda _msg: None), False
    if rank == 0:
        ensure_data(cfg, say)
    _barrier(world)
    out = Path(cfg.out)
    last_path = out.with_name(out.stem + ".last.pt")
    resume = load_checkpoint(last_path, kind="recognizer") if cfg.resume and last_path.is_file() else None
    if cfg.resume and resume is None:
        say(f"--resume: no {last_path} yet, starting afresh")
    if resume:
        cfg = resumed_config(cfg, resume["train_config"])
    charset = Charset(cfg.charset)
    if resume:
        # Everything that shaped the interrupted run comes from its checkpoint: the weights below
        # replace the start point, and the splitter is not chosen again.
        data = load_training_data(cfg, charset, SegmentConfig.from_dict(resume["segment"]))
        model, source, freeze = new_model(cfg.method, len(charset)), resume["pretrained"], resume["freeze"]
    else:
        data = load_training_data(cfg, charset)
        model, source = build_model(len(charset), cfg.pretrained, "none", cfg.method)
        if source == "none" and cfg.pretrained == "auto":
            say("no pretrained backbone found: training from random initialisation with full fine-tuning "
                "(get one with `captcha pretrain --source glyphs`, or put ImageNet's resnet18-f37072fd.pth "
                "in $TORCH_HOME/hub/checkpoints/)")
        # The course's rule: with a backbone pretrained on a similar task and little target data, freeze
        # it all and train the head; without one, train everything.
        freeze = cfg.freeze or ("none" if source == "none" else default_freeze(cfg.method, data.single_chars))
    model.freeze(freeze)
    device = resolve_device(cfg.device)
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
    char_x = torch.from_numpy(np.stack([pre(im) for im in data.char_images])) if data.char_images else torch.zeros(0)
    if cfg.method == "ctc":
        cap_x = torch.from_numpy(np.stack([pre(im) for im, _ in data.captchas])) if data.captchas else torch.zeros(0)
    else:
        cap_x = torch.from_numpy(np.concatenate([captcha_inputs(im, data.length, data.segment, pre)
                                                 for im, _ in data.captchas])) if data.captchas else torch.zeros(0)
    cap_labels = [lab for _, lab in data.captchas]
    lr = cfg.lr or (2e-3 if cfg.optimizer == "adamw" else 0.05)
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
        best = max((_score(h) for h in history), default=best)
        say(f"resuming from {last_path} at epoch {start_epoch + 1}/{cfg.epochs}")
    unit = "whole captchas" if cfg.method == "ctc" else "character crops"
    say(f"training on {len(targets)} {unit} ({data.split['layout']} layout, input {pre.size[0]}x{pre.size[1]}), "
        f"validating on {len(data.char_images)} chars and {len(data.captchas)} captchas; "
        f"pretrained={source}, freeze={freeze}, {'cached features after ' + stop if cached else 'plain path'}"
        + (f", {world} processes" if world > 1 else ""))
    net: nn.Module = Trainable(model, stop if cached else None)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    from tqdm import tqdm

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

        def on_batch(b: int, loss: float) -> None:
            if epoch == 0 and b == 0 and cfg.method == "classify":
                say(f"first batch loss {loss:.3f} (a fresh {len(charset)}-way head starts near "
                    f"ln({len(charset)}) = {math.log(len(charset)):.2f})")
            running.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(running[-20:]):.3f}")

        order = _order(len(targets), cfg.seed, epoch)
        order = order[: len(order) - len(order) % world][rank::world]
        loss = train_one_epoch(net, inputs, targets, order, opt, sched, loss_fn, rank_batch, on_batch=on_batch)
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
        if _score(metrics) > best:
            best = _score(metrics)
            save_checkpoint(payload, out)
        save_checkpoint({**payload, "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, last_path)
    _barrier(world)
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
        if rank != 0:
            return {"checkpoint": str(out), "rank": rank, "train_seconds": train_seconds}
    final = load_checkpoint(out, kind="recognizer") if out.is_file() else None
    curve = out.with_name(out.stem + ".curve.png")
    from .plots import training_curve

    training_curve(history, curve, title=f"{out.name}: pretrained={source}, freeze={freeze}")
    return {"checkpoint": str(out), "curve": str(curve), "history": history,
            "best": final["metrics"] if final else {}, "train_seconds": train_seconds}


def resumed_config(given: TrainConfig, recorded: dict[str, Any]) -> TrainConfig:
    """The interrupted run's recorded config, with only :data:`RESUME_OVERRIDES` taken from ``given``."""
    cfg = TrainConfig.from_dict(recorded)
    for name in RESUME_OVERRIDES:
        setattr(cfg, name, getattr(given, name))
    return cfg


def fast_forward(sched: Any, steps: int) -> None:
    """Advance a fresh per-step schedule by ``steps`` without training (resuming with new --epochs)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": intended here
        for _ in range(steps):
            sched.step()


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _payload(cfg: TrainConfig, model: CharNet, charset: Charset, pre: Preprocess, data: TrainingData, source: str,
             freeze: str, history: list[dict[str, Any]], train_seconds: float) -> dict[str, Any]:
    conf = asdict(cfg)
    conf["size"] = list(pre.size)
    conf["augment"] = cfg.augment.to_dict()
    conf["augment"]["scale"] = list(cfg.augment.scale)
    return {"kind": "recognizer", "arch": ARCH, "charset": charset.to_dict(), "preprocess": pre.to_dict(),
            "length": data.length, "segment": data.segment.to_dict(), "pretrained": source, "freeze": freeze,
            "method": cfg.method, "train_config": conf, "epoch": history[-1]["epoch"] - 1,
            "metrics": {**history[-1], "train_seconds": train_seconds}, "history": history, "split": data.split,
            "environment": environment(), "command": " ".join(["captcha"] + sys.argv[1:]),
            "model": model.state_dict()}
