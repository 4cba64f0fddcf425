#!/usr/bin/env python
"""int8 calibration: each way of setting activation ranges against fp32, on trained models.

For every checkpoint given (as `captcha train` wrote it: its data folder and validation files are
recorded in it), the model is exported, quantised with each of ``captcha.inference.export.CALIBRATIONS``
on the 64 training inputs the checkpoint stores, and the three versions read its validation captchas
(what the int8 check at the end of training reads) and, for a model `bench/real.py --keep` trained on a
set it knows, that set's test quarter. Full-string accuracy, as the labels are read for training.

    python bench/int8.py runs/real-s13/sysu_alnum4-all-plain.pt [MORE.pt ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from real import SETS, split_set

from captcha.charset import Charset
from captcha.data.images import load_image
from captcha.data.layout import read_captcha_labels
from captcha.data.preprocess import Preprocess
from captcha.data.segment import SegmentConfig
from captcha.inference.backends import OnnxBackend
from captcha.inference.export import (
    CALIBRATIONS,
    calibration_inputs,
    export_onnx,
    quantize_int8,
    string_accuracy,
)
from captcha.inference.solver import Preparer
from captcha.nn.checkpoint import load_checkpoint


def captchas_to_read(ckpt: dict) -> dict[str, tuple[list[Path], list[str]]]:
    """The checkpoint's validation captchas, and the test quarter of the bench set its data came from."""
    charset = Charset.from_dict(ckpt["charset"])
    data = Path(ckpt["train_config"]["data"])
    labelled = {s.path.name: s.label for s in read_captcha_labels(data, charset, problems=[])}
    val = [n for n in ckpt["split"]["val_files"] if n in labelled]
    out = {"val": ([data / n for n in val], [labelled[n] for n in val])}
    known = [name for name in SETS if data.name.startswith(name)]
    if known:
        test = split_set(max(known, key=len))[1]
        out["test"] = ([p for p, _ in test], [charset.normalize(lab) for _, lab in test])
    return out


def compare(path: Path) -> dict:
    """fp32 and each calibration's int8 reading the model's captchas: {version: {captchas: accuracy}}."""
    ckpt = load_checkpoint(path, kind="recognizer")
    charset = Charset.from_dict(ckpt["charset"])
    prep = Preparer(Preprocess.from_dict(ckpt["preprocess"]), int(ckpt["length"]),
                    SegmentConfig.from_dict(ckpt["segment"]), ckpt.get("method", "classify"))
    sets = captchas_to_read(ckpt)
    inputs = {k: np.concatenate([prep.inputs(load_image(p)) for p in files]) for k, (files, _) in sets.items()}

    def accuracy(model: Path, key: str) -> float:
        return string_accuracy(OnnxBackend(model), inputs[key], sets[key][1], charset, prep.method, prep.length)

    row: dict = {"model": str(path), "captchas": {k: len(v[1]) for k, v in sets.items()}}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "m.onnx"
        export_onnx(path, fp32)
        row["fp32"] = {k: accuracy(fp32, k) for k in sets}
        for ranges in CALIBRATIONS:
            q = quantize_int8(fp32, Path(tmp) / f"{ranges}.onnx", calibration_inputs(ckpt), ranges=ranges)
            row[ranges] = {k: accuracy(q, k) for k in sets}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    versions = ("fp32", *CALIBRATIONS)
    print("| model | captchas | " + " | ".join(versions) + " |")
    print("|---|---|" + "---|" * len(versions))
    rows = []
    for path in args.models:
        row = compare(path)
        rows.append(row)
        for key, n in row["captchas"].items():
            cells = " | ".join(f"{100 * row[v][key]:.2f}%" for v in versions)
            print(f"| {path.stem} | {key} ({n}) | {cells} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
