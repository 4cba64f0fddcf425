"""How fast a loaded solver reads: batch throughput and single-image latency, for the bench scripts."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from ..inference.solver import Solver


def solving_figures(solver: Solver, images: list[Path], repeat: int = 4) -> dict[str, float]:
    """Batch throughput (files decoded, split, read; in processes where the batch proves bound by that) and
    single-image latency once loaded."""
    paths = [str(p) for p in images] * repeat
    list(solver.solve_batch(paths[:64]))  # warm-up
    t0 = time.perf_counter()
    n = sum(1 for r in solver.solve_batch(paths, batch_size=128) if r.ok)
    batch_rate = n / (time.perf_counter() - t0)
    data = [p.read_bytes() for p in images[:200]]
    for d in data[:10]:
        solver.solve(d)
    lat = []
    for d in data:
        t = time.perf_counter()
        solver.solve(d)
        lat.append(time.perf_counter() - t)
    return {"batch_captchas_per_s": batch_rate, "single_ms_median": 1000 * statistics.median(lat),
            "single_ms_p90": 1000 * sorted(lat)[int(0.9 * len(lat))]}
