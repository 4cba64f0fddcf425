#!/usr/bin/env python
"""Does batch solving slow down as the folder grows? 10,000 vs 100,000 small files.

    python bench/batch_scale.py --checkpoint checkpoints/model.pt [--sizes 10000,100000] [--backend auto]

Files are hard links to a few real captchas (cheap to make); inputs are streamed (os.walk over
names, images decoded batch by batch), so memory stays bounded and throughput should not fall.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
from pathlib import Path

from captcha.charset import Charset
from captcha.config import SynthConfig
from captcha.data.synth import synth_dataset
from captcha.inference.batch import run_batch
from captcha.inference.load import load_solver


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="checkpoints/model.pt")
    ap.add_argument("--sizes", default="10000,100000")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synth_dataset(tmp / "src", SynthConfig(train_per_class=1, val_per_class=2, captchas=50, charset=Charset()))
        seeds = sorted((tmp / "src" / "captchas" / "val").glob("*.png"))
        for n in (int(v) for v in args.sizes.split(",")):
            folder = tmp / f"n{n}"
            for i in range(n):
                sub = folder / f"{i // 1000:03d}"
                if i % 1000 == 0:
                    sub.mkdir(parents=True)
                os.link(seeds[i % len(seeds)], sub / f"{i:06d}.png")
            stats = run_batch([str(folder)], tmp / f"n{n}.csv", load_solver(args.checkpoint), batch_size=256)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"{n:>7} files: {stats['per_second']:.0f} captchas/s, {stats['errors']} errors, "
                  f"peak RSS so far {rss:.0f} MB")


if __name__ == "__main__":
    main()
