"""`captcha eval`: a recognizer measured on labelled data, with the backend `captcha solve` uses.

Character, full-string and per-position accuracy (``metrics``, shared with training's
validation), per-class precision/recall, the confusion matrix as a PNG and as a printed list (the
same counts), and a sheet of the most confidently misread captchas.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix

from ..data.layout import left_out_note
from ..data.splits import labelled_data, trained_on, validation_data
from ..errors import DataError
from ..inference.backends import run_batched
from ..inference.load import load_solver
from ..nn.checkpoint import load_checkpoint
from .metrics import (
    MISSING,
    aligned_chars,
    char_metrics,
    confusions,
    rejection,
    reliability,
    string_metrics,
)
from .plots import confusion_png, error_sheet

log = logging.getLogger(__name__)


@dataclass
class EvalReport:
    """What `captcha eval --val` prints."""

    chars: dict[str, Any]
    captchas: dict[str, Any]
    confusions: list[tuple[str, str, int]]
    per_class: dict[str, Any]
    errors: list[dict[str, Any]]
    files: dict[str, str]
    backend: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"chars": self.chars, "captchas": self.captchas,
                "confusions": [{"true": t, "pred": p, "count": n} for t, p, n in self.confusions],
                "per_class": self.per_class, "errors": self.errors, "files": self.files, "backend": self.backend}


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path | None = None, out_dir: str | Path | None = None,
                        show_errors: int = 0, dataset: str | Path | None = None, backend: str = "auto",
                        device: str = "auto", allow: str = "", length: int = 0) -> EvalReport:
    """Evaluate a recognizer on its validation data (chars/val and captchas/val, or its held-out split;
    ``data`` says where that dataset is now), or on any labelled ``dataset`` folder.

    The model runs on the backend ``load_solver`` picks for ``backend`` and reads as `captcha solve` does, held
    to the characters ``allow`` and to ``length`` where given (as its ``--allow`` and ``--length``).
    """
    ckpt = load_checkpoint(checkpoint, kind="recognizer")
    if dataset is None and "train_config" not in ckpt:
        raise DataError(f"{checkpoint}: records no training data to validate on (a reader made by `captcha pretrain` "
                        "learned from synthetic captchas); evaluate it on labelled captchas with `captcha eval --data DIR`")
    solver = load_solver(checkpoint, backend=backend, device=device).allow(allow).expect_length(length)
    charset = solver.charset
    val = labelled_data(ckpt, dataset) if dataset is not None else validation_data(ckpt, data)
    chars: dict[str, Any] = {}
    true_chars: list[str] = []
    pred_chars: list[str] = []
    if len(val.char_images) and solver.method == "classify":
        pred = run_batched(solver.backend, np.stack([solver.pre(im) for im in val.char_images])).argmax(1)
        chars = char_metrics(pred, np.asarray(val.char_targets))
        true_chars += [charset.alphabet[t] for t in val.char_targets]
        pred_chars += [charset.alphabet[p] for p in pred]
    rows = [r.solution for r in solver.solve_batch([im for im, _ in val.captchas])]
    texts = [s.text if s else "" for s in rows]
    confs = [s.confidence if s else 0.0 for s in rows]
    truth = [lab for _, lab in val.captchas]
    caps = string_metrics(texts, truth)
    if truth:  # is the confidence worth trusting: refusing the least sure 5%, how many errors go with them
        correct = [p == t for p, t in zip(texts, truth)]
        caps["rejection_at_95"] = rejection(confs, correct, 0.95)
        caps["reliability"] = reliability(confs, correct)
        # a single fit that trained on its held-out slice fits its temperature on these captchas instead; a CTC
        # model's confidence map is fitted on every captcha its first fit held out, these among them
        caps["calibrated_on_these"] = dataset is None and ((ckpt.get("calibration") or {}).get("on") == "validation"
                                                           or ckpt.get("confidence_map") is not None)
        caps["trained_on"] = trained_on(ckpt, dataset) if dataset is not None else 0
    caps["left_out"] = len(val.left_out)  # labelled files of ``dataset`` not measured
    caps["left_out_note"] = left_out_note(val.left_out) if val.left_out else None
    t_chars, p_chars = aligned_chars(texts, truth)
    true_chars += t_chars
    pred_chars += p_chars
    labels = sorted(set(true_chars) | (set(pred_chars) - {MISSING}), key=charset.alphabet.find)
    labels += [MISSING] if MISSING in pred_chars else []  # short readings show as their own column
    per_class = classification_report(true_chars, pred_chars, labels=labels, output_dict=True, zero_division=0) \
        if true_chars else {}
    files: dict[str, str] = {}
    if out_dir is not None and true_chars:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        cm = confusion_matrix(true_chars, pred_chars, labels=labels)
        files["confusion"] = str(confusion_png(cm, labels, out_dir / "confusion.png"))
        wrong = sorted((i for i, (p, t) in enumerate(zip(texts, truth)) if p != t), key=lambda i: -confs[i])
        picks = wrong[:show_errors]
        if picks:
            files["errors"] = str(error_sheet([val.captchas[i][0] for i in picks], [truth[i] for i in picks],
                                              [texts[i] for i in picks], [confs[i] for i in picks],
                                              out_dir / "errors.png"))
    errors = [{"index": i, "truth": t, "pred": p, "confidence": c}
              for i, (p, t, c) in enumerate(zip(texts, truth, confs)) if p != t]
    # the printed confusions count the same (true, read) pairs as the PNG: single characters and captchas
    return EvalReport(chars, caps, confusions(true_chars, pred_chars), per_class, errors[:50], files,
                      solver.backend_name)
