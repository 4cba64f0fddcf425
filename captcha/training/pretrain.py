"""Pretraining a ResNet-18 backbone offline: on an endless synthetic glyph corpus, or on CIFAR-10.

The glyph corpus is the "task A" of the course's transfer-learning story: far more data than any
user's captcha set, rendered on the fly (never stored) with many fonts, sizes, distortions, noise,
clutter and fragments of neighbouring glyphs, in upper and lower case and digits.
"""

from __future__ import annotations

import itertools
import logging
import random
import string
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from ..config import PretrainConfig
from ..data.cifar import cifar_batches
from ..data.preprocess import Preprocess
from ..data.synth import GlyphStyle, font_files, render_char, seed_for
from ..errors import ConfigError
from ..nn.checkpoint import load_checkpoint, save_checkpoint
from ..nn.networks import ARCH, CharNet
from .loop import make_schedule, predict, train_one_epoch

log = logging.getLogger(__name__)

GLYPH_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase


def random_style(rng: random.Random) -> GlyphStyle:
    """A fresh, harder-than-course style per glyph: varied cell shape, clutter and noise."""
    return GlyphStyle(
        size=(rng.randint(24, 48), rng.randint(30, 48)),
        font_scale=(0.45, 0.95), rotation=25.0, jitter=0.2,
        noise_dots=(0, rng.choice((0, 20, 60))), lines=(0, rng.choice((0, 2, 4))),
        blur=rng.choice((0.0, 0.8, 1.5)), neighbours=0.5,
    )


def render_glyph_sample(index: int, seed: int, pre: Preprocess) -> tuple[np.ndarray, int]:
    """Sample ``index`` of the corpus with ``seed``: (normalised CHW array, class index)."""
    rng = random.Random(seed_for(seed, "glyph", index))
    cls = rng.randrange(len(GLYPH_ALPHABET))
    img = render_char(GLYPH_ALPHABET[cls], rng, random_style(rng), font_files(), neighbour_pool=GLYPH_ALPHABET)
    return pre(img), cls


class GlyphStream(IterableDataset):
    """An endless stream of rendered glyphs; each worker renders its own disjoint indices."""

    def __init__(self, seed: int, pre: Preprocess, start: int = 0) -> None:
        self.seed, self.pre, self.start = seed, pre, start

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        i = self.start + wid
        while True:
            yield render_glyph_sample(i, self.seed, self.pre)
            i += nw


def heldout_set(pre: Preprocess, per_class: int = 20, seed: int = 10_000_019) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed evaluation set from a seed the training stream never uses."""
    xs, ys = zip(*(render_glyph_sample(i, seed, pre) for i in range(per_class * len(GLYPH_ALPHABET))))
    return torch.from_numpy(np.stack(xs)), torch.tensor(ys)


@torch.inference_mode()
def glyph_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Accuracy, and for glyphs also case-insensitive (``o``/``O`` are often the same shape)."""
    pred = torch.from_numpy(predict(model, x).argmax(1))
    out = {"acc": (pred == y).float().mean().item()}
    if model.fc.out_features == len(GLYPH_ALPHABET):
        fold = torch.tensor([GLYPH_ALPHABET.index(c.upper()) for c in GLYPH_ALPHABET])
        out["acc_casefold"] = (fold[pred] == fold[y]).float().mean().item()
    return out


def _batches(cfg: PretrainConfig, pre: Preprocess,
             start: int = 0) -> tuple[Iterator, int, tuple[torch.Tensor, torch.Tensor], str]:
    """The training stream (glyphs from sample ``start`` on), the class count, the held-out set, its name."""
    if cfg.source == "glyphs":
        loader = DataLoader(GlyphStream(cfg.seed, pre, start), batch_size=cfg.batch_size, num_workers=cfg.workers,
                            persistent_workers=cfg.workers > 0)
        return iter(loader), len(GLYPH_ALPHABET), heldout_set(pre), "glyphs"
    if cfg.source == "cifar10":
        return cifar_batches(cfg, pre)
    raise ConfigError(f"unknown --source {cfg.source!r}; choose glyphs or cifar10")


def pretrain(cfg: PretrainConfig, progress: bool = True) -> dict:
    """Train a backbone from scratch on ``cfg.source`` and write it to ``cfg.out_path``.

    The stream of batches is cut into blocks of ``eval_every`` steps; each block is one pass of the
    shared ``train_one_epoch``, followed by a held-out evaluation and a resumable state in
    ``<out>.last.pt``. With ``cfg.resume`` a killed run continues from there (glyphs: the same
    stream from the step reached; CIFAR-10: a fresh shuffle).
    """
    torch.manual_seed(cfg.seed)
    pre = Preprocess(size=cfg.size)
    out = Path(cfg.out_path)
    last_path = out.with_name(out.stem + ".last.pt")
    state = load_checkpoint(last_path, kind="backbone") if cfg.resume and last_path.is_file() else None
    step = int(state["step"]) if state else 0
    batches, num_classes, (hx, hy), name = _batches(cfg, pre, start=step * cfg.batch_size)
    model = CharNet(num_classes).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    sched = make_schedule(opt, "onecycle", cfg.lr, cfg.steps, warmup=0.15)
    history, elapsed = [], 0.0
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history, elapsed = list(state["history"]), float(state["seconds"])
        log.info("resuming %s at step %d/%d", last_path, step, cfg.steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    bar = tqdm(total=cfg.steps, initial=step, desc=f"pretrain {name}", disable=not progress, mininterval=2)
    t0 = time.perf_counter() - elapsed
    while step < cfg.steps:
        block = min(cfg.eval_every, cfg.steps - step)
        loss = train_one_epoch(model, itertools.islice(batches, block), opt, sched, loss_fn,
                               on_batch=lambda _b, value, _s: (bar.update(1), bar.set_postfix(loss=f"{value:.3f}")))
        step += block
        metrics = glyph_accuracy(model, hx, hy)
        history.append({"step": step, "loss": loss, "seconds": time.perf_counter() - t0, **metrics})
        log.info("step %d loss %.3f held-out %s", step, loss, metrics)
        save_checkpoint({"kind": "backbone", "arch": ARCH, "source": name, "model": model.state_dict(),
                         "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step,
                         "history": history, "seconds": time.perf_counter() - t0}, last_path)
    bar.close()
    seconds = time.perf_counter() - t0
    final = history[-1]
    weights = {k: (v.half() if cfg.half and v.is_floating_point() else v)
               for k, v in model.state_dict().items() if not k.startswith("fc.")}
    conf = {**asdict(cfg), "size": list(cfg.size), "out": cfg.out_path,
            "command": cfg.command or " ".join(["captcha"] + sys.argv[1:])}
    info = {"config": conf, "seconds": seconds, "history": history,
            "heldout": {k: final[k] for k in final if k.startswith("acc")}, "classes": num_classes,
            "torch": str(torch.__version__)}
    save_checkpoint({"kind": "backbone", "arch": ARCH, "source": name, "model": weights,
                     "preprocess": pre.to_dict(), "pretrain": info}, out)
    _write_card(out, info)
    return info


def _write_card(out: Path, info: dict) -> None:
    """A Markdown note next to the backbone: how it was made and how good it is."""
    cfg = info["config"]
    lines = [f"# {out.name}", "", f"- command: `{cfg['command']}`",
             f"- source: {cfg['source']}, seed {cfg['seed']}, {cfg['steps']} steps of {cfg['batch_size']}, "
             f"input {cfg['size'][0]}x{cfg['size'][1]}",
             f"- wall time: {info['seconds'] / 60:.1f} min (torch {info['torch']}, {torch.get_num_threads()} threads)",
             "- held-out accuracy: " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in info["heldout"].items()),
             f"- stored in {'half' if cfg['half'] else 'full'} precision, head removed", "",
             "| step | loss | held-out acc | case-folded | minutes |", "|---|---|---|---|---|"]
    for h in info["history"]:
        lines.append(f"| {h['step']} | {h['loss']:.3f} | {100 * h['acc']:.2f}% | "
                     f"{100 * h.get('acc_casefold', h['acc']):.2f}% | {h['seconds'] / 60:.1f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")

