"""The general reader: a whole-captcha CTC model pretrained on synthetic captchas of many layouts.

It reads captchas of 4 to 6 characters over 0-9A-Z (case-insensitive) with no training on a site,
so `captcha solve` answers out of the box, and every `captcha train --method ctc` starts from it
(its head rows mapped onto the site's charset), so CTC learns a site from a few hundred captchas
instead of sitting on the all-blank plateau. Its trunk starts from the shipped glyph backbone.
The captchas (``data.captchas``) are rendered on the fly, never stored, in worker processes.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from ..charset import Charset
from ..config import INT8_CALIBRATION, WATCH_CAPTCHAS, ReaderConfig
from ..data.captchas import LAYOUT_RATES, LAYOUTS, random_text, render_captcha
from ..data.fonts import by_family, pretraining_faces
from ..data.images import load_image
from ..data.layout import read_captcha_labels, site_charset
from ..data.preprocess import Preprocess
from ..data.segment import SegmentConfig, to_content
from ..data.synth import seed_for
from ..errors import DataError, require_writable
from ..eval.metrics import string_metrics
from ..inference.decode import decode
from ..inference.export import int8_check, int8_verdict
from ..inference.solver import Preparer, Solver
from ..nn.checkpoint import half_precision, last_file, load_checkpoint, save_checkpoint
from ..nn.device import resolve_device, train_in_bf16
from ..nn.networks import (
    ARCH,
    LAYER3_ORDER,
    LAYER4_ORDER,
    channel_energy,
    clean_state_dict,
    load_backbone,
    model_from_checkpoint,
    new_model,
    order_channels,
    reader_file,
    reader_start,
)
from .loop import CTCLoss, make_optimizer, make_schedule, predict, train_one_epoch
from .pretrain import faces_table, fonts_check, restore

log = logging.getLogger(__name__)

READER_SEGMENT = SegmentConfig("equal", trim=True, crop=True)
HELDOUT_SEED, CALIBRATION_SEED = 20_000_003, 20_000_011  # streams the training seed never draws


def encode_padded(text: str, charset: Charset, width: int) -> np.ndarray:
    """Class indices of ``text``, padded with -1 to ``width`` (the CTC loss's convention)."""
    out = np.full(width, -1, np.int64)
    codes = charset.encode(text)
    out[: len(codes)] = codes
    return out


def render_content(index: int, seed: int, charset: Charset, lengths: tuple[int, ...]) -> tuple[Image.Image, str]:
    """Captcha ``index`` of the stream with ``seed``, cropped to content as solving crops it: (image, text)."""
    rng = random.Random(seed_for(seed, "captcha", index))
    text = random_text(rng, charset.alphabet, lengths)
    return to_content(render_captcha(text, rng, by_family(pretraining_faces()), charset.alphabet), READER_SEGMENT), text


def render_sample(index: int, seed: int, pre: Preprocess, charset: Charset,
                  lengths: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``index`` of the stream with ``seed``: (network input, padded target)."""
    img, text = render_content(index, seed, charset, lengths)
    return pre(img), encode_padded(text, charset, max(lengths))


class CaptchaStream(IterableDataset):
    """An endless stream of rendered captchas; each worker renders its own disjoint indices."""

    def __init__(self, cfg: ReaderConfig, pre: Preprocess, start: int = 0) -> None:
        self.cfg, self.pre, self.start = cfg, pre, start

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        charset = Charset(self.cfg.alphabet)
        i = self.start + wid
        while True:
            yield render_sample(i, self.cfg.seed, self.pre, charset, self.cfg.lengths)
            i += nw


def heldout_captchas(cfg: ReaderConfig, pre: Preprocess, seed: int = HELDOUT_SEED) -> tuple[torch.Tensor, list[str]]:
    """A fixed evaluation set from a seed the training stream never uses."""
    charset = Charset(cfg.alphabet)
    rows = [render_sample(i, seed, pre, charset, cfg.lengths) for i in range(cfg.heldout)]
    return torch.from_numpy(np.stack([x for x, _ in rows])), [charset.decode([c for c in t if c >= 0]) for _, t in rows]


def read_accuracy(model: torch.nn.Module, x: torch.Tensor, labels: list[str], charset: Charset) -> dict[str, float]:
    """Full-string and per-character accuracy of a CTC model on inputs ``x``."""
    logits = predict(model, x)
    return string_metrics([s.text for s in decode(logits, charset, "ctc")], labels)


@dataclass
class Watched:
    """Labelled real captchas read with no training at each evaluation (``ReaderConfig.watch``)."""

    name: str
    x: np.ndarray  # (captchas, 1, 3, H, W), as the solver's preparer makes them
    labels: list[str]  # case-folded to the reader's alphabet
    chars: str  # the folder's characters: the only ones read, as `solve --allow` reads


def watched_sets(folders: Sequence[str], pre: Preprocess, charset: Charset) -> list[Watched]:
    """The last quarter by file name (bench/real.py's test captchas), at most WATCH_CAPTCHAS, of each folder,
    prepared as solving prepares them."""
    prepare = _reader_preparer(pre)
    out = []
    for folder in folders:
        samples = sorted(read_captcha_labels(folder, site_charset(folder), problems=[]), key=lambda s: s.path.name)
        test = samples[len(samples) - min(WATCH_CAPTCHAS, round(len(samples) / 4)):]
        labels = [charset.normalize(s.label) for s in test]
        unknown = sorted({c for lab in labels for c in charset.unknown(lab)})
        if not test or unknown:
            raise DataError(f"--watch {folder}: " + (f"labels with characters the reader does not read ({''.join(unknown)!r})"
                            if unknown else "no labelled captchas (labels.csv or file names)")
                            + "; watch a folder of labelled captchas over the reader's characters")
        x = np.stack([prepare.inputs(load_image(s.path)) for s in test])
        out.append(Watched(Path(folder).name, x, labels, "".join(sorted(set("".join(labels))))))
    return out


def read_watched(model: torch.nn.Module, sets: Sequence[Watched], charset: Charset, pre: Preprocess) -> dict[str, float]:
    """Full-string accuracy of the reader on each watched folder, with no training: read as `captcha solve
    --allow CHARS --recheck off` reads them."""
    out = {}
    for w in sets:
        solver = Solver(lambda x: predict(model, x), charset, _reader_preparer(pre), general=True)
        solver = solver.allow(w.chars).rechecking("off")
        out[w.name] = string_metrics([s.text for s in solver.read(w.x)], w.labels)["string_acc"]
    return out


def _reader_preparer(pre: Preprocess) -> Preparer:
    """How solving prepares a captcha for the reader: cut to its content, then ``pre``; any length."""
    return Preparer(pre, 0, READER_SEGMENT, "ctc")


class ReplayPool:
    """Rendered batches moved to the training device, each followed by ``reuse - 1`` batches drawn at
    random from a pool of the last ``capacity`` samples.

    Rendering a captcha (Pillow, on the CPU) takes ~9 ms, a GPU's training step on a batch a few ms:
    without reuse a GPU waits on the renderers. Each sample trains ``reuse`` times on average, whatever
    the pool's size; ``fresh`` counts the rendered batches taken (where a resumed stream starts).
    """

    def __init__(self, batches: Iterator, reuse: int, capacity: int, device: torch.device, seed: int) -> None:
        self.batches, self.reuse, self.capacity, self.device = batches, reuse, capacity, device
        self.gen = torch.Generator(device=device).manual_seed(seed)
        self.fresh, self.filled, self.at = 0, 0, 0
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.batches:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            self.fresh += 1
            yield x, y
            if self.reuse == 1:
                continue
            self._keep(x, y)
            for _ in range(self.reuse - 1):
                idx = torch.randint(self.filled, (len(x),), device=self.device, generator=self.gen)
                yield self.x[idx], self.y[idx]

    def _keep(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.x is None:
            self.x = x.new_empty((self.capacity, *x.shape[1:]))
            self.y = y.new_empty((self.capacity, *y.shape[1:]))
        idx = (self.at + torch.arange(len(x), device=self.device)) % self.capacity
        self.x[idx], self.y[idx] = x, y
        self.at = (self.at + len(x)) % self.capacity
        self.filled = min(self.capacity, self.filled + len(x))


def clock_onecycle(opt: torch.optim.Optimizer, spent: Callable[[], float],
                   warmup: float) -> torch.optim.lr_scheduler.LambdaLR:
    """OneCycleLR's shape (cosine up from 1/25 of the peak, cosine down to 1/25e4 of it) over the share
    of a time budget ``spent()`` returns, rather than over a count of steps."""
    def factor(_step: int) -> float:
        f = min(max(spent(), 0.0), 1.0)
        start, peak, end = 1 / 25, 1.0, 1 / 25e4
        if f < warmup:
            a, b, p = start, peak, f / warmup
        else:
            a, b, p = peak, end, (f - warmup) / (1 - warmup)
        return b + (a - b) * (1 + math.cos(math.pi * p)) / 2
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def pretrain_reader(cfg: ReaderConfig, progress: bool = True) -> dict:
    """Train the general reader and write it to ``cfg.out`` as a recognizer checkpoint (resumable).

    ``cfg.steps`` optimiser steps, or with ``cfg.minutes`` as many as that time holds (the rate's
    schedule then runs on the clock); on a GPU, ``cfg.reuse`` keeps it busy while workers render.
    """
    torch.manual_seed(cfg.seed)
    require_writable(cfg.out)
    charset = Charset(cfg.alphabet)
    pre = Preprocess(size=tuple(cfg.size))
    watched = watched_sets(cfg.watch, pre, charset)  # a folder it cannot read stops the run before any training
    dev = resolve_device(cfg.device)
    cfg = replace(cfg, bf16=train_in_bf16(cfg.bf16, dev))  # emulated bf16 is slower than fp32: native only
    out = Path(cfg.out)
    last_path = last_file(out)
    state = load_checkpoint(last_path, kind="recognizer") if cfg.resume and last_path.is_file() else None
    step = int(state["step"]) if state else 0
    model = new_model("ctc", len(charset))
    source, backbone = reader_start(cfg.pretrained)
    fonts = fonts_check()  # after every argument is checked: a mistake is one line
    if backbone is not None:
        load_backbone(model, backbone, source)
    earlier = earlier_stages(source)
    model = model.to(dev, memory_format=torch.channels_last)
    opt = make_optimizer(model.parameters(), "adamw", cfg.lr, cfg.weight_decay)
    budget = 60 * cfg.minutes
    t0 = time.perf_counter() - (float(state["seconds"]) if state else 0.0)
    if budget:
        sched = clock_onecycle(opt, lambda: (time.perf_counter() - t0) / budget, cfg.warmup)
    else:
        sched = make_schedule(opt, "onecycle", cfg.lr, cfg.steps, warmup=cfg.warmup)
    history, _ = restore(state, model, opt, sched, last_path, cfg.steps)
    fresh = int(state.get("fresh", step)) if state else 0
    loader = DataLoader(CaptchaStream(cfg, pre, start=fresh * cfg.batch_size), batch_size=cfg.batch_size,
                        num_workers=cfg.workers, persistent_workers=cfg.workers > 0, pin_memory=dev.type == "cuda")
    pool = ReplayPool(iter(loader), cfg.reuse, cfg.pool_batches * cfg.batch_size, dev, cfg.seed)
    batches = iter(pool)
    hx, hlabels = heldout_captchas(cfg, pre)
    loss_fn = CTCLoss()
    bar = tqdm(total=None if budget else cfg.steps, initial=step, desc="pretrain reader", disable=not progress,
               mininterval=2)
    payload: dict = {}
    done = 0

    def counted(_b: int, value: float, _s: float) -> None:
        nonlocal done
        done += 1
        bar.update(1)
        bar.set_postfix(loss=f"{value:.3f}")

    while (time.perf_counter() - t0 < budget) if budget else step < cfg.steps:
        block = cfg.eval_every if budget else min(cfg.eval_every, cfg.steps - step)
        done = 0
        loss = train_one_epoch(model, _until(itertools.islice(batches, block), t0 + budget if budget else None),
                               opt, sched, loss_fn, on_batch=counted, bf16=cfg.bf16)
        step += done
        metrics = read_accuracy(model, hx, hlabels, charset)
        if watched:
            metrics["watch"] = read_watched(model, watched, charset, pre)
        history.append({"step": step, "loss": loss, "seconds": time.perf_counter() - t0, **metrics})
        log.info("step %d/%s loss %.3f held-out full-string %.2f%%, characters %.2f%%%s (%.1f min)", step,
                 f"{cfg.minutes:g} min" if budget else cfg.steps, loss, 100 * metrics["string_acc"],
                 100 * metrics.get("captcha_char_acc", 0),
                 "".join(f"; {k} {100 * v:.2f}%" for k, v in metrics.get("watch", {}).items()), history[-1]["seconds"] / 60)
        payload = reader_payload(cfg, model, charset, pre, source, history, earlier)
        save_checkpoint({**payload, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step,
                         "fresh": fresh + pool.fresh, "seconds": time.perf_counter() - t0}, last_path)
    bar.close()
    if not payload:  # resumed a finished run
        payload = reader_payload(cfg, model, charset, pre, source, history, earlier)
    if fonts:
        payload["pretrain"]["fonts_warning"] = fonts
    save_checkpoint({**payload, "model": half_precision(payload["model"])}, out)  # shipped in the wheel: half the bytes
    payload[LAYER4_ORDER] = payload[LAYER3_ORDER] = order_reader(out, cfg)
    payload["int8"] = check_reader_int8(out, cfg)
    write_reader_card(out, payload)
    return payload["pretrain"]


def _until(batches: Iterator, deadline: float | None) -> Iterator:
    """``batches`` until ``time.perf_counter()`` passes ``deadline`` (all of them when None)."""
    for batch in batches:
        if deadline is not None and time.perf_counter() >= deadline:
            return
        yield batch


def order_reader(path: Path, cfg: ReaderConfig) -> str:
    """Store the reader at ``path`` with its layer4 channels and those inside each layer3 block most-used first
    on its held-out synthetic captchas (``networks.order_channels``; it reads the same), so a fine-tune can keep
    the first ones (``config.CTC_WIDTH``, ``config.CTC_LAYER3_INNER``); returns how they were ordered, as
    recorded in the checkpoint."""
    ckpt = load_checkpoint(path, kind="recognizer")
    model = model_from_checkpoint(ckpt, path).float()
    x, _ = heldout_captchas(cfg, Preprocess.from_dict(ckpt["preprocess"]))
    state = order_channels(clean_state_dict(ckpt["model"]), channel_energy(model, x))
    how = f"most-used first on {len(x)} held-out synthetic captchas"
    save_checkpoint({**ckpt, "model": half_precision(state), LAYER4_ORDER: how, LAYER3_ORDER: how}, path)
    return how


def check_reader_int8(path: Path, cfg: ReaderConfig) -> dict:
    """The int8 check (``inference.export.int8_check``) for the reader at ``path``, stored in it: calibrated
    on synthetic captchas of a seed neither the training stream nor the held-out set uses."""
    ckpt = load_checkpoint(path, kind="recognizer")
    pre, charset = Preprocess.from_dict(ckpt["preprocess"]), Charset(cfg.alphabet)
    calibration = np.stack([pre.resize(render_content(i, CALIBRATION_SEED, charset, cfg.lengths)[0])
                            for i in range(INT8_CALIBRATION)])
    hx, hlabels = heldout_captchas(cfg, pre)
    ckpt["int8"] = int8_check(path, torch.from_numpy(calibration), hx.numpy(), hlabels)
    save_checkpoint(ckpt, path)
    return ckpt["int8"]


def earlier_stages(source: str) -> list[dict]:
    """How the reader a run starts from was made (its own earlier stages first), for the card; [] from a trunk."""
    path = reader_file(source)
    if path is None:
        return []
    info = load_checkpoint(path, kind="recognizer").get("pretrain") or {}
    stage = {k: info[k] for k in ("seconds", "faces") if k in info}
    stage.update({k: info.get("config", {}).get(k) for k in ("command", "steps", "lr")})
    stage["steps"] = info.get("steps") or stage["steps"]
    stage["history"] = info.get("history", [])
    stage["string_acc"] = stage["history"][-1]["string_acc"] if stage["history"] else None
    return [*info.get("earlier", []), stage]


def reader_payload(cfg: ReaderConfig, model: torch.nn.Module, charset: Charset, pre: Preprocess, source: str,
                   history: list[dict], earlier: list[dict] | None = None) -> dict:
    """The reader as a recognizer checkpoint that describes itself (``length`` 0: any length)."""
    conf = {k: v for k, v in asdict(cfg).items() if not k.startswith("_")}
    conf["command"] = cfg.command or " ".join(["captcha"] + sys.argv[1:])
    info = {"config": conf, "history": history, "seconds": history[-1]["seconds"] if history else 0.0,
            "steps": history[-1]["step"] if history else 0, "device": str(next(model.parameters()).device.type),
            "layouts": dict(zip(LAYOUTS, LAYOUT_RATES)), "torch": str(torch.__version__),
            "threads": torch.get_num_threads(), "faces": len(pretraining_faces()),
            "face_list": [asdict(f) for f in pretraining_faces()], "earlier": earlier or []}
    return {"kind": "recognizer", "arch": ARCH, "method": "ctc", "charset": charset.to_dict(),
            "preprocess": pre.to_dict(), "length": 0, "lengths": list(cfg.lengths), "segment": READER_SEGMENT.to_dict(),
            "pretrained": source, "freeze": "none", "captcha_size": None, "recipe": {"general_reader": True},
            "metrics": history[-1] if history else {}, "history": history, "pretrain": info,
            "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}


def write_reader_card(out: Path, payload: dict) -> None:
    """A Markdown note next to the reader: how it was made and how well it reads held-out synthetic captchas."""
    info = payload["pretrain"]
    cfg = info["config"]
    lines = [f"# {out.name}: the general reader", "", f"- command: `{cfg['command']}`",
             f"- trunk started from: {payload['pretrained']}; {info.get('steps') or cfg['steps']} steps of "
             f"{cfg['batch_size']}{_reuse(cfg)} "
             f"synthetic captchas of {', '.join(map(str, cfg['lengths']))} characters over {cfg['alphabet']} "
             f"(case-insensitive), input {cfg['size'][0]}x{cfg['size'][1]} after cropping to content",
             "- layouts: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in info["layouts"].items())
             + f"; {info['faces']} pretraining font faces"
             + (" (their licences below)" if info.get("face_list") else " (see the glyph backbone's card for their licences)")
             + (f". Warning: {info['fonts_warning']}" if info.get("fonts_warning") else ""),
             f"- wall time: {info['seconds'] / 60:.1f} min (torch {info['torch']}, "
             f"{'a CUDA GPU and ' if info.get('device') == 'cuda' else ''}{info['threads']} threads"
             f"{', bf16 autocast' if cfg['bf16'] else ''}); stored in half precision"
             + (f", layer4's channels stored {payload[LAYER4_ORDER]} (a fine-tune keeps the first "
                "`config.CTC_WIDTH`)" if payload.get(LAYER4_ORDER) else "")
             + (f", the channels inside each layer3 block stored {payload[LAYER3_ORDER]} (a fine-tune keeps the "
                "first `config.CTC_LAYER3_INNER` from `config.CTC_LAYER3_NARROW_FROM` labelled captchas up)"
                if payload.get(LAYER3_ORDER) else ""),
             *[f"- continues stage {i + 1}: `{e['command']}` ({e['steps']} steps, peak lr {e['lr']}, "
               f"{e['seconds'] / 60:.1f} min; it read {100 * e['string_acc']:.2f}% of its own held-out captchas)"
               for i, e in enumerate(info.get("earlier", []))],
             *([f"- watched with no training at each evaluation (real captchas, the last quarter of each folder; a "
                f"step chosen by them makes them tuned-on): {', '.join(cfg['watch'])}"] if cfg.get("watch") else []),
             *_int8_line(payload.get("int8")), "",
             *_curve(info["history"])]
    for i, e in enumerate(info.get("earlier", [])):
        if e.get("history"):
            lines += ["", f"Stage {i + 1} (held-out captchas of the synthesis of its day):", "", *_curve(e["history"])]
    if info.get("face_list"):
        lines += ["", "## Font faces", "", *faces_table(info["face_list"], info.get("fonts_warning", ""))]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _reuse(cfg: dict) -> str:
    if cfg.get("reuse", 1) <= 1:
        return ""
    return f" (each rendered batch trained {cfg['reuse']} times on average, drawn from the last {cfg['pool_batches']})"


def _curve(history: list[dict]) -> list[str]:
    watched = list(history[-1].get("watch", {})) if history else []
    rows = ["| step | loss | held-out full-string | held-out characters | "
            + "".join(f"{name} (watched) | " for name in watched) + "minutes |", "|---" * (5 + len(watched)) + "|"]
    return rows + [f"| {h['step']} | {h['loss']:.3f} | {100 * h['string_acc']:.2f}% | "
                   f"{100 * h.get('captcha_char_acc', 0):.2f}% | "
                   + "".join(f"{100 * h.get('watch', {}).get(name, float('nan')):.2f}% | " for name in watched)
                   + f"{h['seconds'] / 60:.1f} |" for h in history]


def _int8_line(check: dict | None) -> list[str]:
    if not check:
        return []
    return [f"- int8 check, on captchas read whole: {int8_verdict(check)}"]
