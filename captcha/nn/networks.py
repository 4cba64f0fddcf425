"""The network: torchvision's ResNet-18 with a new head, where its weights come from, what is frozen.

Imports nothing from training (nanoGPT's rule): solving needs only this and the checkpoint.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import ResNet, ResNet18_Weights
from torchvision.models.resnet import BasicBlock, conv1x1

from ..charset import DEFAULT_ALPHABET
from ..config import (
    CTC_WIDTH,
    FREEZE_LEVELS,
    METHODS,
    PRETRAINED_HELP,
    SECOND,
    SHIPPED_READER,
)
from ..errors import CheckpointError, ConfigError
from .checkpoint import check_checkpoint, is_checkpoint, read_weights_file

log = logging.getLogger(__name__)

ARCH = "resnet18"
FEATURE_DIM = 512
LAYER4_ORDER = "layer4_order"  # a reader's record that its layer4 channels are stored most-used first
LAYER3_ORDER = "layer3_order"  # ... and its layer3 blocks' inner channels
LAYER3_INNER = 256  # a ResNet-18's inner channels in each layer3 block
STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")  # in forward order
IMAGENET_FILE = "resnet18-f37072fd.pth"
# Package data (captcha/weights/, inside the wheel too), loadable by name; "glyphs" is the default one.
SHIPPED_BACKBONES = {"glyphs-v1": "glyph-resnet18.pt", "glyphs-v2": "glyph-resnet18-v2.pt"}
DEFAULT_GLYPHS = "glyphs-v2"  # chosen by `captcha bench generalize` (v2 87.7% mean full-string, v1 72.6%)


class CharNet(ResNet):
    """ResNet-18 whose ``fc`` is a ``num_classes``-way head, with stage-wise freezing.

    Keeps torchvision's module names, so any ResNet-18 state_dict loads into it.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__(block=BasicBlock, layers=[2, 2, 2, 2])  # exactly torchvision's resnet18()
        self.fc = nn.Linear(FEATURE_DIM, num_classes)
        self.freeze_level = "none"

    @property
    def width(self) -> int:
        """Channels of layer4, which the head reads."""
        return self.fc.in_features

    @property
    def layer3_inner(self) -> int:
        """Channels between each layer3 block's two convolutions."""
        return self.layer3[0].conv1.out_channels

    def stage_modules(self) -> dict[str, list[nn.Module]]:
        """Modules of each stage, stem first."""
        return {"stem": [self.conv1, self.bn1], "layer1": [self.layer1], "layer2": [self.layer2],
                "layer3": [self.layer3], "layer4": [self.layer4]}

    def frozen_stages(self) -> list[str]:
        """Stages whose parameters are frozen at the current level."""
        if self.freeze_level == "none":
            return []
        if self.freeze_level == "all":
            return list(STAGES)
        return list(STAGES[: STAGES.index(self.freeze_level) + 1])

    def freeze(self, level: str) -> "CharNet":
        """Freeze the stem through ``level`` (``all``: the whole backbone, only ``fc`` trains)."""
        if level not in FREEZE_LEVELS:
            raise ConfigError(f"unknown freeze level {level!r}; choose one of {', '.join(FREEZE_LEVELS)}")
        self.freeze_level = level
        frozen = set(self.frozen_stages())
        for name, mods in self.stage_modules().items():
            for m in mods:
                for p in m.parameters():
                    p.requires_grad = name not in frozen
        for p in self.fc.parameters():
            p.requires_grad = True
        return self.train(self.training)

    def train(self, mode: bool = True) -> "CharNet":
        super().train(mode)
        # Frozen BatchNorm keeps its pretrained running statistics.
        stages = self.stage_modules()
        for name in self.frozen_stages():
            for m in stages[name]:
                m.eval()
        return self

    def forward_stages(self, x: torch.Tensor, start: str | None = None, stop: str | None = None) -> torch.Tensor:
        """Run the stages after ``start`` up to and including ``stop`` (None: from the input / to the end)."""
        order = list(STAGES)
        i0 = 0 if start is None else order.index(start) + 1
        i1 = len(order) if stop is None else order.index(stop) + 1
        for name in order[i0:i1]:
            if name == "stem":
                x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            else:
                x = getattr(self, name)(x)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled 512-d backbone features (the input of ``fc``)."""
        return torch.flatten(self.avgpool(self.forward_stages(x)), 1)

    def head_from(self, x: torch.Tensor, start: str | None) -> torch.Tensor:
        """Logits from the output of stage ``start`` (used with cached frozen features)."""
        if start == "layer4":
            return self.fc(torch.flatten(self.avgpool(x), 1))
        return self.fc(torch.flatten(self.avgpool(self.forward_stages(x, start=start)), 1))


class SeqNet(CharNet):
    """Segmentation-free reader (CTC): the same ResNet-18 reads the whole captcha.

    layer3 and layer4 halve only the height, so a 32 x 128 input leaves 16 feature columns; the
    head classifies each column into a character or the CTC blank (the last class). Weight names
    and shapes are torchvision's, so every ResNet-18 backbone loads into it; with a ``width`` under
    512, layer4 (half the network's work) has that many channels, and the head reads them; with a
    ``layer3_inner`` under 256, so many channels lie between each layer3 block's two convolutions.
    """

    def __init__(self, num_classes: int, width: int = FEATURE_DIM, layer3_inner: int = LAYER3_INNER) -> None:
        super().__init__(num_classes)
        if width != FEATURE_DIM:
            down = nn.Sequential(conv1x1(256, width, stride=2), nn.BatchNorm2d(width))
            self.layer4 = nn.Sequential(BasicBlock(256, width, stride=2, downsample=down), BasicBlock(width, width))
            self.fc = nn.Linear(width, num_classes)
        for block in self.layer3 if layer3_inner != LAYER3_INNER else ():
            # the block's own channels between its two convolutions: the residual stream keeps its 256
            block.conv1 = nn.Conv2d(block.conv1.in_channels, layer3_inner, 3, block.conv1.stride, 1, bias=False)
            block.bn1 = nn.BatchNorm2d(layer3_inner)
            block.conv2 = nn.Conv2d(layer3_inner, block.conv2.out_channels, 3, 1, 1, bias=False)
        for layer in (self.layer3, self.layer4):
            layer[0].conv1.stride = (2, 1)
            layer[0].downsample[0].stride = (2, 1)

    def columns(self, fmap: torch.Tensor) -> torch.Tensor:
        """(N, width, h, w) feature map -> (N, w, classes) per-column logits."""
        return self.fc(fmap.mean(2).transpose(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.columns(self.forward_stages(x))

    def head_from(self, x: torch.Tensor, start: str | None) -> torch.Tensor:
        return self.columns(x if start == "layer4" else self.forward_stages(x, start=start))


NETWORKS = {"classify": CharNet, "ctc": SeqNet}  # one per method of config.METHODS


def new_model(method: str, num_chars: int, width: int = FEATURE_DIM, layer3_inner: int = LAYER3_INNER) -> CharNet:
    """An untrained network for ``method`` over ``num_chars`` characters (CTC adds the blank); a CTC one with
    ``width`` channels in layer4 and ``layer3_inner`` inside each layer3 block (:class:`SeqNet`)."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "ctc":
        return SeqNet(num_chars + 1, width, layer3_inner)
    if (width, layer3_inner) != (FEATURE_DIM, LAYER3_INNER):
        raise ConfigError(f"a {method} network has ResNet-18's channels, not {width} in layer4 and {layer3_inner} "
                          "inside layer3")
    return NETWORKS[method](num_chars)


def state_width(state: dict[str, torch.Tensor] | None) -> int:
    """Channels of layer4 in ``state`` (a ResNet-18's 512 where it holds no layer4)."""
    weight = (state or {}).get("layer4.0.conv1.weight")
    return FEATURE_DIM if weight is None else int(weight.shape[0])


def state_layer3_inner(state: dict[str, torch.Tensor] | None) -> int:
    """Channels inside each layer3 block of ``state`` (a ResNet-18's 256 where it holds no layer3)."""
    weight = (state or {}).get("layer3.0.conv1.weight")
    return LAYER3_INNER if weight is None else int(weight.shape[0])


def checkpoint_shape(ckpt: dict[str, Any]) -> tuple[int, int]:
    """The channels a checkpoint records in layer4 and inside layer3 (ResNet-18's where it records none: older files)."""
    return ckpt.get("width", FEATURE_DIM), ckpt.get("layer3_inner", LAYER3_INNER)


def network_shape(method: str, state: dict[str, torch.Tensor] | None) -> tuple[int, int]:
    """The channels a ``method`` network from ``state`` has, as :func:`new_model` takes them: a CTC one's
    follow the state (layer4's, those inside each layer3 block), any other is ResNet-18's."""
    return (state_width(state), state_layer3_inner(state)) if method == "ctc" else (FEATURE_DIM, LAYER3_INNER)


# layer4's BatchNorms over its output channels (the residual stream, which the head reads)
_STREAM = ("layer4.0.bn2", "layer4.0.downsample.1", "layer4.1.bn2")
_BN = ("weight", "bias", "running_mean", "running_var")
Index = slice | torch.Tensor


def _inner_taken(out: dict[str, torch.Tensor], block: str, own: Index) -> None:
    """The channels between ``block``'s two convolutions taken by index, in place."""
    out[f"{block}.conv1.weight"] = out[f"{block}.conv1.weight"][own]
    out[f"{block}.conv2.weight"] = out[f"{block}.conv2.weight"][:, own]
    for name in _BN:
        out[f"{block}.bn1.{name}"] = out[f"{block}.bn1.{name}"][own]


def _taken(state: dict[str, torch.Tensor], inner: dict[str, Index], stream: Index) -> dict[str, torch.Tensor]:
    """``state`` with channels taken by index: the inner ones of each block named in ``inner``, and layer4's
    output ones (``stream``), in every weight that has them and in the head."""
    out = dict(state)
    for block, own in inner.items():
        _inner_taken(out, block, own)
    out["layer4.0.conv2.weight"] = out["layer4.0.conv2.weight"][stream]
    out["layer4.1.conv2.weight"] = out["layer4.1.conv2.weight"][stream]
    out["layer4.1.conv1.weight"] = out["layer4.1.conv1.weight"][:, stream]
    out["layer4.0.downsample.0.weight"] = state["layer4.0.downsample.0.weight"][stream]
    for prefix in _STREAM:
        for name in _BN:
            out[f"{prefix}.{name}"] = state[f"{prefix}.{name}"][stream]
    if "fc.weight" in state:
        out["fc.weight"] = state["fc.weight"][:, stream]
    return out


def narrowed(state: dict[str, torch.Tensor], width: int, layer3_inner: int | None = None) -> dict[str, torch.Tensor]:
    """A ResNet-18 ``state`` (a :class:`SeqNet`'s) with only the first ``width`` channels of layer4 (the inner
    ones of each block and its output, which the head reads) and, given ``layer3_inner``, the first that many
    inside each layer3 block: the general reader stores them most-used first (:func:`order_channels`), so
    these are the ones it leans on."""
    layer3_inner = layer3_inner or state_layer3_inner(state)
    if (width, layer3_inner) == (state_width(state), state_layer3_inner(state)):
        return state
    keep, keep3 = slice(0, width), slice(0, layer3_inner)
    return _taken(state, {"layer3.0": keep3, "layer3.1": keep3, "layer4.0": keep, "layer4.1": keep}, keep)


_INNER = ("layer3.0", "layer3.1", "layer4.0", "layer4.1")  # the blocks whose inner channels are ordered


@torch.inference_mode()
def channel_energy(model: SeqNet, x: torch.Tensor, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """How much ``model`` uses each channel it can be narrowed in reading inputs ``x``, for
    :func:`order_channels`: the mean squared activation of each layer3 and layer4 block's inner channels, and
    the root of it for layer4's output times the norm of the head's weights on the channel (what it adds to the
    head's logits)."""
    seen: dict[str, torch.Tensor] = {}
    taps = {**{b: model.get_submodule(b).bn1 for b in _INNER}, "out": model.layer4}
    hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: seen.__setitem__(k, o.relu()))
             for k, m in taps.items()]
    energy = {k: torch.zeros(m.num_features if k != "out" else model.width) for k, m in taps.items()}
    try:
        for i in range(0, len(x), batch_size):
            batch = x[i:i + batch_size]
            model(batch)
            for k in taps:
                energy[k] += seen[k].float().pow(2).mean((0, 2, 3)).cpu() * len(batch) / len(x)
    finally:
        for h in hooks:
            h.remove()
    energy["out"] = energy["out"].sqrt() * model.fc.weight.detach().float().norm(dim=0).cpu()
    return energy


def order_channels(state: dict[str, torch.Tensor], energy: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with layer4's channels and those inside each layer3 block reordered, most-used first, by
    ``energy`` (:func:`channel_energy`). The network computes the same function; :func:`narrowed` keeps the
    first."""
    first = {k: torch.argsort(v, descending=True) for k, v in energy.items()}
    return _taken(state, {b: first[b] for b in _INNER}, first["out"])


def clean_state_dict(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Strip DDP/compile prefixes (``module.``, ``_orig_mod.``) and keep tensors only."""
    out = {}
    for k, v in state.items():
        for prefix in ("module.", "_orig_mod."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        if isinstance(v, torch.Tensor):
            out[k] = v
    return out


def imagenet_weights_path() -> Path:
    """Where torchvision's weights API looks for the ImageNet ResNet-18 file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILE


def _load_imagenet() -> dict[str, torch.Tensor]:
    path = imagenet_weights_path()
    if not path.is_file():
        raise CheckpointError(
            f"--pretrained imagenet needs {path} (torchvision's cache; set $TORCH_HOME to move it), "
            f"which is absent and cannot be downloaded offline. Copy {IMAGENET_FILE} there, or choose "
            f"another source: {PRETRAINED_HELP}"
        )
    # torchvision's own API: it reads the cached file and downloads nothing when it is present.
    return ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False)


def load_backbone_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """ResNet-18 weights from a project checkpoint, a backbone file or a plain state_dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--pretrained {path}: no such file; choose {PRETRAINED_HELP}")
    state = read_weights_file(path)
    if is_checkpoint(state):
        state = check_checkpoint(state, path)["model"]
    elif isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a state_dict (found {type(state).__name__})")
    return clean_state_dict(state)


def shipped_backbone(name: str = "glyphs") -> Path:
    """A glyph-pretrained backbone shipped inside the package (read through importlib.resources)."""
    file = SHIPPED_BACKBONES[DEFAULT_GLYPHS if name == "glyphs" else name]
    return Path(str(resources.files("captcha") / "weights" / file))


def shipped_reader() -> Path:
    """The general reader (`captcha pretrain --source captchas`) shipped inside the package: solving with no
    training reads with it, and every CTC fine-tune starts from it."""
    return Path(str(resources.files("captcha") / "weights" / SHIPPED_READER))


@functools.lru_cache(maxsize=4)
def reader_size(path: str | None = None) -> tuple[int, int]:
    """The input size (height, width) a general reader (the shipped one by default) reads at."""
    path = Path(path) if path else shipped_reader()
    height, width = check_checkpoint(read_weights_file(path), path, "recognizer")["preprocess"]["size"]
    return int(height), int(width)


def reader_height(path: str | None = None) -> int:
    """The input height the general reader was trained at: a CTC fine-tune from it reads at that scale."""
    return reader_size(path)[0]


def reads_already(source: str) -> bool:
    """True when a model from ``source`` reads before any training: the general reader, head and all."""
    return source.startswith("reader:")


def is_shipped_reader(source: str) -> bool:
    """True when ``source`` (as :func:`reader_state` names it) is the general reader shipped in the package."""
    return source == f"reader:{SHIPPED_READER}"


def reader_file(source: str) -> Path | None:
    """The checkpoint a ``reader:`` source was read from (the shipped reader, or a reader's path); None for others."""
    if not reads_already(source):
        return None
    return shipped_reader() if is_shipped_reader(source) else Path(source[len("reader:"):])


def reader_start(spec: str) -> tuple[str, dict[str, torch.Tensor] | None]:
    """Where `captcha pretrain --source captchas` starts: ``reader``, or the path of a reader it wrote, goes on from
    that reader whole, head and all (a further stage); anything else is :func:`resolve_pretrained` (a trunk)."""
    path = Path(str(spec))
    if spec != "reader" and path.is_file():
        ckpt = read_weights_file(path)
        if is_checkpoint(ckpt) and ckpt.get("method") == "ctc":
            path = path.resolve()  # never the bare name the shipped reader goes by
            return f"reader:{path}", reader_state(DEFAULT_ALPHABET, True, path, ckpt=ckpt)[1]
    return resolve_pretrained(spec)


def start_height(source: str) -> int | None:
    """The input height a CTC model from ``source`` should read at (None: the captchas' own)."""
    return reader_height() if is_shipped_reader(source) else None


def reader_state(alphabet: str, fold_case: bool, path: str | os.PathLike | None = None, width: int = FEATURE_DIM,
                 layer3_inner: int = LAYER3_INNER, ckpt: dict | None = None) -> tuple[str, dict[str, torch.Tensor]]:
    """The general reader's weights as the start of a CTC model over ``alphabet``: the trunk as is (with
    ``width`` under 512, the first that many channels of layer4, and with ``layer3_inner`` under 256 the first
    that many inside each layer3 block, where the reader stores them most-used first; a reader that does not
    keeps them all), and each head row taken from the reader's row for the same character (case-folded when
    the target folds case) and its blank; characters the reader does not know keep a fresh row. ``ckpt``: the
    file's contents when the caller has read them already."""
    path = Path(path) if path else shipped_reader()
    ckpt = check_checkpoint(ckpt if ckpt is not None else read_weights_file(path), path, "recognizer")
    if ckpt.get("method") != "ctc":
        raise CheckpointError(f"{path}: not a CTC reader (method {ckpt.get('method')!r})")
    state = clean_state_dict(ckpt["model"])
    wanted = {"layer4": (width, state_width(state), LAYER4_ORDER),
              "layer3": (layer3_inner, state_layer3_inner(state), LAYER3_ORDER)}
    kept = []
    for stage, (asked, has, record) in wanted.items():
        if asked < has and not ckpt.get(record):
            log.info("%s does not store %s's channels most-used first: a fine-tune from it keeps all %d",
                     path.name, stage, has)
        kept.append(asked if asked < has and ckpt.get(record) else has)
    state = narrowed(state, *kept)
    known = ckpt["charset"]["alphabet"]
    weight, bias = state.pop("fc.weight"), state.pop("fc.bias")
    fresh = nn.Linear(weight.shape[1], len(alphabet) + 1)
    rows_w, rows_b = fresh.weight.detach().clone(), fresh.bias.detach().clone()
    for i, c in enumerate(alphabet):
        key = c.upper() if c.upper() in known and (fold_case or c not in known) else c
        if key in known:
            rows_w[i], rows_b[i] = weight[known.index(key)], bias[known.index(key)]
    rows_w[-1], rows_b[-1] = weight[-1], bias[-1]
    state["fc.weight"], state["fc.bias"] = rows_w, rows_b
    return f"reader:{path.name}", state


def _shipped_state(name: str = "glyphs") -> tuple[str, dict[str, torch.Tensor]]:
    path = shipped_backbone(name)
    if not path.is_file():
        raise CheckpointError(f"--pretrained {name}: the shipped backbone {path} is missing from this install "
                              "(reinstall captcha-transfer, or make one with `captcha pretrain --source glyphs` "
                              "and pass --pretrained PATH)")
    return f"glyphs:{path.name}", load_backbone_file(path)


def resolve_pretrained(spec: str) -> tuple[str, dict[str, torch.Tensor] | None]:
    """Turn ``--pretrained`` into (a description of the source, a state_dict or None)."""
    spec = str(spec)
    if spec == "auto":
        if shipped_backbone().is_file():
            return _shipped_state()
        if imagenet_weights_path().is_file():
            return "imagenet", _load_imagenet()
        return "none", None
    if spec == "glyphs" or spec in SHIPPED_BACKBONES:
        return _shipped_state(spec)
    if spec == "imagenet":
        return "imagenet", _load_imagenet()
    if spec == "reader":  # the reader whole (`captcha pretrain --pretrained reader` goes on from it)
        return _shipped_reader_state(DEFAULT_ALPHABET, True, None)
    if spec == "none":
        return "none", None
    if not Path(spec).exists():
        raise CheckpointError(f"unknown --pretrained {spec!r}: not a file; choose {PRETRAINED_HELP}")
    return f"file:{spec}", load_backbone_file(spec)


def resolve_start(spec: str, method: str, alphabet: str, fold_case: bool,
                  layer3_inner: int) -> tuple[str, dict[str, torch.Tensor] | None]:
    """Where `captcha train` starts: CTC with ``auto`` starts from the general reader (its head mapped onto
    the charset, narrowed to :data:`CTC_WIDTH` channels in layer4 and ``layer3_inner`` inside layer3, which
    ``recipe.training_start`` chooses) when it is installed; ``reader`` asks for it;
    anything else is ``resolve_pretrained``."""
    if spec == "reader" or (spec == "auto" and method == "ctc" and shipped_reader().is_file()):
        return _shipped_reader_state(alphabet, fold_case, (CTC_WIDTH, layer3_inner) if method == "ctc" else None)
    return resolve_pretrained(spec)


def _shipped_reader_state(alphabet: str, fold_case: bool,
                          shape: tuple[int, int] | None) -> tuple[str, dict[str, torch.Tensor]]:
    """:func:`reader_state` of the general reader shipped in the package (with ``shape``: narrowed to that
    many channels in layer4 and inside layer3, as a CTC fine-tune keeps), or one line saying it is missing."""
    if not shipped_reader().is_file():
        raise CheckpointError(f"--pretrained reader: the general reader {shipped_reader()} is missing from this "
                              "install (make one with `captcha pretrain --source captchas`)")
    if shape is None:
        return reader_state(alphabet, fold_case)
    return reader_state(alphabet, fold_case, width=shape[0], layer3_inner=shape[1])


def load_backbone(model: CharNet, state: dict[str, torch.Tensor], source: str = "") -> None:
    """Copy ResNet-18 backbone weights into ``model``; mismatches are errors. The head stays new, except
    from the general reader (``reader:`` sources) when its mapped head fits the model's."""
    state = clean_state_dict(state)
    head = {k[3:]: v for k, v in state.items() if k.startswith("fc.")}
    own = model.fc.state_dict()
    if reads_already(source) and head.keys() == own.keys() and all(head[k].shape == v.shape for k, v in own.items()):
        model.fc.load_state_dict(head)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(part for part in (
            f"missing {len(missing)} keys (e.g. {missing[:3]})" if missing else "",
            f"unexpected {len(unexpected)} keys (e.g. {unexpected[:3]})" if unexpected else "",
            f"wrong shapes for {wrong[:3]}" if wrong else "") if part)
        raise CheckpointError(f"pretrained weights {source or ''} are not a ResNet-18 backbone: {detail}")
    model.load_state_dict(state, strict=False)


def build_model(num_classes: int, pretrained: str = "auto", freeze: str = "none",
                method: str = "classify") -> tuple[CharNet, str]:
    """ResNet-18 with a head over ``num_classes`` characters, weights from ``pretrained``, frozen to ``freeze``."""
    if freeze not in FREEZE_LEVELS:
        raise ConfigError(f"unknown freeze level {freeze!r}; choose one of {', '.join(FREEZE_LEVELS)}")
    source, state = resolve_pretrained(pretrained)
    model = new_model(method, num_classes, *network_shape(method, state))
    if state is not None:
        load_backbone(model, state, source)
    model.freeze(freeze)
    return model, source


def model_from_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike = "<checkpoint>", member: str = "") -> CharNet:
    """The trained network stored in a recognizer checkpoint, checked against its charset; ``member``
    ``second``: the first fit a refit keeps beside its own weights (:data:`SECOND`)."""
    if ckpt.get("arch") != ARCH:
        raise CheckpointError(f"{path}: architecture {ckpt.get('arch')!r} is not supported (only {ARCH})")
    method = ckpt.get("method", "classify")
    if method not in METHODS:
        raise CheckpointError(f"{path}: unknown method {method!r} (this version knows {', '.join(METHODS)})")
    chars = len(ckpt["charset"]["alphabet"])
    num_classes = chars + (1 if method == "ctc" else 0)
    if member not in ("", SECOND):
        raise CheckpointError(f"{path}: no member {member!r} (a checkpoint holds its model and perhaps {SECOND!r})")
    if member and not isinstance(ckpt.get(SECOND), dict):
        raise CheckpointError(f"{path}: holds no second fit; it was trained without a refit")
    state = clean_state_dict((ckpt[SECOND] if member else ckpt)["model"])
    head = state.get("fc.weight")
    if head is None or head.shape[0] != num_classes:
        got = None if head is None else head.shape[0]
        raise CheckpointError(f"{path}: head has {got} outputs but the charset has {chars} characters "
                              f"({method}); the file is inconsistent (retrain or re-export it)")
    width, inner = checkpoint_shape(ckpt)
    if not isinstance(width, int) or not 1 <= width <= FEATURE_DIM or head.shape[1] != width:
        raise CheckpointError(f"{path}: head reads {head.shape[1]} features but the checkpoint records layer4 "
                              f"width {width!r}; the file is inconsistent (retrain or re-export it)")
    if not isinstance(inner, int) or not 1 <= inner <= LAYER3_INNER or state_layer3_inner(state) != inner:
        raise CheckpointError(f"{path}: layer3 holds {state_layer3_inner(state)} inner channels but the checkpoint "
                              f"records {inner!r}; the file is inconsistent (retrain or re-export it)")
    try:
        model = model_holding(state, method, chars, width, inner)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit a ResNet-18: {str(exc).splitlines()[0]}") from None
    return model.eval()


def model_holding(state: dict[str, torch.Tensor], method: str, num_chars: int, width: int = FEATURE_DIM,
                  layer3_inner: int = LAYER3_INNER) -> CharNet:
    """:func:`new_model`'s network with every weight and buffer from ``state`` (strictly: a key missing or left
    over raises). Built on the meta device, so the random weights it would overwrite are never drawn (a tenth of
    a second on the CPU, and the global random stream is left as it was)."""
    with torch.device("meta"):
        model = new_model(method, num_chars, width, layer3_inner)
    model = model.to_empty(device="cpu")
    model.load_state_dict(state)
    return model


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Trainable and frozen parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"total": total, "trainable": trainable, "frozen": total - trainable}


def slim_for_input(model: nn.Module, size: tuple[int, int], along_width: bool = True) -> nn.Module:
    """A copy of ``model`` for inputs of ``size`` (height, width) alone, whose convolutions leave out the
    kernel taps that meet only zero padding at that size. The outputs are the same; the work is not:
    at 32 px ResNet-18's layer4 sees 1x1 maps, so three of its 3x3 convolutions are 1x1 ones doing 9x
    the multiplications (half of the network's time there). Without ``along_width`` only rows are left out,
    so the copy reads inputs of that height at any width."""
    model = copy.deepcopy(model).eval()
    sizes: dict[str, tuple[int, int]] = {}
    convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    hooks = [m.register_forward_pre_hook(lambda _m, args, name=name: sizes.__setitem__(name, tuple(args[0].shape[-2:])))
             for name, m in convs.items()]
    with torch.inference_mode():
        model(torch.zeros(1, 3, *size))
    for h in hooks:
        h.remove()
    for name, conv in convs.items():
        slim = _slim_conv(conv, sizes[name], along_width) if name in sizes else None
        if slim is not None:
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, slim)
    return model


def _slim_conv(conv: nn.Conv2d, size: tuple[int, int], along_width: bool = True) -> nn.Conv2d | None:
    """``conv`` cropped to the taps that ever meet its input of ``size`` (its columns kept whole without
    ``along_width``); None when all of them do (or the layer is of a kind this does not handle)."""
    if conv.groups != 1 or conv.dilation != (1, 1) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return None
    spans = []
    for axis, (n, k, s, p) in enumerate(zip(size, conv.kernel_size, conv.stride, conv.padding)):
        if axis == 1 and not along_width:
            spans.append((0, k, p))
            continue
        out = (n + 2 * p - k) // s + 1
        used = [t for t in range(k) if any(0 <= o * s - p + t < n for o in range(out))]
        first, last = used[0], used[-1]
        if (n + 2 * (p - first) - (last - first + 1)) // s + 1 != out:
            return None  # cropping would change the output size
        spans.append((first, last + 1, p - first))
    if all(a == 0 and b == k for (a, b, _), k in zip(spans, conv.kernel_size)):
        return None
    (r0, r1, pr), (c0, c1, pc) = spans
    slim = nn.Conv2d(conv.in_channels, conv.out_channels, (r1 - r0, c1 - c0), conv.stride, (pr, pc),
                     bias=conv.bias is not None)
    with torch.no_grad():
        slim.weight.copy_(conv.weight[:, :, r0:r1, c0:c1])
        if conv.bias is not None:
            slim.bias.copy_(conv.bias)
    return slim
