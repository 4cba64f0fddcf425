#!/usr/bin/env python
"""Batch solving with PyTorch vs ONNX Runtime (fp32 and int8) side by side: captchas/s and accuracy.

    python bench/backends.py --checkpoint checkpoints/model.pt [--data data]

Target (issue 8, 2-core CPU): >= 650 captchas/s with full-string accuracy within 0.2 points of PyTorch.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

from captcha.inference.export import export_onnx
from captcha.inference.load import load_solver
from captcha.inference.solver import Solver


def measure(solver: Solver, paths: list[str], labels: dict[str, str], repeat: int = 3) -> dict:
    list(solver.solve_batch(paths[:128], batch_size=128))  # warm-up
    t0 = time.perf_counter()
    results = []
    for _ in range(repeat):
        results = list(solver.solve_batch(paths, batch_size=64))
    rate = repeat * len(paths) / (time.perf_counter() - t0)
    right = sum(r.ok and r.solution.text == labels[Path(r.source).name] for r in results)
    return {"captchas_per_s": rate, "string_acc": right / len(paths)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/model.pt")
    ap.add_argument("--data", default="data")
    args = ap.parse_args()
    folder = Path(args.data) / "captchas" / "val"
    with open(folder / "labels.csv", encoding="utf-8") as fh:
        labels = {r["filename"]: r["label"] for r in csv.DictReader(fh)}
    paths = [str(folder / n) for n in sorted(labels)]
    with tempfile.TemporaryDirectory() as tmp:
        rep = export_onnx(args.checkpoint, Path(tmp) / "m.onnx", quantize=True)
        rows = {"pytorch": measure(load_solver(args.checkpoint, backend="torch"), paths, labels),
                "onnx fp32": measure(load_solver(rep["onnx"]), paths, labels),
                "onnx int8": measure(load_solver(rep["int8"]), paths, labels)}
    print(f"{len(paths)} captchas from {folder}, solved 3 times each, batches of 64\n")
    print("| backend | captchas/s | full-string accuracy |\n|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['captchas_per_s']:.0f} | {100 * r['string_acc']:.2f}% |")


if __name__ == "__main__":
    main()
