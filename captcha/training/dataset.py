"""What a training run reads: training crops (or whole captchas) and the held-out validation part.

The parts come from ``data.splits`` (shared with `captcha eval`). ``--split auto`` (choosing a
splitter by a quick linear probe) lives here, because it needs the pretrained backbone, which the
torch-free ``segment`` module must not import.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..charset import Charset
from ..config import MIN_SLICE, PROBE_RIDGE, SPLITTERS, TrainConfig
from ..data.layout import detect_layout, load_images, one_length
from ..data.preprocess import Preprocess
from ..data.segment import SegmentConfig, split, to_content
from ..data.splits import Captcha, EvalData, read_parts
from ..data.synth import seed_for
from ..errors import DataError
from ..nn.networks import FEATURE_DIM, CharNet, load_backbone, resolve_pretrained
from .loop import frozen_outputs
from .stylematch import synthesize

log = logging.getLogger(__name__)


@dataclass
class TrainingData(EvalData):
    """What to validate on (see :class:`EvalData`), plus the character crops (or whole captchas for
    ctc) to train on."""

    train_images: list = field(default_factory=list)
    train_targets: list = field(default_factory=list)
    train_groups: list[int] = field(default_factory=list)  # samples of one group (a captcha's crops) stay together
    captcha_size: list[int] | None = None  # median (width, height) of its captchas: solving warns far from it
    other_lengths: int = 0  # training captchas left out because their label is not ``length`` long
    extra_groups: frozenset[int] = frozenset()  # groups of extra (pseudo-labelled, synthetic) captchas: never held out

    def label_lengths(self) -> Counter:
        """How many of the whole captchas CTC trains on have each label length."""
        return Counter(map(len, self.train_targets))

    def labelled_captchas(self) -> int:
        """How many labelled captchas there are to learn from: the training ones (extras aside) and a flat
        folder's validation share, which the refit learns from too (so a first fit and its refit count alike)."""
        flat = self.split.get("layout") == "flat"
        return len(set(self.train_groups) - self.extra_groups) + (len(self.captchas) if flat else 0)


def _crops_of(captchas: list[Captcha], length: int, segment: SegmentConfig, charset: Charset):
    """The character crops of captchas of the right length, their targets, and which captcha each came from."""
    images, targets, groups = [], [], []
    for k, (img, label) in enumerate(captchas):
        if len(label) != length:
            continue
        images += split(img, length, segment)
        targets += charset.encode(label)
        groups += [k] * length
    return images, targets, groups


def hold_out_slice(groups: list[int], fraction: float, seed: int,
                   always_fit: frozenset[int] = frozenset()) -> tuple[list[int], list[int]]:
    """(indices to fit on, indices of the held-out slice): about ``fraction`` of the groups, chosen by
    ``seed``. The slice picks the recipe and the epoch kept, so the reported val set is never used to
    choose; all crops of one captcha fall on the same side; groups in ``always_fit`` are never held out. A slice
    of fewer than :data:`MIN_SLICE` groups is none."""
    order = sorted(set(groups) - always_fit)
    random.Random(seed_for(seed, "slice")).shuffle(order)
    share = round(len(order) * fraction)
    held = set(order[:share]) if share >= MIN_SLICE else set()
    fit = [i for i, g in enumerate(groups) if g not in held]
    return fit, [i for i, g in enumerate(groups) if g in held]


def whole_captchas_only(root: Path) -> bool:
    """True when ``root`` holds labelled captchas and no single-character images to train on."""
    return detect_layout(root) == "flat" or not (root / "chars" / "train").is_dir()


def _length(cfg_length: int | None, captchas: list[Captcha], root: Path, method: str = "classify") -> int:
    """The captcha length: ``--length`` when given (and found in the labels), else the most common one; for
    CTC 0 (any) where no one length is common enough (:func:`one_length`): the site's lengths vary, and
    CTC reads any length where split-and-classify cuts a fixed number of characters."""
    counts = Counter(len(lab) for _, lab in captchas)
    if cfg_length:
        if counts and cfg_length not in counts:
            found = ", ".join(f"{n} of length {k}" for k, n in sorted(counts.items()))
            raise DataError(f"--length {cfg_length}: no captcha in {root} has {cfg_length} characters "
                            f"(found {found}); drop --length or fix the labels")
        return cfg_length
    if not counts:
        return 4
    one = one_length(counts)
    if one is None and method == "ctc":
        return 0
    return one or counts.most_common(1)[0][0]


def load_training_data(cfg: TrainConfig, charset: Charset, segment: SegmentConfig | None = None,
                       extra: list[Captcha] | None = None) -> TrainingData:
    """Read the dataset at ``cfg.data`` in either layout; split captchas into training crops (classify)
    or keep them whole (ctc). ``segment`` fixes the splitter (a resumed run) instead of choosing one;
    ``extra`` captchas (pseudo-labelled or synthetic) join the training captchas, never the held-out slice."""
    root = Path(cfg.data)
    parts = read_parts(root, charset, cfg.val_share, cfg.seed)
    real = len(parts.train_caps)
    parts.train_caps = parts.train_caps + list(extra or [])
    length = _length(cfg.length, parts.val_caps + parts.train_caps, root, cfg.method)
    segment = segment or _segmenter(cfg, parts.train_caps, length, charset, cells=bool(parts.train_chars))
    size = _median_size([im for im, _ in parts.train_caps + parts.val_caps])
    other = sum(len(lab) != length for _, lab in parts.train_caps) if length else 0
    if cfg.method == "ctc":  # whole captchas only: the single-character images are never decoded
        picked = [k for k, (_, lab) in enumerate(parts.train_caps) if not length or len(lab) == length]
        whole = [(to_content(parts.train_caps[k][0], segment), parts.train_caps[k][1]) for k in picked]
        if not whole:
            raise DataError(f"{root}: --method ctc reads whole captchas and needs labelled training captchas "
                            "(captchas/train/ or a flat folder); single characters cannot train it")
        return TrainingData([], [], parts.val_caps, length, segment, parts.split, train_images=[im for im, _ in whole],
                            train_targets=[charset.encode(lab) for _, lab in whole],
                            train_groups=picked, captcha_size=size, other_lengths=other,
                            extra_groups=frozenset(range(real, len(parts.train_caps))))
    t_imgs, kept = load_images(parts.train_chars)
    t_targets = [charset.encode(s.label)[0] for s in kept]
    v_imgs, v_kept = load_images(parts.val_chars)
    v_targets = [charset.encode(s.label)[0] for s in v_kept]
    c_imgs, c_targets, c_groups = _crops_of(parts.train_caps, length, segment, charset)
    if not t_imgs and not c_imgs:
        raise DataError(f"{root}: no training images found; check it with `captcha data check {root}`")
    groups = list(range(len(t_imgs))) + [len(t_imgs) + g for g in c_groups]  # a character image is its own group
    return TrainingData(v_imgs, v_targets, parts.val_caps, length, segment, parts.split, train_images=t_imgs + c_imgs,
                        train_targets=t_targets + c_targets, train_groups=groups,
                        captcha_size=size, other_lengths=other,
                        extra_groups=frozenset(len(t_imgs) + k for k in range(real, len(parts.train_caps))))


def synthetic_captchas(cfg: TrainConfig, charset: Charset) -> tuple[list[Captcha], dict[str, Any]]:
    """``cfg.synthetic`` captchas drawn in the style fitted to the training captchas (``stylematch``)."""
    parts = read_parts(Path(cfg.data), charset, cfg.val_share, cfg.seed)
    length = _length(cfg.length, parts.train_caps, Path(cfg.data))
    made, style = synthesize(parts.train_caps, length, cfg.synthetic, backbone_features(cfg.pretrained),
                             bool(charset.fold_case), cfg.seed)
    return made, style.to_dict()


def _median_size(images: list) -> list[int] | None:
    if not images:
        return None
    return [int(np.median([im.width for im in images])), int(np.median([im.height for im in images]))]


def _segmenter(cfg: TrainConfig, train_caps: list[Captcha], length: int, charset: Charset,
               cells: bool) -> SegmentConfig:
    """With character cells to train on (the course data), captchas are exact cells: keep them whole;
    real captchas are cut to their content and trimmed to their ink first; ``auto`` picks by a quick
    validation. The CTC method reads whole captchas (cut to their content) and never splits."""
    if cfg.method == "ctc":
        return SegmentConfig("equal", trim=not cells, crop=not cells)
    if cfg.split == "auto":
        if not train_caps or cells:
            return SegmentConfig("equal")
        return choose_splitter(train_caps, length, charset, backbone_features(cfg.pretrained))
    return SegmentConfig(cfg.split, trim=not cells, crop=not cells)


def backbone_features(pretrained: str) -> Callable[[list[Any]], np.ndarray]:
    """Crops -> pooled features of the pretrained backbone (raw 16x16 pixels when there is none)."""
    source, state = resolve_pretrained(pretrained)
    if state is None:
        small = Preprocess(size=(16, 16))
        return lambda crops: np.stack([small(c).ravel() for c in crops])
    model = CharNet(FEATURE_DIM)
    load_backbone(model, state, source)
    model.eval()
    pre = Preprocess()

    def features(crops: list[Any]) -> np.ndarray:
        fmap = frozen_outputs(model, torch.from_numpy(np.stack([pre(c) for c in crops])), "layer4")
        return fmap.mean((2, 3)).numpy()  # the pooled 512-d features the head would see

    return features


def linear_probe(x: np.ndarray, y: np.ndarray, queries: np.ndarray, classes: int) -> np.ndarray:
    """Classes of ``queries`` by a ridge regression of one-hot ``y`` on standardised features ``x``: a
    closed-form linear probe. It ranked the splitters as scikit-learn's logistic regression did on five of
    six sets (the sixth: its second choice), with as good a score, in 0.1 s where that took ~3 s."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    a = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    b = np.hstack([(queries - mu) / sd, np.ones((len(queries), 1))])
    w = np.linalg.solve(a.T @ a + PROBE_RIDGE * len(a) * np.eye(a.shape[1]), a.T @ np.eye(classes)[y])
    return (b @ w).argmax(1)


def choose_splitter(captchas: list[Captcha], length: int, charset: Charset,
                    features: Callable[[list[Any]], np.ndarray], limit: int = 400) -> SegmentConfig:
    """``--split auto``: the splitter whose crops a quick linear probe on ``features`` reads best.

    The probe is fitted on the first 75% of (at most ``limit``) training captchas and scored by
    full-string accuracy on the rest, so a splitter that cuts characters in half loses.
    """
    best, best_score = SegmentConfig("equal", trim=True, crop=True), -1.0
    captchas = captchas[:limit]
    cut = int(len(captchas) * 0.75)
    fit, held = captchas[:cut], captchas[cut:]
    if not fit or not held:
        return best
    for method in SPLITTERS:
        seg = SegmentConfig(method, trim=True, crop=True)
        x, y, _ = _crops_of(fit, length, seg, charset)
        hx, hy, _ = _crops_of(held, length, seg, charset)
        if not x or not hx:
            continue
        pred = linear_probe(features(x), np.asarray(y), features(hx), len(charset)).reshape(-1, length)
        truth = np.asarray(hy).reshape(-1, length)
        whole, chars = float((pred == truth).all(1).mean()), float((pred == truth).mean())
        log.info("split %-10s linear probe on %d held-out captchas: %6.2f%% whole, %6.2f%% characters",
                 method, len(truth), 100 * whole, 100 * chars)
        score = whole + 1e-3 * chars  # full strings first; the character rate breaks ties
        if score > best_score:
            best, best_score = seg, score
    log.info("split auto: picked %s", best.method)
    return best
