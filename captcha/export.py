"""ONNX export of a recognizer, verified against PyTorch, with optional int8 quantisation.

The ONNX file carries everything solving needs besides the weights (charset, preprocessing,
captcha length, splitter) as JSON in its metadata, so `Solver.from_onnx` needs no checkpoint and
no PyTorch.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CheckpointError

log = logging.getLogger(__name__)

META_KEY = "captcha"
INPUT, OUTPUT = "crops", "logits"


def _sample_crops(ckpt: dict[str, Any], n: int, seed: int = 0) -> np.ndarray:
    """Calibration/verification inputs: preprocessed crops of synthetic glyphs in the model's charset."""
    import random

    from .synth import GlyphStyle, render_char
    from .transforms import Preprocess

    pre = Preprocess.from_dict(ckpt["preprocess"])
    alphabet = ckpt["charset"]["alphabet"]
    rng = random.Random(seed)
    return np.stack([pre(render_char(rng.choice(alphabet), rng, GlyphStyle())) for _ in range(n)]).astype(np.float32)


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike, quantize: bool = False,
                tolerance: float = 1e-3, samples: int = 64) -> dict[str, Any]:
    """Export, then check ONNX Runtime against PyTorch on sample crops; raise beyond ``tolerance``."""
    import onnx
    import torch

    from .checkpoint import load_checkpoint
    from .model import model_from_checkpoint

    ckpt = load_checkpoint(checkpoint, kind="recognizer")
    model = model_from_checkpoint(ckpt, checkpoint).eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    h, w = ckpt["preprocess"]["size"]
    dummy = torch.zeros(2, 3, h, w)
    torch.onnx.export(model, (dummy,), str(out), input_names=[INPUT], output_names=[OUTPUT],
                      dynamic_axes={INPUT: {0: "n"}, OUTPUT: {0: "n"}}, opset_version=17, dynamo=False)
    meta = {k: ckpt[k] for k in ("charset", "preprocess", "length", "segment", "pretrained", "freeze")}
    meta["method"] = ckpt.get("method", "classify")
    meta["metrics"] = {k: v for k, v in ckpt.get("metrics", {}).items() if isinstance(v, (int, float, str))}
    proto = onnx.load(str(out))
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    onnx.save(proto, str(out))
    x = _sample_crops(ckpt, samples)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    report: dict[str, Any] = {"onnx": str(out)}
    report["max_abs_diff"] = _verify(out, x, ref, tolerance)
    if quantize:
        qpath = out.with_name(out.stem + ".int8.onnx")
        quantize_int8(out, qpath, _sample_crops(ckpt, 256, seed=1))
        qref = ref.argmax(1)
        from .solve import OnnxBackend

        qlogits = OnnxBackend(qpath)(x)
        report["int8"] = str(qpath)
        report["int8_top1_agreement"] = float((qlogits.argmax(1) == qref).mean())
    return report


def cache_dir() -> Path:
    """Where compiled models are kept: $CAPTCHA_CACHE, else $XDG_CACHE_HOME/captcha or ~/.cache/captcha."""
    if os.environ.get("CAPTCHA_CACHE"):
        return Path(os.environ["CAPTCHA_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "captcha"


def compiled_onnx(checkpoint: str | os.PathLike) -> Path:
    """The checkpoint exported to ONNX once (keyed by its content and the torch version), then reused."""
    import hashlib
    import tempfile

    import torch

    from .checkpoint import require_file

    digest = hashlib.sha256(require_file(checkpoint).read_bytes())
    digest.update(str(torch.__version__).encode())
    target = cache_dir() / f"{digest.hexdigest()[:24]}.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=target.parent)
    os.close(fd)
    try:
        export_onnx(checkpoint, tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def _verify(path: Path, x: np.ndarray, ref: np.ndarray, tolerance: float) -> float:
    from .solve import OnnxBackend

    got = OnnxBackend(path)(x)
    diff = float(np.abs(got - ref).max())
    if not np.isfinite(diff) or diff > tolerance:
        raise CheckpointError(f"{path}: ONNX Runtime and PyTorch disagree by {diff:.2e} (> {tolerance:.0e}); "
                              "the export is wrong, do not use it")
    return diff


def quantize_int8(src: Path, dst: Path, calibration: np.ndarray) -> Path:
    """Static int8 quantisation (QDQ, per-channel) with ONNX Runtime's quantiser."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
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
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    proto = onnx.load(str(dst))
    for k, v in meta.items():
        e = proto.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(proto, str(dst))
    return dst


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The solving settings stored in an exported ONNX file (via ONNX Runtime, without torch)."""
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own untyped errors
        raise CheckpointError(f"{path}: not a loadable ONNX model: {exc}") from None
    raw = sess.get_modelmeta().custom_metadata_map.get(META_KEY)
    if raw is None:
        raise CheckpointError(f"{path}: ONNX file has no captcha metadata; export it with `captcha export`")
    return json.loads(raw)
