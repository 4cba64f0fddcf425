"""Weight gradients as matrix products: the same gradients as the stock kernels, only where asked."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from captcha.nn.convgrad import gemm_weight_grads, weight_grad
from captcha.nn.networks import new_model


@pytest.mark.parametrize("stride,padding,kernel", [((1, 1), (1, 1), 3), ((2, 1), (1, 1), 3), ((2, 2), (0, 2), 3),
                                                   ((1, 1), (3, 3), 7)])
def test_weight_grad_matches_the_convolutions_own(stride, padding, kernel):
    torch.manual_seed(0)
    x = torch.randn(3, 5, 9, 13).contiguous(memory_format=torch.channels_last)
    w = torch.randn(4, 5, kernel, kernel)
    grad = torch.randn_like(F.conv2d(x, w, None, stride, padding))
    want = torch.ops.aten.convolution_backward(grad, x, w, None, list(stride), list(padding), [1, 1], False,
                                               [0, 0], 1, [False, True, False])[1]
    torch.testing.assert_close(weight_grad(grad, x, w.shape, stride, padding), want, rtol=1e-4, atol=1e-4)


def _grads(model: nn.Module, x: torch.Tensor, gemm: bool) -> tuple[dict[str, torch.Tensor], int]:
    model.zero_grad(set_to_none=True)
    with gemm_weight_grads(model, gemm) as patched:
        model(x).square().mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, patched


def test_a_network_trains_to_the_same_gradients_and_is_left_as_it_was():
    torch.manual_seed(0)
    model = new_model("ctc", 7).to(memory_format=torch.channels_last).train()
    x = torch.randn(2, 3, 48, 64).contiguous(memory_format=torch.channels_last)
    stock, none = _grads(model, x, False)
    products, patched = _grads(model, x, True)
    # layer3's and layer4's 3x3 convolutions with at least 256 input channels (not layer3.0.conv1: 128)
    assert (none, patched) == (0, 7)
    assert stock.keys() == products.keys()
    for name in stock:
        torch.testing.assert_close(products[name], stock[name], rtol=1e-3, atol=1e-5, msg=name)
    assert all("forward" not in vars(m) for m in model.modules())  # the class's forward again


def test_frozen_or_evaluated_convolutions_keep_the_stock_kernels():
    model = new_model("classify", 5).freeze("layer4")
    with gemm_weight_grads(model) as patched:
        assert patched == 0  # nothing trainable to take weight gradients of
    model = new_model("classify", 5).train()
    conv = model.layer4[1].conv2
    with gemm_weight_grads(model):
        x = torch.randn(1, 512, 2, 2)
        with torch.no_grad():
            assert conv(x).grad_fn is None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert conv(x).dtype == torch.bfloat16  # autocast's own kernel, not the float32 products
        assert type(conv(x).grad_fn).__name__.startswith("_Conv2dGemmWeightGrad")
