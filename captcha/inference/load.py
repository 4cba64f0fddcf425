"""Loading a model for solving, explicitly: which backend runs it, and the compiled-model cache.

``load_solver(path, backend=...)`` is the one way in (``load_solver()``: the general reader shipped in the
package, which reads 4-6 character captchas over 0-9A-Z with no training):

- an ``.onnx`` file (from `captcha export`) runs on OpenVINO where it is installed, else on ONNX Runtime
  (:func:`~captcha.inference.backends.onnx_runtime`); PyTorch is never imported;
- a checkpoint with ``backend="torch"`` runs on PyTorch;
- a checkpoint with ``backend="onnx"`` is compiled to ONNX once, through :class:`OnnxCache`: it is
  exported, verified against PyTorch, and kept under a key made of the checkpoint's content, so a
  retrained model is compiled afresh and an unchanged one never again (even by other processes), and
  once compiled it is solved without importing PyTorch;
  ``precision="auto"`` compiles it to int8 when its int8 check passed at training (``export``);
- the general reader shipped in the package runs from its compiled file shipped beside it
  (``shipped_compiled``) while that was made from its weights, so solving with no training compiles nothing;
- ``auto`` (the default) is ``onnx`` on the CPU when ONNX Runtime is installed (PyTorch's CPU
  kernels are several times slower on the small batches of solving), else ``torch``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import (
    BACKENDS,
    CACHE_KEEP,
    DEFAULT_CHECKPOINT,
    DEFAULT_MAX_PIXELS,
    DEVICES,
    INT8_MOST_LOST,
    INT8_TOLERANCE,
    PRECISIONS,
    SECOND,
    SHIPPED_READER,
    SHIPPED_READER_ONNX,
)
from ..data.images import file_digest
from ..errors import CheckpointError, ConfigError, require_file
from .backends import (
    DESCRIPTION_SUFFIX,
    TEMP_GLOB,
    OnnxBackend,
    TorchBackend,
    has_onnxruntime,
    temp_onnx,
)
from .solver import Solver

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where compiled models are kept: $CAPTCHA_CACHE, else $XDG_CACHE_HOME/captcha or ~/.cache/captcha."""
    if os.environ.get("CAPTCHA_CACHE"):
        return Path(os.environ["CAPTCHA_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "captcha"


def torch_version() -> str:
    """The installed PyTorch's version, read from its package metadata: a model compiled already is solved
    without importing torch (1.5 s of a 2.7 s `captcha solve` here)."""
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return "none"


class CacheUnwritable(CheckpointError):
    """The compiled-model cache cannot be written (``backend="auto"`` falls back to PyTorch)."""


class OnnxCache:
    """Checkpoints compiled to ONNX, keyed by content, verified, bounded to the ``keep`` most recent."""

    def __init__(self, root: str | os.PathLike | None = None, keep: int = CACHE_KEEP) -> None:
        self.root = Path(root) if root is not None else cache_dir()
        self.keep = keep

    @property
    def blobs(self) -> Path:
        """Where OpenVINO keeps the networks it compiled from the cache's files for this CPU (its own names)."""
        return self.root / "openvino"

    def blob_files(self, pattern: str = "*.blob") -> list[Path]:
        """OpenVINO's compiled networks, newest first (``pattern`` :data:`~.backends.DESCRIPTION_SUFFIX`'s: what was
        read of the files they were compiled from)."""
        if not self.blobs.is_dir():
            return []
        return sorted(self.blobs.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)

    def _openvino_files(self, beyond: int = 0) -> list[Path]:
        """OpenVINO's networks and the descriptions of their files, all but the ``beyond`` newest of each kind."""
        return [p for pattern in ("*.blob", f"*{DESCRIPTION_SUFFIX}") for p in self.blob_files(pattern)[beyond:]]

    def key(self, checkpoint: Path) -> str:
        """Content hash of the checkpoint, salted with the versions that shape the export and with the
        export code itself and the solver's (which decides settings the file records, e.g. whether it is the
        general reader): a change in either compiles them again."""
        digest = hashlib.sha256(checkpoint.read_bytes())
        digest.update(f"{torch_version()}|{__version__}|{INT8_TOLERANCE}|{INT8_MOST_LOST}".encode())
        for code in ("export.py", "solver.py"):
            digest.update(Path(__file__).with_name(code).read_bytes())
        return digest.hexdigest()[:24]

    def entries(self) -> list[Path]:
        """Cached models, most recently used first."""
        if not self.root.is_dir():
            return []
        return sorted(self.root.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)

    def compiled(self, checkpoint: str | os.PathLike, precision: str = "auto") -> Path:
        """The ONNX file of ``checkpoint``: from the cache when it is there and intact, else exported now."""
        return Path(self.backend(checkpoint, precision=precision).path)

    def backend(self, checkpoint: str | os.PathLike, threads: int | None = None, precision: str = "auto") -> OnnxBackend:
        """``checkpoint`` compiled (at ``precision``, see :func:`~captcha.inference.export.compile_onnx`)
        and opened (``OnnxBackend``): the session that checks a cached file is the one returned, so a load
        opens the model once."""
        return self.backends(checkpoint, threads, precision, second=False)[0]

    def backends(self, checkpoint: str | os.PathLike, threads: int | None = None, precision: str = "auto",
                 second: bool = True) -> tuple[OnnxBackend, OnnxBackend | None]:
        """:meth:`backend`, and the checkpoint's second network compiled the same way where its metadata
        says it has one (None where not, or not asked for): the checkpoint is hashed once for both."""
        if precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        path = require_file(checkpoint)
        digest = self.key(path)
        main = self._compiled(path, f"{digest}-{precision}", threads, precision, "")
        if not (second and main.metadata().get(SECOND)):
            return main, None
        return main, self._compiled(path, f"{digest}-{precision}-{SECOND}", threads, precision, SECOND)

    def _compiled(self, path: Path, key: str, threads: int | None, precision: str, member: str) -> OnnxBackend:
        """The cached file ``key`` of ``path``'s ``member`` network, exported now when missing or damaged."""
        target = self.root / f"{key}.onnx"
        if target.is_file():
            opened = self._open(target, key, threads)
            if opened is not None:
                target.touch()  # most recently used
                return opened
            log.warning("compiled model %s is damaged or foreign; exporting %s again", target, path)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._export(path, target, key, precision, member)
        except OSError as exc:
            raise CacheUnwritable(f"cannot write the compiled model to {self.root} ({exc.strerror or exc}); "
                                  "set $CAPTCHA_CACHE to a writable folder, or use --backend torch") from None
        backend = OnnxBackend(target, threads, blobs=self.blobs)
        self.prune()  # after opening it: OpenVINO's network of it is among the newest kept
        return backend

    def _export(self, checkpoint: Path, target: Path, key: str, precision: str, member: str) -> None:
        # exporting needs torch and onnx: loaded only when a checkpoint is compiled
        import onnx

        from .export import compile_onnx

        tmp = temp_onnx(self.root, key)
        try:
            # verified against PyTorch before it is kept (or by training's int8 check, which left it here)
            compile_onnx(checkpoint, tmp, precision, member, stash=self.root)
            proto = onnx.load(tmp)
            entry = proto.metadata_props.add()
            entry.key, entry.value = "captcha_cache_key", key
            onnx.save(proto, tmp)
            os.replace(tmp, target)  # atomic: concurrent processes see a whole file or none
        finally:
            tmp.unlink(missing_ok=True)

    def _open(self, target: Path, key: str, threads: int | None) -> OnnxBackend | None:
        """The cached model opened, or None when it is damaged or was made for other weights."""
        try:
            backend = OnnxBackend(target, threads, blobs=self.blobs)
        except CheckpointError:
            return None
        return backend if backend.stored("captcha_cache_key") == key else None

    def prune(self) -> list[Path]:
        """Remove all but the ``keep`` most recently used models and OpenVINO's ``keep`` newest compiled networks
        (and descriptions of their files), and temp files of killed exports."""
        removed = self.entries()[self.keep:] + self._openvino_files(self.keep) + self._temp_files()
        for p in removed:
            p.unlink(missing_ok=True)
        return removed

    def clear(self) -> list[Path]:
        """Remove every cached model."""
        removed = self.entries() + self._openvino_files() + self._temp_files()
        for p in removed:
            p.unlink(missing_ok=True)
        return removed

    def _temp_files(self) -> list[Path]:
        """Exports a killed process left half written (:func:`~.backends.temp_onnx`), and descriptions of files
        (:data:`~.backends.DESCRIPTION_SUFFIX`) left so."""
        return (list(self.root.glob(TEMP_GLOB)) if self.root.is_dir() else []) + \
            (list(self.blobs.glob(".*.tmp")) if self.blobs.is_dir() else [])

    def size(self) -> int:
        """Bytes the cache holds."""
        return sum(p.stat().st_size for p in self.entries() + self._openvino_files())


def solving_checkpoint(path: str | os.PathLike | None) -> Path:
    """The model to solve with: ``path`` when given, else the trained ``checkpoints/model.pt`` when it
    exists, else the general reader shipped in the package for reading with no training."""
    if path is not None:
        return Path(path)
    trained, reader = Path(DEFAULT_CHECKPOINT), general_reader_path()
    if trained.is_file() or not reader.is_file():
        return trained
    log.info("no %s yet: reading with the shipped general reader (%s); train one with `captcha train`",
             trained, reader.name)
    return reader


def general_reader_path() -> Path:
    """The general reader shipped in the package that solving reads with until a model is trained (the file
    ``nn.networks.shipped_reader`` gives, found here without importing torch)."""
    return Path(str(resources.files("captcha") / "weights" / SHIPPED_READER))


def shipped_compiled(path: str | os.PathLike, precision: str = "auto", threads: int | None = None,
                     blobs: Path | None = None) -> OnnxBackend | None:
    """The general reader's compiled file shipped beside it (SHIPPED_READER_ONNX), opened (OpenVINO's network of it
    kept in ``blobs``), when ``path`` is that reader, ``precision`` allows the file's, and the file was made from these
    very weights; else None (the cache compiles it, as any checkpoint)."""
    path = Path(path)
    compiled = path.with_name(SHIPPED_READER_ONNX)
    if path.name != SHIPPED_READER or not compiled.is_file():
        return None
    try:
        backend = OnnxBackend(compiled, threads, blobs=blobs)
        meta = backend.metadata()
    except CheckpointError:
        return None
    if precision not in ("auto", meta.get("precision")) or meta.get("source_sha256") != file_digest(path):
        log.debug("%s was not made from %s as it is now; compiling the reader instead", compiled, path)
        return None
    return backend


def resolve_backend(backend: str, device: str = "auto") -> str:
    """``auto`` -> ``onnx`` on the CPU with ONNX Runtime installed, else ``torch``."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if backend == "onnx" and device == "cuda":
        raise ConfigError("--backend onnx runs on the CPU; use --backend torch (or auto) with --device cuda")
    if backend != "auto":
        return backend
    if device == "cuda" or not has_onnxruntime():
        return "torch"
    return "onnx"


def load_solver(path: str | os.PathLike | None = None, backend: str = "auto", device: str = "auto",
                threads: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, cache: OnnxCache | None = None,
                reject_below: float = 0.0, precision: str = "auto") -> Solver:
    """A :class:`Solver` for a checkpoint or an exported ``.onnx`` file (see the module docstring), or with no
    ``path`` for the general reader shipped in the package; readings less confident than ``reject_below`` come
    back rejected. ``precision`` applies to a checkpoint compiled to ONNX."""
    path = general_reader_path() if path is None else path
    cache = cache or OnnxCache()
    if str(path).endswith(".onnx"):
        if backend == "torch":
            raise ConfigError(f"{path}: an ONNX file runs on OpenVINO or ONNX Runtime, not --backend torch")
        if device == "cuda":
            raise ConfigError(f"{path}: an ONNX file runs on the CPU; load the checkpoint for --device cuda")
        return Solver.from_onnx(path, threads, max_pixels, reject_below, cache.blobs)
    if resolve_backend(backend, device) == "onnx":
        shipped = shipped_compiled(path, precision, threads, cache.blobs)
        if shipped is not None:
            return Solver.from_metadata(shipped, shipped.metadata(), max_pixels, str(path), reject_below)
        try:
            compiled, second = cache.backends(path, threads, precision)
            return Solver.from_metadata(compiled, compiled.metadata(), max_pixels, str(path),
                                        reject_below).with_second(second)
        except CacheUnwritable as exc:
            if backend == "onnx":
                raise
            log.warning("%s; solving with PyTorch instead", exc)
    model, second, ckpt = _torch_models(path, device, threads)
    return Solver.from_metadata(model, ckpt, max_pixels, str(path), reject_below).with_second(second)


def compile_for_solving(path: str | os.PathLike, cache: OnnxCache | None = None) -> OnnxBackend | None:
    """``path`` compiled into the cache as the first `captcha solve` with its defaults would compile it (to ONNX
    where solving runs on it, at the precision its int8 check chose, its second network too), so that
    solve reads at once; None where solving would run on PyTorch or the cache cannot be written (solving
    says so then)."""
    if resolve_backend("auto") != "onnx":
        return None
    try:
        return (cache or OnnxCache()).backends(path)[0]
    except CacheUnwritable as exc:
        log.debug("not compiled for solving: %s", exc)
    except CheckpointError as exc:  # the model is written and PyTorch reads it: not a failed training
        log.warning("not compiled for solving: %s; `captcha solve --backend torch` reads it", exc)
    return None


def _torch_models(path: str | os.PathLike, device: str,
                  threads: int | None) -> tuple[TorchBackend, TorchBackend | None, dict[str, Any]]:
    """The checkpoint's network on PyTorch, its second one where it has one, and the checkpoint."""
    # torch-side modules, imported only when a checkpoint runs on PyTorch
    from ..nn.checkpoint import load_checkpoint
    from ..nn.device import resolve_device
    from ..nn.networks import model_from_checkpoint

    ckpt = load_checkpoint(path, kind="recognizer")
    dev = str(resolve_device(device))
    second = TorchBackend(model_from_checkpoint(ckpt, path, SECOND), threads, dev) if ckpt.get(SECOND) else None
    return TorchBackend(model_from_checkpoint(ckpt, path), threads, dev), second, ckpt
