"""Weight gradients of wide convolutions on the CPU as one matrix product per kernel tap.

oneDNN's weight-gradient kernel is slow where a convolution has many channels and a small feature
map, which is where a ResNet-18's last stages sit at captcha sizes (layer4: 512 channels over 2 x 11
positions at a 64 x 88 input). On a 2-core AVX2 CPU in float32 (batch 64, channels-last): layer4's
3x3 512->512 weight gradient 138 ms against 64 ms as nine products, its strided 256->512 49 against
34 ms, layer3's 256->256 43 against 38 ms; below 256 channels the products lose (128: 21 against
23 ms; 64: 22 against 37 ms); `python bench/train_step.py` prints these and whole training steps.
The input gradient and the forward pass stay oneDNN's. bfloat16 autocast (the AVX-512 BF16 machines, GPUs) keeps the
stock kernels: not measured there.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

MIN_CHANNELS = 256  # input channels from which the products are faster (measured above)


class _Conv2dGemmWeightGrad(torch.autograd.Function):
    """``F.conv2d`` (no bias, no dilation, one group) whose weight gradient is :func:`weight_grad`."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int],
                padding: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride, padding)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = torch.ops.aten.convolution_backward(grad, x, weight, None, list(ctx.stride), list(ctx.padding),
                                                     [1, 1], False, [0, 0], 1, [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            dw = torch.empty_like(weight)
            dw.copy_(weight_grad(grad, x, weight.shape, ctx.stride, ctx.padding))
        return dx, dw, None, None


def weight_grad(grad: torch.Tensor, x: torch.Tensor, shape: torch.Size, stride: tuple[int, int],
                padding: tuple[int, int]) -> torch.Tensor:
    """The gradient of a convolution's weight of ``shape`` (out, in, kh, kw) from its output's ``grad``
    and its input ``x``: for each kernel tap, grad (rows: every output position) times the input
    positions that tap saw."""
    n, k, ho, wo = grad.shape
    kh, kw = shape[2:]
    (sh, sw), (ph, pw) = stride, padding
    xp = F.pad(x, (pw, pw, ph, ph)).permute(0, 2, 3, 1)  # (N, H, W, C): a view of a channels-last input
    g = grad.permute(0, 2, 3, 1).reshape(-1, k).t()  # (K, N*Ho*Wo)
    out = grad.new_empty(kh, kw, k, x.shape[1])
    for i in range(kh):
        for j in range(kw):
            seen = xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :].reshape(-1, x.shape[1])
            torch.mm(g, seen, out=out[i, j])
    return out.permute(2, 3, 0, 1)


def _qualifies(conv: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and conv.weight.requires_grad and conv.bias is None and conv.groups == 1
            and conv.in_channels >= MIN_CHANNELS and conv.kernel_size != (1, 1) and conv.dilation == (1, 1)
            and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple))


@contextlib.contextmanager
def gemm_weight_grads(model: nn.Module, enabled: bool = True) -> Iterator[int]:
    """Within the block, ``model``'s wide trainable convolutions compute their weight gradients as
    matrix products (see the module's figures); yields how many convolutions do. Float32 CPU training
    only: leave ``enabled`` off under autocast or on a GPU."""
    convs = [m for m in model.modules() if _qualifies(m)] if enabled else []
    for conv in convs:
        conv.forward = _gemm_forward(conv)
    try:
        yield len(convs)
    finally:
        for conv in convs:
            del conv.forward  # the class's forward again


def _gemm_forward(conv: nn.Conv2d):
    def forward(x: torch.Tensor) -> torch.Tensor:
        if (x.dtype != torch.float32 or x.device.type != "cpu" or not torch.is_grad_enabled()
                or torch.is_autocast_enabled("cpu")):
            return nn.Conv2d.forward(conv, x)
        return _Conv2dGemmWeightGrad.apply(x, conv.weight, conv.stride, conv.padding)
    return forward
