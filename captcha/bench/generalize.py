"""`captcha bench generalize`: how the product reads glyphs nobody here drew (leave-style-out).

Each set is in the course layout (chars/train 36 x 50, chars/val 36 x 10, 500 val captchas of 4
val glyphs side by side), drawn in a style held out of pretraining and of `data synth`
(``data.styles``), plus one cut from real captchas: sysu_alnum4 split by the equal splitter, the
first 75% by file name as chars/train and the last 25% as captchas/val. Every set is trained as a
user would, with `captcha train --data DIR`'s defaults, and scored on its val part: character and
full-string accuracy, training time, the recipe the probes chose, and solving speed.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from ..charset import DEFAULT_CHARSET
from ..config import GENERALIZE_SETS, SynthConfig, TrainConfig
from ..data.images import load_image
from ..data.layout import ordered_holdout, read_captcha_labels, split_captcha_folder
from ..data.segment import SegmentConfig, split
from ..data.styles import STYLES, render_styled
from ..data.synth import seed_for, synth_dataset
from ..errors import DataError
from ..eval.evaluate import evaluate_checkpoint
from ..inference.load import load_solver
from ..nn.checkpoint import load_checkpoint
from ..training.train import train
from .speed import solving_figures

log = logging.getLogger(__name__)

REAL_CUTS = {"sysu-cut": "sysu_alnum4"}
SETS = tuple(STYLES) + tuple(REAL_CUTS)
assert set(GENERALIZE_SETS) <= set(SETS), "config.GENERALIZE_SETS names styles and real cuts"
DEFAULT_SHARED = "../shared/datasets"


def build_style_set(name: str, out: Path, seed: int = 0, scale: float = 1.0) -> Path:
    """The course-layout set of held-out style ``name`` (``scale`` shrinks every count, for quick runs)."""
    style = STYLES[name]
    cfg = SynthConfig(seed=seed, train_per_class=max(2, round(50 * scale)), val_per_class=max(1, round(10 * scale)),
                      captchas=max(4, round(500 * scale)))
    synth_dataset(out, cfg, render=lambda char, rng: render_styled(char, rng, style))
    return out


def build_real_cut(name: str, shared: Path, out: Path, scale: float = 1.0) -> Path:
    """Course layout cut from a real set: the first 75% split into equal cells as chars/train, the
    last 25% whole as captchas/val."""
    src = shared / REAL_CUTS[name]
    if not src.is_dir():
        raise DataError(f"{src}: not found; the real sets live in ../shared/datasets beside the repository")
    samples = sorted(read_captcha_labels(src, DEFAULT_CHARSET, problems=[]), key=lambda s: s.path.name)
    held = ordered_holdout([s.path.name for s in samples], 0.25)
    split_captcha_folder(src, out / "whole", held, DEFAULT_CHARSET, link=True)
    (out / "captchas").mkdir(parents=True, exist_ok=True)
    shutil.move(str(out / "whole" / "captchas" / "val"), str(out / "captchas" / "val"))
    train_samples = [s for s in samples if s.path.name not in held]
    keep = random.Random(seed_for(0, "cut")).sample(train_samples, min(len(train_samples),
                                                                       max(8, round(len(train_samples) * scale))))
    for s in keep:
        for i, (char, crop) in enumerate(zip(s.label, split(load_image(s.path), len(s.label),
                                                            SegmentConfig("equal", trim=False)))):
            folder = out / "chars" / "train" / char
            folder.mkdir(parents=True, exist_ok=True)
            crop.save(folder / f"{s.path.stem}_{i}.png")
    shutil.rmtree(out / "whole")
    return out


GRID_STARTS = ("none", "glyphs-v1", "glyphs-v2")
GRID_FREEZES = ("all", "layer3", "layer2", "none")
GRID_SIZES = (32, 64)


def grid_cells(data: Path, out_dir: Path, epochs: int, starts: tuple[str, ...] = GRID_STARTS,
               freezes: tuple[str, ...] = GRID_FREEZES, sizes: tuple[int, ...] = GRID_SIZES,
               say: Callable[[str], None] = log.info) -> dict[str, dict[str, float]]:
    """Every start x freeze x input size trained for ``epochs`` with explicit flags (no probes):
    "start/freeze/size" -> val char and full-string accuracy and training seconds. A random start
    is only trained whole (its frozen features mean nothing)."""
    cells = {}
    for start in starts:
        for size in sizes:
            for freeze in freezes if start != "none" else ("none",):
                ckpt = out_dir / "grid.pt"
                t0 = time.perf_counter()
                train(TrainConfig(data=str(data), out=str(ckpt), pretrained=start, freeze=freeze, size=(size, size),
                                  epochs=epochs), say=lambda _m: None)
                wall = time.perf_counter() - t0
                rep = evaluate_checkpoint(ckpt)
                key = f"{start}/{freeze}/{size}"
                cells[key] = {"char_acc": rep.chars.get("char_acc", rep.captchas.get("captcha_char_acc")),
                              "string_acc": rep.captchas.get("string_acc"), "train_wall_s": wall}
                say(f"  {data.name} {key}: {100 * cells[key]['string_acc']:.2f}% full-string, {wall:.0f} s")
    return cells


def bench_generalize(sets: tuple[str, ...] = GENERALIZE_SETS, out_dir: str | Path = "runs/bench-generalize",
                     shared: str | Path = DEFAULT_SHARED, scale: float = 1.0, say: Callable[[str], None] = log.info,
                     grid_epochs: int = 0, **train_kw: Any) -> dict[str, Any]:
    """Build each set, train it with the defaults, score it; write generalize.json and generalize.md.

    With ``grid_epochs``, also the start x freeze x input-size table of :func:`grid_cells` for each set.
    """
    unknown = [name for name in sets if name not in SETS]
    if unknown:  # before hours of work on the others
        raise DataError(f"unknown set {unknown[0]!r}; choose from {', '.join(SETS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in sets:
        data = out_dir / name
        if data.exists():
            shutil.rmtree(data)
        t0 = time.perf_counter()
        if name in REAL_CUTS:
            build_real_cut(name, Path(shared), data, scale)
        else:
            build_style_set(name, data, scale=scale)
        built = time.perf_counter() - t0
        ckpt = out_dir / f"{name}.pt"
        t0 = time.perf_counter()
        res = train(TrainConfig(data=str(data), out=str(ckpt), **train_kw), say=lambda _m: None)
        wall = time.perf_counter() - t0
        rep = evaluate_checkpoint(ckpt)
        chosen = load_checkpoint(ckpt)
        row = {"set": name, "freeze": chosen["freeze"], "size": chosen["preprocess"]["size"],
               "epochs": chosen["train_config"]["epochs"], "kept_epoch": chosen["metrics"]["epoch"],
               "char_acc": rep.chars.get("char_acc", rep.captchas.get("captcha_char_acc")),
               "string_acc": rep.captchas.get("string_acc"), "train_wall_s": wall,
               "train_loop_s": res["train_seconds"], "build_s": built,
               "wrong_rejected_at_95": rep.captchas.get("rejection_at_95", {}).get("wrong_rejected")}
        images = sorted((data / "captchas" / "val").glob("*.png"))
        row.update(solving_figures(load_solver(ckpt), images, repeat=1))
        say(format_row(row))
        if grid_epochs:
            row["grid"] = grid_cells(data, out_dir, grid_epochs, say=say)
        rows.append(row)
    result = {"scale": scale, "rows": rows}
    (out_dir / "generalize.json").write_text(json.dumps(result, indent=2))
    (out_dir / "generalize.md").write_text(format_generalize(result) + "\n")
    return result


HEADER = ("| set | recipe chosen (freeze, input, epochs; kept) | val char | val full-string | training | "
          "captchas/s | wrong refused at 95% |\n|---|---|---|---|---|---|---|")


def format_row(r: dict[str, Any]) -> str:
    """One set's line of the table."""
    return (f"| {r['set']} | {r['freeze']}, {r['size'][0]}x{r['size'][1]}, {r['epochs']}; {r['kept_epoch']} | "
            f"{100 * r['char_acc']:.2f}% | {100 * r['string_acc']:.2f}% | {r['train_wall_s']:.0f} s | "
            f"{r['batch_captchas_per_s']:.0f} | {_pct(r.get('wrong_rejected_at_95'))} |")


def _pct(v: float | None) -> str:
    return "n/a" if v is None or v != v else f"{100 * v:.0f}%"


def format_grid(row: dict[str, Any]) -> str:
    """One set's start x input size (rows) by freeze (columns) table: full-string (char) accuracy."""
    cells = row["grid"]
    keys = [k.split("/") for k in cells]
    freezes = [f for f in GRID_FREEZES if any(k[1] == f for k in keys)]
    lines = [f"{row['set']}: val full-string (char) accuracy after the same epochs, explicit flags", "",
             "| start | input | " + " | ".join(f"freeze {f}" for f in freezes) + " |",
             "|---|---|" + "---|" * len(freezes)]
    for start in dict.fromkeys(k[0] for k in keys):
        for size in dict.fromkeys(k[2] for k in keys if k[0] == start):
            row_cells = []
            for f in freezes:
                c = cells.get(f"{start}/{f}/{size}")
                row_cells.append(f"{100 * c['string_acc']:.1f}% ({100 * c['char_acc']:.1f}%)" if c else "–")
            lines.append(f"| {start} | {size} px | " + " | ".join(row_cells) + " |")
    return "\n".join(lines)


def format_generalize(result: dict[str, Any]) -> str:
    """The table as Markdown, then each set's grid when there is one."""
    parts = ["\n".join([HEADER] + [format_row(r) for r in result["rows"]])]
    parts += [format_grid(r) for r in result["rows"] if r.get("grid")]
    return "\n\n".join(parts)
