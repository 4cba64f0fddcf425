import csv

import pytest

from captcha.errors import ConfigError
from captcha.inference.batch import (
    done_in,
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


def test_done_in_drops_a_half_written_row(tmp_path):
    out = tmp_path / "p.csv"
    out.write_bytes(b"filename,text,confidence,error\na.png,AB12,0.9,\nb.png,CD3")
    assert done_in(out) == {"a.png"} and out.read_bytes().endswith(b"0.9,\n")


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
    assert sorted(again) == sorted(names) and stats2["skipped"] == 5


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
