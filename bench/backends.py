#!/usr/bin/env python
"""Batch solving with PyTorch vs the compiled ONNX file (fp32 and int8, on OpenVINO and on ONNX Runtime) side by
side: captchas/s and accuracy.

    python bench/backends.py --checkpoint checkpoints/model.pt [--data data | --data labelled-folder/]

``--data`` is a course dataset (its captchas/val) or any labelled folder (labels.csv or names).
The first row is what `captcha solve` uses with no flags (``--precision auto``: int8 when the
checkpoint's int8 check passed at training). Readings are compared case-insensitively.

Targets (issues 8 and 16, 2-core CPU): >= 3x ddddocr's captchas/s (measured here, in the same run, when
ddddocr is installed) and >= 400 captchas/s, with full-string accuracy within 0.2 points of PyTorch.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path

from rivals import ddddocr_reader

from captcha.charset import Charset
from captcha.config import ONNX_RUNTIME_ENV, ONNX_RUNTIMES
from captcha.data.layout import read_captcha_labels
from captcha.inference.load import OnnxCache, load_solver
from captcha.inference.solver import Solver


def measure(solver: Solver, paths: list[str], labels: dict[str, str], repeat: int = 3) -> dict:
    list(solver.solve_batch(paths[:128], batch_size=128))  # warm-up
    t0 = time.perf_counter()
    results = []
    for _ in range(repeat):
        results = list(solver.solve_batch(paths, batch_size=64))
    rate = repeat * len(paths) / (time.perf_counter() - t0)
    right = sum(r.ok and r.solution.text.upper() == labels[Path(r.source).name].upper() for r in results)
    return {"captchas_per_s": rate, "string_acc": right / len(paths)}


def loaded_on(runtime: str, checkpoint: str, **kw) -> Solver:
    """``load_solver`` with the ONNX file run by ``runtime`` (as $CAPTCHA_ONNX_RUNTIME chooses it)."""
    before = os.environ.get(ONNX_RUNTIME_ENV)
    os.environ[ONNX_RUNTIME_ENV] = runtime
    try:
        return load_solver(checkpoint, **kw)
    finally:
        if before is None:
            del os.environ[ONNX_RUNTIME_ENV]
        else:
            os.environ[ONNX_RUNTIME_ENV] = before


def measure_ddddocr(paths: list[str], labels: dict[str, str]) -> dict | None:
    """ddddocr's default model on the same files, in the same run (optional: skipped when absent),
    restricted to the labels' characters, case-insensitive."""
    read = ddddocr_reader("".join(sorted({c for lab in labels.values() for c in lab})))
    if read is None:
        return None
    data = [(Path(p).name, Path(p).read_bytes()) for p in paths]  # files read, as our solver reads them
    t0 = time.perf_counter()
    right = sum(read(d).upper() == labels[name].upper() for name, d in data)
    return {"captchas_per_s": len(data) / (time.perf_counter() - t0), "string_acc": right / len(data)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/model.pt")
    ap.add_argument("--data", default="data")
    args = ap.parse_args()
    folder = Path(args.data) / "captchas" / "val"
    folder = folder if folder.is_dir() else Path(args.data)
    samples = read_captcha_labels(folder, Charset(), problems=[])
    labels = {s.path.name: s.label for s in samples}
    paths = sorted(str(s.path) for s in samples)
    with tempfile.TemporaryDirectory() as tmp:
        cache = OnnxCache(tmp)
        default = load_solver(args.checkpoint, cache=cache)
        rows = {f"default ({default.backend_name} on {default.runtime})": measure(default, paths, labels),
                "pytorch": measure(load_solver(args.checkpoint, backend="torch"), paths, labels)}
        for runtime in (r for r in ONNX_RUNTIMES if importlib.util.find_spec(r) is not None):
            for precision in ("fp32", "int8"):
                solver = loaded_on(runtime, args.checkpoint, cache=cache, precision=precision)
                rows[f"onnx {precision} on {runtime}"] = measure(solver, paths, labels)
    dd = measure_ddddocr(paths, labels)
    if dd:
        rows["ddddocr (no training)"] = dd
    print(f"{len(paths)} captchas from {folder}, solved 3 times each, batches of 64\n")
    base = rows.get("ddddocr (no training)", {}).get("captchas_per_s")
    print("| backend | captchas/s | x ddddocr | full-string accuracy |\n|---|---|---|---|")
    for name, r in rows.items():
        times = f"{r['captchas_per_s'] / base:.1f}x" if base else "-"
        print(f"| {name} | {r['captchas_per_s']:.0f} | {times} | {100 * r['string_acc']:.2f}% |")


if __name__ == "__main__":
    main()
