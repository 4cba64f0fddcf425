#!/usr/bin/env python
"""A simulated labeller on a shared set: `captcha label`'s session, answered as a person would (Enter
when the guess is right, else type the truth and Enter), with and without background retraining.

    python bench/label.py [--set sysu_alnum4] [--captchas 300] [--retrain-every 25] [--checkpoint P]
    python bench/label.py --browser 40 [--screenshot docs/label.png]

Prints keystrokes per captcha, the share of guesses accepted in each block of 25, how many captchas
were answered before 95% of a block's guesses were right, and, after 100 answers, how many of the
remaining guesses are right. Retraining runs as the page runs it (`captcha train`, a short budget,
in a background process); the simulation waits for it, as a user who keeps labelling would not.

``--browser N`` instead runs `captcha label` as a user does and answers N captchas in headless
Chromium (Debian's chromium and chromium-driver, with selenium): how long the page takes to handle a
keystroke, and from Enter to the next captcha on screen (target: < 50 ms). It labels captchas of our
own synthesis (data/captchas.py), so its ``--screenshot`` shows no shared data.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from captcha.charset import Charset
from captcha.data.captchas import random_text, render_captcha
from captcha.data.fonts import by_family, pretraining_faces
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


def synthetic_site(folder: Path, n: int, seed: int = 7) -> dict[str, str]:
    """``n`` captchas of 4 characters from our own renderer, unlabelled, in ``folder``: their truth."""
    rng, fonts, alphabet = random.Random(seed), by_family(pretraining_faces()), Charset().alphabet
    truth = {}
    for i in range(n):
        text = random_text(rng, alphabet, (4,))
        render_captcha(text, rng, fonts, alphabet).save(folder / f"{i:04d}.png")
        truth[f"{i:04d}.png"] = text
    return truth


def in_browser(n: int, checkpoint: str | None, screenshot: str | None) -> dict:
    """`captcha label` answered in headless Chromium: per-keystroke and Enter-to-next-captcha times."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    binary, driver = shutil.which("chromium") or shutil.which("google-chrome"), shutil.which("chromedriver")
    if not binary or not driver:
        sys.exit("no Chromium and chromedriver on PATH (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,800"):
        opts.add_argument(flag)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "site"
        folder.mkdir()
        truth = synthetic_site(folder, n)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        cmd = ["captcha", "label", str(folder), "--port", str(port), "--length", "4"]
        server = subprocess.Popen(cmd + (["--checkpoint", checkpoint] if checkpoint else []),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        browser = webdriver.Chrome(service=Service(driver), options=opts)
        try:
            for _ in range(600):  # the server loads the model and guesses every captcha first
                try:
                    browser.get(f"http://127.0.0.1:{port}/")
                    break
                except Exception:  # noqa: BLE001 - not listening yet
                    time.sleep(0.2)
            box, shot = browser.find_element(By.ID, "label"), browser.find_element(By.ID, "shot")
            typed = 0
            for i in range(n):
                end = time.time() + 30
                while not (box.get_attribute("value") and shot.get_attribute("src")) and time.time() < end:
                    time.sleep(0.02)
                if i == 5 and screenshot:
                    time.sleep(0.3)
                    Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                    browser.save_screenshot(screenshot)
                src, name = shot.get_attribute("src"), shot.get_attribute("src").rsplit("/", 1)[-1]
                if box.get_attribute("value") != truth[name]:
                    box.send_keys(truth[name])  # the guess is selected: typing replaces it
                    typed += 1
                box.send_keys(Keys.ENTER)
                end = time.time() + 30
                while shot.get_attribute("src") == src and i < n - 1 and time.time() < end:
                    time.sleep(0.01)
            time.sleep(0.5)
            timings = browser.execute_script("return window.timings")
        finally:
            browser.quit()
            server.terminate()
            server.wait(20)
        stored = (folder / "labels.csv").read_text().splitlines()[1:]
    keys, nxt = np.asarray(timings["keys"]), np.asarray(timings["next"])
    return {"captchas": n, "typed": typed, "stored": len(stored),
            "key_ms_p50": float(np.percentile(keys, 50)) if len(keys) else None,
            "key_ms_p99": float(np.percentile(keys, 99)) if len(keys) else None,
            "next_ms_p50": float(np.percentile(nxt, 50)), "next_ms_p95": float(np.percentile(nxt, 95)),
            "next_ms_max": float(nxt.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="sysu_alnum4")
    ap.add_argument("--captchas", type=int, default=300)
    ap.add_argument("--retrain-every", type=int, default=25)
    ap.add_argument("--checkpoint", default=None, help="Default: what `captcha label` would use.")
    ap.add_argument("--browser", type=int, default=0, metavar="N",
                    help="Time the page in headless Chromium over N synthetic captchas instead.")
    ap.add_argument("--screenshot", default=None, help="With --browser: save the page as this PNG.")
    args = ap.parse_args()
    if args.browser:
        r = in_browser(args.browser, args.checkpoint, args.screenshot)
        print(json.dumps(r))
        print(f"\n| captchas | typed | keystroke handled, p50 / p99 | Enter to next captcha shown, p50 / p95 / max |\n"
              f"|---|---|---|---|\n| {r['captchas']} | {r['typed']} | {r['key_ms_p50']:.2f} / {r['key_ms_p99']:.2f} ms | "
              f"{r['next_ms_p50']:.1f} / {r['next_ms_p95']:.1f} / {r['next_ms_max']:.1f} ms |")
        return
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
