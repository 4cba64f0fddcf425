import json
import shutil

import pytest

from captcha.bench.transfer import bench_transfer, format_transfer
from captcha.charset import Charset
from captcha.config import SynthConfig
from captcha.data.layout import first_captchas, read_captcha_labels
from captcha.data.synth import synth_dataset


@pytest.fixture(scope="module")
def captcha_data(tmp_path_factory):
    """Course layout with whole training captchas and no single characters, as `data split` writes."""
    root = tmp_path_factory.mktemp("transfer") / "data"
    synth_dataset(root, SynthConfig(seed=7, train_per_class=6, val_per_class=2, captchas=8, train_captchas=24,
                                    charset=Charset("ABC123")))
    shutil.rmtree(root / "chars")
    return root


def test_first_captchas_keeps_the_first_n_and_the_same_val(captcha_data, tmp_path):
    few = first_captchas(captcha_data, 5, tmp_path / "few", Charset("ABC123"))
    cs = Charset("ABC123")
    kept = read_captcha_labels(few / "captchas" / "train", cs, problems=[])
    every = read_captcha_labels(captcha_data / "captchas" / "train", cs, problems=[])
    assert [s.path.name for s in kept] == sorted(s.path.name for s in every)[:5]
    assert {s.label for s in kept} <= {s.label for s in every}
    assert len(read_captcha_labels(few / "captchas" / "val", cs, problems=[])) == 8


@pytest.mark.usefixtures("no_int8_check")
def test_bench_transfer_table_on_captcha_data(captcha_data, tmp_path):
    res = bench_transfer(captcha_data, None, epochs=1, freezes=("all",), out_dir=tmp_path, small_captchas=6,
                         charset="ABC123", batch_size=16, aug_passes=1)
    assert set(res["cells"]) >= {"none (random init)", "glyph-pretrained"}
    for row in res["cells"].values():
        assert list(row) == ["all", "none, 6 captchas"]
        for cell in row.values():
            assert 0.0 <= cell["string_acc"] <= 1.0 and cell["train_seconds"] > 0
    # the course's claim, on 6 classes (chance 1/6): a glyph backbone beats random weights, frozen
    glyph, scratch = res["cells"]["glyph-pretrained"]["all"], res["cells"]["none (random init)"]["all"]
    assert glyph["char_acc"] >= 0.4 and glyph["char_acc"] > scratch["char_acc"] + 0.2
    table = (tmp_path / "transfer.md").read_text()
    assert table.strip() == format_transfer(res) and "| glyph-pretrained |" in table
    assert json.loads((tmp_path / "transfer.json").read_text())["small_captchas"] == 6
