"""Reading captchas with a trained checkpoint: one image, or a stream of many in batches.

``Solver.from_checkpoint(path).solve(img)`` takes a path, bytes or a PIL image. Splitting and
preprocessing come from the checkpoint, so solving can never disagree with training.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np
from PIL import Image

from .charset import Charset
from .errors import CaptchaError, ConfigError
from .images import DEFAULT_MAX_PIXELS, ImageInput, load_image
from .segment import SegmentConfig, split
from .transforms import Preprocess

log = logging.getLogger(__name__)


@dataclass
class Solution:
    """A read captcha: the text and how sure the model is of each character."""

    text: str
    confidences: list[float]
    seconds: float = 0.0

    @property
    def confidence(self) -> float:
        """The whole string's confidence: the product of its characters'."""
        return float(np.prod(self.confidences)) if self.confidences else 0.0


@dataclass
class BatchResult:
    """One row of a batch run: the input, and either its solution or the error it met."""

    source: str
    solution: Solution | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.solution is not None


def captcha_inputs(img: Image.Image, length: int, segment: SegmentConfig, pre: Preprocess) -> np.ndarray:
    """One captcha -> its ``length`` preprocessed character crops, (length, 3, H, W) float32."""
    return np.stack([pre(c) for c in split(img, length, segment)])


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def ctc_decode(probs: np.ndarray, charset: Charset) -> list[Solution]:
    """(captchas, columns, chars + blank) probabilities -> solutions by best path (blank is the last class)."""
    blank = probs.shape[-1] - 1
    best = probs.argmax(-1)
    out = []
    for row, p in zip(best, probs):
        chars, confs, prev = [], [], blank
        for t, k in enumerate(row):
            if k != blank and k != prev:
                chars.append(int(k))
                confs.append(float(p[t, k]))
            elif k != blank and k == prev:
                confs[-1] = max(confs[-1], float(p[t, k]))
            prev = k
        out.append(Solution(charset.decode(chars), confs))
    return out


def decode_predictions(probs: np.ndarray, charset: Charset) -> list[Solution]:
    """(captchas, length, classes) probabilities -> solutions."""
    idx = probs.argmax(-1)
    conf = np.take_along_axis(probs, idx[..., None], -1)[..., 0]
    return [Solution(charset.decode(i), [float(c) for c in cs]) for i, cs in zip(idx, conf)]


class TorchBackend:
    """Runs the classifier with PyTorch (channels-last, inference mode)."""

    def __init__(self, model: Any, threads: int | None = None, device: str = "cpu") -> None:
        import torch

        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.model = model.eval().to(self.device, memory_format=torch.channels_last)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            t = torch.from_numpy(x).to(self.device).contiguous(memory_format=torch.channels_last)
            return self.model(t).float().cpu().numpy()


class OnnxBackend:
    """Runs an exported model with ONNX Runtime; PyTorch is never imported on this path."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=np.float32)})[0]


def _has_onnxruntime() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


class Solver:
    """Reads captchas with a model, its charset, preprocessing, length and splitter."""

    def __init__(self, backend: Any, charset: Charset, pre: Preprocess, length: int,
                 segment: SegmentConfig, max_pixels: int = DEFAULT_MAX_PIXELS, method: str = "classify") -> None:
        if method not in ("classify", "ctc"):
            raise ConfigError(f"unknown method {method!r}; choose classify or ctc")
        self.method = method
        self.backend = backend
        self.charset = charset
        self.pre = pre
        self.length = length
        self.segment = segment
        self.max_pixels = max_pixels

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, threads: int | None = None,
                        max_pixels: int = DEFAULT_MAX_PIXELS, backend: str = "auto") -> "Solver":
        """Load everything solving needs from one checkpoint file.

        ``auto`` runs the network on ONNX Runtime when it is installed: the checkpoint is exported
        once (verified against PyTorch, cached by content hash), because PyTorch's CPU kernels are
        slow on the small batches of single-captcha solving. ``torch`` forces PyTorch.
        """
        from .checkpoint import load_checkpoint

        if backend == "auto" and _has_onnxruntime():
            from .export import compiled_onnx

            return cls.from_onnx(compiled_onnx(path), threads, max_pixels)
        if backend not in ("auto", "torch"):
            raise ConfigError(f"unknown backend {backend!r}; choose auto, torch or onnx")
        ckpt = load_checkpoint(path, kind="recognizer")
        return cls.from_loaded(ckpt, path, threads, max_pixels)

    @classmethod
    def from_onnx(cls, path: str | os.PathLike, threads: int | None = None,
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> "Solver":
        """A solver over an exported ONNX file (see `captcha export`), without PyTorch."""
        from .export import read_metadata

        meta = read_metadata(path)
        return cls(OnnxBackend(path, threads), Charset.from_dict(meta["charset"]), Preprocess.from_dict(meta["preprocess"]),
                   int(meta["length"]), SegmentConfig.from_dict(meta["segment"]), max_pixels,
                   meta.get("method", "classify"))

    @classmethod
    def load(cls, path: str | os.PathLike, backend: str = "auto", threads: int | None = None,
             max_pixels: int = DEFAULT_MAX_PIXELS) -> "Solver":
        """An ``.onnx`` file or a checkpoint; ``backend`` is auto, torch or onnx."""
        if str(path).endswith(".onnx"):
            if backend == "torch":
                raise ConfigError(f"{path}: an ONNX file runs on ONNX Runtime, not --backend torch")
            return cls.from_onnx(path, threads, max_pixels)
        return cls.from_checkpoint(path, threads, max_pixels, backend=backend)

    @classmethod
    def from_loaded(cls, ckpt: dict, path: str | os.PathLike = "<checkpoint>", threads: int | None = None,
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> "Solver":
        """Build a solver from an already loaded checkpoint dict."""
        from .model import model_from_checkpoint

        charset = Charset.from_dict(ckpt["charset"])
        model = model_from_checkpoint(ckpt, path)
        return cls(TorchBackend(model, threads), charset, Preprocess.from_dict(ckpt["preprocess"]),
                   int(ckpt["length"]), SegmentConfig.from_dict(ckpt["segment"]), max_pixels,
                   ckpt.get("method", "classify"))

    def inputs(self, image: ImageInput) -> np.ndarray:
        """Decode one captcha into network inputs: its crops (classify) or the whole image (ctc)."""
        img = load_image(image, self.max_pixels)
        if self.method == "ctc":
            return self.pre(img)[None]
        return captcha_inputs(img, self.length, self.segment, self.pre)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(captchas, k, 3, H, W) inputs -> (captchas, positions or columns, classes) probabilities."""
        n, k = x.shape[:2]
        logits = self.backend(x.reshape(n * k, *x.shape[2:]))
        return _softmax(logits.reshape(n, -1, logits.shape[-1]))

    def read(self, x: np.ndarray) -> list[Solution]:
        """Network inputs of several captchas -> their solutions."""
        probs = self.predict(x)
        return ctc_decode(probs, self.charset) if self.method == "ctc" else decode_predictions(probs, self.charset)

    def solve(self, image: ImageInput) -> Solution:
        """Read one captcha (path, bytes or PIL image); raises :class:`ImageError` on bad input."""
        t0 = time.perf_counter()
        sol = self.read(self.inputs(image)[None])[0]
        sol.seconds = time.perf_counter() - t0
        return sol

    def solve_batch(self, images: Iterable[ImageInput], batch_size: int = 64, workers: int = 0) -> Iterator[BatchResult]:
        """Read many captchas in batches, yielding one result per input, in input order.

        Decoding and splitting happen in ``workers`` DataLoader processes when asked; a file that
        cannot be read becomes an error result and never stops the run.
        """
        for chunk in _prepare(self, images, batch_size, workers):
            good = [i for i, (_, x, _) in enumerate(chunk) if x is not None]
            sols: list[Solution] = []
            if good:
                t0 = time.perf_counter()
                sols = self.read(np.stack([chunk[i][1] for i in good]))
                per = (time.perf_counter() - t0) / len(good)
                for s in sols:
                    s.seconds = per
            it = iter(sols)
            for src, x, err in chunk:
                yield BatchResult(src, next(it), "") if x is not None else BatchResult(src, None, err)


def _describe(item: ImageInput) -> str:
    return str(item) if isinstance(item, (str, os.PathLike)) else f"<{type(item).__name__}>"


def _prepare_one(solver: Solver, item: ImageInput) -> tuple[str, np.ndarray | None, str]:
    try:
        return _describe(item), solver.inputs(item), ""
    except CaptchaError as exc:
        return _describe(item), None, str(exc)
    except Exception as exc:  # noqa: BLE001 - one strange file must not stop a batch of millions
        return _describe(item), None, f"{_describe(item)}: unexpected {type(exc).__name__}: {exc}"


class _PrepDataset:
    """Iterable dataset for DataLoader workers: each worker decodes a strided share of the inputs."""

    def __init__(self, solver: Solver, items: Iterable[ImageInput]) -> None:
        self.solver, self.items = solver, items

    def __iter__(self):
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        for i, item in enumerate(self.items):
            if i % nw == wid:
                yield i, _prepare_one(self.solver, item)


def _chunks(solver: Solver, images: Iterable[ImageInput], batch_size: int) -> Iterator[list]:
    chunk = []
    for item in images:
        chunk.append(_prepare_one(solver, item))
        if len(chunk) == batch_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _prefetched(chunks: Iterator[list], depth: int = 2) -> Iterator[list]:
    """Run ``chunks`` in a background thread, ``depth`` ahead: decoding the next batch overlaps the
    network on the current one (ONNX Runtime and PyTorch release the GIL while they compute)."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for c in chunks:
                if stop.is_set():
                    return
                q.put(c)
            q.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer and raised there
            q.put(exc)

    thread = threading.Thread(target=produce, name="captcha-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass


def _prepare(solver: Solver, images: Iterable[ImageInput], batch_size: int, workers: int) -> Iterator[list]:
    if workers <= 0:
        yield from _prefetched(_chunks(solver, images, batch_size))
        return
    from torch.utils.data import DataLoader, IterableDataset

    # Built here so that importing this module (the ONNX path) never imports torch.
    ds = type("PrepIterable", (_PrepDataset, IterableDataset), {})(solver, images)
    loader = DataLoader(ds, batch_size=None, num_workers=workers, prefetch_factor=4 * batch_size)
    # Workers interleave; restore input order with a small reorder buffer.
    pending: dict[int, tuple] = {}
    nxt, chunk = 0, []
    for i, row in loader:
        pending[i] = row
        while nxt in pending:
            chunk.append(pending.pop(nxt))
            nxt += 1
            if len(chunk) == batch_size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk

