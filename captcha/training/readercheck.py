"""Whether the general reader, untrained, reads a site better than a fine-tune on its few captchas would.

With too few labelled captchas to hold a slice out, nothing in a run measures the fine-tune it makes, and on a
site close to what the reader knows a fine-tune on a handful can read it worse than the reader did before any
training (sysu_alnum4 from its first 9: 76.5% fine-tuned, 84.8% untrained). The reader has seen none of the
user's captchas, so its reading of all of them is a fair measure of it; two fine-tunes with the run's own recipe,
each on half of them, read the other half. Where the reader reads more of them, the run keeps it: its head mapped
onto the site's characters, held to the lengths the labels have, nothing trained.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..charset import Charset
from ..config import TrainConfig
from ..data.preprocess import Preprocess
from ..inference.load import general_reader_path
from ..nn.networks import CharNet, network_shape, new_model, reader_size, reader_state
from .loop import validate
from .recipe import Probe, train_briefly


@dataclass
class ReaderCheck:
    """What the check read: captchas the untrained reader and the half fine-tunes each read right, of how many."""

    captchas: int
    reader: int
    fine_tuned: int
    epochs: int  # each half fine-tune's

    @property
    def kept(self) -> bool:
        """The reader is kept only where it reads more: a tie goes to training, which learns the site's labels."""
        return self.reader > self.fine_tuned

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "kept": self.kept}


def solving_reader(charset: Charset, path: Path | None = None) -> tuple[str, CharNet, tuple[int, int]]:
    """The reader solving uses with no training, whole, its head mapped onto ``charset``: (source, network,
    input size)."""
    path = path or general_reader_path()
    source, state = reader_state(charset.alphabet, bool(charset.fold_case), path)
    model = new_model("ctc", len(charset), *network_shape("ctc", state))
    model.load_state_dict(state)
    return source, model.eval(), reader_size(str(path))


def reads_right(model: CharNet, size: tuple[int, int], images: list, labels: list[str], charset: Charset,
                length: int) -> int:
    """How many of ``images`` ``model`` reads as labelled, at input ``size``, held to ``length`` (0: any)."""
    if not images:
        return 0
    pre = Preprocess(size=size)
    x = torch.from_numpy(np.stack([pre(im) for im in images]))
    return round(validate(model, torch.zeros(0), np.zeros(0), x, labels, charset, length, "ctc")["string_acc"]
                 * len(images))


def check_reader(cfg: TrainConfig, charset: Charset, state: dict[str, torch.Tensor], source: str,
                 fit: tuple[list, list], length: int, device: torch.device,
                 reader: tuple[str, CharNet, tuple[int, int]]) -> ReaderCheck:
    """The untrained ``reader`` (:func:`solving_reader`) against two fine-tunes from ``state`` with ``cfg``'s
    recipe (input size, peak rate, epochs), each on every other captcha of ``fit`` and reading the rest."""
    images, targets = fit
    labels = [charset.decode(t) for t in targets]
    halves = [list(range(0, len(images), 2)), list(range(1, len(images), 2))]
    fine = 0
    for k, own in enumerate(halves):
        other = halves[1 - k]
        model, _ = train_briefly(Probe("none", tuple(cfg.size), "ctc"), cfg, len(charset), state, source,
                                 ([images[i] for i in own], [targets[i] for i in own]), device, cfg.epochs, len(own))
        fine += reads_right(model, tuple(cfg.size), [images[i] for i in other], [labels[i] for i in other], charset,
                            length)
    _, model, size = reader
    return ReaderCheck(len(images), reads_right(model.to(device), size, images, labels, charset, length), fine,
                       cfg.epochs)

