"""Bulk solving into a CSV: expanding inputs, streaming them through the solver, resuming."""

from __future__ import annotations

import csv
import glob
import os
import time
from pathlib import Path
from typing import Iterable, Iterator

from tqdm import tqdm

from ..config import SOLVE_BATCH_SIZE, SOLVE_WORKERS
from ..data.images import is_image_name, is_refused_image_name
from ..errors import ConfigError, DataError
from .solver import Solver

FIELDS = ("filename", "text", "confidence", "error")
LIST_SUFFIXES = (".txt", ".lst")


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell that starts so (OWASP)


def csv_cell(text: str) -> str:
    """``text`` safe to open in a spreadsheet: a leading formula character is escaped with a quote."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_text(cell: str) -> str:
    """The text a :func:`csv_cell` cell stands for."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS) else cell


def expand_inputs(inputs: Iterable[str], lists: bool = True) -> Iterator[str]:
    """Paths from directories (recursively, sorted: their images, those in formats it does not read too, which
    the solver then names), globs, list files (one path a line; with ``lists``) and plain files; a file reached twice
    (a symlink loop, overlapping inputs) is given once."""
    seen: set[str] = set()
    for path in _expanded(inputs, lists):
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            yield path


def _expanded(inputs: Iterable[str], lists: bool) -> Iterator[str]:
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for root, dirs, files in os.walk(p):  # os.walk does not follow directory symlinks: no loops
                dirs.sort()
                for name in sorted(files):
                    if is_image_name(name) or is_refused_image_name(name):  # the second kind: an error row, not silence
                        yield os.path.join(root, name)
        elif lists and p.is_file() and p.suffix.lower() in LIST_SUFFIXES:
            with open(p, encoding="utf-8-sig") as fh:
                for line in fh:
                    line = line.strip()
                    if line and not line.startswith("#"):
                        yield line
        elif not p.exists() and glob.has_magic(item):
            yield from sorted(glob.iglob(item, recursive=True))
        else:
            yield item  # a file, or a missing one: the solver reports it as an error row


def _drop_partial_row(out: Path) -> None:
    """A run killed mid-write can leave half a row; cut the file back to its last complete line."""
    data = out.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(out, "r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


def earlier_rows(out: Path) -> dict[str, bool]:
    """Resolved path -> whether it was read (an answer or a refusal; False: its row is an error) for each file
    of an earlier (perhaps interrupted) output CSV; a CSV that `solve-batch` did not write is refused."""
    if not out.is_file() or out.stat().st_size == 0:
        return {}
    _drop_partial_row(out)
    try:
        with open(out, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or tuple(header) != FIELDS:
                raise DataError(f"--out {out}: not a solve-batch CSV (header {header!r}); choose another --out")
            return {os.path.realpath(csv_text(row[0])): not _failed(row) for row in reader if row and row[0]}
    except UnicodeDecodeError:
        raise DataError(f"--out {out}: not a solve-batch CSV (not UTF-8 text); choose another --out") from None


def _failed(row: list[str]) -> bool:
    """An error row: no text and an error (a refusal has its confidence and its note)."""
    return len(row) >= len(FIELDS) and not row[1] and not row[2] and bool(row[3])


def _drop_failed_rows(out: Path, paths: set[str]) -> None:
    """Rewrite ``out`` without the error rows of ``paths`` (read again on resuming); through a temporary
    file, so a run killed meanwhile leaves the old CSV whole."""
    tmp = out.with_name(out.name + ".tmp")
    with open(out, newline="", encoding="utf-8") as src, open(tmp, "w", newline="", encoding="utf-8") as dst:
        writer = csv.writer(dst, lineterminator="\n")
        for row in csv.reader(src):
            if not (_failed(row) and os.path.realpath(csv_text(row[0])) in paths):
                writer.writerow(row)
    os.replace(tmp, out)


def run_batch(inputs: Iterable[str], out: str | os.PathLike, solver: Solver, batch_size: int = SOLVE_BATCH_SIZE,
              workers: int | str = SOLVE_WORKERS, resume: bool = False, progress: bool = False,
              shard: tuple[int, int] | None = None, overwrite: bool = False) -> dict:
    """Solve every input into ``out`` with ``solver``; an unreadable file becomes an error row, never a stop.

    An existing ``out`` is continued with ``resume`` (rows keyed by resolved path; a CSV of other inputs
    is refused; files whose rows are errors are read again, their old rows dropped), replaced with
    ``overwrite``, and otherwise refused."""
    out = Path(out)
    if out.is_file() and out.stat().st_size > 0 and not (resume or overwrite):
        raise DataError(f"--out {out} exists; add --resume to continue it or --overwrite to replace it")
    earlier = earlier_rows(out) if resume else {}
    stats = {"solved": 0, "errors": 0, "skipped": 0, "rejected": 0, "retried": 0}
    todo_paths = [p for i, p in enumerate(expand_inputs(inputs)) if not shard or i % shard[1] == shard[0]]
    wanted = {os.path.realpath(p) for p in todo_paths}
    if earlier and not earlier.keys() & wanted:
        raise DataError(f"--out {out} holds results for other inputs (none of its {len(earlier)} files is among "
                        "them); choose another --out, or --overwrite")
    skip = {path for path, read in earlier.items() if read}
    retry = {path for path, read in earlier.items() if not read} & wanted
    if retry:
        _drop_failed_rows(out, retry)
        stats["retried"] = len(retry)

    todo = [path for path in todo_paths if os.path.realpath(path) not in skip]  # a list: its length paces workers
    stats["skipped"] = len(todo_paths) - len(todo)

    fresh = not (resume and out.is_file() and out.stat().st_size > 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(out, "w" if fresh else "a", newline="", encoding="utf-8") as fh, \
            tqdm(desc="solving", unit="img", disable=not progress, mininterval=1) as bar:
        writer = csv.writer(fh, lineterminator="\n")
        if fresh:
            writer.writerow(FIELDS)
        for k, res in enumerate(solver.solve_batch(todo, batch_size=batch_size, workers=workers), start=1):
            if res.solution:
                sol = res.solution
                note = f"rejected: confidence below {solver.reject_below:g}" if sol.rejected else ""
                writer.writerow((csv_cell(res.source), csv_cell(sol.answer or ""), f"{sol.confidence:.4f}", note))
                stats["solved"] += 1
                stats["rejected"] += sol.rejected
            else:
                writer.writerow((csv_cell(res.source), "", "", csv_cell(res.error)))
                stats["errors"] += 1
            bar.update(1)
            if k % batch_size == 0:
                fh.flush()  # a killed run keeps every finished batch; --resume picks up from there
    seconds = time.perf_counter() - t0
    stats["seconds"] = seconds
    stats["per_second"] = (stats["solved"] + stats["errors"]) / seconds if seconds > 0 else 0.0
    return stats


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"i/n"`` -> (i, n): this process takes every n-th input starting at i (0-based)."""
    if not spec:
        return None
    try:
        i, n = (int(v) for v in spec.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {spec!r}: expected i/n, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"--shard {spec!r}: need 0 <= i < n")
    return i, n


def merge_results(parts: Iterable[str | os.PathLike], out: str | os.PathLike) -> int:
    """Merge shard CSVs into one, one row per file (a file solved twice keeps its last row)."""
    rows: dict[str, list[str]] = {}
    for part in parts:
        with open(part, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                continue
            if tuple(header) != FIELDS:
                raise DataError(f"{part}: not a solve-batch CSV (header {header!r})")
            for row in reader:
                if row:
                    rows[row[0]] = row
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(FIELDS)
        w.writerows(rows.values())
    return len(rows)
