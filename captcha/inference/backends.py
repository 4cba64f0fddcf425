"""What runs the network: PyTorch or an exported ONNX file (on OpenVINO or ONNX Runtime) behind one call,
``backend(x) -> logits``.

Both take and return numpy arrays, so decoding and batching never care which one runs. No runtime is
imported until its backend is built: the ONNX path never loads PyTorch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import ONNX_RUNTIME_ENV, ONNX_RUNTIMES, THREADS_ENV
from ..data.layout import write_atomically
from ..errors import CheckpointError, ConfigError

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
    """Runs an exported model on the CPU: on OpenVINO where it is installed, else on ONNX Runtime
    (:func:`onnx_runtime`; ``runtime`` names one). OpenVINO keeps the network it compiles for this CPU in
    ``blobs`` where given (the compile cache's, see ``inference.load``), so that the next process loads it at once."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None, runtime: str | None = None,
                 blobs: str | os.PathLike | None = None) -> None:
        self.path = path
        self.runtime = onnx_runtime(runtime)
        threads = threads or process_threads()
        self.session = _OpenVino(path, threads, blobs) if self.runtime == "openvino" else _OnnxRuntime(path, threads)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(np.ascontiguousarray(x, dtype=np.float32))

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
        return self.session.input_width is None

    @property
    def classes(self) -> int | None:
        """The network's outputs per position, when the file fixes them."""
        return self.session.classes

    def stored(self, key: str) -> str | None:
        """The file's metadata entry ``key`` as written, or None."""
        return self.session.stored(key)

    def metadata(self) -> dict[str, Any]:
        """The solving settings stored in the file by `captcha export`."""
        raw = self.stored(META_KEY)
        if raw is None:
            raise CheckpointError(f"{self.path}: ONNX file has no captcha metadata; export it with `captcha export`")
        try:
            meta = json.loads(raw)
        except json.JSONDecodeError:
            raise CheckpointError(f"{self.path}: its captcha metadata is not valid JSON; export it again") from None
        if not isinstance(meta, dict):
            raise CheckpointError(f"{self.path}: its captcha metadata is not an object; export it again")
        return meta


class _OnnxRuntime:
    """An ONNX file opened in ONNX Runtime."""

    def __init__(self, path: str | os.PathLike, threads: int | None) -> None:
        import onnxruntime as ort  # optional heavy dependency, needed only on this path

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
        width, classes = self.session.get_inputs()[0].shape[-1], self.session.get_outputs()[0].shape[-1]
        self.input_width = width if isinstance(width, int) else None
        self.classes = classes if isinstance(classes, int) else None

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: x})[0]

    def stored(self, key: str) -> str | None:
        return self.session.get_modelmeta().custom_metadata_map.get(key)


class _OpenVino:
    """An ONNX file compiled by OpenVINO for this CPU: one stream over ``threads`` cores, as solving calls it
    one batch at a time; quantised layers in int8 at the precision OpenVINO picks for the rest of an int8
    file (bf16 where the CPU has AMX), all of a float file in fp32 (it must match PyTorch, and its int8 did not
    read as well)."""

    def __init__(self, path: str | os.PathLike, threads: int | None, blobs: str | os.PathLike | None) -> None:
        import openvino as ov  # optional heavy dependency, needed only on this path

        core = ov.Core()
        kept = Path(blobs) if blobs is not None and _writable(Path(blobs)) else None
        try:
            # what compiling needs to know of the file, and the settings stored in it: from the description kept
            # beside OpenVINO's networks, else read from the file (0.03-0.05 s of opening the general reader's)
            description = _description_file(path, kept) if kept is not None else None
            known = _described(description)
            fresh, model = known is None, None
            if fresh:
                model = core.read_model(str(path))
                known = {"int8": any(op.get_type_name() == "FakeQuantize" for op in model.get_ops()),
                         "stored": {k: v.astype(str) for k, v in _framework_info(model).items()}}
            config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
            if threads:
                config["INFERENCE_NUM_THREADS"] = threads
            if not known["int8"]:
                config["INFERENCE_PRECISION_HINT"] = "f32"
            if kept is not None:
                # compiling takes 0.25 s of a one-image `captcha solve` on 2 cores; given the file's path, OpenVINO
                # finds the network it compiled from that file's content before and loads it (0.04 s), the file unread
                config["CACHE_DIR"] = str(kept)
                self.compiled = core.compile_model(str(path), "CPU", config)
                _keep_description(description, known, fresh)
            else:
                self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own untyped errors
            raise CheckpointError(f"{path}: not a loadable ONNX model: {exc}") from None
        self.entries: dict[str, str] = known["stored"]
        width = self.compiled.inputs[0].get_partial_shape()[-1]
        classes = self.compiled.outputs[0].get_partial_shape()[-1]
        self.input_width = None if width.is_dynamic else width.get_length()
        self.classes = None if classes.is_dynamic else classes.get_length()
        # one infer request, one call at a time: a call uses every core it is given, so calls from several threads
        # (the service's executor) gain nothing by overlapping, and one request holds one set of buffers
        self.request = self.compiled.create_infer_request()
        self.lock = threading.Lock()

    def run(self, x: np.ndarray) -> np.ndarray:
        # OpenVINO keeps memory for every input shape it has run (~4 MB a batch size at 48x160, never given back:
        # 363 -> 615 MB once batches of 1 to 64 had been read), so a batch is read in parts whose sizes are powers
        # of two (37 = 32 + 4 + 1): a handful of shapes. The small parts cost some speed (lso-eroded-arc5's int8 file
        # at 96x240: 628 inputs/s one at a time, 1,393 in 32s, 1,028 in 128s; docs/measurements.md)
        if not len(x):  # OpenVINO refuses an empty batch; ONNX Runtime answers it with no rows
            return self._infer(np.zeros((1, *x.shape[1:]), dtype=x.dtype))[:0]
        parts, start = [], 0
        while start < len(x):
            size = 1 << ((len(x) - start).bit_length() - 1)
            parts.append(self._infer(x[start:start + size]))
            start += size
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _infer(self, x: np.ndarray) -> np.ndarray:
        with self.lock:
            self.request.infer({0: x})
            return self.request.get_output_tensor(0).data.copy()  # the buffer is overwritten by the next call

    def stored(self, key: str) -> str | None:
        return self.entries.get(key)


DESCRIPTION_SUFFIX = ".described.json"  # beside OpenVINO's networks: what _OpenVino read of an ONNX file


def _framework_info(model: Any) -> dict[str, Any]:
    """The metadata entries an ONNX file carried into an OpenVINO model (its ``framework`` run-time info)."""
    info = model.get_rt_info()
    return dict(info["framework"]) if "framework" in info else {}


def _description_file(path: str | os.PathLike, kept: Path) -> Path | None:
    """Where the description of the file at ``path``, as it is now, is kept in ``kept`` (another file written at the
    path, an atomic replace, has another size or time); None where there is no such file (opening it fails)."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    name = f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return kept / (hashlib.sha256(name.encode()).hexdigest()[:24] + DESCRIPTION_SUFFIX)


def _described(description: Path | None) -> dict[str, Any] | None:
    """What :func:`_keep_description` kept in ``description``, or None."""
    if description is None:
        return None
    try:
        known = json.loads(description.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(known, dict) and isinstance(known.get("int8"), bool) and isinstance(known.get("stored"), dict)
    return known if ok else None


def _keep_description(description: Path | None, known: dict[str, Any], fresh: bool) -> None:
    """Keep ``known`` (whether the file is quantised, its metadata entries) in ``description`` for the next process
    that opens the file where it was ``fresh``ly read, else mark the kept one used (the cache prunes the least
    recently used); nothing where the folder cannot be written."""
    if description is None:
        return
    try:
        if fresh:
            write_atomically(description, json.dumps(known))
        else:
            os.utime(description)
    except OSError:
        pass


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def onnx_runtime(runtime: str | None = None) -> str:
    """The runtime that runs ONNX files: ``runtime`` or $CAPTCHA_ONNX_RUNTIME where given, else OpenVINO where it is
    installed (about twice ONNX Runtime's rate on the int8 files, config.ONNX_RUNTIMES), else ONNX Runtime."""
    chosen = runtime or os.environ.get(ONNX_RUNTIME_ENV, "")
    if not chosen:
        return "openvino" if importlib.util.find_spec("openvino") is not None else "onnxruntime"
    if chosen not in ONNX_RUNTIMES:
        raise ConfigError(f"unknown ONNX runtime {chosen!r} (${ONNX_RUNTIME_ENV}); choose one of "
                          f"{', '.join(ONNX_RUNTIMES)}")
    if importlib.util.find_spec(chosen) is None:
        raise ConfigError(f"{chosen} is not installed (${ONNX_RUNTIME_ENV}={chosen}): pip install {chosen}")
    return chosen


def process_threads() -> int | None:
    """The threads this process is given by $OMP_NUM_THREADS (:data:`~captcha.config.THREADS_ENV`), or None
    (unset or not a positive number): the runtime's own choice, every core."""
    value = os.environ.get(THREADS_ENV, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


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
    """The solving settings stored in an exported ONNX file (without torch)."""
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
