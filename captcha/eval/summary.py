"""`captcha summary`: the layer table, parameter counts (trainable vs frozen) and memory sizes."""

from __future__ import annotations

from typing import Any

import torch
from torchinfo import summary
from torchinfo.enums import Units

from ..nn.checkpoint import load_checkpoint
from ..nn.networks import CharNet, build_model, count_parameters, model_from_checkpoint


def load_for_inspection(checkpoint: str | None = None, pretrained: str = "auto", freeze: str | None = None,
                        num_classes: int = 36) -> tuple[CharNet, dict[str, Any]]:
    """A model from a checkpoint (its own freeze level unless overridden) or a pretrained source."""
    if checkpoint:
        ckpt = load_checkpoint(checkpoint, kind="recognizer")
        model = model_from_checkpoint(ckpt, checkpoint)
        model.freeze(freeze or ckpt.get("freeze", "none"))
        return model, ckpt
    model, source = build_model(num_classes, pretrained, freeze or "none")
    return model, {"pretrained": source}


def summarize(model: CharNet, input_size: tuple[int, int] = (32, 32), depth: int = 3) -> dict[str, Any]:
    """torchinfo's layer table plus trainable/frozen counts and sizes in MB."""
    stats = summary(model, input_size=(1, 3, *input_size), depth=depth, verbose=0,
                    col_names=("output_size", "num_params", "trainable"), row_settings=("var_names",), device="cpu")
    layers = []
    for info in stats.summary_list:
        layers.append({"name": info.var_name, "type": info.class_name, "depth": info.depth,
                       "output_shape": list(info.output_size) if info.output_size else [],
                       "params": int(info.num_params) if info.is_leaf_layer or info.depth == 1 else None,
                       "trainable": bool(info.trainable_params) if hasattr(info, "trainable_params") else None})
    counts = count_parameters(model)
    # torchinfo writes its unit as the enum's repr on Python 3.11+ ("Total mult-adds (Units.MEGABYTES)"): its letter
    table = str(stats)
    for unit in Units:
        table = table.replace(f"(Units.{unit.name})", f"({unit.value})")
    return {"table": table, "layers": layers, **{f"{k}_params": v for k, v in counts.items()},
            "freeze": model.freeze_level, "frozen_stages": model.frozen_stages(), "input_size": list(input_size),
            "input_mb": stats.to_megabytes(stats.total_input),
            "activations_mb": stats.to_megabytes(stats.total_output_bytes),
            "params_mb": stats.to_megabytes(stats.total_param_bytes)}


def print_layers(model: torch.nn.Module) -> str:
    """The course's first look: ``print(model)``, i.e. every module and its settings."""
    return str(model)
