"""Whether the general reader, untrained, reads a site better than a fine-tune on its few captchas would.

With too few labelled captchas to hold a slice out, nothing in a run measures the fine-tune it makes, and on a
site close to what the reader knows a fine-tune on a handful can read it worse than the reader did before any
training (sysu_alnum4 from its first 12: 76.1% fine-tuned, 84.8% untrained). The reader has seen none of the
user's captchas, so its reading of each of them is a fair measure of it; fine-tunes with the run's own recipe, each
on all but a quarter of them, read the quarter left out (:data:`READER_CHECK_FOLDS`). From a handful the two counts
are too few to tell the two apart (:func:`clearly_more` rarely decides), so how much of the site the reader reads
decides the tie: where it reads :data:`READER_PRIOR_SHARE` of the captchas or more it is kept unless the fine-tunes
read clearly more; below, it is kept only where it reads clearly more, since a fine-tune on fewer captchas than the
run has reads less than the run's would, most of all on a far site, where a few more captchas make the difference.
The reader reads first: where its reading settles the choice whatever the fine-tunes could read (from 5 captchas it
always does), none is trained.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..charset import Charset
from ..config import READER_CHECK_FOLDS, READER_PRIOR_SHARE, TrainConfig
from ..data.preprocess import Preprocess
from ..inference.decode import decode
from ..inference.export import clearly_more
from ..inference.load import general_reader_path
from ..nn.networks import (
    CharNet,
    model_holding,
    network_shape,
    reader_size,
    reader_state,
)
from .loop import predict
from .recipe import Probe, train_briefly


def reads_much(captchas: int, reader_read: int) -> bool:
    """Whether the reader read :data:`READER_PRIOR_SHARE` of the ``captchas`` or more."""
    return reader_read >= READER_PRIOR_SHARE * captchas


def keeps_reader(captchas: int, reader_read: int, reader_only: int, fine_tuned_only: int) -> bool:
    """The check's choice: where the reader reads much of the site (:func:`reads_much`), it is kept unless the
    fine-tunes read clearly more; below, only where it reads clearly more."""
    if reads_much(captchas, reader_read):
        return not clearly_more(fine_tuned_only, reader_only)
    return clearly_more(reader_only, fine_tuned_only)


def settled(captchas: int, reader_read: int) -> bool | None:
    """The choice where the reader's own reading already makes it, whatever the fine-tunes read (they can read right
    at most the captchas it misses, and take from it at most those it reads), else None: from a handful it always
    does, so no fine-tune is trained for nothing."""
    choices = {keeps_reader(captchas, reader_read, only, tuned)
               for only in range(reader_read + 1) for tuned in range(captchas - reader_read + 1)}
    return choices.pop() if len(choices) == 1 else None


@dataclass
class ReaderCheck:
    """What the check read: of how many training captchas, those the untrained reader read right, those only it
    read right and those only the fine-tunes that left them out did (the two readings differ on no others; both
    None where the reader's reading :func:`settled` the choice and no fine-tune was trained)."""

    captchas: int
    reader_read: int
    reader_only: int | None
    fine_tuned_only: int | None
    epochs: int  # each fold's fine-tune's (none trained where the choice was settled)

    @property
    def kept(self) -> bool:
        """Whether the reader is kept (:func:`keeps_reader`)."""
        if self.reader_only is None or self.fine_tuned_only is None:
            return bool(settled(self.captchas, self.reader_read))
        return keeps_reader(self.captchas, self.reader_read, self.reader_only, self.fine_tuned_only)

    @property
    def reason(self) -> str:
        """Why :attr:`kept` is what it is, in words."""
        if self.reader_only is None:
            return (f"the reader read {self.reader_read} of {self.captchas}, "
                    + ("more than any fine-tune could outweigh" if self.kept else
                       "too few to keep it whatever fine-tunes read") + ", so no fine-tune was trained")
        if reads_much(self.captchas, self.reader_read):
            return (f"the reader reads {READER_PRIOR_SHARE:.0%} of them or more, and the fine-tunes "
                    + ("did not read clearly more" if self.kept else "read clearly more"))
        return (f"the reader reads under {READER_PRIOR_SHARE:.0%} of them, and "
                + ("read" if self.kept else "did not read") + " clearly more than the fine-tunes")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "kept": self.kept}


def solving_reader(charset: Charset, path: Path | None = None) -> tuple[str, CharNet, tuple[int, int]]:
    """The reader solving uses with no training, whole, its head mapped onto ``charset``: (source, network,
    input size)."""
    path = path or general_reader_path()
    source, state = reader_state(charset.alphabet, bool(charset.fold_case), path)
    model = model_holding(state, "ctc", len(charset), *network_shape("ctc", state))
    return source, model.eval(), reader_size(str(path))


def reads_right(model: CharNet, size: tuple[int, int], images: list, labels: list[str], charset: Charset,
                length: int) -> list[bool]:
    """Which of ``images`` ``model`` reads as labelled, at input ``size``, held to ``length`` (0: any)."""
    if not images:
        return []
    pre = Preprocess(size=size)
    x = np.stack([pre(im) for im in images])
    logits = predict(model, x)
    return [s.text == label for s, label in zip(decode(logits, charset, "ctc", length), labels)]


def check_reader(cfg: TrainConfig, charset: Charset, state: dict[str, torch.Tensor], source: str,
                 fit: tuple[list, list], length: int, device: torch.device,
                 reader: tuple[str, CharNet, tuple[int, int]]) -> ReaderCheck:
    """The untrained ``reader`` (:func:`solving_reader`) against fine-tunes from ``state`` with ``cfg``'s recipe
    (input size, peak rate, epochs), each on all of ``fit`` but one of :data:`READER_CHECK_FOLDS` folds (every
    fourth captcha) and reading that fold."""
    images, targets = fit
    labels = [charset.decode(t) for t in targets]
    _, model, size = reader
    read = reads_right(model.to(device), size, images, labels, charset, length)
    if settled(len(images), sum(read)) is not None:
        return ReaderCheck(len(images), sum(read), None, None, cfg.epochs)
    tuned = [False] * len(images)
    for k in range(min(READER_CHECK_FOLDS, len(images))):
        out = list(range(k, len(images), READER_CHECK_FOLDS))
        own = [i for i in range(len(images)) if i % READER_CHECK_FOLDS != k]
        model, _ = train_briefly(Probe("none", tuple(cfg.size), "ctc"), cfg, len(charset), state, source,
                                 ([images[i] for i in own], [targets[i] for i in own]), device, cfg.epochs, len(own))
        for i, right in zip(out, reads_right(model, tuple(cfg.size), [images[i] for i in out],
                                             [labels[i] for i in out], charset, length)):
            tuned[i] = right
    return ReaderCheck(len(images), sum(read), sum(r and not t for r, t in zip(read, tuned)),
                       sum(t and not r for r, t in zip(read, tuned)), cfg.epochs)
