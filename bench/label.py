#!/usr/bin/env python
"""A simulated labeller on a shared set: `captcha label`'s session, answered as a person would (Enter
when the guess is right, else type the truth and Enter), with and without background retraining.

    python bench/label.py [--set sysu_alnum4] [--captchas 300] [--retrain-every 25] [--checkpoint P]

Prints keystrokes per captcha, the share of guesses accepted in each block of 25, how many captchas
were answered before 95% of a block's guesses were right, and, after 100 answers, how many of the
remaining guesses are right. Retraining runs as the page runs it (`captcha train`, a short budget,
in a background process); the simulation waits for it, as a user who keeps labelling would not.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from captcha.charset import Charset
from captcha.data.layout import read_captcha_labels
from captcha.inference.load import solving_checkpoint
from captcha.label.app import open_session

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
BLOCK = 25


def simulate(folder: Path, truth: dict[str, str], checkpoint: Path, retrain_every: int, length: int) -> dict:
    session = open_session(folder, checkpoint, Charset(), length, retrain_every)
    keys, accepted, after_100 = 0, [], None
    while session.store.todo():
        if session.answered == 100 and after_100 is None:
            left = session.store.todo()
            after_100 = sum(session.guesses.get(n) is not None and session.guesses[n].text == truth[n]
                            for n in left) / len(left)
        name = session.queue()[0]
        guess = session.guesses.get(name)
        right = guess is not None and guess.text == truth[name]
        keys += 1 if right else len(truth[name]) + 1
        accepted.append(right)
        session.answer(name, truth[name], 0.0)
        while session.retraining:  # the simulated user waits; a real one keeps going
            time.sleep(0.5)
    blocks = [sum(accepted[i:i + BLOCK]) / len(accepted[i:i + BLOCK]) for i in range(0, len(accepted), BLOCK)]
    reach = next((BLOCK * (i + 1) for i, b in enumerate(blocks) if b >= 0.95), None)
    return {"retrain_every": retrain_every, "captchas": len(accepted), "keys_per_captcha": keys / len(accepted),
            "accepted_per_block": blocks, "answered_before_95": reach, "remaining_right_after_100": after_100,
            "retrains": session.retrains}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="sysu_alnum4")
    ap.add_argument("--captchas", type=int, default=300)
    ap.add_argument("--retrain-every", type=int, default=25)
    ap.add_argument("--checkpoint", default=None, help="Default: what `captcha label` would use.")
    args = ap.parse_args()
    src = SHARED / args.set
    if not src.is_dir():
        sys.exit(f"{src} not found: the real datasets live beside the repository")
    samples = sorted(read_captcha_labels(src, Charset(), problems=[]), key=lambda s: s.path.name)[:args.captchas]
    truth = {s.path.name: s.label for s in samples}
    length = max(set(map(len, truth.values())), key=list(map(len, truth.values())).count)
    rows = []
    for every in (0, args.retrain_every):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "site"
            folder.mkdir()
            for s in samples:
                (folder / s.path.name).symlink_to(s.path)
            rows.append(simulate(folder, truth, solving_checkpoint(args.checkpoint), every, length))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.captchas} captchas of {args.set}, answered least-confident first\n")
    print("| retrain every | keystrokes per captcha | answered before a block of 25 is 95% right "
          "| remaining guesses right after 100 | retrains |\n|---|---|---|---|---|")
    for r in rows:
        after = r["remaining_right_after_100"]
        print(f"| {r['retrain_every'] or 'never'} | {r['keys_per_captcha']:.2f} | {r['answered_before_95'] or 'never'} | "
              f"{'-' if after is None else f'{100 * after:.1f}%'} | {r['retrains']} |")


if __name__ == "__main__":
    main()
