import pytest
import torch
from torchvision.models import resnet18

from captcha.config import FREEZE_LEVELS
from captcha.errors import CheckpointError
from captcha.nn.networks import (
    DEFAULT_GLYPHS,
    SHIPPED_BACKBONES,
    CharNet,
    build_model,
    count_parameters,
    imagenet_weights_path,
    load_backbone_file,
    resolve_pretrained,
)

EXPECTED_TRAINABLE = {  # which top-level modules train at each level
    "none": {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"},
    "layer1": {"layer2", "layer3", "layer4", "fc"},
    "layer2": {"layer3", "layer4", "fc"},
    "layer3": {"layer4", "fc"},
    "layer4": {"fc"},
    "all": {"fc"},
}


@pytest.mark.parametrize("level", FREEZE_LEVELS)
def test_freeze_levels_choose_what_trains(level):
    model, _ = build_model(36, "none", level)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == EXPECTED_TRAINABLE[level]
    model.train()
    frozen_bn = [m for name, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)
                 and name.split(".")[0] not in EXPECTED_TRAINABLE[level]]
    assert all(not m.training for m in frozen_bn)
    # counted independently of count_parameters: torchvision's own ResNet-18, module by module
    ref = resnet18(num_classes=36)
    expected = sum(p.numel() for n, p in ref.named_parameters() if n.split(".")[0] in EXPECTED_TRAINABLE[level])
    counts = count_parameters(model)
    assert counts["trainable"] == expected and counts["total"] == sum(p.numel() for p in ref.parameters())
    if level == "all":
        assert counts["trainable"] == 512 * 36 + 36


def test_head_and_shapes():
    model, _ = build_model(10, "none", "none")
    x = torch.randn(3, 3, 32, 32)
    out = model(x)
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    assert model.features(x).shape == (3, 512)


def test_imagenet_missing_is_a_clear_error():
    assert not imagenet_weights_path().exists()
    with pytest.raises(CheckpointError) as err:
        resolve_pretrained("imagenet")
    assert str(imagenet_weights_path()) in str(err.value) and "none" in str(err.value)


def test_imagenet_loads_through_torchvision_when_cached():
    path = imagenet_weights_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    ref = resnet18()
    torch.save(ref.state_dict(), path)
    try:
        model, source = build_model(36, "imagenet", "all")
        assert source == "imagenet"
        assert torch.equal(model.conv1.weight, ref.conv1.weight)
        assert model.fc.out_features == 36
        # auto prefers the shipped glyph backbone, and takes ImageNet's only without it
        assert resolve_pretrained("auto")[0] == f"glyphs:{SHIPPED_BACKBONES[DEFAULT_GLYPHS]}"
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("captcha.nn.networks.shipped_backbone", lambda name="glyphs": path.parent / "absent.pt")
            assert resolve_pretrained("auto")[0] == "imagenet"
    finally:
        path.unlink()


def test_auto_without_any_backbone_is_none_and_glyphs_by_name_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setattr("captcha.nn.networks.shipped_backbone", lambda name="glyphs": tmp_path / "absent.pt")
    assert resolve_pretrained("auto") == ("none", None)
    with pytest.raises(CheckpointError, match="shipped backbone"):
        resolve_pretrained("glyphs")


def test_path_sources_and_mismatches(tmp_path):
    ref = resnet18(num_classes=5)
    plain = tmp_path / "plain.pth"
    torch.save({"module." + k: v for k, v in ref.state_dict().items()}, plain)  # DDP-style prefixes
    model, source = build_model(36, str(plain), "none")
    assert source == f"file:{plain}" and torch.equal(model.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3)}, bad)
    with pytest.raises(CheckpointError, match="not a ResNet-18 backbone"):
        build_model(36, str(bad))
    with pytest.raises(CheckpointError, match="unknown --pretrained"):
        resolve_pretrained("no/such/file.pt")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError):
        load_backbone_file(junk)


def test_freeze_level_names_are_checked():
    with pytest.raises(ValueError, match="layer1"):
        CharNet(3).freeze("layer9")


def test_shipped_backbones_load_by_name():
    source, state = resolve_pretrained("glyphs-v1")
    assert source == "glyphs:glyph-resnet18.pt" and "layer4.1.conv2.weight" in state
    assert resolve_pretrained("glyphs")[0] == resolve_pretrained(DEFAULT_GLYPHS)[0]
    with pytest.raises(CheckpointError, match="unknown --pretrained"):
        resolve_pretrained("glyphs-v9")


def _random_model(method: str = "classify"):
    import torch

    from captcha.nn.networks import new_model

    torch.manual_seed(0)
    model = new_model(method, 6).eval()
    for m in model.modules():  # BatchNorm statistics that are not the identity, as a trained model's
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("method,size", [("classify", (32, 32)), ("classify", (64, 64)), ("ctc", (32, 96))])
def test_slimming_for_one_input_size_keeps_the_outputs(method, size):
    """Convolutions lose the kernel taps that meet only padding at the input size, and nothing else
    changes: at 32 px layer4's maps are 1x1 (its 3x3 convs become 1x1, the first keeps 2x2 of its
    taps; CTC's are one row high and keep their width); at 64 px every tap meets the image somewhere
    and nothing is cut."""
    import torch

    from captcha.nn.networks import slim_for_input

    model = _random_model(method)
    slim = slim_for_input(model, size)
    x = torch.randn(4, 3, *size)
    with torch.inference_mode():
        assert torch.allclose(slim(x), model(x), atol=1e-4)
    kernels = {n: m.kernel_size for n, m in slim.named_modules() if isinstance(m, torch.nn.Conv2d)}
    if size[0] == 32:  # the CTC reader's layer4 keeps its width: only the rows go
        wide = 3 if method == "ctc" else None
        assert kernels["layer4.0.conv1"] == (2, wide or 2) and kernels["layer4.1.conv2"] == (1, wide or 1)
        assert kernels["layer3.0.conv1"] == (3, 3) and kernels["conv1"] == (7, 7)
    else:
        assert kernels == {n: m.kernel_size for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert model.layer4[1].conv2.kernel_size == (3, 3)  # the model given is left as it was


def test_slimming_along_the_height_alone_reads_any_width():
    """Without ``along_width`` the columns of every kernel stay, so the copy made at one width gives the full
    model's outputs at another (a narrow input whose layer4 is one column wide would lose taps otherwise)."""
    import torch

    from captcha.nn.networks import slim_for_input

    model = _random_model("ctc")
    narrow = slim_for_input(model, (32, 8))
    free = slim_for_input(model, (32, 8), along_width=False)
    kernels = {n: m.kernel_size for n, m in free.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert kernels["layer4.1.conv2"] == (1, 3) and dict(narrow.named_modules())["layer4.1.conv2"].kernel_size == (1, 1)
    x = torch.randn(2, 3, 32, 64)
    with torch.inference_mode():
        assert torch.allclose(free(x), model(x), atol=1e-4)
        assert not torch.allclose(narrow(x), model(x), atol=1e-4)


def test_channels_reordered_most_used_first_compute_the_same_and_narrow_to_the_first():
    """Reordering layer4's channels and those inside each layer3 block by use changes no output; narrowing keeps
    the first of them (layer4's inner ones and the output the head reads, layer3's inner ones), and the narrowed
    network runs on the same inputs."""
    from captcha.nn.networks import (
        SeqNet,
        channel_energy,
        narrowed,
        new_model,
        order_channels,
        state_layer3_inner,
        state_width,
    )

    model = _random_model("ctc")
    x = torch.randn(3, 3, 32, 96)
    energy = channel_energy(model, x, batch_size=2)
    assert set(energy) == {"layer3.0", "layer3.1", "layer4.0", "layer4.1", "out"}
    assert [e.shape[0] for e in energy.values()] == [256, 256, 512, 512, 512]
    ordered = order_channels(model.state_dict(), energy)
    again = new_model("ctc", 6).eval()
    again.load_state_dict(ordered)
    assert torch.allclose(again(x), model(x), atol=1e-4)
    now = channel_energy(again, x)
    assert all(bool((e[:-1] >= e[1:]).all()) for e in now.values())  # most-used first
    slim = SeqNet(7, width=128, layer3_inner=64).eval()
    state = narrowed(ordered, 128, 64)
    slim.load_state_dict(state)
    assert (slim.width, slim.layer3_inner) == (128, 64) == (state_width(state), state_layer3_inner(state))
    assert slim.layer3[1].conv2.out_channels == 256 and slim(x).shape == model(x).shape  # the stream keeps 256
    assert state_layer3_inner(narrowed(ordered, 128)) == 256  # layer3 as it was unless asked
    assert narrowed(ordered, 512) is ordered
    with pytest.raises(Exception, match="ResNet-18's channels"):
        new_model("classify", 6, width=128)
    with pytest.raises(Exception, match="ResNet-18's channels"):
        new_model("classify", 6, layer3_inner=128)


def test_a_narrow_model_round_trips_through_its_checkpoint_and_a_wrong_width_is_refused():
    from captcha.charset import Charset
    from captcha.nn.networks import model_from_checkpoint, new_model

    model = new_model("ctc", 4, width=64).eval()
    ckpt = {"arch": "resnet18", "method": "ctc", "charset": Charset("AB12").to_dict(), "width": 64,
            "model": model.state_dict()}
    x = torch.randn(2, 3, 32, 96)
    assert torch.equal(model_from_checkpoint(ckpt)(x), model(x))
    for width in (512, 100, "64", None):
        with pytest.raises(CheckpointError, match="layer4 width"):
            model_from_checkpoint({**ckpt, "width": width})
    assert model_from_checkpoint({**ckpt, "width": 512, "model": new_model("ctc", 4).state_dict()}).width == 512
    older = {k: v for k, v in ckpt.items() if k != "width"}  # before widths were recorded: all were 512
    with pytest.raises(CheckpointError, match="layer4 width"):
        model_from_checkpoint(older)
    slim = new_model("ctc", 4, width=64, layer3_inner=32).eval()
    inner = {**ckpt, "layer3_inner": 32, "model": slim.state_dict()}
    assert torch.equal(model_from_checkpoint(inner)(x), slim(x))
    for bad in (256, 64, "32", None):
        with pytest.raises(CheckpointError, match="layer3 holds 32 inner channels"):
            model_from_checkpoint({**inner, "layer3_inner": bad})
    with pytest.raises(CheckpointError, match="layer3 holds 32 inner channels"):  # recorded before: 256
        model_from_checkpoint({k: v for k, v in inner.items() if k != "layer3_inner"})


def test_a_network_built_to_hold_a_state_draws_no_weights_and_takes_every_one():
    from captcha.nn.networks import model_holding, new_model

    state = new_model("classify", 6).eval().state_dict()
    state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}  # as shipped files keep them
    torch.manual_seed(7)
    before = torch.get_rng_state()
    model = model_holding(state, "classify", 6).eval()
    assert torch.equal(torch.get_rng_state(), before)  # no random initial weights drawn, then overwritten
    assert all(v.dtype == (torch.float32 if v.is_floating_point() else state[k].dtype) and v.device.type == "cpu"
               and torch.equal(v, state[k].to(v.dtype)) for k, v in model.state_dict().items())
    with pytest.raises(RuntimeError, match="Missing key"):
        model_holding({k: v for k, v in state.items() if k != "layer2.0.bn1.running_var"}, "classify", 6)
