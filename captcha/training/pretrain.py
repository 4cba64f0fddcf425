"""Pretraining a ResNet-18 backbone offline: on an endless synthetic glyph corpus, or on CIFAR-10.

The glyph corpus (``data.corpus``) is the "task A" of the course's transfer-learning story: far
more data than any user's captcha set, rendered on the fly (never stored) from every face of
``data.fonts.pretraining_faces`` with the distortion families captcha generators use, in upper and
lower case and digits. Each step trains at one of ``cfg.train_sizes`` (the batch is reduced from the
largest), so the backbone serves every input size ``captcha train`` may choose.
"""

from __future__ import annotations

import itertools
import logging
import random
import string
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from ..config import PretrainConfig
from ..data.cifar import cifar_batches
from ..data.corpus import FAMILIES, RATES, render_cell
from ..data.fonts import (
    HELD_OUT_PREFIXES,
    by_family,
    corpus_shortfall,
    pretraining_faces,
)
from ..data.preprocess import Preprocess
from ..data.synth import seed_for
from ..errors import ConfigError, require_writable
from ..nn.checkpoint import half_precision, last_file, load_checkpoint, save_checkpoint
from ..nn.device import train_in_bf16
from ..nn.networks import ARCH, CharNet, shipped_backbone, shipped_reader
from .loop import make_schedule, predict, train_one_epoch

log = logging.getLogger(__name__)

GLYPH_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase


def render_glyph_sample(index: int, seed: int, pre: Preprocess) -> tuple[np.ndarray, int]:
    """Sample ``index`` of the corpus with ``seed``: (normalised CHW array, class index)."""
    rng = random.Random(seed_for(seed, "glyph", index))
    cls = rng.randrange(len(GLYPH_ALPHABET))
    img = render_cell(GLYPH_ALPHABET[cls], rng, by_family(pretraining_faces()), alphabet=GLYPH_ALPHABET)
    return pre(img), cls


def rescale(x: torch.Tensor, size: int) -> torch.Tensor:
    """A batch reduced to ``size`` x ``size`` the way Pillow reduces (antialiased bilinear)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def _sized(batches: Iterator, cfg: PretrainConfig, step: int) -> Iterator:
    """Each step's batch at the size drawn for that step (deterministic, so a resumed run agrees)."""
    for i, (x, y) in enumerate(batches):
        yield rescale(x, random.Random(seed_for(cfg.seed, "size", step + i)).choice(cfg.train_sizes)), y


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
def glyph_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   sizes: tuple[int, ...] = ()) -> dict[str, float]:
    """Accuracy, and for glyphs also case-insensitive (``o``/``O`` are often the same shape).

    With several ``sizes``: each as ``acc@SIZE``, and their mean as ``acc``.
    """
    out: dict[str, float] = {}
    for size in sizes or (x.shape[-1],):
        pred = torch.from_numpy(predict(model, rescale(x, size)).argmax(1))
        tag = f"@{size}" if len(sizes) > 1 else ""
        out["acc" + tag] = (pred == y).float().mean().item()
        if model.fc.out_features == len(GLYPH_ALPHABET):
            fold = torch.tensor([GLYPH_ALPHABET.index(c.upper()) for c in GLYPH_ALPHABET])
            out["acc_casefold" + tag] = (fold[pred] == fold[y]).float().mean().item()
    if len(sizes) > 1:
        for key in ("acc", "acc_casefold"):
            values = [out[k] for k in out if k.startswith(key + "@")]
            if values:
                out[key] = sum(values) / len(values)
    return out


def _batches(cfg: PretrainConfig, pre: Preprocess,
             start: int = 0) -> tuple[Iterator, int, tuple[torch.Tensor, torch.Tensor], str]:
    """The training stream (glyphs from sample ``start`` on), the class count, the held-out set, its name."""
    if cfg.source == "glyphs":
        loader = DataLoader(GlyphStream(cfg.seed, pre, start), batch_size=cfg.batch_size, num_workers=cfg.workers,
                            persistent_workers=cfg.workers > 0)
        return iter(loader), len(GLYPH_ALPHABET), heldout_set(pre, cfg.heldout), "glyphs"
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
    cfg = replace(cfg, bf16=train_in_bf16(cfg.bf16))  # emulated bf16 is slower than fp32: native only
    torch.manual_seed(cfg.seed)
    pre = Preprocess(size=(max(cfg.train_sizes),) * 2)
    out = require_writable(cfg.out_path)
    last_path = last_file(out)
    state = load_checkpoint(last_path, kind="backbone") if cfg.resume and last_path.is_file() else None
    step = int(state["step"]) if state else 0
    batches, num_classes, (hx, hy), name = _batches(cfg, pre, start=step * cfg.batch_size)
    fonts = fonts_check() if cfg.source == "glyphs" else ""  # after the data is found: a mistake is one line
    model = CharNet(num_classes).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    sched = make_schedule(opt, "onecycle", cfg.lr, cfg.steps, warmup=cfg.warmup)
    history, elapsed = restore(state, model, opt, sched, last_path, cfg.steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    bar = tqdm(total=cfg.steps, initial=step, desc=f"pretrain {name}", disable=not progress, mininterval=2)
    t0 = time.perf_counter() - elapsed
    while step < cfg.steps:
        block = min(cfg.eval_every, cfg.steps - step)
        loss = train_one_epoch(model, _sized(itertools.islice(batches, block), cfg, step), opt, sched, loss_fn,
                               on_batch=lambda _b, value, _s: (bar.update(1), bar.set_postfix(loss=f"{value:.3f}")),
                               bf16=cfg.bf16)
        step += block
        metrics = glyph_accuracy(model, hx, hy, cfg.train_sizes)
        history.append({"step": step, "loss": loss, "seconds": time.perf_counter() - t0, **metrics})
        log.info("step %d/%d loss %.3f held-out %s (%.1f min)", step, cfg.steps, loss,
                 ", ".join(f"{k} {100 * v:.2f}%" for k, v in metrics.items()), history[-1]["seconds"] / 60)
        save_checkpoint({"kind": "backbone", "arch": ARCH, "source": name, "model": model.state_dict(),
                         "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step,
                         "history": history, "seconds": time.perf_counter() - t0}, last_path)
    bar.close()
    seconds = time.perf_counter() - t0
    final = history[-1]
    weights = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    weights = half_precision(weights) if cfg.half else weights
    conf = {**asdict(cfg), "sizes": list(cfg.train_sizes), "out": cfg.out_path,
            "command": cfg.command or " ".join(["captcha"] + sys.argv[1:])}
    info = {"config": conf, "seconds": seconds, "history": history,
            "heldout": {k: final[k] for k in final if k.startswith("acc")}, "classes": num_classes,
            "torch": str(torch.__version__), "threads": torch.get_num_threads()}
    if name == "glyphs":
        info["corpus"] = {"families": list(FAMILIES), "rates": RATES,
                          "faces": [asdict(f) for f in pretraining_faces()], **({"warning": fonts} if fonts else {})}
    save_checkpoint({"kind": "backbone", "arch": ARCH, "source": name, "model": weights,
                     "preprocess": pre.to_dict(), "pretrain": info}, out)
    write_card(out, info)
    return info


def restore(state: dict | None, model: nn.Module, opt: torch.optim.Optimizer, sched: Any, path: Path,
            steps: int) -> tuple[list[dict], float]:
    """A killed run's weights, optimiser and schedule put back from its ``state`` (nothing when None);
    returns its history and the seconds it had run."""
    if not state:
        return [], 0.0
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    log.info("resuming %s at step %d/%d", path, state["step"], steps)
    return list(state["history"]), float(state["seconds"])


def fonts_check() -> str:
    """Warn (and return the warning) when this machine has fewer pretraining faces than the shipped weights (the
    glyph backbone, the general reader) were made from: a narrower synthesis, which a reader's held-out synthetic
    captchas do not show (a reader stage on 30 faces read its own synthesis better and sysu 85.65% -> 81.30% with
    no training)."""
    made = load_checkpoint(shipped_backbone("glyphs"), kind="backbone").get("pretrain", {})
    reader = load_checkpoint(shipped_reader(), kind="recognizer").get("pretrain", {})
    note = corpus_shortfall(max(len(made.get("corpus", {}).get("faces", [])), reader.get("faces", 0)))
    if note:
        log.warning("warning: %s", note)
    return note


def write_card(out: Path, info: dict) -> None:
    """A Markdown note next to the backbone: how it was made, from which faces, and how good it is."""
    cfg = info["config"]
    sizes = cfg.get("sizes") or [cfg["size"][0]]
    lines = [f"# {out.name}", "", f"- command: `{cfg['command']}`",
             f"- source: {cfg['source']}, seed {cfg['seed']}, {cfg['steps']} steps of {cfg['batch_size']}, "
             f"input {' / '.join(f'{s}x{s}' for s in sizes)} px (one size per step)",
             f"- wall time: {info['seconds'] / 60:.1f} min (torch {info['torch']}, "
             f"{info.get('threads', torch.get_num_threads())} threads{', bf16 autocast' if cfg.get('bf16') else ''})",
             "- held-out accuracy: " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in info["heldout"].items()),
             f"- stored in {'half' if cfg['half'] else 'full'} precision, head removed", ""]
    size_cols = [f"acc@{s}" for s in sizes] if len(sizes) > 1 else []
    lines += ["| step | loss | held-out acc | case-folded | " + " | ".join(size_cols) + (" | " if size_cols else "")
              + "minutes |", "|---" * (5 + len(size_cols)) + "|"]
    for h in info["history"]:
        cols = "".join(f"{100 * h[c]:.2f}% | " for c in size_cols)
        lines.append(f"| {h['step']} | {h['loss']:.3f} | {100 * h['acc']:.2f}% | "
                     f"{100 * h.get('acc_casefold', h['acc']):.2f}% | {cols}{h['seconds'] / 60:.1f} |")
    corpus = info.get("corpus")
    if corpus:
        lines += ["", "## Corpus", "", *faces_table(corpus["faces"], corpus.get("warning", "")), "",
                  "Distortion families and the share of cells that get each: "
                  + ", ".join(f"{k} {100 * v:.0f}%" for k, v in corpus["rates"].items()) + "."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def faces_table(faces: list[dict], warning: str = "") -> list[str]:
    """Markdown lines for a card: how many pretraining faces, which families are held out, and a table of
    family, source, licence and face count (``faces``: ``data.fonts.Face`` as dicts)."""
    groups: dict[tuple[str, str, str], int] = {}
    for f in faces:
        key = (f["family"], f["source"], f["licence"])
        groups[key] = groups.get(key, 0) + 1
    sources = sorted({f["source"].split(":")[0] for f in faces})
    return [f"{len(faces)} faces in {len({f['family'] for f in faces})} families from {len(sources)} sources "
            f"({', '.join(sources)}); held out for the leave-style-out benchmark: {', '.join(HELD_OUT_PREFIXES)}."
            + (f" Warning: {warning}." if warning else ""), "",
            "| family | source | licence | faces |", "|---|---|---|---|",
            *[f"| {fam} | {src} | {lic} | {n} |" for (fam, src, lic), n in sorted(groups.items())]]
