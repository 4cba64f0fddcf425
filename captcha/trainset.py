"""What a training run reads: training crops (or whole captchas) and the held-out validation part.

One reader serves both layouts and both users: ``load_training_data`` (training) and
``validation_data`` (`captcha eval --val`), so the two can never disagree about which captchas
were held out. ``--split auto`` (choosing a splitter by a quick linear probe) lives here too,
because it needs the pretrained backbone, which the torch-free ``segment`` module must not import.
"""

from __future__ import annotations

import logging
import random
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .charset import Charset
from .data import detect_layout, load_images, read_captcha_labels, read_char_folder
from .errors import ConfigError, DataError
from .segment import SegmentConfig, split
from .synth import seed_for
from .transforms import Preprocess

if TYPE_CHECKING:
    from .train import TrainConfig

log = logging.getLogger(__name__)

Captcha = tuple[Any, str]  # (RGB PIL image, label)


@dataclass
class TrainingData:
    """Character crops (or whole captchas for ctc) to train on, and what to validate on."""

    train_images: list
    train_targets: list
    char_images: list
    char_targets: list[int]
    captchas: list[Captcha]
    length: int
    segment: SegmentConfig
    split: dict[str, Any]
    single_chars: bool = False  # trained on clean single-character images (the course's chars/train)


@dataclass
class _Parts:
    train_chars: list
    val_chars: list
    train_caps: list[Captcha]
    val_caps: list[Captcha]
    split: dict[str, Any]


def flat_split(names: list[str], val_fraction: float, seed: int) -> set[str]:
    """Deterministic held-out file names of a flat captcha folder."""
    if not 0 < val_fraction < 1:
        raise ConfigError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    order = sorted(names)
    random.Random(seed_for(seed, "split")).shuffle(order)
    return set(order[: max(1, round(len(order) * val_fraction))])


def _captchas(folder: Path, charset: Charset) -> list[Captcha]:
    if not folder.is_dir():
        return []
    images, kept = load_images(read_captcha_labels(folder, charset, problems=[]))
    return list(zip(images, [s.label for s in kept]))


def _read_parts(root: Path, charset: Charset, val_fraction: float, seed: int,
                val_files: list[str] | None = None, val_only: bool = False) -> _Parts:
    """Both layouts: the course's chars/ + captchas/ folders, or a flat folder split by seed
    (or by the recorded ``val_files``). ``val_only`` skips decoding the training part."""
    if detect_layout(root) == "course":
        def chars(part: str) -> list:
            return read_char_folder(root / "chars" / part, charset, problems=[]) if (root / "chars" / part).is_dir() else []

        return _Parts([] if val_only else chars("train"), chars("val"),
                      [] if val_only else _captchas(root / "captchas" / "train", charset),
                      _captchas(root / "captchas" / "val", charset), {"layout": "course", "root": str(root)})
    samples = read_captcha_labels(root, charset, problems=[])
    names = [s.path.name for s in samples]
    held = set(val_files) if val_files is not None else flat_split(names, val_fraction, seed)
    if val_only:
        samples = [s for s in samples if s.path.name in held]
    images, kept = load_images(samples)
    caps = list(zip(images, [s.label for s in kept]))
    is_val = [s.path.name in held for s in kept]
    info = {"layout": "flat", "root": str(root), "seed": seed, "val_fraction": val_fraction, "val_files": sorted(held)}
    return _Parts([], [], [c for c, v in zip(caps, is_val) if not v], [c for c, v in zip(caps, is_val) if v], info)


def _crops_of(captchas: list[Captcha], length: int, segment: SegmentConfig, charset: Charset):
    images, targets = [], []
    for img, label in captchas:
        if len(label) != length:
            continue
        images += split(img, length, segment)
        targets += charset.encode(label)
    return images, targets


def _length(cfg_length: int | None, captchas: list[Captcha], root: Path) -> int:
    """The captcha length: ``--length`` when given (and found in the labels), else the most common one."""
    counts = Counter(len(lab) for _, lab in captchas)
    if cfg_length:
        if counts and cfg_length not in counts:
            found = ", ".join(f"{n} of length {k}" for k, n in sorted(counts.items()))
            raise DataError(f"--length {cfg_length}: no captcha in {root} has {cfg_length} characters "
                            f"(found {found}); drop --length or fix the labels")
        return cfg_length
    return counts.most_common(1)[0][0] if counts else 4


def load_training_data(cfg: "TrainConfig", charset: Charset, segment: SegmentConfig | None = None) -> TrainingData:
    """Read the dataset at ``cfg.data`` in either layout; split captchas into training crops (classify)
    or keep them whole (ctc). ``segment`` fixes the splitter (a resumed run) instead of choosing one."""
    root = Path(cfg.data)
    parts = _read_parts(root, charset, cfg.val_fraction, cfg.seed)
    length = _length(cfg.length, parts.val_caps + parts.train_caps, root)
    segment = segment or _segmenter(cfg, parts.train_caps, length, charset, cells=bool(parts.train_chars))
    if cfg.method == "ctc":  # whole captchas only: the single-character images are never decoded
        whole = [(im, lab) for im, lab in parts.train_caps if len(lab) == length]
        if not whole:
            raise DataError(f"{root}: --method ctc reads whole captchas and needs labelled training captchas "
                            "(captchas/train/ or a flat folder); single characters cannot train it")
        return TrainingData([im for im, _ in whole], [charset.encode(lab) for _, lab in whole], [], [],
                            parts.val_caps, length, segment, parts.split)
    t_imgs, kept = load_images(parts.train_chars)
    t_targets = [charset.encode(s.label)[0] for s in kept]
    v_imgs, v_kept = load_images(parts.val_chars)
    v_targets = [charset.encode(s.label)[0] for s in v_kept]
    c_imgs, c_targets = _crops_of(parts.train_caps, length, segment, charset)
    if not t_imgs and not c_imgs:
        raise DataError(f"{root}: no training images found; check it with `captcha data check {root}`")
    return TrainingData(t_imgs + c_imgs, t_targets + c_targets, v_imgs, v_targets, parts.val_caps, length, segment,
                        parts.split, single_chars=bool(t_imgs))


def validation_data(ckpt: dict[str, Any], data: str | Path | None = None) -> TrainingData:
    """The validation part of the data a checkpoint was trained on (for `captcha eval --val`)."""
    info = ckpt.get("split", {})
    root = Path(data or info.get("root") or ckpt["train_config"]["data"])
    if not root.is_dir():
        raise DataError(f"{root}: validation data not found; pass --data DIR")
    charset = Charset.from_dict(ckpt["charset"])
    conf = ckpt["train_config"]
    recorded = info.get("val_files") if info.get("layout") == "flat" else None
    parts = _read_parts(root, charset, conf.get("val_fraction", 0.2), conf.get("seed", 0), recorded, val_only=True)
    return _evaluation_data(parts, ckpt, charset, root)


def labelled_data(ckpt: dict[str, Any], data: str | Path) -> TrainingData:
    """Any labelled data for `captcha eval DATASET`: every captcha of a flat folder, or the chars/val
    and captchas/val parts of a course-layout dataset."""
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder does not exist")
    charset = Charset.from_dict(ckpt["charset"])
    if detect_layout(root) == "course":
        parts = _read_parts(root, charset, 0.2, 0, val_only=True)
    else:
        parts = _Parts([], [], [], _captchas(root, charset), {"layout": "flat", "root": str(root)})
    return _evaluation_data(parts, ckpt, charset, root)


def _evaluation_data(parts: _Parts, ckpt: dict[str, Any], charset: Charset, root: Path) -> TrainingData:
    v_imgs, v_kept = load_images(parts.val_chars)
    if not v_imgs and not parts.val_caps:
        raise DataError(f"{root}: no labelled data to evaluate (chars/val, captchas/val, or labelled captchas)")
    return TrainingData([], [], v_imgs, [charset.encode(s.label)[0] for s in v_kept], parts.val_caps,
                        int(ckpt["length"]), SegmentConfig.from_dict(ckpt["segment"]), parts.split)


def _segmenter(cfg: "TrainConfig", train_caps: list[Captcha], length: int, charset: Charset,
               cells: bool) -> SegmentConfig:
    """With character cells to train on (the course data), captchas are exact cells: keep them whole;
    real captchas are trimmed to their ink first; ``auto`` picks by a quick validation.
    The CTC method reads whole captchas and never splits."""
    if cfg.method == "ctc":
        return SegmentConfig("equal")
    if cfg.split == "auto":
        if not train_caps or cells:
            return SegmentConfig("equal")
        return choose_splitter(train_caps, length, charset, backbone_features(cfg.pretrained))
    return SegmentConfig(cfg.split, trim=not cells)


def backbone_features(pretrained: str) -> Callable[[list[Any]], np.ndarray]:
    """Crops -> pooled features of the pretrained backbone (raw 16x16 pixels when there is none)."""
    import torch

    from .model import FEATURE_DIM, CharNet, load_backbone, resolve_pretrained

    source, state = resolve_pretrained(pretrained)
    if state is None:
        small = Preprocess(size=(16, 16))
        return lambda crops: np.stack([small(c).ravel() for c in crops])
    model = CharNet(FEATURE_DIM)
    load_backbone(model, state, source)
    model.eval()
    pre = Preprocess()

    @torch.inference_mode()
    def features(crops: list[Any]) -> np.ndarray:
        x = torch.from_numpy(np.stack([pre(c) for c in crops]))
        return torch.cat([model.features(x[i:i + 256]) for i in range(0, len(x), 256)]).numpy()

    return features


def choose_splitter(captchas: list[Captcha], length: int, charset: Charset,
                    features: Callable[[list[Any]], np.ndarray], limit: int = 400) -> SegmentConfig:
    """``--split auto``: the splitter whose crops a quick linear probe on ``features`` reads best.

    The probe is fitted on the first 75% of (at most ``limit``) training captchas and scored by
    full-string accuracy on the rest, so a splitter that cuts characters in half loses.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from .segment import SPLITTERS

    best, best_score = SegmentConfig("equal", trim=True), -1.0
    captchas = captchas[:limit]
    cut = int(len(captchas) * 0.75)
    fit, held = captchas[:cut], captchas[cut:]
    if not fit or not held:
        return best
    for method in SPLITTERS:
        seg = SegmentConfig(method, trim=True)
        x, y = _crops_of(fit, length, seg, charset)
        hx, hy = _crops_of(held, length, seg, charset)
        if not x or not hx:
            continue
        fx = features(x)
        scaler = StandardScaler().fit(fx)
        clf = LogisticRegression(max_iter=200, C=0.5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a quick proxy: convergence is not the point
            clf.fit(scaler.transform(fx), y)
        pred = clf.predict(scaler.transform(features(hx))).reshape(-1, length)
        truth = np.asarray(hy).reshape(-1, length)
        # full strings first; the character rate breaks ties (and ranks splitters when none is whole)
        score = float((pred == truth).all(1).mean()) + 1e-3 * float((pred == truth).mean())
        log.info("split %s: linear-probe score %.3f", method, score)
        if score > best_score:
            best, best_score = seg, score
    return best
