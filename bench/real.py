#!/usr/bin/env python
"""Real sites' captchas: train on the first 75% of each shared set (sorted by file name), test on
the last 25%; full-string and character accuracy, training time, solving throughput; optionally a
learning curve and ddddocr scored on the same test captchas (when `pip install ddddocr` is done).

    python bench/real.py [--sets henan_digits4,sysu_alnum4,captcha_images_v2] [--curve] [--epochs N]

The data lives beside the repository in ../shared/datasets/ and is never copied into it.
Targets (issue 5): henan >= 99.8%, sysu >= 98%, captcha_images_v2 >= 98% full-string; sysu with
100 training captchas >= 90%; each set trains in <= 5 min and solves >= 500 captchas/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from captcha.bench.speed import solving_figures
from captcha.charset import Charset
from captcha.config import TrainConfig
from captcha.data.layout import (
    first_captchas,
    ordered_holdout,
    read_captcha_labels,
    split_captcha_folder,
)
from captcha.eval.evaluate import evaluate_checkpoint
from captcha.inference.load import load_solver
from captcha.training.train import train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SETS = ("henan_digits4", "sysu_alnum4", "captcha_images_v2")
# Each set's recipe: classify split crops where the characters stand apart (henan, sysu), read the
# whole captcha (ctc) where they touch and overlap (captcha_images_v2); epochs sized to about 5 min.
RECIPES = {"henan_digits4": {"method": "classify", "epochs": 3},
           "sysu_alnum4": {"method": "classify", "epochs": 8},
           "captcha_images_v2": {"method": "ctc", "epochs": 8}}


def prepare(name: str, work: Path, limit: int | None = None) -> tuple[Path, list[tuple[Path, str]]]:
    """Course-layout copy (symlinks) with the last 25% as val; optionally only ``limit`` training captchas."""
    src = SHARED / name
    samples = read_captcha_labels(src, Charset(), problems=[])
    held = ordered_holdout([s.path.name for s in samples], 0.25)
    out = work / f"{name}-all"
    split_captcha_folder(src, out, held, Charset(), link=True)
    if limit:
        out = first_captchas(out, limit, work / f"{name}-{limit}")
    test = [(s.path, s.label) for s in samples if s.path.name in held]
    return out, test


def ddddocr_score(test: list[tuple[Path, str]]) -> dict | None:
    """ddddocr's default model on the same test captchas, case-insensitive, restricted to the set's characters."""
    try:
        import ddddocr
    except ImportError:
        return None
    ocr = ddddocr.DdddOcr(show_ad=False)
    chars = "".join(sorted({c for _, lab in test for c in lab}))
    ocr.set_ranges(chars + chars.lower())
    data = [p.read_bytes() for p, _ in test]
    t0 = time.perf_counter()
    preds = [ocr.classification(d).upper() for d in data]
    rate = len(data) / (time.perf_counter() - t0)
    right = sum(p == lab for p, (_, lab) in zip(preds, test))
    chars_right = sum(a == b for p, (_, lab) in zip(preds, test) for a, b in zip(p, lab))
    return {"string_acc": right / len(test), "char_acc": chars_right / sum(len(lab) for _, lab in test),
            "captchas_per_s": rate}


def run_set(name: str, work: Path, epochs: int, limit: int | None = None, solve: bool = True, **kw) -> dict:
    data, test = prepare(name, work, limit)
    out = work / f"{name}-{limit or 'all'}.pt"
    t0 = time.perf_counter()
    res = train(TrainConfig(data=str(data), out=str(out), split="auto", epochs=epochs, **kw), say=lambda s: None)
    wall = time.perf_counter() - t0
    rep = evaluate_checkpoint(out, data)
    row = {"set": name, "method": kw.get("method", "classify"), "epochs": epochs, "train_captchas": limit or "all",
           "test_captchas": len(test),
           "string_acc": rep.captchas["string_acc"], "char_acc": rep.captchas["captcha_char_acc"],
           "train_wall_s": wall, "train_loop_s": res["train_seconds"]}
    if solve:
        row.update(solving_figures(load_solver(out), [p for p, _ in test]))
    return row


def _rate(row: dict) -> str:
    return f"{row['batch_captchas_per_s']:.0f}" if "batch_captchas_per_s" in row else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--epochs", type=int, default=None, help="Default: each set's recipe (RECIPES).")
    ap.add_argument("--curve", action="store_true", help="Also train on 25, 50, 100, 200 captchas.")
    ap.add_argument("--method", default=None, choices=["classify", "ctc"], help="Default: each set's recipe.")
    ap.add_argument("--freeze", default=None, help="Default: `captcha train`'s (none: fine-tune it all, for real captchas).")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--json", default="runs/bench-real.json")
    args = ap.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} not found: the real datasets live beside the repository")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets.split(","):
            recipe = RECIPES.get(name, {"method": "classify", "epochs": 10})
            epochs = args.epochs or recipe["epochs"]
            kw = {"method": args.method or recipe["method"], "freeze": args.freeze, "lr": args.lr}
            row = run_set(name, Path(tmp), epochs, **kw)
            dd = ddddocr_score(prepare(name, Path(tmp))[1])
            if dd:
                row["ddddocr"] = dd
            rows.append(row)
            print(json.dumps(row))
            if args.curve:
                for k in (25, 50, 100, 200):
                    r = run_set(name, Path(tmp), epochs, limit=k, solve=False, **kw)
                    rows.append(r)
                    print(json.dumps(r))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=2))
    print(f"\nfreeze {args.freeze or 'default'}; test = last 25% of each set by file name\n")
    print("| set | method, epochs | train captchas | full-string | characters | train time | captchas/s "
          "| ddddocr full-string | ddddocr captchas/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        dd = r.get("ddddocr") or {}
        ours = (f"| {r['set']} | {r['method']}, {r['epochs']} | {r['train_captchas']} | {100 * r['string_acc']:.2f}% | "
                f"{100 * r['char_acc']:.2f}% | {r['train_wall_s']:.0f} s | {_rate(r)} |")
        print(ours + (f" {100 * dd['string_acc']:.2f}% | {dd['captchas_per_s']:.0f} |" if dd else " - | - |"))


if __name__ == "__main__":
    main()
