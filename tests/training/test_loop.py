"""The one training loop's pieces."""

import torch

from captcha.nn.networks import CharNet
from captcha.training.loop import frozen_outputs


def test_frozen_outputs_in_bf16_are_the_fp32_ones_rounded():
    """The cached output of frozen stages computed under bf16 (as training steps are, where the CPU has it) keeps
    float32 storage and differs from the fp32 output only by bf16's rounding."""
    torch.manual_seed(0)
    model = CharNet(6).freeze("layer2")
    x = torch.randn(8, 3, 32, 32)
    fp32, bf16 = frozen_outputs(model, x, "layer2"), frozen_outputs(model, x, "layer2", bf16=True)
    assert fp32.dtype == bf16.dtype == torch.float32 and fp32.shape == bf16.shape == (8, 128, 4, 4)
    assert not torch.equal(fp32, bf16)  # computed in bf16 indeed
    assert (fp32 - bf16).abs().max() <= 0.05 * fp32.abs().max()
