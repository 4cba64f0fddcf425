#!/usr/bin/env python
"""Load test of `captcha serve` on loopback (not in CI): concurrent clients for a while, with idle
connections held open beside them; requests/s, p50/p99 latency, failures, and the server's RSS:
at start, after a warm-up at the largest client count (ONNX Runtime sizes its buffers for the
largest batches it meets, once), with the idle connections open, and over the measured requests
(sampled every second: growth there is what a leak would show).

    python bench/load.py --checkpoint checkpoints/model.pt --image some.png [--clients 16,64] [--seconds 60]
                         [--idle 2000]

The server runs as its own process (`captcha serve`), as in production; the idle connections open a
TCP socket each and send half a request header, like a slow or stuck client.
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def hold_idle(port: int, n: int) -> list[socket.socket]:
    """``n`` connections that send half a request header and then say nothing."""
    socks = []
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"POST /solve HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        except OSError:
            break
    return socks


def run_clients(url: str, image: bytes, clients: int, seconds: float) -> dict:
    """``clients`` threads posting ``image`` to /solve for ``seconds``."""
    stop = time.perf_counter() + seconds

    def worker(_: int) -> tuple[list[float], int]:
        lat, failed = [], 0
        with httpx.Client(base_url=url, timeout=60) as client:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                try:
                    r = client.post("/solve", content=image, headers={"content-type": "image/png"})
                    failed += r.status_code != 200
                except httpx.HTTPError:
                    failed += 1
                lat.append(time.perf_counter() - t)
        return lat, failed

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        parts = list(pool.map(worker, range(clients)))
    wall = time.perf_counter() - t0
    lats = sorted(x for lat, _ in parts for x in lat)
    return {"clients": clients, "requests": len(lats), "failed": sum(f for _, f in parts),
            "requests_per_s": len(lats) / wall, "p50_ms": 1000 * statistics.median(lats),
            "p99_ms": 1000 * lats[int(0.99 * (len(lats) - 1))]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="Default: what `captcha serve` would load.")
    ap.add_argument("--image", required=True)
    ap.add_argument("--clients", default="16,64")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--idle", type=int, default=2000, help="Idle half-sent connections held during the run.")
    ap.add_argument("--warmup", type=float, default=10, help="Seconds at the largest client count before measuring.")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.idle + 1024)), hard))
    port = free_port()
    cmd = ["captcha", "serve", "--port", str(port), "--max-connections", str(args.idle + 512)]
    if args.checkpoint:
        cmd += ["--checkpoint", args.checkpoint]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard)))
    url = f"http://127.0.0.1:{port}"
    image = Path(args.image).read_bytes()
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        started = rss_mb(server.pid)
        counts = [int(c) for c in args.clients.split(",")]
        run_clients(url, image, max(counts), args.warmup)  # the largest batches, before measuring
        warm = rss_mb(server.pid)
        idle = hold_idle(port, args.idle)
        before = rss_mb(server.pid)
        samples: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(1.0):
                samples.append(rss_mb(server.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rows = [run_clients(url, image, c, args.seconds) for c in counts]
        health = httpx.get(f"{url}/health", timeout=10).status_code
        done.set()
        sampler.join()
        after = rss_mb(server.pid)
        for s in idle:
            s.close()
        report = {"idle_connections": len(idle), "rss_start_mb": started, "rss_warm_mb": warm,
                  "rss_before_mb": before, "rss_peak_mb": max(samples + [after]), "rss_after_mb": after,
                  "requests": sum(r["requests"] for r in rows), "health_during_idle": health, "runs": rows}
        print(json.dumps(report, indent=2))
        print(f"\nRSS {started:.0f} MB at start, {warm:.0f} MB after the warm-up, {before:.0f} MB with {len(idle)} idle "
              f"connections open; over the {report['requests']} measured requests {before:.0f} -> {after:.0f} MB "
              f"({100 * (after / before - 1):+.1f}%, peak {report['rss_peak_mb']:.0f} MB); /health {health}\n")
        print("| clients | requests | req/s | p50 ms | p99 ms | failed |\n|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['clients']} | {r['requests']} | {r['requests_per_s']:.0f} | {r['p50_ms']:.1f} | "
                  f"{r['p99_ms']:.1f} | {r['failed']} |")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    sys.exit(main())
