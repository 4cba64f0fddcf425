import json
from pathlib import Path

import pytest

from captcha.bench.generalize import bench_generalize, build_real_cut
from captcha.data.layout import check_dataset
from captcha.data.styles import family_files
from captcha.errors import DataError


def test_a_held_out_style_set_trains_and_reports(tmp_path):
    try:
        family_files(("LiberationSans", "FreeSans", "NimbusSans", "Carlito", "URWGothic"))
    except DataError as exc:
        pytest.skip(str(exc))
    res = bench_generalize(("hollow-sans",), tmp_path, scale=0.1, epochs=8, freeze="all", size=(32, 32))
    (row,) = res["rows"]
    assert row["set"] == "hollow-sans" and row["freeze"] == "all" and 0 <= row["string_acc"] <= 1
    assert row["char_acc"] > 3 / 36 and row["batch_captchas_per_s"] > 0  # well above chance (1/36)
    assert check_dataset(tmp_path / "hollow-sans").usable
    assert json.loads((tmp_path / "generalize.json").read_text())["rows"][0]["set"] == "hollow-sans"
    assert "| hollow-sans |" in (tmp_path / "generalize.md").read_text()


SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"


def test_the_real_cut_is_course_layout(tmp_path):
    if not (SHARED / "sysu_alnum4").is_dir():
        pytest.skip("../shared/datasets/sysu_alnum4 is not here")
    out = build_real_cut("sysu-cut", SHARED, tmp_path / "cut", scale=0.05)
    rep = check_dataset(out)
    assert rep.usable and rep.captchas["val"] == 230 and sum(rep.chars["train"].values()) == 4 * 34
