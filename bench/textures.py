#!/usr/bin/env python
"""How the general reader (no training) holds up when a site's pixels differ from smooth rendering: the
shared sets' test captchas (the last 25% by file name, as bench/real.py splits them) read as they are and
with every image changed one way at a time: ink scattered over 2 pixels, thresholded to two colours,
inverted, drawn at half size and enlarged into 2x2 blocks, dithered to black and white, JPEG at quality 10.
ddddocr (when installed) reads the same changed images. Full-string accuracy, case-insensitive, each reader
restricted to the set's characters.

    python bench/textures.py [--sets henan_digits4,sysu_alnum4,captcha_images_v2] [--reader PATH]

The general reader's synthesis draws the first three (``captcha.data.captchas.TEXTURES``), so for it they are
tuned-on; the blocks and the dots are the appearance families of two leave-style-out styles (eroded-mono,
halftone-serif) and stay out of every synthesis: they show holes, not what was trained.
"""

from __future__ import annotations

import argparse
import io
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from real import folded, split_set
from rivals import ddddocr_reader

from captcha.data.captchas import scatter, threshold
from captcha.eval.metrics import string_metrics
from captcha.inference.load import load_solver, solving_checkpoint

SETS = ("henan_digits4", "sysu_alnum4", "captcha_images_v2")


def _encoded(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def _blocks(img: Image.Image) -> Image.Image:
    return img.resize((max(1, img.width // 2), max(1, img.height // 2)), Image.NEAREST).resize(img.size, Image.NEAREST)


CHANGES: dict[str, Callable[[Image.Image, random.Random], Image.Image]] = {
    "as they are": lambda img, rng: img,
    "scattered 2 px": lambda img, rng: Image.fromarray(scatter(np.asarray(img), rng, 2)),
    "thresholded": lambda img, rng: threshold(img).convert("RGB"),
    "inverted": lambda img, rng: ImageOps.invert(img),
    "2x2 blocks": lambda img, rng: _blocks(img),
    "dithered": lambda img, rng: img.convert("L").convert("1").convert("RGB"),
    "JPEG q10": lambda img, rng: Image.open(io.BytesIO(_encoded(img, "JPEG", quality=10))).convert("RGB"),
}


def changed(test: list[tuple[Path, str]], change: str) -> list[Image.Image]:
    """The test images with ``change`` applied, each from its own seed (its file name)."""
    return [CHANGES[change](Image.open(p).convert("RGB"), random.Random(p.name)) for p, _ in test]


def accuracy(texts: list[str], test: list[tuple[Path, str]]) -> float:
    """Full-string accuracy, case-insensitive."""
    return string_metrics(folded(texts), folded(lab for _, lab in test))["string_acc"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--reader", default=None, metavar="PATH", help="A general reader [default: the shipped one].")
    args = ap.parse_args()
    reader = Path(args.reader) if args.reader else solving_checkpoint(None)
    rows = []
    for name in args.sets.split(","):
        test = split_set(name)[1]
        chars = "".join(sorted({c for _, lab in test for c in lab}))
        solver = load_solver(reader).allow(chars)
        rival = ddddocr_reader(chars)
        for change in CHANGES:
            images = changed(test, change)
            ours = accuracy([r.solution.text if r.ok else "" for r in solver.solve_batch(images)], test)
            theirs = None
            if rival is not None:
                theirs = accuracy([rival(_encoded(img, "PNG")) for img in images], test)
            rows.append((name, change, ours, theirs))
            print(f"{name} {change}: reader {100 * ours:.2f}%"
                  + (f", ddddocr {100 * theirs:.2f}%" if theirs is not None else ""), flush=True)
    print(f"\nno training: the general reader {reader.name} and ddddocr, full-string, the test captchas changed\n")
    print("| set | test images | general reader | ddddocr |")
    print("|---|---|---|---|")
    for name, change, ours, theirs in rows:
        print(f"| {name} | {change} | {100 * ours:.2f}% | {'-' if theirs is None else f'{100 * theirs:.2f}%'} |")


if __name__ == "__main__":
    main()
