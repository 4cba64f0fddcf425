#!/usr/bin/env python
"""int8 calibration: each way of setting activation ranges against fp32, on trained models.

For every checkpoint given (as `captcha train` wrote it: its data folder and validation files are
recorded in it), the model is exported, quantised with each of ``captcha.inference.export.CALIBRATIONS``
on the 64 training inputs the checkpoint stores, and the versions read its validation captchas
(what the int8 check at the end of training reads) and, for a model `bench/real.py --keep` trained on a
set it knows, that set's test quarter (and a leave-style-out site's wider test, ``--wide 2000``). Full-string
accuracy, as the labels are read for training, and the captchas only one precision reads right; its first
training captchas too, as many as training's check reads. ``--damaged 2,4`` adds int8s quantised on purpose with
ranges too narrow (calibrated on inputs dimmed 2x, 4x): what the check must catch. ``--draws N`` replays N checks
of ``--check-size`` captchas (50, a single fit's) drawn from the largest set read but the training one, and gives
how often each int8 passes today's rule (``captcha.inference.export.int8_passes``, with the training captchas'
paired readings) and the allowance alone (as checks stored before the paired counts).

    python bench/int8.py runs/real-s13/sysu_alnum4-all-plain.pt [MORE.pt ...] [--wide 2000 --damaged 2,4 --draws 2000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from real import SETS, split_set, wide_test

from captcha.charset import Charset
from captcha.config import INT8_TRAINED, ONE_FIT_VALIDATION
from captcha.data.images import load_image
from captcha.data.layout import read_captcha_labels
from captcha.data.preprocess import Preprocess
from captcha.data.segment import SegmentConfig
from captcha.data.styles import CAPTCHA_STYLES
from captcha.inference.backends import OnnxBackend
from captcha.inference.export import (
    CALIBRATIONS,
    calibration_inputs,
    export_onnx,
    int8_passes,
    paired_reading,
    quantize_int8,
    reads_right,
)
from captcha.inference.solver import Preparer
from captcha.nn.checkpoint import load_checkpoint


def captchas_to_read(ckpt: dict, wide: int = 0) -> dict[str, tuple[list[Path], list[str]]]:
    """The checkpoint's validation captchas, its first training captchas, the test quarter of the bench set its data
    came from, and for a leave-style-out site ``wide`` captchas of its wider test."""
    charset = Charset.from_dict(ckpt["charset"])
    data = Path(ckpt["train_config"]["data"])
    labelled = {s.path.name: s.label for s in read_captcha_labels(data, charset, problems=[])}
    val = [n for n in ckpt["split"]["val_files"] if n in labelled]
    out = {"val": ([data / n for n in val], [labelled[n] for n in val])} if val else {}  # none after a refit
    trained = sorted(set(labelled) - set(val))[:INT8_TRAINED]
    if trained:
        out["train"] = ([data / n for n in trained], [labelled[n] for n in trained])
    known = [name for name in SETS if data.name.startswith(name)]
    if known:
        name = max(known, key=len)
        test = split_set(name)[1]
        out["test"] = ([p for p, _ in test], [charset.normalize(lab) for _, lab in test])
        if name in CAPTCHA_STYLES and wide:
            more = wide_test(name, wide)
            out["wide"] = ([p for p, _ in more], [charset.normalize(lab) for _, lab in more])
    return out


def compare(path: Path, dimmed: tuple[float, ...] = (), wide: int = 0) -> dict:
    """fp32 and each calibration's int8 (and those quantised on calibration inputs ``dimmed`` by each factor,
    damaged on purpose: their activation ranges too narrow) reading the model's captchas:
    {version: {captchas: which were read right}}."""
    ckpt = load_checkpoint(path, kind="recognizer")
    charset = Charset.from_dict(ckpt["charset"])
    prep = Preparer(Preprocess.from_dict(ckpt["preprocess"]), int(ckpt["length"]),
                    SegmentConfig.from_dict(ckpt["segment"]), ckpt.get("method", "classify"))
    sets = captchas_to_read(ckpt, wide)
    inputs = {k: np.concatenate([prep.inputs(load_image(p)) for p in files]) for k, (files, _) in sets.items()}

    def right(model: Path) -> dict[str, np.ndarray]:
        return {k: reads_right(OnnxBackend(model), inputs[k], sets[k][1], charset, prep.method, prep.length)
                for k in sets}

    row: dict = {"model": str(path), "captchas": {k: len(v[1]) for k, v in sets.items()}}
    calibration = calibration_inputs(ckpt)
    versions = [(ranges, calibration, ranges) for ranges in CALIBRATIONS]
    versions += [(f"dimmed {factor:g}x", calibration / factor, CALIBRATIONS[0]) for factor in dimmed]
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "m.onnx"
        export_onnx(path, fp32)
        row["fp32"] = right(fp32)
        for name, x, ranges in versions:
            row[name] = right(quantize_int8(fp32, Path(tmp) / f"{name}.onnx", x, ranges=ranges))
    return row


def check_passes(fp32: np.ndarray, int8: np.ndarray, size: int, draws: int,
                 training: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """The share of ``draws`` random checks of ``size`` of these captchas that int8 would pass
    (``inference.export.int8_passes``) beside the ``training`` captchas' readings (fp32, int8), as training checks;
    with none, as checks stored before the paired counts were decided."""
    rng = np.random.default_rng(0)
    trained = paired_reading(*training) if training is not None else None  # the same beside every draw
    passed = 0
    for _ in range(draws):
        pick = rng.choice(len(fp32), size=min(size, len(fp32)), replace=False)
        check = paired_reading(fp32[pick], int8[pick])
        if trained is None:
            check = {key: check[key] for key in ("fp32", "int8", "captchas")}
        else:
            check["training"] = trained
        passed += int8_passes(check)
    return passed / draws


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--damaged", type=lambda v: tuple(float(f) for f in v.split(",")), default=(),
                    help="also int8s damaged on purpose, calibrated on inputs dimmed by these factors (2,4)")
    ap.add_argument("--wide", type=int, default=0, help="a leave-style-out site's wider test of this many captchas")
    ap.add_argument("--check-size", type=int, default=ONE_FIT_VALIDATION,
                    help="captchas in each simulated int8 check, drawn from the largest set read but the training one")
    ap.add_argument("--draws", type=int, default=0, help="simulated checks per int8 version (0: none)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    versions = ("fp32", *CALIBRATIONS, *(f"dimmed {factor:g}x" for factor in args.damaged))
    print("| model | captchas | " + " | ".join(versions) + " | read right only in fp32 / only in int8 |")
    print("|---|---|" + "---|" * (len(versions) + 1))
    rows = []
    for path in args.models:
        row = compare(path, args.damaged, args.wide)
        for key, n in row["captchas"].items():
            cells = " | ".join(f"{100 * row[v][key].mean():.2f}%" for v in versions)
            reads = {v: paired_reading(row["fp32"][key], row[v][key]) for v in versions[1:]}
            pairs = ", ".join(f"{v} {r['fp32_only']} / {r['int8_only']}" for v, r in reads.items())
            print(f"| {path.stem} | {key} ({n}) | {cells} | {pairs} |", flush=True)
        if args.draws:
            key = max((k for k in row["captchas"] if k != "train"), key=row["captchas"].get)
            seen = "train" in row["fp32"]
            row["checks"] = {v: {"paired": check_passes(row["fp32"][key], row[v][key], args.check_size, args.draws,
                                                        (row["fp32"]["train"], row[v]["train"]) if seen else None),
                                 "allowance": check_passes(row["fp32"][key], row[v][key], args.check_size,
                                                           args.draws)}
                             for v in versions[1:]}
            print(f"  {path.stem}: checks of {args.check_size} of its {key} captchas passed, today's rule / the "
                  "allowance alone: " + ", ".join(f"{v} {100 * c['paired']:.1f} / {100 * c['allowance']:.1f}%"
                                                  for v, c in row["checks"].items()), flush=True)
        rows.append({**row, **{v: {k: float(r.mean()) for k, r in row[v].items()} for v in versions}})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
