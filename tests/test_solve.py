import csv
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from captcha.batch import run_batch
from captcha.errors import ImageError
from captcha.solve import Solver
from hostile import make_corpus


@pytest.fixture(scope="module")
def solver(tiny_model):
    return Solver.from_checkpoint(tiny_model)


@pytest.fixture(scope="module")
def corpus(tiny_data, tmp_path_factory):
    good = next((tiny_data / "captchas" / "val").glob("*.png"))
    return make_corpus(tmp_path_factory.mktemp("odd"), Image.open(good))


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


def test_batch_with_worker_processes_matches(solver, corpus):
    paths = [str(p) for p, _ in corpus.values()]
    a = [(r.source, r.solution.text if r.ok else r.error) for r in solver.solve_batch(paths, batch_size=3)]
    b = [(r.source, r.solution.text if r.ok else r.error) for r in solver.solve_batch(paths, batch_size=3, workers=2)]
    assert a == b


def test_run_batch_csv_and_resume(tiny_model, corpus, tmp_path):
    folder = next(iter(corpus.values()))[0].parent
    out = tmp_path / "pred.csv"
    stats = run_batch([str(folder)], out, tiny_model, batch_size=4)
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    assert set(rows[0]) == {"filename", "text", "confidence", "error"}
    names = [r["filename"] for r in rows]
    assert len(names) == len(set(names)) == stats["solved"] + stats["errors"]
    assert any(r["error"] for r in rows) and any(r["text"] for r in rows)
    # simulate a run killed after 5 rows, then resume: exactly one row per input
    lines = out.read_text(encoding="utf-8").splitlines()
    out.write_text("\n".join(lines[:6]) + "\n", encoding="utf-8")
    stats2 = run_batch([str(folder)], out, tiny_model, batch_size=4, resume=True)
    again = [r["filename"] for r in csv.DictReader(open(out, encoding="utf-8"))]
    assert sorted(again) == sorted(names) and stats2["skipped"] == 5


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


def test_shards_merge_into_one_csv(tiny_model, tiny_data, tmp_path):
    from captcha.batch import merge_results, parse_shard

    folder = str(tiny_data / "captchas" / "val")
    parts = []
    for i in range(3):
        part = tmp_path / f"part{i}.csv"
        run_batch([folder], part, tiny_model, shard=parse_shard(f"{i}/3"))
        parts.append(part)
    single = tmp_path / "single.csv"
    run_batch([folder], single, tiny_model)
    merged = tmp_path / "merged.csv"
    assert merge_results(parts, merged) == 20
    read = lambda p: sorted(csv.DictReader(open(p, encoding="utf-8")), key=lambda r: r["filename"])  # noqa: E731
    assert [(r["filename"], r["text"]) for r in read(merged)] == [(r["filename"], r["text"]) for r in read(single)]
    with pytest.raises(ValueError):
        parse_shard("3/3")


def test_backends_agree(tiny_model, tiny_data):
    paths = sorted(str(p) for p in (tiny_data / "captchas" / "val").glob("*.png"))
    auto = Solver.from_checkpoint(tiny_model)
    torch_only = Solver.from_checkpoint(tiny_model, backend="torch")
    assert type(auto.backend).__name__ == "OnnxBackend" and type(torch_only.backend).__name__ == "TorchBackend"
    a = [r.solution for r in auto.solve_batch(paths)]
    b = [r.solution for r in torch_only.solve_batch(paths)]
    assert [s.text for s in a] == [s.text for s in b]
    assert max(abs(x - y) for sa, sb in zip(a, b) for x, y in zip(sa.confidences, sb.confidences)) < 1e-3


def test_prefetch_keeps_order_raises_and_stops_early():
    from captcha.solve import _prefetched

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


def test_expand_inputs_walks_folders_globs_and_lists(tmp_path):
    from captcha.batch import expand_inputs

    for rel in ("d/b.png", "d/a.PNG", "d/sub/c.jpg", "d/notes.txt", "e/x.gif", "e/y.bmp"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    lst = tmp_path / "list.txt"
    lst.write_text(f"# a comment\n{tmp_path / 'e/y.bmp'}\n\n  {tmp_path / 'missing.png'}  \n", encoding="utf-8")
    got = list(expand_inputs([str(tmp_path / "d"), str(tmp_path / "e" / "*.gif"), str(lst),
                              str(tmp_path / "**" / "*.jpg"), str(tmp_path / "single.png")]))
    rel = [str(p).replace(str(tmp_path) + "/", "") for p in got]
    assert rel == ["d/a.PNG", "d/b.png", "d/sub/c.jpg",   # a folder: recursive, sorted, images only
                   "e/x.gif",                              # a glob
                   "e/y.bmp", "missing.png",               # a list: comments and blanks skipped
                   "d/sub/c.jpg",                          # a recursive glob
                   "single.png"]                           # a missing file stays, to become an error row
