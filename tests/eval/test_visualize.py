import numpy as np
import pytest
import torch
from PIL import Image

from captcha.config import FREEZE_LEVELS
from captcha.eval.summary import load_for_inspection, summarize
from captcha.eval.visualize import capture, feature_grids, resolve_layers, visualize
from captcha.nn.networks import CharNet


def test_hooks_are_registered_then_removed():
    model = CharNet(5)
    names = resolve_layers(model, "conv1,layer2")
    assert names == ["conv1", "layer2.1.conv2"]
    maps = capture(model, torch.randn(1, 3, 32, 32), names)
    assert set(maps) == set(names) and maps["conv1"].shape == (1, 64, 16, 16)
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError, match="no Conv2d"):
        resolve_layers(model, "layer9")


def test_hooks_removed_even_when_forward_fails():
    model = CharNet(5)
    with pytest.raises(RuntimeError):
        capture(model, torch.randn(1, 2, 32, 32), ["conv1"])  # wrong channel count
    assert all(not m._forward_hooks for m in model.modules())


def test_grid_has_one_tile_per_filter(tmp_path):
    from captcha.eval import visualize as viz

    seen = {}
    real = viz._grid

    def spy(tiles, title, path, caption):
        seen[title] = tiles.shape[0]
        return real(tiles, title, path, caption)

    viz._grid = spy
    try:
        files = feature_grids({"conv1": torch.randn(1, 64, 16, 16), "layer4.1.conv2": torch.randn(1, 512, 1, 1)},
                              tmp_path, max_filters=20)
    finally:
        viz._grid = real
    assert seen == {"conv1": 20, "layer4.1.conv2": 20} and all(f.stat().st_size > 1000 for f in files)
    img = Image.open(files[0])
    assert img.width > img.height  # 8 columns, 3 rows


def test_the_mosaic_scales_each_tile_to_its_own_range_and_lays_them_out_in_rows():
    from captcha.eval.visualize import COLUMNS, _mosaic

    tiles = np.stack([np.full((4, 5), float(i)) for i in range(COLUMNS + 1)])
    tiles[:, 0, 0] = -100.0  # each tile spans [-100, i]: scaled on its own, its other pixels are its maximum
    sheet = _mosaic(tiles, gap=2)
    assert sheet.shape == (2 * (4 + 2), COLUMNS * (5 + 2) - 2, 3)
    top = sheet[2:6, :5]  # tile 0, below the first blank band
    assert np.allclose(top[1:, 1:], top[-1, -1]) and not np.allclose(top[0, 0], top[-1, -1])
    second_row = sheet[8:12, :5]  # tile COLUMNS starts the second row, scaled like tile 0
    assert np.allclose(second_row, top)
    assert np.allclose(sheet[:2], 1.0) and np.allclose(sheet[8:12, 7:12], 1.0)  # blank band; no tile there
    rgb = np.random.rand(3, 4, 4, 3)
    assert np.allclose(_mosaic(rgb, gap=1)[1:5, :4].max(), 1.0)  # colour tiles keep their channels


@pytest.mark.parametrize("level", FREEZE_LEVELS)
def test_summary_counts_per_freeze_level(level):
    model, _ = load_for_inspection(pretrained="none", freeze=level, num_classes=36)
    s = summarize(model)
    stage_params = {"stem": 9408 + 128, "layer1": 147968, "layer2": 525568, "layer3": 2099712, "layer4": 8393728}
    frozen = sum(stage_params[st] for st in s["frozen_stages"])
    assert s["frozen_params"] == frozen
    head = 36 * 513
    assert s["trainable_params"] == sum(stage_params[st] for st in stage_params if st not in s["frozen_stages"]) + head
    assert s["total_params"] == 11_689_512 - 1000 * 513 + 36 * 513  # torchvision's 1000-way ResNet-18, new head
    assert "Conv2d (conv1)" in s["table"] and s["params_mb"] > 40
    assert "Total mult-adds (M): " in s["table"] and "Units." not in s["table"]  # the unit's letter, not its repr


def test_visualize_a_whole_captcha(tiny_model, tiny_data, tmp_path):
    img = next((tiny_data / "captchas" / "val").glob("*.png"))
    files = visualize(img, str(tiny_model), "conv1,layer4", tmp_path)
    assert len(files["crops"]) == 4 and len(files["maps"]) == 8 and len(files["filters"]) == 1


def test_a_ctc_model_is_shown_the_whole_captcha(tmp_path):
    """A CTC model (here the shipped general reader, of no fixed length) reads the whole captcha: its maps are
    of the captcha cut to its content, as solving cuts it, not of split crops."""
    from PIL import Image, ImageDraw

    from captcha.inference.load import general_reader_path

    img = Image.new("RGB", (200, 60), "white")
    ImageDraw.Draw(img).text((60, 25), "7K2P", fill="black")
    files = visualize(img, str(general_reader_path()), "conv1,layer4", tmp_path)
    assert files["crops"] == [] and len(files["maps"]) == 2 and len(files["filters"]) == 1
