"""What runs the network: PyTorch or ONNX Runtime behind one call, ``backend(x) -> logits``.

Both take and return numpy arrays, so decoding and batching never care which one runs. Neither
library is imported until its backend is built: the ONNX path never loads PyTorch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import CheckpointError

META_KEY = "captcha"  # the ONNX metadata entry holding the solving settings (JSON)
INPUT, OUTPUT = "crops", "logits"
INT8_SUFFIX = ".int8.onnx"  # `captcha export --int8`'s file, beside the fp32 one
SECOND_SUFFIX = ".second.onnx"  # beside an exported file: the second network of a refit checkpoint (config.SECOND)
TEMP_GLOB = ".*.onnx.tmp"  # an exported file still being written (temp_onnx): what a killed process leaves behind
INFERENCE_BATCH = 512  # inputs per network call when a whole array is run (validation, evaluation)


class TorchBackend:
    """Runs a model with PyTorch: inference mode, channels-last, bf16 autocast on CUDA."""

    name = "torch"
    any_width = True  # convolutions read inputs of any width

    def __init__(self, model: Any, threads: int | None = None, device: str = "cpu") -> None:
        import torch  # optional on the ONNX path: imported only when this backend is chosen

        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.model = model.eval().to(self.device, memory_format=torch.channels_last)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                    enabled=self.device.type == "cuda"):
            t = torch.as_tensor(x).to(self.device).contiguous(memory_format=torch.channels_last)
            return self.model(t).float().cpu().numpy()


class OnnxBackend:
    """Runs an exported model with ONNX Runtime on the CPU."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime as ort  # optional heavy dependency, needed only on this path

        self.path = path
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no busy-waiting between calls: on 2 cores the spinning threads took time from the thread that
        # decodes the next batch (henan, int8: 380 -> 400 captchas/s; single-image latency unchanged)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own untyped errors
            raise CheckpointError(f"{path}: not a loadable ONNX model: {exc}") from None
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=np.float32)})[0]

    @property
    def name(self) -> str:
        """``onnx-int8`` for a quantised file (compile_onnx records it in the metadata), else ``onnx``."""
        try:
            return "onnx-int8" if self.metadata().get("precision") == "int8" else "onnx"
        except CheckpointError:  # no or malformed metadata: a bare file
            return "onnx"

    @property
    def any_width(self) -> bool:
        """True when the file reads inputs of any width (CTC models exported since it could)."""
        return not isinstance(self.session.get_inputs()[0].shape[-1], int)

    @property
    def classes(self) -> int | None:
        """The network's outputs per position, when the file fixes them."""
        dim = self.session.get_outputs()[0].shape[-1]
        return dim if isinstance(dim, int) else None

    def metadata(self) -> dict[str, Any]:
        """The solving settings stored in the file by `captcha export`."""
        raw = self.session.get_modelmeta().custom_metadata_map.get(META_KEY)
        if raw is None:
            raise CheckpointError(f"{self.path}: ONNX file has no captcha metadata; export it with `captcha export`")
        try:
            meta = json.loads(raw)
        except json.JSONDecodeError:
            raise CheckpointError(f"{self.path}: its captcha metadata is not valid JSON; export it again") from None
        if not isinstance(meta, dict):
            raise CheckpointError(f"{self.path}: its captcha metadata is not an object; export it again")
        return meta


def has_onnxruntime() -> bool:
    """True when ONNX Runtime (and onnx, for exporting) are installed."""
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def run_batched(backend: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                batch_size: int = INFERENCE_BATCH) -> np.ndarray:
    """Run ``backend`` over ``x`` in batches: the one batched-inference helper."""
    if not len(x):
        return np.zeros((0,), dtype=np.float32)
    return np.concatenate([backend(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The solving settings stored in an exported ONNX file (via ONNX Runtime, without torch)."""
    return OnnxBackend(path).metadata()


def temp_onnx(folder: Path, key: str) -> Path:
    """A new empty file in ``folder`` to write ``key``'s exported model into before it is renamed into place; its
    name matches TEMP_GLOB, so that the compile cache's pruning removes one a killed process left."""
    fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".onnx.tmp", dir=folder)
    os.close(fd)
    return Path(tmp)


def second_path(onnx_path: str | os.PathLike) -> Path:
    """Where `captcha export` writes the second network of a model exported to ``onnx_path``: beside
    ``m.onnx``, ``m.second.onnx``; beside its int8 ``m.int8.onnx``, ``m.second.int8.onnx``."""
    path = Path(onnx_path)
    if path.name.endswith(INT8_SUFFIX):
        return path.with_name(path.name[:-len(INT8_SUFFIX)] + SECOND_SUFFIX[:-len(".onnx")] + INT8_SUFFIX)
    return path.with_name(path.stem + SECOND_SUFFIX)
