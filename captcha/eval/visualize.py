"""`captcha visualize`: what each convolution sees, captured with forward hooks.

Hooks are registered on the chosen ``Conv2d`` modules (found with ``named_modules``), one forward
pass runs under ``torch.no_grad()``, and the hooks are removed afterwards, even on error.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image
from torch import nn

from ..data.images import load_image
from ..data.preprocess import Preprocess
from ..data.segment import SegmentConfig, split, to_content
from ..errors import ConfigError
from ..nn.checkpoint import load_checkpoint
from ..nn.networks import model_from_checkpoint
from .plots import figure

COLUMNS = 8


def conv_layers(model: nn.Module) -> list[str]:
    """Names of every Conv2d in forward order."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def resolve_layers(model: nn.Module, spec: str) -> list[str]:
    """``all-conv``, or a comma list of module names (a stage name picks its first conv...last conv)."""
    convs = conv_layers(model)
    if spec in ("all-conv", "all"):
        return convs
    names = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        if item in convs:
            names.append(item)
        else:
            inside = [c for c in convs if c.startswith(item + ".")]
            if not inside:
                raise ConfigError(f"no Conv2d called {item!r}; choose from all-conv or {', '.join(convs)}")
            names.append(inside[-1])  # a stage: its last convolution, what the stage hands on
    return names


def capture(model: nn.Module, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Feature maps of ``layers`` for input ``x``, via forward hooks that are always removed."""
    modules = dict(model.named_modules())
    maps: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for name in layers:
            def hook(_module, _inp, out, name=name):
                maps[name] = out.detach().clone()
            handles.append(modules[name].register_forward_hook(hook))
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return maps


def _mosaic(tiles: np.ndarray, gap: int) -> np.ndarray:
    """``tiles`` (N, H, W) or (N, H, W, 3) laid out :data:`COLUMNS` to a row as one RGB image, each tile
    scaled to its own range (as a plot per tile would), single-channel ones through viridis."""
    n, h, w = tiles.shape[:3]
    rows = math.ceil(n / COLUMNS)
    low = tiles.reshape(n, -1).min(1).reshape((n,) + (1,) * (tiles.ndim - 1))
    high = tiles.reshape(n, -1).max(1).reshape(low.shape)
    scaled = (tiles - low) / np.maximum(high - low, 1e-8)
    rgb = colormaps["viridis"](scaled)[..., :3] if tiles.ndim == 3 else scaled
    sheet = np.ones((rows * (h + gap), COLUMNS * (w + gap) - gap, 3))  # a blank band above each row
    for i in range(n):
        r, c = divmod(i, COLUMNS)
        sheet[r * (h + gap) + gap:(r + 1) * (h + gap), c * (w + gap):c * (w + gap) + w] = rgb[i]
    return sheet


def _grid(tiles: np.ndarray, title: str, path: Path, caption: str) -> Path:
    """One PNG of ``tiles``, a numbered tile per filter: one image drawn once, not a plot per filter
    (64 small plots took seconds a grid)."""
    k = max(1, math.ceil(16 / max(tiles.shape[1:3])))  # tiny maps (layer4's 1x1) drawn at least 16 px
    tiles = tiles.repeat(k, axis=1).repeat(k, axis=2)
    n, h, w = tiles.shape[:3]
    rows, gap = math.ceil(n / COLUMNS), max(3, h // 5, math.ceil(w / 9))  # room for each tile's number above it
    # each row as tall as its tiles are for their width (a whole captcha's maps are wide), plus their numbers
    fig = figure(COLUMNS * 1.3, rows * (1.3 * (h + gap) / (w + gap) + 0.15) + 0.6, dpi=80)
    ax = fig.add_subplot()
    ax.imshow(_mosaic(tiles, gap), interpolation="nearest",
              extent=(0, COLUMNS * (w + gap) - gap, rows * (h + gap) - gap, -gap))
    ax.axis("off")
    for i in range(n):
        r, c = divmod(i, COLUMNS)
        ax.text(c * (w + gap) + w / 2, r * (h + gap) - gap / 4, f"filter-{i}", fontsize=7, ha="center", va="bottom")
    fig.suptitle(f"{title}\n{caption}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return path


def feature_grids(maps: dict[str, torch.Tensor], out_dir: str | Path, max_filters: int = 64, prefix: str = "") -> list[Path]:
    """One PNG grid per layer: a tile per filter (first sample of the batch)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name, fm in maps.items():
        tiles = fm[0, :max_filters].float().numpy()
        files.append(_grid(tiles, f"{prefix}{name}", out_dir / f"{prefix}{name}.png",
                           f"output {tuple(fm.shape[1:])}, first {len(tiles)} filters"))
    return files


def filter_grid(model: nn.Module, path: str | Path, max_filters: int = 64) -> Path:
    """The first conv layer's own filters as small RGB images."""
    w = model.conv1.weight.detach().float()[:max_filters]
    w = (w - w.amin(dim=(1, 2, 3), keepdim=True)) / (w.amax(dim=(1, 2, 3), keepdim=True) - w.amin(dim=(1, 2, 3), keepdim=True) + 1e-8)
    return _grid(w.permute(0, 2, 3, 1).numpy(), "conv1 filters", Path(path), f"weights {tuple(model.conv1.weight.shape)}")


def visualize(image, checkpoint: str, layers: str = "conv1,layer1,layer2,layer3,layer4", out_dir: str | Path = "runs/visualize",
              single: bool | None = None) -> dict[str, list[str]]:
    """Feature-map grids for a character crop or a whole captcha (then for each of its crops, or, for a CTC
    model, which reads the whole captcha, for the captcha cut to its content as solving cuts it)."""
    ckpt = load_checkpoint(checkpoint, kind="recognizer")
    model = model_from_checkpoint(ckpt, checkpoint)
    pre = Preprocess.from_dict(ckpt["preprocess"])
    segment = SegmentConfig.from_dict(ckpt["segment"])
    img = load_image(image, svg_apart=segment.apart)
    if ckpt.get("method") == "ctc":
        single, img = True, to_content(img, segment)
    if single is None:  # wider than two cells: treat it as a whole captcha
        single = img.width < 2 * img.height
    crops = [img] if single else split(img, int(ckpt["length"]), segment)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = resolve_layers(model, layers)
    files: dict[str, list[str]] = {"filters": [str(filter_grid(model, out_dir / "conv1-filters.png"))], "maps": [], "crops": []}
    for k, crop in enumerate(crops):
        prefix = "" if single else f"crop{k}-"
        if not single:
            p = out_dir / f"crop{k}.png"
            crop.resize((crop.width * 4, crop.height * 4), Image.NEAREST).save(p)
            files["crops"].append(str(p))
        x = torch.from_numpy(pre(crop))[None]
        files["maps"] += [str(p) for p in feature_grids(capture(model, x, names), out_dir, prefix=prefix)]
    return files
