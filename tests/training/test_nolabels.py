import shutil

import pytest
from click.testing import CliRunner

import captcha.training.nolabels as nolabels
from captcha.cli import main
from captcha.config import PSEUDO_CONFIDENCE, TrainConfig
from captcha.errors import DataError
from captcha.nn.checkpoint import load_checkpoint


def test_a_sites_lengths_are_those_read_surely_a_third_as_often_as_the_commonest():
    def readings(*counts):
        return [("p", "A" * n) for n, c in counts for _ in range(c)]

    assert nolabels.site_lengths(readings((6, 129), (5, 33), (4, 3))) == [6]  # a glyph dropped: not a length
    assert nolabels.site_lengths(readings((4, 154), (5, 114), (6, 67))) == [4, 5, 6]
    assert nolabels.site_lengths(readings((6, 129), (5, 33)), told=5) == [5]
    assert nolabels.site_lengths([]) == []


@pytest.fixture()
def site(flat_captchas, tmp_path):
    """The flat captchas' images with no labels, two of them in a subfolder, and their true labels by path."""
    folder = tmp_path / "site"
    (folder / "more").mkdir(parents=True)
    truth = {}
    for k, line in enumerate((flat_captchas / "labels.csv").read_text().splitlines()[1:]):
        name, label = line.split(",")
        dest = folder / ("more" if k < 2 else "") / name
        shutil.copy(flat_captchas / name, dest)
        truth[str(dest)] = label
    return folder, truth


def _fake_reading(monkeypatch, truth, wrong_length=()):
    """Every reader reads the truth (``wrong_length`` paths one character short), and records which model read."""
    models = []

    class Loaded:
        def __init__(self, path):
            models.append(str(path))

        def allow(self, chars):
            return self

    def readings(solver, paths, length=None, threshold=PSEUDO_CONFIDENCE, failed=None):
        failed.extend((p, f"{p}: cannot open") for p in paths if truth[p] is None)
        out = [(p, truth[p][:-1] if p in wrong_length else truth[p]) for p in paths if truth[p] is not None]
        return [(p, t) for p, t in out if t and (not length or len(t) == length)]

    monkeypatch.setattr(nolabels, "load_solver", Loaded)
    monkeypatch.setattr(nolabels, "confident_readings", readings)
    return models


def test_a_site_is_learned_from_its_captchas_alone_in_rounds(site, tmp_path, monkeypatch):
    """Round 1 learns the general reader's sure readings of the site's length; round 2 the first model's; each
    round's readings are a labelled folder beside the model, which the model records as its data."""
    folder, truth = site
    short = [p for p in sorted(truth) if "/more/" not in p][:3]
    models = _fake_reading(monkeypatch, truth, wrong_length=short)
    monkeypatch.setattr(nolabels, "UNLABELLED_MIN", 10)
    out = tmp_path / "out" / "site.pt"
    said: list[str] = []
    cfg = TrainConfig(out=str(out), unlabelled=str(folder), charset="ABC123", pretrained="none", method="classify",
                      split="equal", epochs=1, batch_size=16, aug_passes=1, size=(32, 32), refit=False)
    result = nolabels.train_unlabelled(cfg, say=said.append)

    assert models == [str(nolabels.general_reader_path()), str(out.with_name("site.round1.pt"))]
    rounds = result["no_labels"]["rounds"]
    assert [r["pseudo_labelled"] for r in rounds] == [37, 37] and {r["length"] for r in rounds} == {4}
    for k in (1, 2):
        written = out.with_name(f"site.round{k}")
        rows = (written / "labels.csv").read_text().splitlines()
        assert rows[0] == "filename,label" and len(rows) == 38
        labels = dict(row.split(",") for row in rows[1:])
        assert sum(name.startswith("more_") for name in labels) == 2  # a subfolder's images, named by their path
        assert all((written / name).is_file() for name in labels)
        assert sorted(labels.values()) == sorted(truth[p] for p in truth if p not in short)
    assert out.is_file() and out.with_name("site.round1.pt").is_file()
    assert load_checkpoint(out)["train_config"]["data"] == str(out.with_name("site.round2"))
    assert any(line.startswith("no labels, round 1 of 2: the general reader read 37 of 40 captchas") for line in said)
    assert (folder / "more").is_dir() and not (folder / "labels.csv").exists()  # the user's folder is left as it was
    assert not any("is not read" in line for line in said)
    # --resume of the finished run reads the site again and trains neither round again; the figures are said to be
    # agreement with the readings, not accuracy
    res = CliRunner().invoke(main, ["train", "--unlabelled", str(folder), "--out", str(out), "--resume", "--charset",
                                    "ABC123", "--pretrained", "none", "--method", "classify", "--split", "equal",
                                    "--epochs", "1", "--input-size", "32", "32", "--no-refit"])
    assert res.exit_code == 0 and res.output.count("is a finished run of 1 epochs") == 2, res.output
    assert "no labels: those figures compare the model with the readings it learned from" in res.output
    assert f"`captcha eval --data DIR --checkpoint {out}`" in res.output


def test_too_few_sure_readings_are_one_clear_line_and_exit_2(site, tmp_path, monkeypatch):
    folder, truth = site
    few = {p: t for p, t in list(truth.items())[:5]}
    _fake_reading(monkeypatch, {**truth, **{p: "" for p in truth if p not in few}})
    with pytest.raises(DataError, match=r"the general reader read only 5 of its 40 captchas with confidence >= 0.9, "
                                        r"too few to learn the site from \(at least 50\); label some of them"):
        nolabels.train_unlabelled(TrainConfig(out=str(tmp_path / "m.pt"), unlabelled=str(folder)))
    res = CliRunner().invoke(main, ["train", "--unlabelled", str(folder), "--out", str(tmp_path / "m.pt")])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    # a labels.csv in the folder is said not to be read; images that cannot be read are said, once
    said: list[str] = []
    (folder / "labels.csv").write_text("filename,label\n")
    broken = sorted(p for p in truth if p not in few)[:2]
    _fake_reading(monkeypatch, {**truth, **{p: "" for p in truth if p not in few}, **{p: None for p in broken}})
    with pytest.raises(DataError, match="too few"):
        nolabels.train_unlabelled(TrainConfig(out=str(tmp_path / "m.pt"), unlabelled=str(folder)), say=said.append)
    assert said == [f"--unlabelled {folder}: its labels.csv is not read (learning with no labels; `captcha train "
                    f"--data {folder}` trains on those labels)",
                    f"left out of {folder} (2 of its 40 images could not be read): {broken[0]}: cannot open; and 1 more"]
    assert "too few to learn the site from" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "m.round1").exists() and not (tmp_path / "data").exists()  # no course data made either


def test_ctrl_c_in_the_first_round_says_resume_goes_on_from_it(tmp_path, monkeypatch):
    from captcha.nn.checkpoint import last_file

    out = tmp_path / "m.pt"
    first = last_file(nolabels.round_checkpoint(out, 1, nolabels.UNLABELLED_ROUNDS))

    def interrupted(cfg, **_kw):
        first.write_bytes(b"saved")
        raise KeyboardInterrupt

    monkeypatch.setattr(nolabels, "train_unlabelled", interrupted)
    res = CliRunner().invoke(main, ["train", "--unlabelled", str(tmp_path), "--out", str(out)])
    assert res.exit_code == 130 and f"interrupted: {first} holds the run" in res.output and "--resume" in res.output


def test_a_first_round_model_sure_of_too_few_is_kept_rather_than_a_second_round_on_nothing(site, tmp_path,
                                                                                          monkeypatch):
    """A budget too short to learn the site leaves round 1's model sure of next to nothing: the run keeps it as
    --out and says why, where a second round on no captchas would end in an error and lose the first."""
    folder, truth = site
    calls = []
    _fake_reading(monkeypatch, truth)
    sure_then_not = nolabels.confident_readings

    def readings(solver, paths, length=None, threshold=PSEUDO_CONFIDENCE, failed=None):
        calls.append(solver)
        return sure_then_not(solver, paths, length, threshold, failed) if len(calls) == 1 else []

    monkeypatch.setattr(nolabels, "confident_readings", readings)
    monkeypatch.setattr(nolabels, "UNLABELLED_MIN", 10)
    out = tmp_path / "site.pt"
    said: list[str] = []
    cfg = TrainConfig(out=str(out), unlabelled=str(folder), charset="ABC123", pretrained="none", method="classify",
                      split="equal", epochs=1, batch_size=16, aug_passes=1, size=(32, 32), refit=False)
    result = nolabels.train_unlabelled(cfg, say=said.append)
    assert len(calls) == 2 and result["checkpoint"] == str(out)
    assert out.read_bytes() == out.with_name("site.round1.pt").read_bytes()
    assert [r["pseudo_labelled"] for r in result["no_labels"]["rounds"]] == [40]
    assert said[-1] == (f"no labels, round 2 of 2: round 1's model read only 0 of 40 captchas with confidence >= 0.9, "
                        f"too few for another round (at least 10); {out} is round 1's model (a longer --budget "
                        "learns more)")
    assert not out.with_name("site.round2").exists()
