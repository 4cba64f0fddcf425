"""`captcha serve`: an HTTP solving service (FastAPI + uvicorn) that batches concurrent requests.

The model is loaded once. Requests that arrive together are solved together: a collector waits up
to ``batch_window_ms`` for up to ``max_batch`` images, runs them as one batch in a worker thread,
and answers each request with its own result.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoint annotations at run time

import asyncio
import base64
import binascii
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ..config import ServeConfig
from ..errors import ImageError
from .decode import Solution
from .load import load_solver
from .solver import Solver


@dataclass
class _Job:
    data: bytes
    future: asyncio.Future


class Batcher:
    """Collects concurrent solve jobs into batches for the solver."""

    def __init__(self, solver: Solver, max_batch: int = ServeConfig.batch_size,
                 window_ms: float = ServeConfig.batch_window_ms) -> None:
        self.solver, self.max_batch, self.window = solver, max_batch, window_ms / 1000
        self.queue: asyncio.Queue[_Job] | None = None
        self.task: asyncio.Task | None = None
        self.batches = 0
        self.images = 0

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()

    async def solve(self, data: bytes) -> Solution:
        assert self.queue is not None, "Batcher.start() was not awaited"
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(data, fut))
        return await fut

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
            for job, res in zip(jobs, results):
                if not job.future.done():
                    if isinstance(res, Exception):
                        job.future.set_exception(res)
                    else:
                        job.future.set_result(res)

    def _solve_all(self, blobs: list[bytes]) -> list[Any]:
        out: list[Any] = []
        for r in self.solver.solve_batch([("upload", b) for b in blobs], batch_size=self.max_batch):
            out.append(r.solution if r.ok else ImageError(r.error))
        return out


def _decode_b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise ImageError(f"{what}: expected a base64 string")
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(f"{what}: not valid base64") from None


def _answer(sol: Solution, ms: float) -> dict[str, Any]:
    return {"text": sol.answer, "confidence": round(sol.confidence, 4), "rejected": sol.rejected,
            "confidences": [round(c, 4) for c in sol.confidences], "ms": round(ms, 2)}


def create_app(solver: Solver, cfg: ServeConfig | None = None):
    """The FastAPI application around one loaded solver."""
    # optional heavy dependencies, needed only by the service
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse

    cfg = cfg or ServeConfig()
    max_bytes = cfg.max_bytes
    batcher = Batcher(solver, cfg.batch_size, cfg.batch_window_ms)

    @asynccontextmanager
    async def lifespan(_app):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="captcha", version="1", lifespan=lifespan,
                  description="Read text captchas. POST an image as multipart `file` or JSON `{\"image\": base64}`.")

    @app.exception_handler(ImageError)
    async def _bad_image(_request, exc: ImageError):
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    async def _body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes * 1.4 + 4096:
            raise HTTPException(413, f"request of {declared} bytes is over the limit of {max_bytes} bytes per image")
        body = await request.body()
        if len(body) > max_bytes * 1.4 + 4096:
            raise HTTPException(413, f"request of {len(body)} bytes is over the limit")
        return body

    async def _images(request: Request, many: bool) -> list[bytes]:
        await _body(request)
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            form = await request.form()
            files = form.getlist("file") + form.getlist("files")
            if not files:
                raise HTTPException(400, "multipart upload needs a 'file' field")
            blobs = [await f.read() for f in files if hasattr(f, "read")]
        elif ctype.startswith("application/json"):
            try:
                payload = await request.json()
            except ValueError:
                raise HTTPException(400, "body is not valid JSON") from None
            if not isinstance(payload, dict):
                raise HTTPException(400, "JSON body must be an object")
            if many:
                items = payload.get("images")
                if not isinstance(items, list) or not items:
                    raise HTTPException(400, "JSON body needs 'images': [base64, ...]")
                blobs = [_decode_b64(v, f"images[{i}]") for i, v in enumerate(items)]
            else:
                if "image" not in payload:
                    raise HTTPException(400, "JSON body needs 'image': base64")
                blobs = [_decode_b64(payload["image"], "image")]
        elif ctype.startswith(("image/", "application/octet-stream")):
            blobs = [await request.body()]
        else:
            raise HTTPException(415, "send multipart/form-data (file), application/json (base64) or raw image bytes")
        for i, b in enumerate(blobs):
            if len(b) > max_bytes:
                raise HTTPException(413, f"image {i} is {len(b)} bytes, over the limit of {max_bytes}")
        if not many and len(blobs) != 1:
            raise HTTPException(400, "send exactly one image to /solve (use /solve/batch for several)")
        return blobs

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "length": solver.length, "charset": solver.charset.alphabet,
                "batches": batcher.batches, "images": batcher.images}

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


def serve(checkpoint: str, cfg: ServeConfig | None = None, backend: str = "auto", device: str = "auto") -> None:
    """Load the model once and serve it with uvicorn."""
    import uvicorn  # optional heavy dependency, needed only by the service

    cfg = cfg or ServeConfig()
    solver = load_solver(checkpoint, backend=backend, device=device, max_pixels=cfg.max_pixels,
                         reject_below=cfg.reject_below).allow(cfg.allow)
    uvicorn.run(create_app(solver, cfg), host=cfg.host, port=cfg.port, log_level="info")
