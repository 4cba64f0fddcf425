import json
from pathlib import Path

import pytest

from captcha.bench.generalize import (
    bench_generalize,
    build_real_cut,
    format_grid,
    grid_cells,
)
from captcha.data.fonts import held_out_files
from captcha.data.layout import check_dataset
from captcha.errors import DataError


def test_a_held_out_style_set_trains_and_reports(tmp_path):
    try:
        held_out_files(("LiberationSans", "FreeSans", "NimbusSans", "Carlito", "URWGothic"))
    except DataError as exc:
        pytest.skip(str(exc))
    res = bench_generalize(("striped-sans",), tmp_path, scale=0.1, epochs=8, freeze="all", size=(32, 32))
    (row,) = res["rows"]
    assert row["set"] == "striped-sans" and row["freeze"] == "all" and 0 <= row["string_acc"] <= 1
    assert row["char_acc"] > 3 / 36 and row["batch_captchas_per_s"] > 0  # well above chance (1/36)
    assert check_dataset(tmp_path / "striped-sans").usable
    assert json.loads((tmp_path / "generalize.json").read_text())["rows"][0]["set"] == "striped-sans"
    assert "| striped-sans |" in (tmp_path / "generalize.md").read_text()


def test_the_grid_trains_every_start_freeze_and_size(tmp_path, tiny_data):
    cells = grid_cells(tiny_data, tmp_path, epochs=1, starts=("none", "glyphs-v1"), freezes=("all", "none"),
                       sizes=(32,))
    assert set(cells) == {"none/none/32", "glyphs-v1/all/32", "glyphs-v1/none/32"}
    assert all(0 <= c["string_acc"] <= 1 and c["train_wall_s"] > 0 for c in cells.values())
    table = format_grid({"set": "tiny", "grid": cells})
    assert "| glyphs-v1 | 32 px |" in table and "| none | 32 px | – |" in table


SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"


def test_the_real_cut_is_course_layout(tmp_path):
    if not (SHARED / "sysu_alnum4").is_dir():
        pytest.skip("../shared/datasets/sysu_alnum4 is not here")
    out = build_real_cut("sysu-cut", SHARED, tmp_path / "cut", scale=0.05)
    rep = check_dataset(out)
    assert rep.usable and rep.captchas["val"] == 230 and sum(rep.chars["train"].values()) == 4 * 34
