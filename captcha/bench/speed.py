"""How fast a loaded solver reads: batch throughput and single-image latency, for the bench scripts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

from ..inference.solver import Solver


def solving_figures(solver: Solver, images: list[Path], repeat: int = 4) -> dict[str, float]:
    """Batch throughput (files decoded, split, read; in processes where the batch proves bound by that) and
    single-image latency once loaded."""
    paths = [str(p) for p in images] * repeat
    list(solver.solve_batch(paths[:64]))  # warm-up
    n, seconds = _timed_batch(solver, paths)
    batch_rate = n / seconds
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


def paired_rates(solver: Solver, images: list[Path], rival: Callable[[bytes], object], rival_inputs: list[bytes],
                 rounds: int = 3, repeat: int = 4) -> dict[str, float]:
    """Captchas a second of ``solver`` and of ``rival`` (one image's bytes at a time; ``rival_inputs``: the same
    images as it is handed them), timed in alternating rounds: a machine whose speed wanders over minutes moves both
    rates alike, and their ratio stays. Each round reads the images ``repeat`` times, the solver in one batch as
    :func:`solving_figures` times it (what starting a batch costs is spread as there)."""
    paths = [str(p) for p in images] * repeat
    list(solver.solve_batch(paths[:64]))  # warm-up, both
    for data in rival_inputs[:16]:
        rival(data)
    ours = theirs = 0.0
    read = 0
    for _ in range(rounds):
        n, seconds = _timed_batch(solver, paths)
        read, ours = read + n, ours + seconds
        t0 = time.perf_counter()
        for _ in range(repeat):
            for data in rival_inputs:
                rival(data)
        theirs += time.perf_counter() - t0
    return {"captchas_per_s": read / ours, "rival_captchas_per_s": rounds * repeat * len(rival_inputs) / theirs}


def _timed_batch(solver: Solver, paths: list[str]) -> tuple[int, float]:
    """The captchas read in one batch of ``paths`` and the seconds it took."""
    t0 = time.perf_counter()
    return sum(1 for r in solver.solve_batch(paths, batch_size=128) if r.ok), time.perf_counter() - t0
