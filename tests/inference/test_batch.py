import csv
import os

import pytest

from captcha.errors import ConfigError
from captcha.inference.batch import (
    earlier_rows,
    expand_inputs,
    merge_results,
    parse_shard,
    run_batch,
)


def test_parse_shard():
    assert parse_shard(None) is None and parse_shard("") is None
    assert parse_shard("0/1") == (0, 1) and parse_shard("3/4") == (3, 4)
    for bad in ("3/3", "-1/2", "1/0", "x", "1/2/3", "1"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def test_earlier_rows_drops_a_half_written_row_and_tells_errors_from_refusals(tmp_path):
    out = tmp_path / "p.csv"
    out.write_bytes(b"filename,text,confidence,error\na.png,AB12,0.9,\nr.png,,0.2100,rejected: confidence below 0.5\n"
                    b"e.png,,,e.png: not an image\nb.png,CD3")
    assert earlier_rows(out) == {os.path.realpath("a.png"): True, os.path.realpath("r.png"): True,
                                 os.path.realpath("e.png"): False}
    assert out.read_bytes().endswith(b"not an image\n")


def test_run_batch_csv_and_resume(solver, corpus, tmp_path):
    folder = next(iter(corpus.values()))[0].parent
    out = tmp_path / "pred.csv"
    stats = run_batch([str(folder)], out, solver, batch_size=4)
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    assert set(rows[0]) == {"filename", "text", "confidence", "error"}
    names = [r["filename"] for r in rows]
    assert len(names) == len(set(names)) == stats["solved"] + stats["errors"]
    assert any(r["error"] for r in rows) and any(r["text"] for r in rows)
    # simulate a run killed after 5 rows, then resume: exactly one row per input
    lines = out.read_text(encoding="utf-8").splitlines()
    out.write_text("\n".join(lines[:6]) + "\n", encoding="utf-8")
    stats2 = run_batch([str(folder)], out, solver, batch_size=4, resume=True)
    again = [r["filename"] for r in csv.DictReader(open(out, encoding="utf-8"))]
    failed = sum(bool(r["error"]) and not r["confidence"] for r in rows[:5])  # read again on resuming
    assert sorted(again) == sorted(names) and (stats2["skipped"], stats2["retried"]) == (5 - failed, failed)


def test_resume_reads_again_the_files_that_failed(solver, tiny_data, tmp_path):
    """A file unreadable in the first run (a transfer not yet done, say) is read on --resume, and its error row
    gives way to its answer: still one row an input; one that fails again keeps one error row."""
    folder = tmp_path / "in"
    folder.mkdir()
    src = sorted((tiny_data / "captchas" / "val").glob("*.png"))[:4]
    for p in src:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / src[1].name).write_bytes(b"half a file")
    (folder / "broken.png").write_bytes(b"never an image")
    out = tmp_path / "p.csv"
    first = run_batch([str(folder)], out, solver)
    assert (first["solved"], first["errors"]) == (3, 2)
    (folder / src[1].name).write_bytes(src[1].read_bytes())  # the file arrives whole
    again = run_batch([str(folder)], out, solver, resume=True)
    assert (again["skipped"], again["retried"], again["solved"], again["errors"]) == (3, 2, 1, 1)
    rows = {r["filename"]: r for r in csv.DictReader(open(out, encoding="utf-8"))}
    assert len(rows) == 5 and sum(1 for _ in open(out, encoding="utf-8")) == 6
    assert rows[str(folder / src[1].name)]["text"] and not rows[str(folder / src[1].name)]["error"]
    assert rows[str(folder / "broken.png")]["error"] and not (tmp_path / "p.csv.tmp").exists()


def test_shards_merge_into_one_csv(solver, tiny_data, tmp_path):
    from captcha.inference.batch import parse_shard

    folder = str(tiny_data / "captchas" / "val")
    parts = []
    for i in range(3):
        part = tmp_path / f"part{i}.csv"
        run_batch([folder], part, solver, shard=parse_shard(f"{i}/3"))
        parts.append(part)
    single = tmp_path / "single.csv"
    run_batch([folder], single, solver)
    merged = tmp_path / "merged.csv"
    assert merge_results(parts, merged) == 20
    read = lambda p: sorted(csv.DictReader(open(p, encoding="utf-8")), key=lambda r: r["filename"])  # noqa: E731
    assert [(r["filename"], r["text"]) for r in read(merged)] == [(r["filename"], r["text"]) for r in read(single)]
    with pytest.raises(ValueError):
        parse_shard("3/3")


def test_expand_inputs_walks_folders_globs_and_lists(tmp_path):

    for rel in ("d/b.png", "d/a.PNG", "d/sub/c.jpg", "d/notes.txt", "d/t.TIFF", "e/x.gif", "e/y.bmp"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    lst = tmp_path / "list.txt"
    lst.write_text(f"# a comment\n{tmp_path / 'e/y.bmp'}\n\n  {tmp_path / 'missing.png'}  \n", encoding="utf-8")
    got = list(expand_inputs([str(tmp_path / "d"), str(tmp_path / "e" / "*.gif"), str(lst),
                              str(tmp_path / "**" / "*.jpg"), str(tmp_path / "single.png")]))
    rel = [str(p).replace(str(tmp_path) + "/", "") for p in got]
    assert rel == ["d/a.PNG", "d/b.png", "d/t.TIFF",      # a folder: recursive, sorted, images only (one it does
                   "d/sub/c.jpg",                          # not read too: its error row says so)
                   "e/x.gif",                              # a glob
                   "e/y.bmp", "missing.png",               # a list: comments and blanks skipped
                   "single.png"]                           # a missing file stays, to become an error row
    # (the recursive glob found only d/sub/c.jpg, already given by the folder: each file is solved once)


def test_formula_cells_are_neutralised_and_read_back(solver, tiny_data, tmp_path, monkeypatch):
    import shutil

    from captcha.inference.batch import csv_cell, csv_text

    src = next((tiny_data / "captchas" / "val").glob("*.png"))
    names = ["=HYPERLINK(1).png", "+1.png", "-2.png", "@SUM.png", "plain.png"]
    for name in names:
        shutil.copy(src, tmp_path / name)
    (tmp_path / "=bad.png").write_bytes(b"not an image")
    monkeypatch.chdir(tmp_path)  # relative names: the cells start with the file names themselves
    run_batch(names + ["=bad.png"], "p.csv", solver)
    rows = list(csv.reader(open("p.csv", encoding="utf-8")))[1:]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    assert [csv_text(r[0]) for r in rows] == names + ["=bad.png"] and rows[-1][3].startswith("'=bad.png")
    assert csv_cell("=1") == "'=1" and csv_text("'=1") == "=1" and csv_text("'a") == "'a"
    again = run_batch(names + ["=bad.png"], "p.csv", solver, resume=True)  # escaped names are recognised as done
    assert again["skipped"] == 5 and again["solved"] == 0 and again["errors"] == again["retried"] == 1
    assert [csv_text(r[0]) for r in list(csv.reader(open("p.csv", encoding="utf-8")))[1:]] == names + ["=bad.png"]


def test_an_existing_out_is_refused_unless_resumed_or_overwritten(solver, tiny_data, tmp_path):
    from captcha.errors import DataError

    folder = tiny_data / "captchas" / "val"
    out = tmp_path / "p.csv"
    run_batch([str(folder)], out, solver)
    with pytest.raises(DataError, match="--overwrite"):
        run_batch([str(folder)], out, solver)
    assert run_batch([str(folder)], out, solver, overwrite=True)["solved"] == 20
    # resumed through another spelling of the same paths (relative vs absolute): no duplicate rows
    rel = os.path.relpath(folder)
    assert run_batch([rel], out, solver, resume=True)["skipped"] == 20
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.png").write_bytes((folder / next(iter(os.listdir(folder)))).read_bytes())
    with pytest.raises(DataError, match="other inputs"):
        run_batch([str(other)], out, solver, resume=True)
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("name,value\na,1\n")
    with pytest.raises(DataError, match="not a solve-batch CSV"):
        run_batch([str(folder)], foreign, solver, resume=True)


def test_a_symlink_loop_yields_each_file_once(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"x")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a")
    found = list(expand_inputs([str(tmp_path / "a" / "**" / "*.png")]))
    assert len(found) == 1
    assert len(list(expand_inputs([str(tmp_path / "a"), str(tmp_path / "a" / "x.png")]))) == 1


def test_an_image_in_a_format_it_does_not_read_is_an_error_row_that_says_so(solver, tmp_path):
    """A folder's TIFF is not passed over in silence: its row names the format and the fix, the rest are read."""
    from PIL import Image

    folder = tmp_path / "site"
    folder.mkdir()
    for name in ("a.png", "b.tif", "c.jfif"):  # .jfif: a JPEG under the name Windows browsers save it with
        Image.new("RGB", (64, 24), "white").save(folder / name, "JPEG" if name.endswith(".jfif") else None)
    out = tmp_path / "pred.csv"
    stats = run_batch([str(folder)], out, solver)
    rows = {os.path.basename(r["filename"]): r for r in csv.DictReader(open(out, encoding="utf-8"))}
    assert sorted(rows) == ["a.png", "b.tif", "c.jfif"] and stats["solved"] == 2 and stats["errors"] == 1
    assert rows["b.tif"]["error"].endswith("a .tif image, a format it does not read (png, jpeg, bmp, gif, webp, svg): "
                                           "convert it to png")
    assert not rows["a.png"]["error"] and not rows["c.jfif"]["error"]
