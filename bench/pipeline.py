#!/usr/bin/env python
"""Benchmark the course pipeline on this machine: default `captcha train` on the default synthetic
data (training wall time, val full-string accuracy), then solving throughput and latency.

    python bench/pipeline.py [--data data] [--out runs/bench/model.pt] [--skip-train]

Targets (issue 3, 2-core CPU): >= 99.5% full-string val accuracy in <= 120 s of training;
batch solving >= 260 captchas/s; a single image <= 10 ms once the model is loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from captcha.bench.speed import solving_figures
from captcha.config import TrainConfig
from captcha.eval.evaluate import evaluate_checkpoint
from captcha.inference.load import load_solver
from captcha.training.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data")
    ap.add_argument("--out", default="runs/bench/model.pt")
    ap.add_argument("--skip-train", action="store_true", help="Only measure solving with --out.")
    ap.add_argument("--pretrained", default="auto")
    args = ap.parse_args()
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"}
    if not args.skip_train:
        t0 = time.perf_counter()
        res = train(TrainConfig(data=args.data, out=args.out, pretrained=args.pretrained), say=print)
        result["train_wall_s"] = time.perf_counter() - t0
        result["train_loop_s"] = res["train_seconds"]
    rep = evaluate_checkpoint(args.out)
    result["val_char_acc"] = rep.chars.get("char_acc")
    result["val_string_acc"] = rep.captchas.get("string_acc")
    images = sorted((Path(args.data) / "captchas" / "val").glob("*.png"))
    result.update(solving_figures(load_solver(args.out), images))
    print(json.dumps(result, indent=2))
    print(f"\ntraining: {result.get('train_wall_s', float('nan')):.1f} s wall "
          f"({result.get('train_loop_s', float('nan')):.1f} s in the training loop); "
          f"val full-string accuracy {100 * result['val_string_acc']:.2f}%, characters {100 * result['val_char_acc']:.2f}%")
    print(f"solving: {result['batch_captchas_per_s']:.0f} captchas/s in batches; single image "
          f"{result['single_ms_median']:.1f} ms median ({result['single_ms_p90']:.1f} ms p90)")


if __name__ == "__main__":
    main()
