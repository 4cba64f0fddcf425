#!/usr/bin/env python
"""Training-step time of the network, with oneDNN's weight gradients and with ``captcha.nn.convgrad``'s.

Each row trains a fresh network (the CTC reader's or the classifier's shape) on random inputs of one
size with AdamW in float32, as `captcha train` steps on a CPU, and prints the fastest and the median
of the timed steps (the first is left out) with the stock kernels and with the wide convolutions'
weight gradients taken as matrix products. The two alternate, so a drifting clock treats them alike.
First, the weight gradient alone of each 3x3 convolution shape of layer1-layer4 at a 64x88 CTC input
(the fastest of five), both ways.

    python bench/train_step.py [--steps 6] [--rounds 2] [--batch 64] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from captcha.nn.convgrad import gemm_weight_grads, weight_grad
from captcha.nn.networks import new_model

SHAPES = (("ctc", 64, 88), ("ctc", 48, 160), ("classify", 64, 64))  # a tall site's, the reader's, a crop's
# (in channels, out channels, input rows, input columns, stride) of the CTC reader's 3x3 convolutions at 64x88
CONVS = ((64, 64, 16, 22, (1, 1)), (128, 128, 8, 11, (1, 1)), (256, 256, 4, 11, (1, 1)), (256, 512, 4, 11, (2, 1)),
         (512, 512, 2, 11, (1, 1)))


def timings(fn, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after a first, untimed one (which sets up the kernels)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def conv_rows(batch: int) -> None:
    """The weight gradient of each of :data:`CONVS`: oneDNN's against :func:`weight_grad`."""
    print(f"{'conv (in->out @ rows x cols, stride)':<38} | {'oneDNN ms':>9} | {'products ms':>11}")
    for cin, cout, h, w, stride in CONVS:
        x = torch.randn(batch, cin, h, w).contiguous(memory_format=torch.channels_last)
        wt = torch.randn(cout, cin, 3, 3).contiguous(memory_format=torch.channels_last)
        g = torch.randn_like(F.conv2d(x, wt, None, stride, 1)).contiguous(memory_format=torch.channels_last)
        stock = min(timings(lambda: torch.ops.aten.convolution_backward(g, x, wt, None, list(stride), [1, 1], [1, 1],
                                                                        False, [0, 0], 1, [False, True, False]), 5))
        gemm = min(timings(lambda: weight_grad(g, x, wt.shape, stride, (1, 1)), 5))
        print(f"{cin:>3}->{cout:<3} @ {h:>2} x {w:<2}, stride {stride[0]}x{stride[1]}{'':<13} | "
              f"{1000 * stock:>9.1f} | {1000 * gemm:>11.1f}", flush=True)


def step_times(method: str, size: tuple[int, int], batch: int, steps: int, gemm: bool) -> list[float]:
    """Seconds of each training step after the first, ``gemm`` choosing the weight gradients."""
    torch.manual_seed(0)
    model = new_model(method, 37).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(batch, 3, *size).contiguous(memory_format=torch.channels_last)

    def step() -> None:
        loss = model(x).float().square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with gemm_weight_grads(model, gemm):
        return timings(step, steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2, help="stock and matrix-product runs, alternating")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, float32")
    conv_rows(args.batch)
    print(f"{'network':<9} {'input':>7} | {'stock s/step (min, median)':>27} | {'products s/step':>16} | speed-up")
    for method, h, w in SHAPES:
        runs: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for gemm in (False, True):
                runs[gemm] += step_times(method, (h, w), args.batch, args.steps, gemm)
        stock, gemm = (statistics.median(runs[k]) for k in (False, True))
        print(f"{method:<9} {h:>3}x{w:<3} | {min(runs[False]):>12.3f} {stock:>14.3f} | "
              f"{min(runs[True]):>7.3f} {gemm:>8.3f} | {stock / gemm:.2f}x", flush=True)


if __name__ == "__main__":
    main()
