"""Reading captchas: one image, or a stream of many in batches, with any backend.

A :class:`Solver` holds a backend (see ``backends``) and the settings the model was trained with
(charset, preprocessing, captcha length, splitter, method), read from the checkpoint or from an
exported ONNX file, so solving can never disagree with training. ``load.load_solver`` builds one
from a file.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import multiprocessing
import operator
import os
import queue
import sys
import threading
import time
import types
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from ..charset import Charset, spell_out
from ..config import (
    BATCH_LENGTH_MIN,
    BATCH_LENGTH_SHARE,
    BATCH_LENGTH_SURE,
    BATCH_WIDTH_MIN,
    BATCH_WIDTHS,
    DEFAULT_MAX_PIXELS,
    METHODS,
    RECHECK_BELOW,
    RECHECK_SHIFT,
    RECHECKS,
    SECOND,
    SOLVE_BATCH_SIZE,
    SOLVE_WORKERS,
    SVG_APART,
    WORKERS_PAY_S,
    WORKERS_PROBE,
)
from ..data.images import ImageInput, describe, load_image
from ..data.layout import one_length
from ..data.preprocess import Preprocess, columns_width, widened
from ..data.segment import SegmentConfig, to_content
from ..errors import CaptchaError, CheckpointError, ConfigError
from .backends import OnnxBackend, second_path
from .decode import BatchResult, Solution, averaged_logits, captcha_inputs, decode

log = logging.getLogger(__name__)

SIZE_TOLERANCE = 2.0  # an image whose height or aspect is this many times off the training captchas' is warned about
PART = 8  # captchas a worker process prepares per task: few enough that the rows come back in step
PARTS_AHEAD = 32  # parts handed to the processes ahead of the rows taken (256 captchas): they work on while a chunk is read
BLANK_LEVELS = 12.0  # an input none of whose channels spans this many grey levels (of 255) is a blank: nothing drawn


@dataclass
class Preparer:
    """Image -> network inputs, as the model was trained: crops (classify) or the whole captcha (ctc).

    Holds no backend, so worker processes can share it.
    """

    pre: Preprocess
    length: int
    segment: SegmentConfig
    method: str = "classify"
    max_pixels: int = DEFAULT_MAX_PIXELS

    def load(self, image: ImageInput, name: str | None = None) -> Image.Image:
        """One captcha decoded as the model was trained on them (:func:`~captcha.data.images.load_image`)."""
        return load_image(image, self.max_pixels, name=name, svg_apart=self.segment.apart)

    def inputs(self, img: Image.Image) -> np.ndarray:
        """(k, 3, H, W) inputs of one decoded captcha."""
        if self.method == "ctc":
            return self.pre(to_content(img, self.segment))[None]
        return captcha_inputs(img, self.length, self.segment, self.pre)

    def __call__(self, item: ImageInput | tuple[str, ImageInput]) -> tuple[str, np.ndarray | None, str, tuple[int, int]]:
        """(source, inputs or None, error, image size) of an image or a (name, image) pair; never raises
        for a bad input."""
        name, item = item if isinstance(item, tuple) else (describe(item), item)
        try:
            img = self.load(item, name)
            return name, self.inputs(img), "", img.size
        except CaptchaError as exc:
            return name, None, str(exc), (0, 0)
        except Exception as exc:  # noqa: BLE001 - one strange file must not stop a batch of millions
            return name, None, f"{name}: unexpected {type(exc).__name__}: {exc}", (0, 0)


class Solver:
    """Reads captchas with a backend and the settings its model was trained with."""

    def __init__(self, backend: Callable[[np.ndarray], np.ndarray], charset: Charset, preparer: Preparer,
                 trained_size: tuple[int, int] | None = None, temperature: float = 1.0,
                 reject_below: float = 0.0, allow: str = "", lengths: Iterable[int] = (),
                 general: bool = False, confidence_map: tuple[float, float] | None = None) -> None:
        if preparer.method not in METHODS:
            raise ConfigError(f"unknown method {preparer.method!r}; choose one of {', '.join(METHODS)}")
        if not 0.0 <= reject_below <= 1.0:
            raise ConfigError(f"--reject-below {reject_below}: a confidence from 0 to 1")
        self.backend = backend
        self.charset = charset
        self.preparer = preparer
        self.trained_size = trained_size  # (width, height) of the captchas it learned from, for warnings
        self.temperature = temperature  # fitted at training time on held-out data: calibrated confidences
        # (a, b) fitted at training time on the readings of held-out captchas (CTC): see decode.calibrated
        self.confidence_map = confidence_map
        self.reject_below = reject_below  # a reading less confident than this is refused, not guessed
        self.second: Callable[[np.ndarray], np.ndarray] | None = None  # the first fit beside a refit (with_second)
        self.lengths = tuple(sorted(set(lengths)))  # a CTC model of a site whose lengths vary: the ones it learned
        self.general = general  # the general reader (no site trained on): it learns a batch's length
        self.allow(allow)
        self.expect_length()
        self.rechecking()

    def allow(self, chars: str = "") -> "Solver":
        """Read only these characters (all of the charset's when empty; ranges such as ``0-9A-F`` spelled out): a
        site that shows digits only, read by a model that knows letters too. Unknown characters are an error."""
        given, chars = chars, spell_out(chars)
        self.allowed = chars
        if not chars:
            self._mask = None
            return self
        unknown = "".join(self.charset.unknown(chars))
        if unknown:
            raise ConfigError(f"--allow {given!r}: {unknown!r} not among the model's characters "
                              f"{self.charset.alphabet!r}; allow only characters it knows")
        keep = set(self.charset.encode("".join(dict.fromkeys(chars))))
        classes = len(self.charset) + (1 if self.method == "ctc" else 0)
        self._mask = np.array([i in keep or i >= len(self.charset) for i in range(classes)])
        return self

    def expect_length(self, length: int = 0) -> "Solver":
        """Read exactly ``length`` characters (0: the length the model learned, any for the general reader):
        a site whose captchas all have 5, read by a CTC model. A split-and-classify model reads the
        length it was trained on only; another is an error."""
        if not 0 <= length <= MAX_LENGTH:
            raise ConfigError(f"--length {length}: a number of characters from 1 to {MAX_LENGTH} (0: the model's own)")
        if length and self.method == "classify" and length != self.preparer.length:
            raise ConfigError(f"--length {length}: this model splits each captcha into {self.preparer.length} "
                              f"characters and cannot read {length}; train one on {length}-character captchas")
        self.read_length = length or self.preparer.length
        return self

    def with_second(self, backend: Callable[[np.ndarray], np.ndarray] | None) -> "Solver":
        """Read the unsure readings (those :meth:`rechecking` reads again, where held to a length) with a second
        network too, their probabilities averaged: the first fit a refit keeps (the checkpoint's ``second``)."""
        self.second = backend
        return self

    def rechecking(self, mode: str = "auto") -> "Solver":
        """Which readings are read again moved (see :meth:`read`): ``auto`` those less
        confident than RECHECK_BELOW, ``all`` every one, ``off`` none (the fastest)."""
        if mode not in RECHECKS:
            raise ConfigError(f"unknown recheck {mode!r}; choose one of {', '.join(RECHECKS)}")
        self.recheck = mode
        return self

    @property
    def method(self) -> str:
        return self.preparer.method

    @property
    def length(self) -> int:
        """Characters a reading holds (0: any, the general reader's default)."""
        return self.read_length

    @property
    def pre(self) -> Preprocess:
        return self.preparer.pre

    @property
    def backend_name(self) -> str:
        """``onnx``, ``onnx-int8`` or ``torch``: what runs the network."""
        return getattr(self.backend, "name", type(self.backend).__name__)

    @property
    def runtime(self) -> str:
        """``openvino``, ``onnxruntime`` or ``torch``: the library that runs the network."""
        return getattr(self.backend, "runtime", "torch")

    @classmethod
    def from_metadata(cls, backend: Callable[[np.ndarray], np.ndarray], meta: dict[str, Any],
                      max_pixels: int = DEFAULT_MAX_PIXELS, source: str = "<model>",
                      reject_below: float = 0.0) -> "Solver":
        """A solver from the settings a checkpoint or an exported ONNX file records."""
        try:
            charset = Charset.from_dict(meta["charset"])
            segment = SegmentConfig.from_dict(meta["segment"])
            if general_reader(meta) and "apart" not in meta["segment"]:
                # the shipped reader learned from rasters, never an SVG: how a document is drawn for it is a solving
                # choice, and glyphs drawn apart read 97.2-100% of four SVG sites with no training against 60.0-95.2%
                segment.apart = SVG_APART
            preparer = Preparer(Preprocess.from_dict(meta["preprocess"]), int(meta["length"]), segment,
                                meta.get("method", "classify"), max_pixels)
        except (KeyError, TypeError, ValueError, CaptchaError) as exc:
            raise CheckpointError(f"{source}: its solving settings are incomplete or malformed ({exc}); "
                                  "retrain or re-export it") from None
        check_settings(preparer, charset, getattr(backend, "classes", None), source)
        size = meta.get("captcha_size")
        temperature = meta.get("temperature", 1.0)
        if not isinstance(temperature, (int, float)) or not 0 < temperature < 1e3:
            raise CheckpointError(f"{source}: temperature {temperature!r} is not a positive number; retrain or re-export it")
        lengths = meta.get("lengths") or []
        if not isinstance(lengths, list) or not all(isinstance(n, int) and 0 < n <= MAX_LENGTH for n in lengths):
            raise CheckpointError(f"{source}: lengths {lengths!r} are not captcha lengths; retrain or re-export it")
        return cls(backend, charset, preparer, tuple(size) if size else None, float(temperature), reject_below,
                   lengths=lengths, general=general_reader(meta), confidence_map=stored_confidence_map(meta, source))

    @classmethod
    def from_onnx(cls, path: str | os.PathLike, threads: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                  reject_below: float = 0.0, blobs: str | os.PathLike | None = None) -> "Solver":
        """A solver over an exported ONNX file (see `captcha export`), without PyTorch; with the second
        network exported beside it where the file says it has one (``blobs``: see :class:`OnnxBackend`)."""
        backend = OnnxBackend(path, threads, blobs=blobs)
        meta = backend.metadata()
        solver = cls.from_metadata(backend, meta, max_pixels, str(path), reject_below)
        other = second_path(path) if meta.get(SECOND) else None
        if other is not None and not other.is_file():
            log.warning("%s: its second network %s is missing; the unsure readings are read by one network",
                        path, other.name)
            other = None
        return solver.with_second(OnnxBackend(other, threads, blobs=blobs) if other is not None else None)

    def inputs(self, image: ImageInput) -> np.ndarray:
        """Decode one captcha into network inputs; raises :class:`ImageError` on bad input."""
        return self.preparer.inputs(self.preparer.load(image))

    def read(self, x: np.ndarray, length: int | None = None) -> list[Solution]:
        """Network inputs of several captchas, (captchas, k, 3, H, W) -> their solutions (CTC readings held
        to ``length`` characters where given, else to :attr:`length`).

        Readings chosen by :meth:`rechecking` are read again moved RECHECK_SHIFT pixels left: a reading the
        network holds only at one exact placement is often wrong, which its softmax alone does not tell.
        Where the left view reads the same, the text stands. Where it reads otherwise, a CTC reading held
        to a length is also read moved right, up and down, and the five views' probabilities averaged
        (:meth:`_averaged`, FURTHER_MOVES); split crops, and a CTC reading of any length (the general reader
        told none), are read moved right, and the three views vote (:func:`voted`): a moved view's columns
        fall between the unmoved one's, and their average read at no fixed length merges or splits
        characters. Either way the confidence is scaled by the share of the views whose own reading is the
        text chosen. With a second network (:meth:`with_second`) those readings and their views are the two
        networks' where held to a length. Inputs too narrow for the length held to are widened first
        (:meth:`roomy`).
        """
        length = self.length if length is None else length
        x = self.roomy(x, length)
        logits = self._logits(x, self.backend)
        sols = self._decode(logits, length)
        again = [i for i, sol in enumerate(sols) if self._rechecks(sol.raw_confidence)]
        # two fits place a character's CTC spike in columns of their own: averaged and read at no fixed length,
        # their columns merge or split characters (a site of 4-6 characters from 200: 82.3% read by the refit
        # alone, 75.0% by both), so the second network reads only readings held to a length
        pair = bool(length)
        if again:
            # the first network's logits and readings of these are read already
            unmoved, paired = self._both(x[again], length, (logits[again], [sols[i] for i in again]), pair=pair)
            if self.second is not None and pair:
                for i, sol in zip(again, paired):
                    sols[i] = sol
            left_logits, left = self._both(shifted(x[again], -RECHECK_SHIFT), length, pair=pair)
            # where the left view agrees, the text stands whatever the others read: they are not read
            split = [k for k, (i, view) in enumerate(zip(again, left)) if view.text != sols[i].text]
            rows = [again[k] for k in split]
            done: dict[int, Solution] = {}
            if split and self.method == "ctc" and length:
                others = [self._both(shifted(x[rows], pixels, axis), length, pair=pair) for pixels, axis in FURTHER_MOVES]
                own = [[sols[i] for i in rows], [left[k] for k in split], *(read for _, read in others)]
                views = [unmoved[split], left_logits[split], *(view for view, _ in others)]
                done = dict(zip(rows, self._averaged(views, own, length)))
            right = dict(zip(rows, self._both(shifted(x[rows], RECHECK_SHIFT), length, pair=pair)[1])) \
                if split and not done else {}
            for i, view in zip(again, left):
                sols[i] = done[i] if i in done else voted(sols[i], view, right.get(i))
        for sol in sols:
            sol.calibration = self.confidence_map
            sol.rejected = sol.confidence < self.reject_below
        return sols

    def roomy(self, x: np.ndarray, length: int) -> np.ndarray:
        """CTC inputs ``x`` widened (:func:`~captcha.data.preprocess.widened`) to :meth:`roomy_width`."""
        width = self.roomy_width(x.shape[-1], length)
        return x if width == x.shape[-1] else widened(x, width)

    def roomy_width(self, width: int, length: int) -> int:
        """The input width a CTC reading held to ``length`` characters is read at: ``width``, widened where it
        gives them fewer than CTC_COLUMNS feature columns each, as training sizes its inputs
        (``whole_captcha_size``): the general reader, 48x160, held to 6 or more. Networks of one fixed width
        (an ONNX file exported before widths were free) read ``width``."""
        need = columns_width(length) if self.method == "ctc" and length else 0
        networks = [n for n in (self.backend, self.second) if n is not None]
        return need if width < need and all(getattr(n, "any_width", False) for n in networks) else width

    def _logits(self, x: np.ndarray, network: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """(captchas, k, 3, H, W) inputs -> (captchas, positions or columns, classes) tempered logits."""
        n, k = x.shape[:2]
        logits = network(x.reshape(n * k, *x.shape[2:])) / self.temperature
        return logits.reshape(n, -1, logits.shape[-1])

    def _both(self, x: np.ndarray, length: int, first: tuple[np.ndarray, list[Solution]] | None = None,
              pair: bool = True) -> tuple[np.ndarray, list[Solution]]:
        """The logits of the two networks' averaged probabilities and their readings held to ``length`` (the first
        network's alone without a second, or unless ``pair``); ``first``: its logits and readings of ``x`` when
        read already. A CTC reading of the two carries the confidences of the surer network that reads the same
        on its own (:func:`surer_of_two`)."""
        logits, read = first if first is not None else (self._logits(x, self.backend), None)
        if self.second is None or not pair:
            return logits, self._decode(logits, length) if read is None else read
        second = self._logits(x, self.second)
        both = averaged_logits([logits, second])
        paired = self._decode(both, length)
        if self.method == "ctc":
            own = self._decode(logits, length) if read is None else read
            paired = surer_of_two(paired, own, self._decode(second, length))
        return both, paired

    def _averaged(self, views: list[np.ndarray], own: list[list[Solution]], length: int) -> list[Solution]:
        """CTC readings from the logits of each of their views and each view's own readings (``own``): the
        text the average of the views' probabilities reads, with the confidence of the surest view whose own
        reading is that text (else the average's), scaled by the share of such views. The average's own
        confidences are low wherever a moved view's columns fall between the unmoved one's: on five
        leave-style-out sites its calibration error was 5-22% against the views' 1-10%."""
        sols = []
        for k, averaged in enumerate(self._decode(averaged_logits(views), length)):
            same = [o[k] for o in own if o[k].text == averaged.text]
            sol = max(same, key=lambda s: s.raw_confidence) if same else averaged
            sol.views, sol.disagreeing = len(views) - 1, len(views) - len(same)
            sols.append(sol)
        return sols

    def _decode(self, logits: np.ndarray, length: int) -> list[Solution]:
        if self._mask is not None:
            logits = np.where(self._mask, logits, np.float32(-1e9))
        # a CTC model that learned from captchas of one length only reads that many: on captcha_images_v2
        # from 100 captchas 7 of 16 wrong readings had another length, and 6 of them were right held to 5
        sols = decode(logits, self.charset, self.method, length)
        if self.method == "ctc" and not length and self.lengths:
            for i, sol in enumerate(sols):
                if len(sol.text) not in self.lengths:
                    sols[i] = self._nearest_length(logits[i:i + 1], len(sol.text))
        for sol in sols:
            sol.length_ok = self.trained_length(sol.text)
        return sols

    def _nearest_length(self, logits: np.ndarray, read: int) -> Solution:
        """A reading of a length the model never learned, held to the learned length nearest it (the surer
        reading where two are as near): on a site of 4 to 6 characters, 7 of 2,000 readings had 3 or 7."""
        gap = min(abs(n - read) for n in self.lengths)
        held = [decode(logits, self.charset, self.method, n)[0] for n in self.lengths if abs(n - read) == gap]
        return max(held, key=lambda sol: (self.trained_length(sol.text), sol.raw_confidence))

    def _rechecks(self, confidence: float) -> bool:
        return self.recheck == "all" or (self.recheck == "auto" and confidence < RECHECK_BELOW)

    def solve(self, image: ImageInput) -> Solution:
        """Read one captcha (a path, bytes, a PIL image or base64 text); raises :class:`ImageError` on bad input."""
        t0 = time.perf_counter()
        img = self.preparer.load(image)
        x = self.preparer.inputs(img)
        sol = self.read(x[None])[0]
        sol.seconds = time.perf_counter() - t0
        sol.warnings = self.warnings(img.size, sol, x)
        return sol

    def solve_batch(self, images: Iterable[ImageInput], batch_size: int = SOLVE_BATCH_SIZE,
                    workers: int | str = SOLVE_WORKERS, one_site: bool = True) -> Iterator[BatchResult]:
        """Read many captchas in batches, yielding one result per input, in input order.

        Decoding and splitting run in a background thread (``workers=0``), in ``workers`` processes, or with
        ``"auto"`` in the thread until the batch proves bound by it (:meth:`Pace.workers`), the rest in processes;
        a file that cannot be read becomes an error result and never stops the run.
        With ``one_site`` (the images come from one site), the general reader reads them at the width its
        first chunk reads surest (:meth:`surest_width`), and, told no length, learns the site's from the
        readings (:meth:`held_to_usual_length`); pass False for unrelated images.
        """
        if not (workers == "auto" or (isinstance(workers, int) and workers >= 0)):
            raise ConfigError(f"workers={workers!r}: expected a count of processes (0: one background thread) or auto")
        lengths: Counter = Counter()
        width = 0  # the batch's input width, once chosen
        pace = Pace()
        for chunk in _prefetched(_batched(_prepared(self.preparer, images, workers, pace), batch_size)):
            good = [i for i, row in enumerate(chunk) if row[1] is not None]
            sols: list[Solution] = []
            if good:
                t0 = time.perf_counter()
                choosing = 0.0  # a batch's first chunk is read at several widths once; not the network's pace
                x = np.stack([chunk[i][1] for i in good])
                if one_site and not width and len(good) >= BATCH_WIDTH_MIN:
                    width = self.surest_width(x)
                    choosing = time.perf_counter() - t0
                if width and width != x.shape[-1]:
                    x = widened(x, width)
                sols = self.read(x)
                held = self.held_to_usual_length(x, sols, lengths) if one_site else set()
                spent = time.perf_counter() - t0
                pace.read(len(good), spent - choosing)
                per = spent / len(good)
                for k, (s, i) in enumerate(zip(sols, good)):
                    s.seconds = per
                    s.warnings = self.warnings(chunk[i][3], s, chunk[i][1])
                    if k in held:
                        s.warnings.append(f"held to {len(s.text)} characters, the length most of this batch's "
                                          "readings have")
            it = iter(sols)
            for src, x, err, _ in chunk:
                yield BatchResult(src, next(it), "") if x is not None else BatchResult(src, None, err)

    def surest_width(self, x: np.ndarray) -> int:
        """The input width the general reader reads captchas of one site at, from network inputs ``x`` of some of
        them: of BATCH_WIDTHS and their own width, the one whose readings (no re-reading) are surest on average,
        their own on a tie. Any other model learned its site at its width and keeps it, as does a network of one
        fixed width."""
        own = x.shape[-1]
        if self.method != "ctc" or not self.general or not getattr(self.backend, "any_width", False):
            return own

        def sureness(inputs: np.ndarray) -> float:
            inputs = self.roomy(inputs, self.length)
            return float(np.mean([s.raw_confidence for s in self._decode(self._logits(inputs, self.backend),
                                                                         self.length)]))

        return max(batch_widths(x), key=lambda view: (sureness(view[1]), view[0] == own))[0]

    def held_to_usual_length(self, x: np.ndarray, sols: list[Solution], lengths: Counter) -> set[int]:
        """Where no length is expected (the general reader), count the lengths of the readings at least
        BATCH_LENGTH_SURE confident in ``lengths`` (the batch's so far); once BATCH_LENGTH_MIN are in and
        BATCH_LENGTH_SHARE of them have one length (:func:`~captcha.data.layout.one_length`), re-read this
        chunk's unsure readings (under RECHECK_BELOW, as for re-reading) of another length held to it, in place
        (and those of that length too where it is read wider: :meth:`roomy`). Returns the indices of the
        readings of another length now held to it. A model trained on a site holds none: it learned the site's
        length, or from labels of several lengths that the lengths vary."""
        if self.method != "ctc" or self.length or not self.general:
            return set()
        lengths.update(len(s.text) for s in sols if s.raw_confidence >= BATCH_LENGTH_SURE)
        usual = one_length(lengths, BATCH_LENGTH_SHARE) if sum(lengths.values()) >= BATCH_LENGTH_MIN else None
        if usual is None:
            return set()
        unsure = [i for i, s in enumerate(sols) if s.raw_confidence < RECHECK_BELOW]
        odd = [i for i in unsure if len(sols[i].text) != usual]
        # where the usual length is read wider (roomy), the unsure readings of that length are read again too
        again = unsure if self.roomy_width(x.shape[-1], usual) > x.shape[-1] else odd
        for i, s in zip(again, self.read(x[again], usual) if again else []):
            sols[i] = s
        return {i for i in odd if len(sols[i].text) == usual}

    def warnings(self, size: tuple[int, int], sol: Solution, x: np.ndarray | None = None) -> list[str]:
        """Why a reading may be wrong: an image of one colour (``x``, its inputs: nothing drawn, as a page's
        placeholder), far from the training captchas' size or aspect, or a CTC reading of another length than
        expected (the image too narrow to hold that many)."""
        out = []
        if x is not None and self.blank(x):
            out.append("the image is blank (one colour): there is no text in it to read")
        if self.trained_size and size[0] > 0 and size[1] > 0:
            (w, h), (tw, th) = size, self.trained_size
            aspect = (w / h) / (tw / th)
            if not 1 / SIZE_TOLERANCE <= aspect <= SIZE_TOLERANCE or not 1 / SIZE_TOLERANCE <= h / th <= SIZE_TOLERANCE:
                out.append(f"image is {w}x{h}; the model learned from captchas of about {tw}x{th}")
        if not self.trained_length(sol.text):
            expected = self.length or " or ".join(map(str, self.lengths))
            out.append(f"read {len(sol.text)} characters; expected {expected}")
        return out

    def blank(self, x: np.ndarray) -> bool:
        """True when a captcha's inputs (its crops, or the whole of it) show one colour: no channel spans
        BLANK_LEVELS grey levels (a page's placeholder; compression noise spans a few)."""
        x = x.reshape(-1, 3, x.shape[-2] * x.shape[-1])
        span = (x.max(axis=(0, 2)) - x.min(axis=(0, 2))) * np.asarray(self.preparer.pre.std, np.float32) * 255.0
        return float(span.max()) < BLANK_LEVELS

    def trained_length(self, text: str) -> bool:
        """False for a CTC reading of another length than expected (:meth:`expect_length`; 0: any, or any the
        model learned where its site's lengths vary); a split-and-classify reading always has the trained length."""
        if self.method != "ctc":
            return True
        if self.length:
            return len(text) == self.length
        return not self.lengths or len(text) in self.lengths


def batch_widths(x: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Network inputs ``x`` of one site's captchas at each width a batch of them may be read at
    (:meth:`Solver.surest_width` chooses one): their own and BATCH_WIDTHS, in order, as (width, inputs)."""
    own = x.shape[-1]
    return [(w, x if w == own else widened(x, w)) for w in sorted({own, *BATCH_WIDTHS})]


def voted(main: Solution, left: Solution, right: Solution | None = None) -> Solution:
    """Readings of one captcha as it is, moved left and (when the left one disagrees) moved right -> one:
    the text two of them share, else the unmoved one's; its confidence scaled by the share of the
    views that read it."""
    views = [main, left] + ([right] if right is not None else [])
    chosen = main
    if right is not None and left.text == right.text != main.text:
        chosen = max(left, right, key=lambda s: s.raw_confidence)
    chosen.views = len(views) - 1
    chosen.disagreeing = sum(s.text != chosen.text for s in views)
    return chosen


def surer_of_two(both: list[Solution], first: list[Solution], second: list[Solution]) -> list[Solution]:
    """CTC readings of two networks' averaged probabilities (``both``), each given the per-character
    confidences of the surer network whose own reading (``first``, ``second``) is the same text, where one is.

    Two fits place a character's spike in columns of their own, so the average's best column holds about half
    of each character's probability and the product of a word's understates it many times over: from 100
    captchas of two leave-style-out sites the pair's readings were right 72% of the time claiming 0.57 (expected
    calibration error 17-21%); the surer network's own confidence brings that to 6-7% (docs/measurements.md,
    "A pair of networks' confidence").
    """
    for k, sol in enumerate(both):
        same = [own for own in (first[k], second[k]) if own.text == sol.text and own.length_ok == sol.length_ok]
        if same:
            sol.confidences = list(max(same, key=lambda own: own.raw_confidence).confidences)
    return both


def shifted(x: np.ndarray, pixels: int, axis: int = -1) -> np.ndarray:
    """Network inputs (..., H, W) moved ``pixels`` columns right (left when negative), or rows down (up)
    with ``axis=-2``, the edge column or row repeated into the gap."""
    out = np.roll(x, pixels, axis=axis)
    index = [slice(None)] * x.ndim
    if pixels > 0:
        index[axis] = slice(None, pixels)
        out[tuple(index)] = np.take(x, [0], axis=axis)
    elif pixels < 0:
        index[axis] = slice(pixels, None)
        out[tuple(index)] = np.take(x, [-1], axis=axis)
    return out


# where its left view reads otherwise, a CTC reading held to a length is also read moved right, up and down
FURTHER_MOVES = ((RECHECK_SHIFT, -1), (-RECHECK_SHIFT, -2), (RECHECK_SHIFT, -2))  # (pixels, axis)


MAX_LENGTH = 32  # characters a captcha model may declare
MAX_SIDE = 1024  # pixels an input side may declare
MAX_CLASSES = 4096


def stored_confidence_map(meta: dict[str, Any], source: str) -> tuple[float, float] | None:
    """The (a, b) of the confidence map a checkpoint or exported file records (``confidence_map``), or None."""
    entry = meta.get("confidence_map")
    if entry is None:
        return None
    a, b = (entry.get(k) if isinstance(entry, dict) else None for k in "ab")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (a, b)) or not 0 < a < 1e3:
        raise CheckpointError(f"{source}: confidence_map {entry!r} is not a map (a > 0 and b, finite numbers); "
                              "retrain or re-export it")
    return float(a), float(b)


def general_reader(meta: dict[str, Any]) -> bool:
    """Whether solving settings (a checkpoint, or an exported file's metadata) are the general reader's, trained
    on no site: its checkpoint's recipe says so, or that `captcha train` kept it untrained (the reader check, no
    epoch trained), and exports record it; a file exported before they did is told by recording no captcha size
    (every trained model records its captchas')."""
    if "general_reader" in meta:
        return bool(meta["general_reader"])
    recipe = meta.get("recipe")
    if isinstance(recipe, dict):
        kept = (recipe.get("reader_check") or {}).get("kept") and (meta.get("train_config") or {}).get("epochs") == 0
        return bool(recipe.get("general_reader") or kept)
    return not meta.get("captcha_size")


def check_settings(preparer: Preparer, charset: Charset, classes: int | None, source: str) -> None:
    """Refuse a model whose declared settings are out of bounds or disagree with its head, before any
    input is allocated for it (a file can declare anything)."""
    h, w = preparer.pre.size
    problems = []
    if preparer.method not in METHODS:
        problems.append(f"method {preparer.method!r} is not one of {', '.join(METHODS)}")
    if not (0 if preparer.method == "ctc" else 1) <= preparer.length <= MAX_LENGTH:
        problems.append(f"captcha length {preparer.length} is outside 1..{MAX_LENGTH}")
    if not (8 <= h <= MAX_SIDE and 8 <= w <= MAX_SIDE):
        problems.append(f"input size {h}x{w} is outside 8..{MAX_SIDE} pixels a side")
    if len(charset) > MAX_CLASSES:
        problems.append(f"{len(charset)} characters is over {MAX_CLASSES}")
    expected = len(charset) + (1 if preparer.method == "ctc" else 0)
    if classes is not None and classes != expected:
        # worded as the PyTorch load words it (nn.networks), whichever backend meets the file first
        problems.append(f"its head has {classes} outputs but the charset has {len(charset)} characters "
                        f"({preparer.method}: {expected} outputs)")
    if problems:
        raise CheckpointError(f"{source}: refused, {'; '.join(problems)}; retrain or re-export it")


@dataclass
class Pace:
    """Seconds a batch spends preparing captchas (decoding, drawing, splitting) in the background thread and
    reading them (the network), for ``solve_batch(workers="auto")``."""

    prepared: int = 0
    preparing_s: float = 0.0
    read_n: int = 0
    reading_s: float = 0.0

    def prepare(self, seconds: float) -> None:
        self.prepared += 1
        self.preparing_s += seconds

    def read(self, n: int, seconds: float) -> None:
        self.read_n += n
        self.reading_s += seconds

    def per_captcha(self) -> tuple[float, float]:
        """Seconds a captcha so far: preparing it in the thread, reading it in the network (0 before any)."""
        return (self.preparing_s / self.prepared if self.prepared else 0.0,
                self.reading_s / self.read_n if self.read_n else 0.0)

    def workers(self, left: int, cores: int | None = None) -> int:
        """Processes worth starting to prepare the ``left`` captchas still to come, 0 for none: once
        WORKERS_PROBE are prepared and a chunk read, where preparing them in the thread would take WORKERS_PAY_S
        longer than the network takes to read them; as many as preparing is slower than reading, up to the
        cores this process may use, at least two (one is the thread again, plus a start)."""
        if self.prepared < WORKERS_PROBE or not self.read_n or left <= 0:
            return 0
        preparing, reading = self.per_captcha()
        if left * (preparing - reading) < WORKERS_PAY_S:
            return 0
        cores = cores or _cores()
        n = min(cores, math.ceil(preparing / max(reading, 1e-6)))
        return n if n >= 2 else 0


def _cores() -> int:
    """CPU cores this process may run on (its affinity where the platform tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def _prepared(preparer: Preparer, images: Iterable[ImageInput], workers: int | str, pace: Pace) -> Iterator[tuple]:
    """Prepared rows, in input order: in this thread (``workers=0``), in ``workers`` processes, or ("auto") in this
    thread, timed into ``pace``, until :meth:`Pace.workers` finds processes worth starting for the rest."""
    if workers != "auto":
        yield from _in_processes(preparer, images, workers) if workers else map(preparer, images)
        return
    rest = iter(images)
    for image in rest:
        t0 = time.perf_counter()
        row = preparer(image)
        pace.prepare(time.perf_counter() - t0)
        yield row
        n = pace.workers(operator.length_hint(rest))
        if n:
            log.info("preparing the rest in %d processes: %.2f ms a captcha in the thread, the network %.2f ms",
                     n, *(1000 * s for s in pace.per_captcha()))
            yield from _in_processes(preparer, rest, n)
            return


def _in_processes(preparer: Preparer, images: Iterable[ImageInput], workers: int) -> Iterator[tuple]:
    """Prepared rows, in input order, from ``workers`` processes given PART captchas at a time, this thread
    preparing until they have started. Processes that fail leave the rest to this thread, with a warning: never a
    hang, never a lost row."""
    rest = iter(images)
    parts: deque[tuple[list, Future]] = deque()  # in input order, PARTS_AHEAD at most
    here = there = 0
    # spawn, not fork: the backend's thread pools are running, and forking a threaded process can hang
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        with _main_script_hidden():  # the processes start here, one a submit
            started = [_submitted(pool, preparer, []) for _ in range(workers)]
        for image in rest:
            here += 1
            yield preparer(image)
            if all(f.done() for f in started):
                break
        while True:
            while len(parts) < PARTS_AHEAD and (part := list(itertools.islice(rest, PART))):
                parts.append((part, _submitted(pool, preparer, part)))
            if not parts:
                break
            part, future = parts.popleft()
            try:
                rows = future.result()
            except Exception as exc:  # noqa: BLE001 - the pool's failure, not an image's: preparing carries on here
                log.warning("worker processes failed (%s: %s); preparing the rest in this thread",
                            type(exc).__name__, exc)
                for part, _ in [(part, future), *parts]:
                    yield from map(preparer, part)
                yield from map(preparer, rest)
                return
            there += len(rows)
            yield from rows
        log.debug("prepared %d captchas in this thread, %d in %d processes", here, there, workers)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """While processes are spawned, ``__main__`` is a bare module: spawn re-imports the main script in each
    (multiprocessing's rule), and the workers need only this package. So no script runs twice, whether or not its
    work sits under ``if __name__ == "__main__":``, a script read from stdin works, and a heavy one (a bench that
    imports torch) costs the workers nothing to start."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _submitted(pool: ProcessPoolExecutor, preparer: Preparer, images: list) -> Future:
    """``images`` handed to the pool; a pool that refuses them (broken, or its processes could not start) gives a
    future that fails, read where the rows are taken."""
    try:
        return pool.submit(_prepare_part, preparer, images)
    except Exception as exc:  # noqa: BLE001 - the pool's failure: the part is prepared in the thread
        failed: Future = Future()
        failed.set_exception(exc)
        return failed


def _prepare_part(preparer: Preparer, images: list) -> list[tuple]:
    return [preparer(image) for image in images]


def _batched(rows: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _prefetched(chunks: Iterator[list], depth: int = 2) -> Iterator[list]:
    """Run ``chunks`` in a background thread, ``depth`` ahead: decoding the next batch overlaps the
    network on the current one (OpenVINO, ONNX Runtime and PyTorch release the GIL while they compute)."""
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
