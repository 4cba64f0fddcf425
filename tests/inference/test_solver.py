import io
import logging
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from captcha.errors import ImageError
from captcha.inference.load import load_solver


def test_solve_accepts_path_bytes_and_pil(solver, tiny_data):
    path = next((tiny_data / "captchas" / "val").glob("*.png"))
    a = solver.solve(path)
    assert a.text == solver.solve(path.read_bytes()).text == solver.solve(Image.open(path)).text
    assert len(a.text) == 4 and set(a.text) <= set("ABC123")
    assert len(a.confidences) == 4 and all(0 < c <= 1 for c in a.confidences) and a.seconds > 0


def test_every_odd_input_gives_text_or_a_specific_error(solver, corpus):
    for name, (path, ok) in corpus.items():
        if ok:
            assert len(solver.solve(path).text) == 4, name
        else:
            with pytest.raises(ImageError, match=str(path).replace("(", r"\(")):
                solver.solve(path)


def test_batch_keeps_every_row_in_order(solver, corpus):
    paths = [str(p) for p, _ in corpus.values()]
    rows = list(solver.solve_batch(paths, batch_size=4))
    assert [r.source for r in rows] == paths
    for r, (_, ok) in zip(rows, corpus.values()):
        assert r.ok == ok and (r.error == "") == ok


class slowly:
    """``items``, the first ones held back a little: the worker processes start (half a second or so) before this
    thread has prepared them all, so they are sure to prepare some. Tells how many are left, as a list does."""

    def __init__(self, items, first=40, pause=0.02):
        self.items, self.first, self.pause, self.i = list(items), first, pause, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.i >= len(self.items):
            raise StopIteration
        if self.i < self.first:
            time.sleep(self.pause)
        self.i += 1
        return self.items[self.i - 1]

    def __length_hint__(self):
        return len(self.items) - self.i


def in_processes(caplog) -> int:
    """Captchas the worker processes prepared, as the solver's debug line counts them."""
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("prepared ")]
    assert len(lines) == 1, lines
    return int(lines[0].split(", ")[1].split()[0])


def test_batch_with_worker_processes_matches(solver, corpus, caplog):
    paths = [str(p) for p, _ in corpus.values()] * 4
    a = [(r.source, r.solution.text if r.ok else r.error) for r in solver.solve_batch(paths, batch_size=3, workers=0)]
    with caplog.at_level(logging.DEBUG, logger="captcha.inference.solver"):
        b = [(r.source, r.solution.text if r.ok else r.error)
             for r in solver.solve_batch(slowly(paths), batch_size=3, workers=2)]
    assert a == b
    assert in_processes(caplog) > 0


def test_batch_moves_to_processes_midway_and_keeps_every_row(solver, corpus, monkeypatch, caplog):
    """With workers="auto", rows prepared in the thread and then in processes come back in input order, bad files
    as errors, as the thread alone gives them."""
    from captcha.inference.solver import Pace

    paths = [str(p) for p, _ in corpus.values()] * 2
    a = [(r.source, r.solution.text if r.ok else r.error) for r in solver.solve_batch(paths, batch_size=3)]
    paces = []

    def after_three(self, left, cores=None):
        paces.append(self)
        return 2 if self.prepared >= 3 and left else 0

    monkeypatch.setattr(Pace, "workers", after_three)
    # each row held back longer than in the other test: the processes start only after the third row, and spawning
    # them under a loaded CI once took longer than the other 33 rows at 0.02 s (the thread prepared them all)
    held = slowly(paths, pause=0.08)
    with caplog.at_level(logging.DEBUG, logger="captcha.inference.solver"):
        b = [(r.source, r.solution.text if r.ok else r.error)
             for r in solver.solve_batch(held, batch_size=3, workers="auto")]
    assert a == b
    assert paces[-1].prepared == 3  # the thread timed three, then started the processes
    assert in_processes(caplog) > 0


def test_processes_never_run_the_main_script_again(tiny_model, corpus, tmp_path):
    """A script with no ``if __name__ == "__main__":`` guard, even one read from stdin (which spawn cannot
    re-import), solves in worker processes: its work runs once, every row comes back, nothing hangs."""
    import subprocess
    import sys

    paths = [str(p) for p, _ in corpus.values()] * 4
    marks = tmp_path / "ran.txt"
    script = f"""
import logging, time
from captcha.inference.load import load_solver
logging.basicConfig(level=logging.DEBUG, format="%(message)s")
open({str(marks)!r}, "a").write("ran\\n")
slowly = ((time.sleep(0.02), p)[1] if i < 40 else p for i, p in enumerate({paths!r}))
rows = list(load_solver({str(tiny_model)!r}).solve_batch(slowly, batch_size=4, workers=2))
print(sum(r.ok for r in rows), len(rows))
"""
    done = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ok = sum(ok for _, ok in corpus.values()) * 4
    assert done.stdout.split() == [str(ok), str(len(paths))]
    assert marks.read_text() == "ran\n"
    assert "worker processes failed" not in done.stderr
    there = [line for line in done.stderr.splitlines() if line.startswith("prepared ")]
    assert there and int(there[0].split(", ")[1].split()[0]) > 0, done.stderr


def test_processes_that_cannot_start_leave_every_row_to_the_thread(solver, corpus, monkeypatch, caplog):
    from concurrent.futures.process import BrokenProcessPool

    import captcha.inference.solver as solving

    class Refusing:
        def __init__(self, *args, **kwargs):
            pass

        def submit(self, *args, **kwargs):
            raise BrokenProcessPool("no process could start")

        def shutdown(self, *args, **kwargs):
            pass

    paths = [str(p) for p, _ in corpus.values()] * 3
    a = [(r.source, r.solution.text if r.ok else r.error) for r in solver.solve_batch(paths, batch_size=4, workers=0)]
    monkeypatch.setattr(solving, "ProcessPoolExecutor", Refusing)
    with caplog.at_level(logging.WARNING, logger="captcha.inference.solver"):
        b = [(r.source, r.solution.text if r.ok else r.error) for r in solver.solve_batch(paths, batch_size=4, workers=2)]
    assert a == b
    assert any("worker processes failed (BrokenProcessPool" in r.getMessage() for r in caplog.records)


def test_an_abandoned_batch_stops_its_processes(solver, corpus):
    import multiprocessing
    import time

    paths = [str(p) for p, _ in corpus.values()] * 20
    rows = solver.solve_batch(paths, batch_size=4, workers=2)
    assert next(rows).source == paths[0]
    rows.close()
    deadline = time.monotonic() + 60
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not multiprocessing.active_children()


def test_pace_starts_processes_only_where_they_repay_their_start():
    from captcha.config import WORKERS_PAY_S, WORKERS_PROBE
    from captcha.inference.solver import Pace

    drawn = Pace(prepared=WORKERS_PROBE, preparing_s=WORKERS_PROBE * 0.005, read_n=64, reading_s=64 * 0.001)
    left = int(WORKERS_PAY_S / 0.004) + 1  # each captcha left costs 4 ms more in the thread than the network takes
    assert drawn.workers(left, cores=2) == 2
    assert drawn.workers(left, cores=16) == 5  # as many as preparing is slower than reading
    assert drawn.workers(left - 2, cores=2) == 0  # too few left to repay the start
    assert drawn.workers(left, cores=1) == 0
    assert Pace(prepared=WORKERS_PROBE - 1, preparing_s=1.0, read_n=64, reading_s=0.01).workers(10**6, cores=2) == 0
    assert Pace(prepared=WORKERS_PROBE, preparing_s=1.0).workers(10**6, cores=2) == 0  # no chunk read yet
    network_bound = Pace(prepared=100, preparing_s=0.1, read_n=64, reading_s=0.128)
    assert network_bound.workers(10**6, cores=2) == 0


def test_batch_refuses_a_bad_worker_count(solver):
    from captcha.errors import ConfigError

    with pytest.raises(ConfigError, match="workers=-1"):
        list(solver.solve_batch(["x.png"], workers=-1))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=300),
                      st.tuples(st.integers(1, 60), st.integers(1, 60), st.sampled_from(["RGB", "L", "RGBA", "P", "1"]),
                                st.integers(0, 255))))
def test_property_text_or_own_error(solver, data):
    """Any valid image, however small or odd its mode, is read; random bytes read or raise ImageError."""
    if isinstance(data, tuple):
        w, h, mode, v = data
        buf = io.BytesIO()
        Image.new(mode, (w, h), v if mode != "RGB" else (v, 255 - v, v // 2)).save(buf, "PNG")
        assert len(solver.solve(buf.getvalue()).text) == 4
        return
    try:
        text = solver.solve(data).text
    except ImageError:
        return
    assert len(text) == 4


def test_backends_agree(tiny_model, tiny_data):
    paths = sorted(str(p) for p in (tiny_data / "captchas" / "val").glob("*.png"))
    auto = load_solver(tiny_model, precision="fp32")  # the same arithmetic (int8 has its own test_export check)
    torch_only = load_solver(tiny_model, backend="torch")
    assert type(auto.backend).__name__ == "OnnxBackend" and type(torch_only.backend).__name__ == "TorchBackend"
    a = [r.solution for r in auto.solve_batch(paths)]
    b = [r.solution for r in torch_only.solve_batch(paths)]
    assert [s.text for s in a] == [s.text for s in b]
    assert max(abs(x - y) for sa, sb in zip(a, b) for x, y in zip(sa.confidences, sb.confidences)) < 1e-3


def test_prefetch_keeps_order_raises_and_stops_early():
    from captcha.inference.solver import _prefetched

    assert list(_prefetched(iter([[1], [2], [3]]))) == [[1], [2], [3]]

    def broken():
        yield [1]
        raise RuntimeError("disk gone")

    it = _prefetched(broken())
    assert next(it) == [1]
    with pytest.raises(RuntimeError, match="disk gone"):
        next(it)
    endless = _prefetched(iter([[i] for i in range(10_000)]), depth=1)
    assert next(endless) == [0]
    endless.close()  # the producer thread is released, not left blocked on a full queue




def test_warnings_when_an_image_is_far_from_the_training_captchas(solver, tiny_data):
    img = Image.open(next((tiny_data / "captchas" / "val").glob("*.png")))
    assert solver.trained_size == (160, 40)
    assert solver.solve(img).warnings == []
    tall = img.resize((40, 160))
    (msg,) = solver.solve(tall).warnings
    assert "40x160" in msg and "160x40" in msg
    rows = list(solver.solve_batch([img, tall]))
    assert [len(r.solution.warnings) for r in rows] == [0, 1]


def test_ctc_warns_when_it_reads_another_length():
    from captcha.charset import Charset
    from captcha.data.preprocess import Preprocess
    from captcha.data.segment import SegmentConfig
    from captcha.inference.decode import Solution
    from captcha.inference.solver import Preparer, Solver

    ctc = Solver(lambda x: x, Charset("AB"), Preparer(Preprocess(), 4, SegmentConfig("equal"), "ctc"))
    assert ctc.warnings((1, 1), Solution("ABA", [1.0] * 3)) == ["read 3 characters; expected 4"]
    assert ctc.warnings((1, 1), Solution("ABAB", [1.0] * 4)) == []


def test_a_ctc_model_reads_the_length_it_learned_and_says_what_that_cost():
    """Trained on 4-character captchas only: a 3-character best path gives way to the best 4-character one,
    whose confidence carries how much less probable it is (so it is refused here); with too few columns
    for 4 characters the reading stays, with confidence 0."""
    from captcha.charset import Charset
    from captcha.data.preprocess import Preprocess
    from captcha.data.segment import SegmentConfig
    from captcha.inference.solver import Preparer, Solver

    blank = np.eye(3)[2]
    a, b = np.eye(3)[0], np.eye(3)[1]
    rows = {"three": [a, blank, b, blank, a, blank],  # best path "ABA", each at 0.98
            "four": [a, blank, b, blank, a, b],  # "ABAB"
            "short": [a, b, a]}  # 3 columns cannot hold 4 characters
    for name, text, ok, conf in (("three", "ABA?", True, (0.005, 0.02)), ("four", "ABAB", True, (0.9, 1.0)),
                                 ("short", "ABA", False, (0.0, 0.0))):
        logits = np.log(np.stack(rows[name]) * 0.98 + 0.01)[None]
        ctc = Solver(lambda x, lg=logits: lg, Charset("AB"), Preparer(Preprocess(), 4, SegmentConfig("equal"), "ctc"),
                     reject_below=0.5)
        (sol,) = ctc.read(np.zeros((1, 1, 3, 8, 8), np.float32))
        assert len(sol.text) == len(text) and sol.text[:3] == text[:3] and sol.length_ok == ok, name  # ?: a tie
        assert conf[0] <= sol.confidence <= conf[1] and sol.rejected == (name != "four"), (name, sol.confidence)


def _within(short: str, long: str) -> bool:
    """``short`` is ``long`` with characters left out."""
    rest = iter(long)
    return all(c in rest for c in short)


def test_a_model_of_varying_lengths_holds_a_reading_to_the_lengths_it_learned():
    """Learned 4 and 5 characters (a site whose lengths vary): a 3-character best path gives way to the best
    4-character one, a 6-character one to the best 5; 4 and 5 stand; the general reader (no lengths) reads
    any length; told none it could hold, the reading stays and says so."""
    from captcha.charset import Charset
    from captcha.data.preprocess import Preprocess
    from captcha.data.segment import SegmentConfig
    from captcha.inference.decode import Solution
    from captcha.inference.solver import Preparer, Solver

    blank, a, b = np.eye(3)[2], np.eye(3)[0], np.eye(3)[1]
    paths = {"ABA": [a, blank, b, blank, a, blank, blank, blank, blank, blank, blank, blank],
             "ABAB": [a, blank, b, blank, a, blank, b, blank, blank, blank, blank, blank],
             "ABABA": [a, blank, b, blank, a, blank, b, blank, a, blank, blank, blank],
             "ABABAB": [a, blank, b, blank, a, blank, b, blank, a, blank, b, blank]}
    held = {"ABA": 4, "ABAB": 4, "ABABA": 5, "ABABAB": 5}
    for best, length in held.items():
        logits = np.log(np.stack(paths[best]) * 0.98 + 0.01)[None]

        def site(lengths, lg=logits):
            return Solver(lambda x: lg, Charset("AB"), Preparer(Preprocess(), 0, SegmentConfig("equal"), "ctc"),
                          lengths=lengths)

        (sol,) = site((4, 5)).read(np.zeros((1, 1, 3, 8, 8), np.float32))
        assert len(sol.text) == length and sol.length_ok, best
        shorter, longer = sorted((sol.text, best), key=len)
        assert (sol.text == best) == (len(best) == length) and _within(shorter, longer), best
        (sol,) = site(()).read(np.zeros((1, 1, 3, 8, 8), np.float32))
        assert sol.text == best and sol.length_ok
    ctc = Solver(lambda x: x, Charset("AB"), Preparer(Preprocess(), 0, SegmentConfig("equal"), "ctc"), lengths=(4, 6))
    assert ctc.warnings((1, 1), Solution("ABAAA", [1.0] * 5)) == ["read 5 characters; expected 4 or 6"]
    assert ctc.warnings((1, 1), Solution("ABAAAA", [1.0] * 6)) == []


def test_a_length_told_holds_the_general_readers_reading_and_a_classify_model_refuses_another(tiny_model):
    from captcha.charset import Charset
    from captcha.data.preprocess import Preprocess
    from captcha.data.segment import SegmentConfig
    from captcha.errors import ConfigError
    from captcha.inference.solver import Preparer, Solver

    a, b, blank = np.eye(3)
    logits = np.log(np.stack([a, blank, b, blank, a, blank]) * 0.98 + 0.01)[None]  # "ABA"
    reader = Solver(lambda x: logits, Charset("AB"), Preparer(Preprocess(), 0, SegmentConfig("equal"), "ctc"))
    x = np.zeros((1, 1, 3, 8, 8), np.float32)
    assert reader.length == 0 and reader.read(x)[0].text == "ABA"  # any length
    assert len(reader.expect_length(4).read(x)[0].text) == 4 and reader.expect_length().length == 0
    classify = load_solver(tiny_model)
    assert classify.expect_length(4).length == 4  # its own: fine
    for bad in (5, -1, 33):
        with pytest.raises(ConfigError, match="--length"):
            classify.expect_length(bad)


def test_reject_below_gives_no_answer_but_keeps_the_guess(tiny_model, tiny_data):
    from captcha.errors import ConfigError

    img = next((tiny_data / "captchas" / "val").glob("*.png"))
    sure = load_solver(tiny_model).solve(img)
    assert not sure.rejected and sure.answer == sure.text
    refused = load_solver(tiny_model, reject_below=1.0).solve(img)
    assert refused.rejected and refused.answer is None and refused.text == sure.text
    with pytest.raises(ConfigError, match="reject-below"):
        load_solver(tiny_model, reject_below=1.5)


def test_a_confidence_map_is_what_solving_reports_and_refuses_by(tiny_model, tiny_data):
    """A checkpoint's confidence map turns each reading's confidence (re-reading decides by the network's own,
    unchanged); ``--reject-below`` compares the mapped one; a malformed map is one clear error."""
    from captcha.errors import CheckpointError
    from captcha.inference.decode import calibrated
    from captcha.inference.solver import Solver
    from captcha.nn.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tiny_model)
    img = next((tiny_data / "captchas" / "val").glob("*.png"))
    solver = load_solver(tiny_model, backend="torch")
    plain = solver.solve(img)
    assert plain.calibration is None and plain.confidence == plain.raw_confidence
    doubt = Solver.from_metadata(solver.backend, {**ckpt, "confidence_map": {"a": 1.0, "b": -3.0}})
    sol = doubt.solve(img)
    assert sol.text == plain.text and sol.raw_confidence == pytest.approx(plain.raw_confidence)
    assert sol.confidence == pytest.approx(calibrated(plain.raw_confidence, 1.0, -3.0)) and sol.confidence < plain.confidence
    threshold = (sol.confidence + plain.confidence) / 2  # between the two: the mapped one is refused
    refusing = Solver.from_metadata(solver.backend, {**ckpt, "confidence_map": {"a": 1.0, "b": -3.0}},
                                    reject_below=threshold)
    assert refusing.solve(img).rejected
    assert not Solver.from_metadata(solver.backend, ckpt, reject_below=threshold).solve(img).rejected
    for bad in ({"a": 0.0, "b": 1.0}, {"a": 1.0}, [1.0, 0.0], {"a": float("nan"), "b": 0.0}):
        with pytest.raises(CheckpointError, match="confidence_map"):
            Solver.from_metadata(solver.backend, {**ckpt, "confidence_map": bad}, source="m.pt")


def test_reject_below_through_the_cli(tiny_model, tiny_data, tmp_path):
    import csv
    import json

    from click.testing import CliRunner

    from captcha.cli import main

    img = str(next((tiny_data / "captchas" / "val").glob("*.png")))
    res = CliRunner().invoke(main, ["solve", img, "--checkpoint", str(tiny_model), "--reject-below", "1", "--json"])
    row = json.loads(res.stdout)
    assert res.exit_code == 0 and row["text"] is None and row["rejected"] and "rejected" in res.stderr
    out = tmp_path / "o.csv"
    res = CliRunner().invoke(main, ["solve-batch", img, "--out", str(out), "--checkpoint", str(tiny_model),
                                    "--reject-below", "1"])
    assert res.exit_code == 0 and "1 of them rejected" in res.stdout
    (line,) = list(csv.DictReader(open(out)))
    assert line["text"] == "" and line["error"].startswith("rejected")


def test_a_blank_image_is_said_to_be_blank(tiny_model, tiny_data):
    """A page's placeholder (one colour, compression noise and all) is warned about, one by one and in a batch."""
    import io

    solver = load_solver(tiny_model)
    real = sorted((tiny_data / "captchas" / "val").glob("*.png"))[0]
    buf = io.BytesIO()
    Image.new("RGB", (120, 40), (250, 248, 245)).save(buf, "JPEG", quality=40)
    blank = "the image is blank (one colour): there is no text in it to read"
    assert blank in solver.solve(buf.getvalue()).warnings
    assert blank not in solver.solve(real).warnings
    rows = list(solver.solve_batch([real, buf.getvalue()]))
    assert [blank in r.solution.warnings for r in rows] == [False, True]


def test_allow_reads_only_the_given_characters(tiny_model, tiny_data):
    from captcha.errors import ConfigError

    solver = load_solver(tiny_model)
    images = sorted((tiny_data / "captchas" / "val").glob("*.png"))[:6]
    assert all(set(r.solution.text) <= {"1", "2"} for r in solver.allow("12").solve_batch(images))
    assert all(set(r.solution.text) <= {"A", "B", "C"} for r in solver.allow("A-C").solve_batch(images))
    assert solver.allowed == "ABC"
    assert {len(r.solution.text) for r in solver.allow("a").solve_batch(images)} == {4}  # "a" folds to "A"
    assert solver.allow("").solve(images[0]).text == load_solver(tiny_model).solve(images[0]).text
    with pytest.raises(ConfigError, match="--allow"):
        solver.allow("AZ")


def test_solving_checkpoint_prefers_a_trained_model_then_the_shipped_reader(tmp_path, monkeypatch):
    from captcha.config import DEFAULT_CHECKPOINT
    from captcha.inference.load import general_reader_path, solving_checkpoint
    from captcha.nn.networks import shipped_reader

    monkeypatch.chdir(tmp_path)
    assert solving_checkpoint("x.pt") == Path("x.pt")
    reader = shipped_reader()  # the fine-tunes' start: the one general reader, which solving finds without torch too
    assert general_reader_path() == reader
    assert solving_checkpoint(None) == (reader if reader.is_file() else Path(DEFAULT_CHECKPOINT))
    Path(DEFAULT_CHECKPOINT).parent.mkdir()
    Path(DEFAULT_CHECKPOINT).write_bytes(b"")
    assert solving_checkpoint(None) == Path(DEFAULT_CHECKPOINT)


@pytest.mark.parametrize("change,words", [({"length": 1_000_000}, "length"), ({"length": 0}, "length"),
                                          ({"preprocess": {"size": [20000, 20000], "mean": [0, 0, 0],
                                                           "std": [1, 1, 1]}}, "input size"),
                                          ({"classes": 100}, "100 outputs"), ({"method": "magic"}, "method"),
                                          ({"segment": {"method": "nope"}}, "malformed"), ({"charset": 5}, "malformed")])
def test_model_metadata_out_of_bounds_is_refused_before_anything_is_allocated(change, words):
    from captcha.charset import Charset
    from captcha.errors import CheckpointError
    from captcha.inference.solver import Solver

    class Backend:
        classes = change.pop("classes", 6)

        def __call__(self, x):
            raise AssertionError("never run")

    meta = {"charset": Charset("ABC123").to_dict(), "length": 4, "method": "classify",
            "preprocess": {"size": [32, 32], "mean": [0, 0, 0], "std": [1, 1, 1]},
            "segment": {"method": "equal"}, **change}
    with pytest.raises(CheckpointError, match=words):
        Solver.from_metadata(Backend(), meta, source="m.onnx")


def test_an_unsure_reading_is_read_again_moved_and_the_views_vote():
    """Readings under RECHECK_BELOW are read again 3 pixels left, and right where the left view reads otherwise: the
    text two of the three views share wins, with its confidence times the share of views that read it;
    a sure reading is not re-read."""
    from captcha.charset import Charset
    from captcha.config import RECHECK_BELOW
    from captcha.data.preprocess import Preprocess
    from captcha.data.segment import SegmentConfig
    from captcha.errors import ConfigError
    from captcha.inference.solver import Preparer, Solver, shifted

    calls = []

    def backend(x):  # "A" when input column 4 is lit, else "B"; sure when pixel (0, 0) is 2
        calls.append(len(x))
        a = np.where(x[:, 0, 0, 4] > 0, 2.0, -2.0) * np.where(x[:, 0, 0, 0] == 2, 3.0, 1.0)
        return np.stack([a, np.zeros_like(a)], 1)

    x = np.zeros((4, 1, 3, 8, 8), np.float32)
    x[0] = 1  # lit everywhere: every view reads "A"
    x[1, ..., 4] = 1  # only column 4: both moved views read "B"
    x[2] = 1
    x[2, ..., 0, 0] = 2  # lit everywhere and sure: not read again
    x[3, ..., 4] = x[3, ..., 1] = 1  # moved right, column 1 lands on 4: "A"; moved left: "B"
    assert shifted(x[1:2], 3)[0, 0, 0, 0, 7] == 1 and shifted(x[1:2], -3)[0, 0, 0, 0, 1] == 1
    assert (shifted(x[:1], 3) == 1).all() and (shifted(x[:1], -3) == 1).all()  # the edge column fills the gap

    def solver(**kw):
        return Solver(backend, Charset("AB"), Preparer(Preprocess(), 1, SegmentConfig("equal")), **kw)

    unsure, sure = 1 / (1 + np.exp(-2)), 1 / (1 + np.exp(-6))
    assert unsure < RECHECK_BELOW < sure
    sols = solver().read(x)
    assert [s.text for s in sols] == ["A", "B", "A", "A"]
    assert [s.views for s in sols] == [1, 2, 0, 2] and [s.disagreeing for s in sols] == [0, 1, 0, 1]
    assert calls == [4, 3, 2]  # the sure one is read once; the right view only where the left one disagreed
    expected = [unsure, unsure * 2 / 3, sure, unsure * 2 / 3]  # the first: two views of two agree
    assert [s.confidence for s in sols] == pytest.approx(expected)
    assert [s.rejected for s in solver(reject_below=0.8).read(x)] == [False, True, False, True]
    calls.clear()
    plain = solver().rechecking("off").read(x)
    assert [s.text for s in plain] == ["A", "A", "A", "A"] and calls == [4] and plain[1].confidence == pytest.approx(unsure)
    assert solver().rechecking("all").read(x)[2].views == 1  # the sure one too; its left view agrees
    with pytest.raises(ConfigError, match="recheck"):
        solver().rechecking("sometimes")


def test_an_unsure_ctc_reading_is_read_in_four_moved_views_and_their_probabilities_averaged():
    """A CTC reading held to a length and under RECHECK_BELOW is read again moved 3 pixels left; where that reads
    otherwise, also right, up and down, the five views' probabilities are averaged and read once, and the
    confidence is the surest view's that reads that text, scaled by the share of views that do. Held to no
    length the three views vote; a sure reading is read once, and `--recheck off` reads each once."""
    from captcha.charset import Charset
    from captcha.config import RECHECK_BELOW
    from captcha.data.preprocess import Preprocess
    from captcha.data.segment import SegmentConfig
    from captcha.inference.decode import softmax
    from captcha.inference.solver import Preparer, Solver, shifted

    calls = []

    def backend(x):  # two columns: "A" (else "B") where the centre pixel is lit, then a blank; sure where (0, 0) is 2
        calls.append(len(x))
        a = np.where(x[:, 0, 4, 4] > 0, 2.0, -2.0) * np.where(x[:, 0, 0, 0] == 2, 3.0, 1.0)
        char = np.stack([a, -a, np.zeros_like(a)], 1)
        blank = np.tile([[-5.0, -5.0, 5.0]], (len(x), 1))
        return np.stack([char, blank], 1)

    x = np.zeros((3, 1, 3, 8, 8), np.float32)
    x[0] = 1  # lit everywhere: every view reads "A"
    x[1, ..., 4, 4] = 1  # only the centre: the four moved views read "B"
    x[2] = 1
    x[2, ..., 0, 0] = 2  # sure: read once
    assert shifted(x[1:2], 3, axis=-2)[0, 0, 0, 7, 4] == 1 and shifted(x[1:2], -3, axis=-2)[0, 0, 0, 1, 4] == 1
    assert (shifted(x[:1], 3, axis=-2) == 1).all()  # the edge row fills the gap
    solver = Solver(backend, Charset("AB"), Preparer(Preprocess(), 1, SegmentConfig("equal"), "ctc"))
    p = softmax(np.array([2.0, -2.0, 0.0]))  # an unmoved unsure "A"; a moved "B" mirrors it
    assert p[0] < RECHECK_BELOW
    sols = solver.read(x)
    # both unsure ones are read moved left; only the second, whose left view reads otherwise, right, up and down
    assert [s.text for s in sols] == ["A", "B", "A"] and calls == [3, 2, 1, 1, 1]
    assert [s.views for s in sols] == [1, 4, 0] and [s.disagreeing for s in sols] == [0, 1, 0]
    assert sols[0].confidence == pytest.approx(p[0])
    assert sols[1].confidence == pytest.approx(p[0] * 4 / 5)  # a moved view's "B", read by 4 of the 5 views
    free = solver.read(x, length=0)  # held to no length (the general reader told none): the vote of three views
    assert [s.text for s in free] == ["A", "B", "A"] and [s.views for s in free] == [1, 2, 0]
    calls.clear()
    once = solver.rechecking("off").read(x)
    assert [s.text for s in once] == ["A", "A", "A"] and calls == [3]


def test_a_second_network_reads_the_unsure_readings_with_the_first():
    """With a second network (a refit's first fit), the readings re-read are read by both, their probabilities
    averaged, in every view; a sure reading, or any with rechecking off, is read by the first alone."""
    from captcha.charset import Charset
    from captcha.config import RECHECK_BELOW
    from captcha.data.preprocess import Preprocess
    from captcha.data.segment import SegmentConfig
    from captcha.inference.decode import softmax
    from captcha.inference.solver import Preparer, Solver

    firsts, seconds = [], []

    def first(x):  # "A": sure where pixel (0, 0) is 1, else unsure
        firsts.append(len(x))
        a = np.where(x[:, 0, 0, 0] == 1, 6.0, 0.5)
        return np.stack([a, np.zeros_like(a)], 1)

    def second(x):  # "B", sure
        seconds.append(len(x))
        return np.tile([[-4.0, 0.0]], (len(x), 1))

    x = np.zeros((2, 1, 3, 8, 8), np.float32)
    x[1, 0, 0, 0, 0] = 1
    solver = Solver(first, Charset("AB"), Preparer(Preprocess(), 1, SegmentConfig("equal")))
    alone = solver.read(x)
    assert [s.text for s in alone] == ["A", "A"] and alone[0].confidence < RECHECK_BELOW < alone[1].confidence
    firsts.clear()
    both = solver.with_second(second).read(x)
    p_b = (softmax(np.array([0.5, 0.0]))[1] + softmax(np.array([-4.0, 0.0]))[1]) / 2
    assert [s.text for s in both] == ["B", "A"] and both[0].confidence == pytest.approx(p_b)
    assert both[1].confidence == pytest.approx(alone[1].confidence)
    assert seconds == [1, 1]  # the unsure captcha, then its left view (which agrees: no right view)
    assert firsts == [2, 1]  # its first reading of the unsure captcha is averaged, not read again
    seconds.clear()
    assert [s.text for s in solver.rechecking("off").read(x)] == ["A", "A"] and seconds == []
    assert [s.text for s in solver.rechecking("auto").with_second(None).read(x)] == ["A", "A"]


def test_a_second_network_joins_only_ctc_readings_held_to_a_length():
    """Two fits put a character's CTC spike in columns of their own, so a reading of any length (a model of a
    site whose lengths vary) is re-read by the first network alone; one held to a length by both."""
    from captcha.charset import Charset
    from captcha.data.preprocess import Preprocess
    from captcha.data.segment import SegmentConfig
    from captcha.inference.solver import Preparer, Solver

    seconds = []

    def first(x):  # columns: an unsure "A", then blank
        return np.tile([[[1.0, 0.0, 0.5], [-4.0, -4.0, 4.0]]], (len(x), 1, 1))

    def second(x):  # a sure "B" in the first column
        seconds.append(len(x))
        return np.tile([[[-4.0, 4.0, 0.0], [-4.0, -4.0, 4.0]]], (len(x), 1, 1))

    x = np.zeros((1, 1, 3, 8, 8), np.float32)
    solver = Solver(first, Charset("AB"), Preparer(Preprocess(), 0, SegmentConfig("equal"), "ctc")).with_second(second)
    assert [s.text for s in solver.read(x)] == ["A"] and seconds == []  # any length: the first network alone
    assert [s.text for s in solver.read(x, length=1)] == ["B"] and seconds  # held to one character: both


def test_two_ctc_networks_reading_alike_keep_the_surer_ones_confidence():
    """Two fits put a character's spike in columns of their own: averaged, each column holds half of it, so the
    pair's reading carries the confidences of the surer network that reads the same text, not the average's;
    where the networks disagree, those of the one whose reading the average keeps."""
    from captcha.charset import Charset
    from captcha.data.preprocess import Preprocess
    from captcha.data.segment import SegmentConfig
    from captcha.inference.decode import softmax
    from captcha.inference.solver import Preparer, Solver

    blank = [-4.0, -4.0, 4.0]

    def first(x):  # an unsure "A" in the first column
        return np.tile([[[1.5, 0.0, 0.0], blank, blank]], (len(x), 1, 1))

    def second(x):  # a surer "A" a column later
        return np.tile([[blank, [2.5, 0.0, 0.0], blank]], (len(x), 1, 1))

    def other(x):  # a sure "B" where the first reads its "A"
        return np.tile([[[-4.0, 4.0, 0.0], blank, blank]], (len(x), 1, 1))

    x = np.zeros((1, 1, 3, 8, 8), np.float32)
    solver = Solver(first, Charset("AB"), Preparer(Preprocess(), 0, SegmentConfig("equal"), "ctc"))
    alone, = solver.read(x, length=1)
    assert alone.text == "A" and alone.confidence == pytest.approx(softmax(np.array([1.5, 0.0, 0.0]))[0])
    pair, = solver.with_second(second).read(x, length=1)
    surer = softmax(np.array([2.5, 0.0, 0.0]))[0]
    averaged = (softmax(np.array([1.5, 0.0, 0.0]))[0] + softmax(np.array(blank))[0]) / 2
    assert pair.text == "A" and pair.confidence == pytest.approx(surer) and pair.confidence > 1.5 * averaged
    apart, = solver.with_second(other).read(x, length=1)
    assert apart.text == "B" and apart.confidence == pytest.approx(softmax(np.array([-4.0, 4.0, 0.0]))[1])


def test_the_general_reader_learns_a_sites_length_from_the_batch():
    """Told no length, once BATCH_LENGTH_MIN sure readings mostly share one, an unsure reading of another length
    (under RECHECK_BELOW, even one sure enough to count) is read again held to it (and says so); a sure one of
    another length stands; too few sure readings, a
    length told, or unrelated images (serving: ``one_site=False``) leave the readings as they are."""
    from collections import Counter

    from PIL import Image

    from captcha.charset import Charset
    from captcha.config import BATCH_LENGTH_MIN, BATCH_LENGTH_SURE, RECHECK_BELOW
    from captcha.data.preprocess import Preprocess
    from captcha.data.segment import SegmentConfig
    from captcha.inference.solver import Preparer, Solver

    a, b, blank = np.eye(3)
    rows = {"sure3": [a, blank, b, blank, a, blank],  # "ABA"
            "unsure2": [a, blank, [0.3, 0.4, 0.3], blank, blank, blank],  # "AB", its B at 0.4
            "half2": [a, blank, [0.15, 0.7, 0.15], blank, blank, blank],  # "AB", its B at 0.7
            "sure4": [a, blank, b, a, blank, b]}  # "ABAB"
    kinds = ["sure3"] * BATCH_LENGTH_MIN + ["unsure2", "half2", "sure4"]
    table = np.log(np.stack([np.stack(rows[k]) * 0.98 + 0.0067 for k in kinds]))

    class ById(Preparer):  # an image's grey level says which row of the table the network reads for it
        def inputs(self, img):
            x = np.full((1, 3, 8, 8), img.getpixel((0, 0))[0], np.float32)
            x[..., -1, -1] = 255.0  # a mark, so that no image reads as blank
            return x

    def backend(x):
        return table[x[:, 0, 0, 0].astype(int)]

    solver = Solver(backend, Charset("AB"), ById(Preprocess(), 0, SegmentConfig("equal"), "ctc"),
                    general=True).rechecking("off")
    x = np.arange(len(kinds), dtype=np.float32)[:, None, None, None, None] * np.ones((1, 1, 3, 8, 8), np.float32)
    sols = solver.read(x)
    assert [len(s.text) for s in sols[-3:]] == [2, 2, 4]
    assert sols[-3].confidence < BATCH_LENGTH_SURE <= sols[-2].confidence < RECHECK_BELOW <= sols[-1].confidence
    assert solver.held_to_usual_length(x, sols, Counter()) == {len(kinds) - 3, len(kinds) - 2}
    assert len(sols[-3].text) == len(sols[-2].text) == 3 and sols[-1].text == "ABAB"  # held; the sure one stands
    diluted = solver.read(x)  # 20 of 25 sure readings of three characters: BATCH_LENGTH_SHARE, under the labels' 0.9
    assert solver.held_to_usual_length(x, diluted, Counter({2: 3})) == {len(kinds) - 3, len(kinds) - 2}
    assert solver.held_to_usual_length(x, solver.read(x), Counter({2: 4})) == set()  # 20 of 26: no one length
    site = Solver(backend, Charset("AB"), ById(Preprocess(), 0, SegmentConfig("equal"), "ctc"),
                  lengths=(2, 3)).rechecking("off")  # trained on a site whose labels have two lengths
    varied = site.read(x)
    assert site.held_to_usual_length(x, varied, Counter()) == set() and len(varied[-3].text) == 2
    few = solver.read(x[-3:])  # two sure readings only: nothing learned
    assert solver.held_to_usual_length(x[-3:], few, Counter()) == set() and len(few[1].text) == 2
    told = solver.expect_length(4)
    assert told.held_to_usual_length(x, told.read(x), Counter()) == set()
    solver.expect_length(0)

    images = [Image.new("RGB", (8, 8), (i, i, i)) for i in range(len(kinds))]
    batch = [r.solution for r in solver.solve_batch(images)]
    assert all(len(s.text) == 3 and any("held to 3 characters" in w for w in s.warnings) for s in batch[-3:-1])
    assert all(not s.warnings for s in batch[:-3] + batch[-1:])
    apart = [r.solution for r in solver.solve_batch(images, one_site=False)]
    assert all(len(s.text) == 2 and not s.warnings for s in apart[-3:-1])


def test_solving_settings_say_whether_they_are_the_general_readers():
    """The reader's checkpoint says so in its recipe (or that training kept it untrained) and its exports record
    it; a trained model's say not; a file exported before exports recorded it is the general reader when it records
    no captcha size."""
    from captcha.inference.export import solving_metadata
    from captcha.inference.solver import general_reader

    reader = {"recipe": {"general_reader": True}, "captcha_size": None}
    trained = {"recipe": {"method": "ctc"}, "captcha_size": [160, 48], "lengths": [4, 5]}
    assert general_reader(reader) and not general_reader(trained)
    assert solving_metadata(reader)["general_reader"] is True and solving_metadata(trained)["general_reader"] is False
    # `captcha train` that kept the reader untrained (its reader check, no epoch) made the general reader; a model
    # trained after such a check (a refit or a round copies the recipe) did not
    kept = {"recipe": {"reader_check": {"kept": True}}, "captcha_size": [200, 50], "train_config": {"epochs": 0}}
    assert general_reader(kept) and solving_metadata(kept)["general_reader"] is True
    assert not general_reader({**kept, "train_config": {"epochs": 20}})
    assert not general_reader({**kept, "recipe": {"reader_check": {"kept": False}}})
    assert general_reader({"captcha_size": None}) and not general_reader({"captcha_size": [160, 48]})
    assert general_reader({"general_reader": False, "captcha_size": None}) is False  # what a file records wins


def test_the_shipped_reader_is_the_general_reader_and_a_trained_model_is_not(tiny_model):
    from captcha.inference.load import load_solver
    from captcha.nn.networks import shipped_reader

    reader = shipped_reader()
    assert load_solver(reader, backend="torch").general and load_solver(reader).general  # PyTorch and ONNX
    assert not load_solver(tiny_model, backend="torch").general
    # with no path, the library reads with it too (as ddddocr's users expect of its default model), whatever
    # checkpoints/model.pt a working folder holds
    img = Image.new("RGB", (120, 40), "white")
    ImageDraw.Draw(img).text((10, 10), "7K2P", fill="black")
    default, explicit = load_solver(), load_solver(reader)
    assert default.general and default.solve(img).text == explicit.solve(img).text


def test_a_reading_held_to_more_characters_than_its_input_has_room_for_is_read_wider():
    """A CTC reading held to a length that leaves under CTC_COLUMNS feature columns a character (the general
    reader's 160 pixels held to six) is read from its inputs widened, as training sizes its inputs; read at
    any length, at a length with room, or by a network of one fixed width, the inputs stay as they are."""
    from captcha.charset import Charset
    from captcha.data.preprocess import Preprocess, columns_width
    from captcha.data.segment import SegmentConfig
    from captcha.inference.solver import Preparer, Solver

    widths = []

    class Free:  # a network that reads any width, as a CTC model on PyTorch or exported since
        any_width = True

        def __call__(self, x):
            widths.append(x.shape[-1])
            cols = np.eye(3)[[i % 3 for i in range(x.shape[-1] // 8)]] * 0.98 + 0.0067
            return np.log(np.tile(cols, (len(x), 1, 1)))

    def solver(backend):
        return Solver(backend, Charset("AB"), Preparer(Preprocess(size=(8, 160)), 0, SegmentConfig("equal"), "ctc"))

    x = np.zeros((2, 1, 3, 8, 160), np.float32)
    free = solver(Free()).rechecking("off")
    for length, width in ((0, 160), (5, 160), (6, 192), (7, 224)):
        widths.clear()
        assert len(free.read(x, length)[0].text) == (length or 14) and widths == [width], length
    assert columns_width(6) == 192
    widths.clear()
    free.expect_length(6).read(x)
    assert widths == [192]  # told the length (`--length 6`)
    widths.clear()
    solver(lambda v: Free()(v)).rechecking("off").read(x, 6)  # one fixed width: as it is
    assert widths == [160]
    widths.clear()
    solver(Free()).with_second(lambda v: Free()(v)).rechecking("off").read(x, 6)  # both networks must read it
    assert widths == [160]


def test_once_the_batch_knows_a_length_its_input_is_too_narrow_for_unsure_readings_are_read_wider():
    """The general reader told no length learns the batch's; where that length is read wider (see above),
    every unsure reading is read again held to it, at the wider input, not only those of another length;
    a sure one stands, and a reading whose length stood is not said to be held."""
    from collections import Counter

    from captcha.charset import Charset
    from captcha.config import BATCH_LENGTH_MIN
    from captcha.data.preprocess import Preprocess
    from captcha.data.segment import SegmentConfig
    from captcha.inference.solver import Preparer, Solver

    a, b, blank = np.eye(3)
    read_wide = []

    class Free:
        any_width = True

        def __call__(self, x):
            if x.shape[-1] >= 32:  # wide enough for one character (columns_width(1)): a sure "A" each
                read_wide.append(len(x))
                return np.log(np.tile(np.stack([a, blank, blank, blank]) * 0.98 + 0.0067, (len(x), 1, 1)))
            rows = [[a, blank] if v < BATCH_LENGTH_MIN else [[0.3, 0.4, 0.3], blank] for v in x[:, 0, 0, 0]]
            return np.log(np.array(rows) * 0.98 + 0.0067)

    solver = Solver(Free(), Charset("AB"), Preparer(Preprocess(size=(8, 16)), 0, SegmentConfig("equal"), "ctc"),
                    general=True)
    x = np.arange(BATCH_LENGTH_MIN + 1, dtype=np.float32)[:, None, None, None, None] * np.ones((1, 1, 3, 8, 16))
    sols = solver.rechecking("off").read(x)
    assert sols[-1].text == "B" and {s.text for s in sols[:-1]} == {"A"}
    assert solver.held_to_usual_length(x, sols, Counter()) == set()
    assert sols[-1].text == "A" and read_wide == [1]  # the unsure one, read wider; the sure ones stand


def test_the_general_reader_reads_a_sites_batch_at_the_width_it_reads_surest():
    """One site's batch is read by the general reader at the width of BATCH_WIDTHS (or its own) that its first
    chunk reads surest; its own on a tie, with fewer than BATCH_WIDTH_MIN captchas, for unrelated images, and
    by any other model."""
    from captcha.charset import Charset
    from captcha.config import BATCH_WIDTH_MIN, BATCH_WIDTHS
    from captcha.data.preprocess import Preprocess
    from captcha.data.segment import SegmentConfig
    from captcha.inference.solver import Preparer, Solver

    a, b, blank = np.eye(3)
    widths = []

    class Free:  # reads "A" sure from 192 columns, "B" unsure from any other width
        any_width = True

        def __init__(self, surest=192):
            self.surest = surest

        def __call__(self, x):
            widths.append(x.shape[-1])
            sure = x.shape[-1] == self.surest
            col = a * 0.98 if sure else (b * 0.5 + blank * 0.3 + a * 0.2)
            return np.log(np.tile(np.stack([col, blank * 0.98]) + 0.0067, (len(x), 1, 1)))

    def solver(net, general=True):
        return Solver(net, Charset("AB"), Preparer(Preprocess(size=(8, 160)), 0, SegmentConfig("equal"), "ctc"),
                      general=general).rechecking("off")

    x = np.zeros((BATCH_WIDTH_MIN, 1, 3, 8, 160), np.float32)
    assert 192 in BATCH_WIDTHS and solver(Free()).surest_width(x) == 192
    assert solver(Free(surest=1)).surest_width(x) == 160  # a tie: its own width
    assert solver(Free(), general=False).surest_width(x) == 160  # a model trained on its site keeps its width
    assert solver(lambda v: Free()(v)).surest_width(x) == 160  # a network of one fixed width too

    images = [Image.fromarray(np.full((8, 160, 3), 200, np.uint8)) for _ in range(BATCH_WIDTH_MIN)]
    images[0].putpixel((3, 3), (0, 0, 0))
    widths.clear()
    texts = [r.solution.text for r in solver(Free()).solve_batch(images)]
    assert texts == ["A"] * BATCH_WIDTH_MIN and widths[-1] == 192
    for few, one_site in ((images[:BATCH_WIDTH_MIN - 1], True), (images, False)):
        widths.clear()
        assert {r.solution.text for r in solver(Free()).solve_batch(few, one_site=one_site)} == {"B"}
        assert set(widths) == {160}


def test_svg_glyphs_are_drawn_apart_as_the_checkpoint_says(tiny_model, tmp_path):
    """A checkpoint records whether an SVG's glyphs are drawn apart (new ones do); one made before it draws the page as
    it was trained on it, and the general reader, which never trained on an SVG, draws them apart."""
    from captcha.data.images import load_image
    from captcha.inference.solver import Solver
    from captcha.nn.checkpoint import load_checkpoint

    doc = tmp_path / "two.svg"
    doc.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="120" height="60"><rect width="120" height="60" '
                   'fill="white"/><path fill="red" d="M20 8 H50 V52 H20 Z"/><path fill="blue" d="M40 10 H70 V50 H40 Z"/>'
                   '<path d="M0 30 L120 30" stroke="green" fill="none"/></svg>')
    ckpt = load_checkpoint(tiny_model)
    solver = load_solver(tiny_model, backend="torch")
    assert ckpt["segment"]["apart"] is True and solver.preparer.load(doc).size == load_image(doc).size != (120, 60)
    before = {**ckpt, "segment": {k: v for k, v in ckpt["segment"].items() if k != "apart"}}
    old = Solver.from_metadata(solver.backend, before)
    assert old.preparer.load(doc).size == (120, 60)  # as the page shows it
    assert (old.inputs(doc) == old.preparer.inputs(load_image(doc, svg_apart=False))).all()
    reader = Solver.from_metadata(solver.backend, {**before, "general_reader": True})
    assert reader.preparer.load(doc).size == load_image(doc).size
