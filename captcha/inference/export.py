"""ONNX export of a recognizer, verified against PyTorch, with optional int8 quantisation.

The ONNX file carries everything solving needs besides the weights (charset, preprocessing,
captcha length, splitter, method) as JSON in its metadata, so ``Solver.from_onnx`` needs no
checkpoint and no PyTorch.
"""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from ..data.preprocess import Preprocess
from ..data.synth import GlyphStyle, render_char
from ..errors import CheckpointError
from ..nn.checkpoint import load_checkpoint
from ..nn.networks import model_from_checkpoint
from .backends import INPUT, META_KEY, OUTPUT, OnnxBackend

log = logging.getLogger(__name__)

SOLVING_KEYS = ("charset", "preprocess", "length", "segment", "method", "captcha_size", "pretrained", "freeze",
                "temperature")


def solving_metadata(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What an exported file records of its checkpoint: the settings solving needs, and its metrics."""
    meta = {k: ckpt[k] for k in SOLVING_KEYS if k in ckpt}
    meta.setdefault("method", "classify")
    meta["metrics"] = {k: v for k, v in ckpt.get("metrics", {}).items() if isinstance(v, (int, float, str))}
    return meta


def sample_crops(ckpt: dict[str, Any], n: int, seed: int = 0) -> np.ndarray:
    """Calibration/verification inputs: preprocessed crops of synthetic glyphs in the model's charset."""
    pre = Preprocess.from_dict(ckpt["preprocess"])
    alphabet = ckpt["charset"]["alphabet"]
    rng = random.Random(seed)
    return np.stack([pre(render_char(rng.choice(alphabet), rng, GlyphStyle())) for _ in range(n)]).astype(np.float32)


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike, quantize: bool = False,
                tolerance: float = 1e-3, samples: int = 64) -> dict[str, Any]:
    """Export, then check ONNX Runtime against PyTorch on sample crops; raise beyond ``tolerance``."""
    ckpt = load_checkpoint(checkpoint, kind="recognizer")
    model = model_from_checkpoint(ckpt, checkpoint).eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    h, w = ckpt["preprocess"]["size"]
    torch.onnx.export(model, (torch.zeros(2, 3, h, w),), str(out), input_names=[INPUT], output_names=[OUTPUT],
                      dynamic_axes={INPUT: {0: "n"}, OUTPUT: {0: "n"}}, opset_version=17, dynamo=False)
    proto = onnx.load(str(out))
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(solving_metadata(ckpt))
    onnx.save(proto, str(out))
    x = sample_crops(ckpt, samples)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    report: dict[str, Any] = {"onnx": str(out), "max_abs_diff": _verify(out, x, ref, tolerance)}
    if quantize:
        qpath = out.with_name(out.stem + ".int8.onnx")
        quantize_int8(out, qpath, sample_crops(ckpt, 256, seed=1))
        report["int8"] = str(qpath)
        report["int8_top1_agreement"] = float((OnnxBackend(qpath)(x).argmax(1) == ref.argmax(1)).mean())
    return report


def _verify(path: Path, x: np.ndarray, ref: np.ndarray, tolerance: float) -> float:
    diff = float(np.abs(OnnxBackend(path)(x) - ref).max())
    if not np.isfinite(diff) or diff > tolerance:
        raise CheckpointError(f"{path}: ONNX Runtime and PyTorch disagree by {diff:.2e} (> {tolerance:.0e}); "
                              "the export is wrong, do not use it")
    return diff


def quantize_int8(src: Path, dst: Path, calibration: np.ndarray) -> Path:
    """Static int8 quantisation (QDQ, per-channel) with ONNX Runtime's quantiser."""
    # optional heavy dependency: the quantiser is loaded only when int8 is asked for
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{INPUT: calibration[i:i + 32]} for i in range(0, len(calibration), 32)])

        def get_next(self):
            return next(self.batches, None)

    prepped = dst.with_name(dst.stem + ".pre.onnx")
    quant_pre_process(str(src), str(prepped))
    try:
        # reduce_range (7-bit weights): on the course val set full 8-bit weights cost 2.0 points of
        # full-string accuracy (the 7x7 stem conv is the sensitive layer); 7-bit ones lost nothing.
        quantize_static(str(prepped), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        prepped.unlink(missing_ok=True)
    meta = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    proto = onnx.load(str(dst))
    for k, v in meta.items():
        e = proto.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(proto, str(dst))
    return dst
