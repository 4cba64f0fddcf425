"""The one training loop (torchvision-references style): ``train_one_epoch`` and ``validate``.

``captcha train``, ``captcha pretrain`` and the CIFAR-10 bench all step through
:func:`train_one_epoch`; per-epoch validation and `captcha eval` share the metrics of ``eval.metrics``.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, TensorDataset

from ..charset import Charset
from ..config import OPTIMIZERS, SCHEDULES, WARMUP
from ..errors import ConfigError
from ..eval.metrics import char_metrics, string_metrics
from ..inference.backends import TorchBackend, run_batched
from ..inference.decode import decode
from ..nn.convgrad import gemm_weight_grads
from ..nn.device import autocast, device_of
from ..nn.networks import CharNet

Batch = tuple[torch.Tensor, torch.Tensor]


def make_optimizer(params, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW (default) or the course's SGD with momentum 0.9."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer {name!r}; only {', '.join(OPTIMIZERS)} are supported")


def make_schedule(opt: torch.optim.Optimizer, name: str, lr: float, total_steps: int,
                  warmup: float = WARMUP) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step learning-rate schedule; ``onecycle`` warms up over the ``warmup`` share of its steps
    (0: at least two, the least OneCycleLR takes)."""
    if name == "onecycle":
        if total_steps < 4:  # too short to warm up and anneal
            return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
        # at least two warm-up steps: OneCycleLR divides by (warm-up steps - 1)
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps,
                                                   pct_start=max(warmup, 2.5 / total_steps))
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps))
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    raise ConfigError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")


class CTCLoss(nn.Module):
    """CTC over per-column logits (N, T, chars + blank) and targets (N, L), each padded with -1 after
    its own length (all L long when the captchas have one length)."""

    def __init__(self) -> None:
        super().__init__()
        self.ctc = nn.CTCLoss(zero_infinity=True)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        n, t, c = logits.shape
        self.ctc.blank = c - 1
        log_probs = logits.log_softmax(-1).transpose(0, 1)
        return self.ctc(log_probs, targets.clamp(min=0), torch.full((n,), t, dtype=torch.long),
                        (targets >= 0).sum(1))


class Trainable(nn.Module):
    """What trains: from an image, or from the cached output of frozen stage ``start``, to the logits.

    Wrapping this (not the whole model) in DDP keeps frozen stages out of gradient sync.
    """

    def __init__(self, model: CharNet, start: str | None = None) -> None:
        super().__init__()
        self.model, self.start = model, start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.head_from(x, self.start) if self.start is not None else self.model(x)


def target_tensor(targets: list) -> torch.Tensor:
    """Training targets as one tensor: class indices (character crops), or each captcha's label indices
    padded with -1 to the longest label (whole captchas, for :class:`CTCLoss`; a site's lengths may vary)."""
    if not targets or not isinstance(targets[0], (list, tuple)):
        return torch.tensor(targets, dtype=torch.long)
    out = torch.full((len(targets), max(map(len, targets))), -1, dtype=torch.long)
    for row, t in zip(out, targets):
        row[: len(t)] = torch.tensor(t, dtype=torch.long)
    return out


def indexed_batches(inputs: torch.Tensor, targets: torch.Tensor, order: torch.Tensor, batch_size: int) -> DataLoader:
    """The course's Dataset + DataLoader over tensors held in memory, batches drawn in ``order``.

    The sampler hands whole index lists to the dataset, so a batch is one tensor gather, not
    ``batch_size`` item lookups and a collate.
    """
    sampler = BatchSampler(order.tolist(), batch_size, drop_last=False)
    return DataLoader(TensorDataset(inputs, targets), sampler=sampler, batch_size=None)


def train_one_epoch(net: nn.Module, batches: Iterable[Batch], opt: torch.optim.Optimizer,
                    sched: torch.optim.lr_scheduler.LRScheduler | None, loss_fn: nn.Module,
                    on_batch: Callable[[int, float, float], None] | None = None, bf16: bool = False) -> float:
    """One pass of ``net`` over ``batches``; returns the mean loss per sample.

    ``on_batch(index, loss, seconds)`` is told about each step (progress bars, timing); ``bf16``
    also uses bfloat16 autocast on the CPU (float32 CPU steps take wide convolutions' weight gradients
    as matrix products: ``nn.convgrad``).
    """
    net.train()
    dev = device_of(net)
    total, count = 0.0, 0
    with gemm_weight_grads(net, dev.type == "cpu" and not bf16):
        for b, (x, y) in enumerate(batches):
            t0 = time.perf_counter()
            x = x.to(dev, non_blocking=True)
            if x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(dev, cpu=bf16):
                loss = loss_fn(net(x).float(), y.to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            value = loss.item()
            total += value * len(y)
            count += len(y)
            if on_batch:
                on_batch(b, value, time.perf_counter() - t0)
    return total / max(count, 1)


@torch.inference_mode()
def frozen_outputs(model: CharNet, x: torch.Tensor, stop: str, bf16: bool = False,
                   batch_size: int = 512) -> torch.Tensor:
    """Outputs of the frozen stages up to ``stop`` (the cached features); ``bf16`` computes them under bfloat16
    autocast on the CPU too, as training steps are (half the time of float32 on native bf16 cores)."""
    model.eval()
    dev = device_of(model)
    with autocast(dev, cpu=bf16):
        outs = [model.forward_stages(x[i:i + batch_size].to(dev).contiguous(memory_format=torch.channels_last),
                                     stop=stop).float() for i in range(0, len(x), batch_size)]
    return torch.cat(outs).contiguous()


def predict(model: nn.Module, x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Logits of ``model`` over ``x`` in batches, on the model's device."""
    return run_batched(TorchBackend(model, device=str(device_of(model))), np.asarray(x))


def validate(model: nn.Module, char_x: torch.Tensor, char_y: np.ndarray, cap_x: torch.Tensor,
             cap_labels: list[str], charset: Charset, length: int, method: str = "classify") -> dict[str, Any]:
    """Character accuracy on val crops and full-string accuracy on val captchas, read by ``model`` (a network,
    or a :class:`Trainable` from cached frozen features, which ``char_x`` and ``cap_x`` then are)."""
    out: dict[str, Any] = {}
    if len(char_x):
        out.update(char_metrics(predict(model, char_x).argmax(1), char_y))
    if len(cap_x):
        logits = predict(model, cap_x)
        logits = logits.reshape(len(cap_labels), -1, logits.shape[-1])
        out.update(string_metrics([s.text for s in decode(logits, charset, method, length)], cap_labels))
    return out
