"""`captcha serve`: an HTTP solving service (FastAPI + uvicorn) that batches concurrent requests.

The model is loaded once. Requests that arrive together are solved together: a collector waits up
to ``batch_window_ms`` for up to ``max_batch`` images, runs them as one batch in a worker thread,
and answers each request with its own result.

Untrusted clients are expected: a body is read only up to its limit (chunked bodies too), a batch
request carries at most ``max_images`` images, the queue of images waiting is bounded (overload is
a 503 with Retry-After, never a hang), every request has a deadline, connections are capped and
idle ones dropped (uvicorn's limits), an optional API key guards everything but /health and /ready,
and /metrics reports counts, latency percentiles and batch sizes in Prometheus text format. There
is no TLS: put it behind a proxy that terminates it.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoint annotations at run time

import asyncio
import collections
import hmac
import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from ..config import ServeConfig
from ..data.images import decode_base64
from ..errors import ImageError
from .decode import Solution
from .load import load_solver
from .solver import Solver


@dataclass
class _Job:
    data: bytes
    future: asyncio.Future


class Overloaded(Exception):
    """The queue of images waiting to be solved is full."""


class Batcher:
    """Collects concurrent solve jobs into batches for the solver; its queue is bounded."""

    def __init__(self, solver: Solver, max_batch: int = ServeConfig.batch_size,
                 window_ms: float = ServeConfig.batch_window_ms, queue_size: int = ServeConfig.queue_size) -> None:
        self.solver, self.max_batch, self.window = solver, max_batch, window_ms / 1000
        self.queue_size = queue_size
        self.queue: asyncio.Queue[_Job] | None = None
        self.task: asyncio.Task | None = None
        self.batches = 0
        self.images = 0
        self.batch_sizes: collections.Counter[int] = collections.Counter()

    async def start(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.queue_size)
        self.task = asyncio.create_task(self._run())

    @property
    def ready(self) -> bool:
        return self.task is not None and not self.task.done()

    async def stop(self, grace: float = ServeConfig.shutdown_grace) -> None:
        """Finish the jobs already queued (up to ``grace`` seconds), then stop."""
        if self.queue is not None:
            deadline = time.monotonic() + grace
            while not self.queue.empty() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        if self.task:
            self.task.cancel()

    async def solve(self, data: bytes) -> Solution:
        assert self.queue is not None, "Batcher.start() was not awaited"
        fut = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait(_Job(data, fut))
        except asyncio.QueueFull:
            raise Overloaded() from None
        return await fut

    def room(self) -> int:
        """Images the queue can still take."""
        return self.queue_size - (self.queue.qsize() if self.queue else 0)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            deadline = loop.time() + self.window
            while len(jobs) < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    jobs.append(await asyncio.wait_for(self.queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            try:
                results = await loop.run_in_executor(None, self._solve_all, [j.data for j in jobs])
            except Exception as exc:  # noqa: BLE001 - a failure answers its requests, never kills the loop
                results = [exc] * len(jobs)
            self.batches += 1
            self.images += len(jobs)
            self.batch_sizes[len(jobs)] += 1
            for job, res in zip(jobs, results):
                if not job.future.done():
                    if isinstance(res, Exception):
                        job.future.set_exception(res)
                    else:
                        job.future.set_result(res)

    def _solve_all(self, blobs: list[bytes]) -> list[Any]:
        out: list[Any] = []
        # requests batched together are unrelated: one must not set the length another is read at
        for r in self.solver.solve_batch([("upload", b) for b in blobs], batch_size=self.max_batch, one_site=False):
            out.append(r.solution if r.ok else ImageError(r.error))
        return out


def _decode_b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise ImageError(f"{what}: expected a base64 string")
    return decode_base64(value, what)


@dataclass
class Metrics:
    """Request counts by endpoint and status, and recent latencies, for /metrics."""

    counts: collections.Counter = field(default_factory=collections.Counter)
    latencies: dict[str, collections.deque] = field(default_factory=dict)

    def record(self, path: str, status: int, seconds: float) -> None:
        self.counts[(path, status)] += 1
        self.latencies.setdefault(path, collections.deque(maxlen=10_000)).append(seconds)

    def prometheus(self, batcher: Batcher) -> str:
        """The Prometheus text exposition of everything recorded."""
        lines = ["# HELP captcha_requests_total HTTP requests by endpoint and status.",
                 "# TYPE captcha_requests_total counter"]
        lines += [f'captcha_requests_total{{path="{p}",status="{c}"}} {n}' for (p, c), n in sorted(self.counts.items())]
        lines += ["# HELP captcha_request_seconds Request latency over the last 10,000 requests per endpoint.",
                  "# TYPE captcha_request_seconds summary"]
        for path, values in sorted(self.latencies.items()):
            ordered = sorted(values)
            for q in (0.5, 0.9, 0.99):
                v = ordered[min(len(ordered) - 1, int(q * len(ordered)))]
                lines.append(f'captcha_request_seconds{{path="{path}",quantile="{q}"}} {v:.6f}')
            lines.append(f'captcha_request_seconds_count{{path="{path}"}} {len(ordered)}')
            lines.append(f'captcha_request_seconds_sum{{path="{path}"}} {sum(ordered):.6f}')
        lines += ["# HELP captcha_batch_size Images solved together per network call.",
                  "# TYPE captcha_batch_size histogram"]
        for edge in (1, 2, 4, 8, 16, 32, 64, 128, 256):
            total = sum(n for size, n in batcher.batch_sizes.items() if size <= edge)
            lines.append(f'captcha_batch_size_bucket{{le="{edge}"}} {total}')
        lines.append(f'captcha_batch_size_bucket{{le="+Inf"}} {batcher.batches}')
        lines.append(f"captcha_batch_size_count {batcher.batches}")
        lines.append(f"captcha_batch_size_sum {batcher.images}")
        lines += ["# HELP captcha_queue_images Images waiting to be solved.", "# TYPE captcha_queue_images gauge",
                  f"captcha_queue_images {batcher.queue.qsize() if batcher.queue else 0}"]
        return "\n".join(lines) + "\n"


def _answer(sol: Solution, ms: float) -> dict[str, Any]:
    return {"text": sol.answer, "confidence": round(sol.confidence, 4), "rejected": sol.rejected,
            "confidences": [round(c, 4) for c in sol.confidences], "ms": round(ms, 2)}


def create_app(solver: Solver, cfg: ServeConfig | None = None):
    """The FastAPI application around one loaded solver."""
    # optional heavy dependencies, needed only by the service
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse, PlainTextResponse

    cfg = cfg or ServeConfig()
    max_bytes = cfg.max_bytes
    batcher = Batcher(solver, cfg.batch_size, cfg.batch_window_ms, cfg.queue_size)
    metrics = Metrics()
    open_paths = ("/health", "/ready")

    @asynccontextmanager
    async def lifespan(_app):
        await batcher.start()
        yield
        await batcher.stop(cfg.shutdown_grace)

    app = FastAPI(title="captcha", version="1", lifespan=lifespan,
                  description="Read text captchas. POST an image as multipart `file` or JSON `{\"image\": base64}`.")

    @app.middleware("http")
    async def guard(request: Request, call_next):
        t0 = time.perf_counter()
        path = request.url.path
        if cfg.api_key and path not in open_paths and not _authorised(request, cfg.api_key):
            response = JSONResponse(status_code=401, content={"detail": "missing or wrong API key (X-API-Key header)"},
                                    headers={"WWW-Authenticate": "Bearer"})
        else:
            try:
                response = await asyncio.wait_for(call_next(request), cfg.request_timeout)
            except asyncio.TimeoutError:
                response = JSONResponse(status_code=503, content={"detail": "timed out; try again"},
                                        headers={"Retry-After": "1"})
        known = path if path in ("/solve", "/solve/batch", "/health", "/ready", "/metrics") else "other"
        metrics.record(known, response.status_code, time.perf_counter() - t0)
        return response

    @app.exception_handler(ImageError)
    async def _bad_image(_request, exc: ImageError):
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(Overloaded)
    async def _overloaded(_request, _exc: Overloaded):
        return JSONResponse(status_code=503, content={"detail": "busy: too many images waiting; try again"},
                            headers={"Retry-After": "1"})

    limit = max_bytes * cfg.max_images * 4 // 3 + 64 * 1024  # the most a batch of base64 images may take

    async def _body(request: Request, many: bool) -> bytes:
        """The request body, read chunk by chunk and refused as soon as it passes its limit."""
        cap = limit if many else max_bytes * 4 // 3 + 64 * 1024
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise HTTPException(413, f"request of {declared} bytes is over the limit of {cap} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                raise HTTPException(413, f"request body is over the limit of {cap} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        request._body = body  # Starlette's own cache: form() and json() read it instead of the spent stream
        return body

    async def _images(request: Request, many: bool) -> list[bytes]:
        body = await _body(request, many)
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            form = await request.form()
            files = form.getlist("file") + form.getlist("files")
            if not files:
                raise HTTPException(400, "multipart upload needs a 'file' field")
            blobs = [await f.read() for f in files if hasattr(f, "read")]
        elif ctype.startswith("application/json"):
            try:
                payload = json.loads(body)
            except (ValueError, RecursionError):
                raise HTTPException(400, "body is not valid JSON (or nested too deep)") from None
            if not isinstance(payload, dict):
                raise HTTPException(400, "JSON body must be an object")
            if many:
                items = payload.get("images")
                if not isinstance(items, list) or not items:
                    raise HTTPException(400, "JSON body needs 'images': [base64, ...]")
                if len(items) > cfg.max_images:
                    raise HTTPException(413, f"{len(items)} images in one request; at most {cfg.max_images}")
                blobs = [_decode_b64(v, f"images[{i}]") for i, v in enumerate(items)]
            else:
                if "image" not in payload:
                    raise HTTPException(400, "JSON body needs 'image': base64")
                blobs = [_decode_b64(payload["image"], "image")]
        elif ctype.startswith(("image/", "application/octet-stream")):
            blobs = [body]
        else:
            raise HTTPException(415, "send multipart/form-data (file), application/json (base64) or raw image bytes")
        if len(blobs) > cfg.max_images:
            raise HTTPException(413, f"{len(blobs)} images in one request; at most {cfg.max_images}")
        if len(blobs) > batcher.room():
            raise Overloaded()
        for i, b in enumerate(blobs):
            if len(b) > max_bytes:
                raise HTTPException(413, f"image {i} is {len(b)} bytes, over the limit of {max_bytes}")
        if not many and len(blobs) != 1:
            raise HTTPException(400, "send exactly one image to /solve (use /solve/batch for several)")
        return blobs

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "length": solver.length, "lengths": list(solver.lengths),
                "charset": solver.charset.alphabet, "batches": batcher.batches, "images": batcher.images}

    @app.get("/ready")
    async def ready():
        """200 once the model is loaded and the batcher runs (a load balancer's readiness probe), else 503."""
        ok = batcher.ready
        return JSONResponse(status_code=200 if ok else 503,
                            content={"ready": ok, "queued": batcher.queue_size - batcher.room()})

    @app.get("/metrics")
    async def prometheus_metrics():
        return PlainTextResponse(metrics.prometheus(batcher), media_type="text/plain; version=0.0.4")

    @app.post("/solve")
    async def solve(request: Request) -> dict[str, Any]:
        t0 = time.perf_counter()
        (blob,) = await _images(request, many=False)
        sol = await batcher.solve(blob)
        return _answer(sol, 1000 * (time.perf_counter() - t0))

    @app.post("/solve/batch")
    async def solve_batch(request: Request) -> dict[str, Any]:
        t0 = time.perf_counter()
        blobs = await _images(request, many=True)
        results = await asyncio.gather(*(batcher.solve(b) for b in blobs), return_exceptions=True)
        ms = 1000 * (time.perf_counter() - t0)
        rows = []
        for r in results:
            if isinstance(r, ImageError):
                rows.append({"error": str(r)})
            elif isinstance(r, Exception):
                raise r
            else:
                rows.append(_answer(r, ms))
        return {"results": rows}

    return app


def _authorised(request, key: str) -> bool:
    given = request.headers.get("x-api-key") or ""
    auth = request.headers.get("authorization") or ""
    if auth.lower().startswith("bearer "):
        given = given or auth[7:].strip()
    return hmac.compare_digest(given.encode(), key.encode())  # constant time: no key guessing by timing


def uvicorn_config(app: Any, cfg: ServeConfig) -> Any:
    """uvicorn's own limits: a connection cap (503 beyond it), idle keep-alive and shutdown grace."""
    import uvicorn  # optional heavy dependency, needed only by the service

    return uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="info", limit_concurrency=cfg.max_connections,
                          timeout_keep_alive=cfg.keep_alive, timeout_graceful_shutdown=cfg.shutdown_grace,
                          h11_max_incomplete_event_size=64 * 1024)


def serve(checkpoint: str, cfg: ServeConfig | None = None, backend: str = "auto", device: str = "auto",
          precision: str = "auto") -> None:
    """Load the model once and serve it with uvicorn."""
    import uvicorn  # optional heavy dependency, needed only by the service

    cfg = cfg or ServeConfig()
    solver = load_solver(checkpoint, backend=backend, device=device, max_pixels=cfg.max_pixels,
                         reject_below=cfg.reject_below, precision=precision).allow(cfg.allow).expect_length(cfg.length)
    solver.rechecking(cfg.recheck)
    uvicorn.Server(uvicorn_config(create_app(solver, cfg), cfg)).run()
