#!/usr/bin/env python
"""Would a second opinion refuse the wrong readings? Models trained apart on one set, side by side.

Issue 15 asks that refusing the least confident 5% of readings refuses >= 90% of the wrong ones, and
cites ensemble-uncertainty solvers. This reads one set's test quarter (bench/real.py's split) with a
model and with others trained on the same captchas (e.g. the same set's model from several
`bench/real.py --keep` runs), prints each wrong reading of the first with what the others read, and
the share of wrong readings refused at 95% coverage by the first model's confidence alone and when
the readings the others disagree with go first (an ensemble's vote as the refusal score).

    python bench/agreement.py sysu_alnum4 runs/real-s14/sysu_alnum4-all-plain.pt OTHER.pt [MORE.pt ...]
"""

from __future__ import annotations

import argparse

import numpy as np
from real import folded, split_set

from captcha.eval.metrics import rejection
from captcha.inference.load import load_solver


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("set", help="A bench/real.py set, e.g. sysu_alnum4.")
    ap.add_argument("models", nargs="+", help="The model scored first, then the others (two at least in all).")
    args = ap.parse_args()
    if len(args.models) < 2:
        ap.error("give the model and at least one other trained on the same set")
    test = split_set(args.set)[1]
    paths, truth = [str(p) for p, _ in test], folded(lab for _, lab in test)
    reads = [[r.solution for r in load_solver(m).solve_batch(paths)] for m in args.models]
    texts = [folded(s.text for s in read) for read in reads]
    first, others = reads[0], texts[1:]
    right = [t == lab for t, lab in zip(texts[0], truth)]
    agree = [np.mean([o[i] == t for o in others]) for i, t in enumerate(texts[0])]
    conf = [s.confidence for s in first]
    print(f"{args.set}: {len(test)} test captchas, {len(right) - sum(right)} read wrong by {args.models[0]}")
    print("| label | read | confidence | the others read |\n|---|---|---|---|")
    for i, (s, t) in enumerate(zip(first, truth)):
        if not right[i]:
            print(f"| {t} | {s.text} | {s.confidence:.3f} | {', '.join(read[i].text for read in reads[1:])} |")
    alone = rejection(conf, right)["wrong_rejected"]
    voted = rejection([g + 1e-3 * c for g, c in zip(agree, conf)], right)["wrong_rejected"]
    print(f"wrong readings refused at 95% coverage: by confidence {100 * alone:.1f}%, "
          f"by the others' agreement, then confidence {100 * voted:.1f}%")


if __name__ == "__main__":
    main()
