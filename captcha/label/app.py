"""The labelling page's server: guesses from a model, answers into the store, retraining behind.

The page (``static/index.html``, plain HTML and JavaScript shipped in the package, nothing fetched
from elsewhere) asks for the next captcha, shows the model's guess, and posts the answer. Captchas
come least-confident first (active learning: the user's time goes where the model is least sure).
With ``retrain_every`` the model is fine-tuned on the labels so far in a background process every
so many answers (`captcha train`, a short budget, then trained again on every answer: while
labelling, each one counts more than a held-out figure); when it finishes, the remaining guesses are
refreshed. The page is never blocked by it.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoint annotations at run time

import io
import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..charset import Charset
from ..data.images import load_image, shown_as_is
from ..errors import CaptchaError, DataError, ImageError
from ..inference.decode import Solution
from ..inference.load import load_solver
from ..inference.solver import Solver
from .store import LabelStore

log = logging.getLogger(__name__)

RETRAIN_BUDGET = 90.0  # seconds of `captcha train` per background retraining (then the refit on every label)
MODEL_FILE = ".label-model.pt"  # the retrained model, beside the images


@dataclass
class Session:
    """What the page works on: the store, the current guesses, timing and the retraining state."""

    store: LabelStore
    solver: Solver | None
    retrain_every: int = 0
    guesses: dict[str, Solution] = field(default_factory=dict)  # the model's reading of each captcha to label
    answered: int = 0
    accepted: int = 0
    seconds: float = 0.0
    retraining: bool = False
    retrains: int = 0
    model: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self, names: list[str] | None = None) -> None:
        """Guess every captcha still to label (or ``names``) with the current solver."""
        if self.solver is None:
            return
        names = self.store.todo() if names is None else names
        paths = [str(self.store.folder / n) for n in names]
        fresh = {}
        for name, r in zip(names, self.solver.solve_batch(paths)):
            if r.ok:
                fresh[name] = r.solution
        with self.lock:
            self.guesses.update(fresh)

    def queue(self) -> list[str]:
        """Captchas still to label, least-confident guess first (no guess: first of all)."""
        with self.lock:
            return sorted(self.store.todo(), key=lambda n: (self.guesses[n].confidence if n in self.guesses else -1.0, n))

    def item(self, name: str) -> dict[str, Any]:
        g = self.guesses.get(name)
        return {"name": name, "label": self.store.labels.get(name), "unreadable": name in self.store.unreadable,
                "guess": g.text if g else "", "confidences": g.confidences if g else []}

    def progress(self) -> dict[str, Any]:
        total = len(self.store.images)
        done = len(self.store.labels) + len(self.store.unreadable)
        return {"total": total, "labelled": len(self.store.labels), "unreadable": len(self.store.unreadable),
                "done": done, "answered": self.answered,
                "accept_rate": self.accepted / self.answered if self.answered else None,
                "seconds_per_captcha": self.seconds / self.answered if self.answered else None,
                "length": self.store.length, "charset": self.store.charset.alphabet,
                "fold_case": bool(self.store.charset.fold_case),
                "retraining": self.retraining, "retrains": self.retrains, "model": self.model}

    def answer(self, name: str, label: str, ms: float) -> str:
        """Store a label; count whether it was the guess; maybe start a retraining."""
        stored = self.store.set(name, label)
        guess = self.guesses.get(name)
        self.answered += 1
        self.accepted += bool(guess and guess.text == stored)
        self.seconds += max(0.0, ms) / 1000
        if self.retrain_every and self.answered % self.retrain_every == 0:
            self.start_retraining()
        return stored

    def start_retraining(self) -> bool:
        """Fine-tune on the labels so far in a background process; False when one is running already."""
        with self.lock:
            if self.retraining or len(self.store.labels) < 8:
                return False
            self.retraining = True
        threading.Thread(target=self._retrain, name="captcha-label-retrain", daemon=True).start()
        return True

    def _retrain(self) -> None:
        out = self.store.folder / MODEL_FILE
        cmd = [sys.executable, "-m", "captcha", "train", "--data", str(self.store.folder), "--out", str(out),
               "--budget", str(RETRAIN_BUDGET), "--refit", "--charset", self.store.charset.alphabet, "--json"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode == 0 and out.is_file():
                solver = load_solver(out, backend="torch")
                self.solver, self.model = solver, str(out)
                self.retrains += 1
                self.refresh()
            else:
                log.warning("retraining failed: %s", proc.stderr.strip().splitlines()[-1:] or proc.returncode)
        except (CaptchaError, OSError) as exc:
            log.warning("retraining failed: %s", exc)
        finally:
            self.retraining = False


def create_label_app(session: Session):
    """The FastAPI application serving the page and its small JSON API."""
    # optional heavy dependencies, needed only by the page
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

    app = FastAPI(title="captcha label", version="1")
    page = (resources.files("captcha") / "label" / "static" / "index.html").read_text(encoding="utf-8")

    def fields(body: dict[str, Any]) -> tuple[str, str, float]:
        """(name, label, milliseconds) of an answer; a malformed one is a 422."""
        name, label, ms = body.get("name"), body.get("label", ""), body.get("ms", 0.0)
        if not isinstance(name, str) or not isinstance(label, str) or not isinstance(ms, (int, float)):
            raise HTTPException(422, "an answer is {name: str, label: str, ms: number}")
        return name, label, float(ms)

    @app.exception_handler(DataError)
    async def _bad(_request, exc: DataError):
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.get("/")
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/api/progress")
    def progress() -> dict[str, Any]:
        return session.progress()

    @app.get("/api/next")
    def next_item(skip: str = "") -> dict[str, Any]:
        """The least-confident captcha still to label, leaving out the comma-separated ``skip``."""
        skipped = set(skip.split(",")) if skip else set()
        queue = [n for n in session.queue() if n not in skipped] or session.queue()
        return {"item": session.item(queue[0]) if queue else None, "progress": session.progress()}

    @app.get("/api/item/{name}")
    def item(name: str) -> dict[str, Any]:
        if name not in session.store.names:
            raise HTTPException(404, f"{name!r} is not an image of this folder")
        return session.item(name)

    @app.get("/api/image/{name}")
    def image(name: str):
        if name not in session.store.names:  # only the folder's own images, never a path
            raise HTTPException(404, f"{name!r} is not an image of this folder")
        path = session.store.folder / name
        if not shown_as_is(path):  # as it is read: an SVG (by its content) drawn here, an animation's frames merged
            try:
                img = load_image(path)
            except ImageError as exc:  # said, not a server error: the page can mark it unreadable
                raise HTTPException(422, str(exc)) from None
            buf = io.BytesIO()
            img.save(buf, "PNG")
            return Response(buf.getvalue(), media_type="image/png")
        return FileResponse(path)

    @app.post("/api/label")
    def label(body: dict[str, Any]) -> dict[str, Any]:
        name, text, ms = fields(body)
        return {"name": name, "label": session.answer(name, text, ms), "progress": session.progress()}

    @app.post("/api/unreadable")
    def unreadable(body: dict[str, Any]) -> dict[str, Any]:
        name, _, _ = fields(body)
        session.store.mark_unreadable(name)
        return {"name": name, "progress": session.progress()}

    @app.post("/api/retrain")
    def retrain() -> dict[str, Any]:
        return {"started": session.start_retraining(), "progress": session.progress()}

    return app


def open_session(folder: str | Path, checkpoint: str | Path | None, charset: Charset, length: int | None = None,
                 retrain_every: int = 0) -> Session:
    """The store for ``folder`` and guesses from ``checkpoint`` (none: the page asks without guessing)."""
    store = LabelStore(folder, charset, length)
    solver = load_solver(checkpoint) if checkpoint else None
    session = Session(store, solver, retrain_every, model=str(checkpoint or ""))
    t0 = time.perf_counter()
    session.refresh()
    log.info("guessed %d captchas in %.1fs", len(session.guesses), time.perf_counter() - t0)
    return session


def serve_label(session: Session, host: str = "127.0.0.1", port: int = 8001) -> None:
    """Serve the labelling page until interrupted (loopback by default: it writes into the folder)."""
    import uvicorn  # optional heavy dependency, needed only by the page

    uvicorn.run(create_label_app(session), host=host, port=port, log_level="warning")
