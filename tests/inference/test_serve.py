import base64
import contextlib
import dataclasses
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn

from captcha.config import ServeConfig
from captcha.inference.load import load_solver
from captcha.inference.serve import create_app, uvicorn_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _running(solver, cfg: ServeConfig):
    """The service on a free loopback port, with the limits ``cfg`` sets (uvicorn's too), for the block."""
    cfg = dataclasses.replace(cfg, host="127.0.0.1", port=_free_port())
    config = uvicorn_config(create_app(solver, cfg), cfg)
    config.log_level = "warning"
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{cfg.port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def solver(tiny_model):
    return load_solver(tiny_model)


@pytest.fixture(scope="module")
def server(solver):
    with _running(solver, ServeConfig(max_bytes=200_000)) as url:
        yield url


@pytest.fixture(scope="module")
def image(tiny_data):
    return next((tiny_data / "captchas" / "val").glob("*.png")).read_bytes()


def test_health_and_docs(server):
    r = httpx.get(f"{server}/health")
    assert r.status_code == 200 and r.json()["length"] == 4 and r.json()["lengths"] == []
    assert httpx.get(f"{server}/openapi.json").json()["paths"].keys() >= {"/solve", "/solve/batch", "/health"}


def test_solve_multipart_json_and_raw(server, image):
    a = httpx.post(f"{server}/solve", files={"file": ("c.png", image, "image/png")}).json()
    b = httpx.post(f"{server}/solve", json={"image": base64.b64encode(image).decode()}).json()
    c = httpx.post(f"{server}/solve", content=image, headers={"content-type": "image/png"}).json()
    assert a["text"] == b["text"] == c["text"] and len(a["text"]) == 4 and len(a["confidences"]) == 4


def test_an_svg_captcha_is_solved_as_drawn(server):
    svg = (b'<svg xmlns="http://www.w3.org/2000/svg" width="160" height="48"><rect width="100%" height="100%" '
           b'fill="#eee"/><path fill="#222" d="M20 10 h30 v28 h-30 z"/></svg>')
    r = httpx.post(f"{server}/solve", content=svg, headers={"content-type": "image/svg+xml"})
    assert r.status_code == 200 and len(r.json()["text"]) == 4  # read, whatever the square reads as
    bad = httpx.post(f"{server}/solve", content=b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>',
                     headers={"content-type": "image/svg+xml"})
    assert bad.status_code == 422 and "neither a size nor a viewBox" in bad.text


def test_clear_4xx_errors(server, image):
    bad = httpx.post(f"{server}/solve", files={"file": ("x.png", b"not an image", "image/png")})
    assert bad.status_code == 422 and "not an image" in bad.json()["detail"]
    assert httpx.post(f"{server}/solve", json={"image": "@@@"}).status_code == 422
    assert httpx.post(f"{server}/solve", json={"nothing": 1}).status_code == 400
    assert httpx.post(f"{server}/solve", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    big = httpx.post(f"{server}/solve", content=b"\0" * 400_000, headers={"content-type": "image/png"})
    assert big.status_code == 413


def test_batch_endpoint_keeps_bad_rows(server, image):
    r = httpx.post(f"{server}/solve/batch", json={"images": [base64.b64encode(image).decode(),
                                                              base64.b64encode(b"junk").decode()]})
    rows = r.json()["results"]
    assert r.status_code == 200 and len(rows[0]["text"]) == 4 and "error" in rows[1]


def test_load_1000_requests_16_clients(server, image):
    def worker(n: int) -> tuple[list[float], list[str]]:
        lat, failures = [], []
        with httpx.Client(base_url=server, timeout=60) as client:
            for _ in range(n):
                t = time.perf_counter()
                try:
                    r = client.post("/solve", files={"file": ("c.png", image, "image/png")})
                    if r.status_code != 200 or len(r.json().get("text", "")) != 4:
                        failures.append(f"{r.status_code}: {r.text[:80]}")
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                lat.append(time.perf_counter() - t)
        return lat, failures

    before = httpx.get(f"{server}/health").json()  # the counters are cumulative over the module's tests
    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        parts = list(pool.map(worker, [1000 // 16 + (i < 1000 % 16) for i in range(16)]))
    wall = time.perf_counter() - t0
    lats = sorted(x for lat, _ in parts for x in lat)
    failures = [f for _, fs in parts for f in fs]
    print(f"\n1000 requests, 16 clients: {1000 / wall:.0f} req/s, p50 {1000 * statistics.median(lats):.1f} ms, "
          f"p99 {1000 * lats[989]:.1f} ms, {len(failures)} failed")
    assert len(lats) == 1000 and failures == []
    after = httpx.get(f"{server}/health").json()
    images, batches = after["images"] - before["images"], after["batches"] - before["batches"]
    assert images == 1000 and batches < images  # these requests, and concurrent ones were batched together


def test_a_chunked_body_past_the_limit_is_refused_while_reading(server):
    """A chunked upload that never ends: the answer (413) comes as soon as the limit is passed, so the
    service read no further than that (a service that buffered the body would never answer)."""
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /solve HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n" % 65_536 + b"\0" * 65_536 + b"\r\n"
        for _ in range(16):  # 1 MB, past the 200 kB limit; the terminating chunk is never sent
            s.sendall(chunk)
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")


def test_batch_limits_and_deep_json(server, image):
    one = base64.b64encode(image).decode()
    many = httpx.post(f"{server}/solve/batch", json={"images": [one] * 65})
    assert many.status_code == 413 and "at most 64" in many.json()["detail"]
    deep = "[" * 100_000 + "]" * 100_000
    r = httpx.post(f"{server}/solve", content=deep, headers={"content-type": "application/json"})
    assert r.status_code in (400, 413)


def test_ready_and_metrics(server, image):
    assert httpx.get(f"{server}/ready").json()["ready"] is True
    httpx.post(f"{server}/solve", content=image, headers={"content-type": "image/png"})
    text = httpx.get(f"{server}/metrics").text
    assert 'captcha_requests_total{path="/solve",status="200"}' in text
    assert 'captcha_request_seconds{path="/solve",quantile="0.99"}' in text and "captcha_batch_size_count" in text


def test_api_key_overload_and_timeout(solver, image):
    with _running(solver, ServeConfig(api_key="s3cret", queue_size=2)) as url:
        assert httpx.get(f"{url}/health").status_code == 200  # open, for probes
        assert httpx.post(f"{url}/solve", content=image, headers={"content-type": "image/png"}).status_code == 401
        ok = httpx.post(f"{url}/solve", content=image, headers={"content-type": "image/png", "x-api-key": "s3cret"})
        bearer = httpx.post(f"{url}/solve", content=image,
                            headers={"content-type": "image/png", "authorization": "Bearer s3cret"})
        assert ok.status_code == bearer.status_code == 200
        one = base64.b64encode(image).decode()
        busy = httpx.post(f"{url}/solve/batch", json={"images": [one] * 3}, headers={"x-api-key": "s3cret"})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    with _running(solver, ServeConfig(request_timeout=1e-6)) as url:
        late = httpx.post(f"{url}/solve", content=image, headers={"content-type": "image/png"})
        assert late.status_code == 503 and "retry-after" in late.headers
