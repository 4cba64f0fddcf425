import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from PIL import Image

from captcha.cli import _StderrHandler, main
from captcha.nn.checkpoint import load_checkpoint

COMMANDS = ["data", "data synth", "data check", "train", "eval", "solve", "solve-batch", "pretrain", "label"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_explains_itself(cmd):
    res = CliRunner().invoke(main, cmd.split() + ["--help"])
    assert res.exit_code == 0 and "Usage:" in res.output and len(res.output.splitlines()) > 4


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "captcha", "--help"], capture_output=True, text=True, check=True)
    assert "train" in out.stdout


def test_synth_then_check(tmp_path):
    r = CliRunner()
    res = r.invoke(main, ["data", "synth", "--out-dir", str(tmp_path / "d"), "--train-per-class", "2",
                          "--val-per-class", "1", "--captchas", "3", "--charset", "AB"])
    assert res.exit_code == 0, res.output
    res = r.invoke(main, ["data", "check", "--data", str(tmp_path / "d"), "--charset", "A-B", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["usable"] and json.loads(res.output)["alphabet"] == "AB"
    (tmp_path / "d" / "chars" / "train" / "A" / "0000.png").write_bytes(b"")
    res = r.invoke(main, ["data", "check", "--data", str(tmp_path / "d"), "--charset", "AB"])
    assert res.exit_code == 1 and "0000.png" in res.output and "NOT usable" in res.output


def test_check_and_split_take_the_charset_the_labels_ask_for(flat_captchas, tmp_path):
    import shutil

    data = tmp_path / "signs"
    shutil.copytree(flat_captchas, data)
    rows = (data / "labels.csv").read_text().splitlines()
    rows[1] = rows[1][:-1] + "="
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    r = CliRunner()
    res = r.invoke(main, ["data", "check", "--data", str(data)])
    assert res.exit_code == 0 and "37 characters: 0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ=" in res.output, res.output
    res = r.invoke(main, ["data", "split", "--data", str(data), "--out-dir", str(tmp_path / "all")])
    assert res.exit_code == 0 and "32 training and 8 validation" in res.output and "left out" not in res.output
    res = r.invoke(main, ["data", "split", "--data", str(data), "--out-dir", str(tmp_path / "some"), "--charset", "ABC123"])
    assert res.exit_code == 0 and "31 training and 8 validation" in res.output and "left out: " in res.output, res.output
    assert "'='" in res.output and "more:" not in res.output


def test_solve_eval_and_errors(tiny_model, tiny_data, tmp_path):
    r = CliRunner()
    img = next((tiny_data / "captchas" / "val").glob("*.png"))
    res = r.invoke(main, ["solve", "--checkpoint", str(tiny_model), str(img)])
    assert res.exit_code == 0 and len(res.stdout.strip()) == 4  # stderr may say the model is being compiled
    res = r.invoke(main, ["solve", "--checkpoint", str(tiny_model), "--json", "-"], input=img.read_bytes())
    row = json.loads(res.stdout)
    assert len(row["text"]) == 4 and len(row["confidences"]) == 4 and "ms" in row
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    res = r.invoke(main, ["solve", "--checkpoint", str(tiny_model), str(img), str(bad)])
    assert res.exit_code == 1 and "not an image" in res.output  # one of two read
    res = r.invoke(main, ["solve", "--checkpoint", str(tiny_model), str(bad)])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "not an image" in res.output
    # many images are read in batches: one row each, in order, the bad one's error in its place
    many = [str(p) for p in sorted((tiny_data / "captchas" / "val").glob("*.png"))[:4]]
    res = r.invoke(main, ["solve", "--checkpoint", str(tiny_model), "--json", many[0], str(bad), *many[1:]])
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert res.exit_code == 1 and [row["file"] for row in rows] == [many[0], str(bad), *many[1:]]
    assert "not an image" in rows[1]["error"]
    one = [json.loads(r.invoke(main, ["solve", "--checkpoint", str(tiny_model), "--json", m]).stdout)["text"] for m in many]
    assert [row["text"] for row in rows if "text" in row] == one
    res = r.invoke(main, ["eval", "--val", "--checkpoint", str(tiny_model), "--out-dir", str(tmp_path / "ev"), "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["captchas"]["captchas"] == 20 and len(rep["captchas"]["position_acc"]) == 4
    assert (tmp_path / "ev" / "confusion.png").stat().st_size > 1000
    res = r.invoke(main, ["eval", "--val", "--checkpoint", str(tmp_path / "none.pt")])
    assert res.exit_code == 2 and "checkpoint not found" in res.output


def test_solve_reads_a_folder_or_a_glob(tiny_model, tiny_data, tmp_path):
    """A folder gives its images in order, named, as solve-batch takes them; an empty folder or a glob that
    matches nothing is an error line of its own, and the exit code counts what was read."""
    r = CliRunner()
    val = tiny_data / "captchas" / "val"
    images = sorted(str(p) for p in val.glob("*.png"))
    res = r.invoke(main, ["solve", "--checkpoint", str(tiny_model), str(val)])
    lines = res.stdout.splitlines()
    assert res.exit_code == 0 and [line.split("\t")[0] for line in lines] == images
    assert all(len(line.split("\t")[1]) == 4 for line in lines)
    res = r.invoke(main, ["solve", "--checkpoint", str(tiny_model), str(val / "*.png")])
    assert res.exit_code == 0 and res.stdout.splitlines() == lines
    empty = tmp_path / "empty"
    empty.mkdir()
    res = r.invoke(main, ["solve", "--checkpoint", str(tiny_model), str(empty), images[0]])
    assert res.exit_code == 1 and f"{empty}: no images there" in res.stderr and res.stdout == lines[0] + "\n"
    res = r.invoke(main, ["solve", "--checkpoint", str(tiny_model), str(empty), str(tmp_path / "none*.png")])
    assert res.exit_code == 2 and "matches no file" in res.stderr and not res.stdout


@pytest.fixture(scope="module")
def cli_trained(flat_captchas, tmp_path_factory):
    """A model trained through `captcha train --json` on the flat captchas (one quick fit, no refit): its path and
    the command's JSON."""
    out = tmp_path_factory.mktemp("cli-trained") / "m.pt"
    res = CliRunner().invoke(main, ["train", "--data", str(flat_captchas), "--out", str(out), "--charset", "ABC123",
                                    "--pretrained", "none", "--method", "classify", "--split", "equal", "--epochs",
                                    "1", "--input-size", "32", "32", "--freeze", "none", "--no-refit", "--json"])
    assert res.exit_code == 0, res.output
    return out, json.loads(res.stdout)


def test_training_compiles_its_model_for_solving(cli_trained, monkeypatch):
    """`captcha train` ends by compiling the model into the cache as the first `captcha solve` would (its
    ~10 s spent where the user is waiting anyway): solving it afterwards compiles nothing."""
    import captcha.inference.load as load

    out, result = cli_trained
    compiled = result["compiled"]
    assert compiled["precision"] in ("int8", "fp32") and load.cache_dir() in Path(compiled["onnx"]).parents

    def compile_again(*_args, **_kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(load.OnnxCache, "_export", compile_again)
    assert str(load.load_solver(out).backend.path) == compiled["onnx"]


def test_eval_on_the_training_folder_says_its_figures_overstate(cli_trained, flat_captchas):
    """Evaluated on the folder it trained on, a model's figures come with a warning counting the files it trained on
    (all but the ones it held out); on its held-out ones (--val) there is none."""
    out, _ = cli_trained
    held = len(load_checkpoint(out)["split"]["val_files"])
    res = CliRunner().invoke(main, ["eval", "--data", str(flat_captchas), "--checkpoint", str(out)])
    assert res.exit_code == 0, res.output
    assert f"warning: {40 - held} of the images in {flat_captchas} are files of the model's training data" in res.stderr
    assert 0 < held < 40
    res = CliRunner().invoke(main, ["eval", "--val", "--checkpoint", str(out)])
    assert res.exit_code == 0 and "warning" not in res.stderr


def test_batch_script(tiny_model, tiny_data, tmp_path):
    out = tmp_path / "p.csv"
    proc = subprocess.run([sys.executable, "scripts/solve_batch.py", str(tiny_data / "captchas" / "val"),
                           "--out", str(out), "--checkpoint", str(tiny_model)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == 21 and "captchas/s" in proc.stdout


def test_max_pixels_flag(tiny_model, tiny_data):
    img = next((tiny_data / "captchas" / "val").glob("*.png"))
    res = CliRunner().invoke(main, ["solve", "--checkpoint", str(tiny_model), "--max-pixels", "100", str(img)])
    assert res.exit_code == 2 and "over the limit of 100" in res.output  # not one image read: a user error


def test_eval_any_labelled_folder_and_show_errors(tiny_model, flat_captchas, tmp_path):
    """`captcha eval --data DIR` reads every captcha of a flat folder; --show-errors draws the misread ones."""
    r = CliRunner()
    res = r.invoke(main, ["eval", "--data", str(flat_captchas), "--checkpoint", str(tiny_model), "--json",
                          "--out-dir", str(tmp_path / "plain")])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["captchas"]["captchas"] == 40 and "errors" not in rep["files"]
    wrong = round(40 * (1 - rep["captchas"]["string_acc"]))
    assert wrong >= 2 and len(rep["errors"]) == min(wrong, 50)
    res = r.invoke(main, ["eval", "--data", str(flat_captchas), "--checkpoint", str(tiny_model), "--json",
                          "--show-errors", "2", "--out-dir", str(tmp_path / "shown")])
    sheet = json.loads(res.output)["files"]["errors"]
    assert sheet == str(tmp_path / "shown" / "errors.png")
    from PIL import Image

    assert Image.open(sheet).height > 40


def test_eval_says_which_labelled_captchas_it_left_out(tiny_model, flat_captchas, tmp_path):
    """A folder whose labels the model's characters cannot spell (or whose images cannot be read) is measured on the
    rest, and says so; a folder of nothing measurable is one line, exit 2."""
    import shutil

    from captcha.data.layout import labels_csv_rows

    folder = tmp_path / "site"
    shutil.copytree(flat_captchas, folder)
    rows = labels_csv_rows(folder / "labels.csv")
    (folder / "labels.csv").write_text("filename,label\n" + "".join(
        f"{name},{'X' + label[1:] if k < 3 else label}\n" for k, (name, label) in enumerate(rows)))  # X: not ABC123
    (folder / rows[3][0]).write_bytes(b"not an image")
    res = CliRunner().invoke(main, ["eval", "--data", str(folder), "--checkpoint", str(tiny_model), "--json",
                                    "--out-dir", str(tmp_path / "ev")])
    caps = json.loads(res.stdout)["captchas"]
    assert res.exit_code == 0 and caps["captchas"] == 36 and caps["left_out"] == 4, res.output
    assert "has characters not in the charset: 'X'" in caps["left_out_note"] and caps["left_out_note"].endswith("3 more")
    res = CliRunner().invoke(main, ["eval", "--data", str(folder), "--checkpoint", str(tiny_model),
                                    "--out-dir", str(tmp_path / "ev")])
    assert f"warning: left out of {folder} (4 not measured): " in res.output
    (folder / "labels.csv").write_text("filename,label\n" + "".join(f"{name},X{label[1:]}\n" for name, label in rows))
    res = CliRunner().invoke(main, ["eval", "--data", str(folder), "--checkpoint", str(tiny_model)])
    assert res.exit_code == 2 and "no labelled data to evaluate" in res.output and "and 39 more" in res.output


def test_version_and_quiet_verbose_logging(tiny_data):
    from captcha import __version__

    assert CliRunner().invoke(main, ["--version"]).output.strip() == f"captcha, version {__version__}"
    proc = subprocess.run([sys.executable, "-m", "captcha", "-v", "data", "check", "--data", str(tiny_data),
                           "--charset", "ABC123"], capture_output=True, text=True)
    assert proc.returncode == 0 and "usable" in proc.stdout
    assert "STREAM" not in proc.stderr and "PIL" not in proc.stderr  # other libraries' debug lines stay out


def test_every_default_is_shown_in_help():
    res = CliRunner().invoke(main, ["train", "--help"])
    text = " ".join(res.output.split())  # click wraps the help
    assert "[default: auto]" in text and "[default: adamw]" in text
    assert "[default: 16 whole captchas (ctc), 64 character crops (classify)]" in text  # --batch-size: by method


def test_no_option_shows_two_defaults():
    """An option whose help says its default in words is not also given click's "[default: ...]"."""
    def commands(group, path):
        for name, cmd in group.commands.items():
            yield path + [name], cmd
            if isinstance(cmd, click.Group):
                yield from commands(cmd, path + [name])

    for path, cmd in commands(main, []):
        ctx = click.Context(cmd, info_name=" ".join(path), **cmd.context_settings)
        for param in cmd.params:
            record = param.get_help_record(ctx)
            assert record is None or record[1].count("[default:") <= 1, (path, record)


def test_solve_with_no_checkpoint_reads_with_the_shipped_general_reader(tiny_data, tmp_path, monkeypatch):
    from captcha.data.synth import concat_captcha

    monkeypatch.chdir(tmp_path)  # no checkpoints/model.pt here
    cells = [Image.open(next((tiny_data / "chars" / "val" / c).glob("*.png"))) for c in "A1B2C3"]
    concat_captcha(cells[:5]).save(tmp_path / "five.png")
    res = CliRunner().invoke(main, ["solve", "--json", "--allow", "ABC123", str(tmp_path / "five.png")])
    assert res.exit_code == 0, res.output
    line = json.loads(res.output.strip().splitlines()[-1])
    assert set(line["text"]) <= set("ABC123") and 3 <= len(line["text"]) <= 7  # any length: no "trained on" warning
    assert not line["warnings"]
    bad = CliRunner().invoke(main, ["solve", "--allow", "A!", str(tmp_path / "five.png")])
    assert bad.exit_code == 2 and "--allow" in bad.output
    for n in (3, 6):  # the site's length, told: the reading holds exactly that many
        held = CliRunner().invoke(main, ["solve", "--json", "--length", str(n), str(tmp_path / "five.png")])
        assert held.exit_code == 0 and len(json.loads(held.output.strip().splitlines()[-1])["text"]) == n


def test_ctrl_c_in_training_says_whether_resume_can_go_on(tmp_path, monkeypatch):
    """Interrupted, `captcha train` ends with exit code 130 and one line: --resume where this run (or the run it
    resumes) saved <out>.last.pt, else run it again (a stale file of an earlier run is not this run's to resume)."""
    import os

    import captcha.training.train as training
    from captcha.nn.checkpoint import last_file

    out = tmp_path / "m.pt"
    last = last_file(out)

    def interrupted(cfg, **_kw):
        if cfg.epochs == 2:  # this run saves before it is interrupted
            last.write_bytes(b"saved")
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train", interrupted)
    args = ["train", "--data", str(tmp_path), "--out", str(out)]
    res = CliRunner().invoke(main, args + ["--epochs", "1"])
    assert res.exit_code == 130 and "interrupted before the run saved anything" in res.output
    res = CliRunner().invoke(main, args + ["--epochs", "2"])
    assert res.exit_code == 130 and f"interrupted: {last} holds the run" in res.output and "--resume" in res.output
    os.utime(last, (0, 0))  # an earlier run's
    res = CliRunner().invoke(main, args + ["--epochs", "1"])
    assert res.exit_code == 130 and "interrupted before the run saved anything" in res.output
    res = CliRunner().invoke(main, args + ["--epochs", "1", "--resume"])
    assert res.exit_code == 130 and f"interrupted: {last} holds the run" in res.output
    assert "Traceback" not in res.output and "Aborted" not in res.output


def test_progress_lines_only_on_a_terminal(monkeypatch):
    """A progress record (compiling a model, ~10 s) shows on a terminal; a script reading stderr sees errors alone."""
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, shown in ((io.StringIO(), ""), (Terminal(), "compiling m.pt\nerror\n")):
        handler = _StderrHandler()
        monkeypatch.setattr(sys, "stderr", stream)
        handler.handle(logging.makeLogRecord({"msg": "compiling m.pt", "progress": True, "levelno": logging.INFO}))
        handler.handle(logging.makeLogRecord({"msg": "error", "levelno": logging.ERROR}))
        assert stream.getvalue() == (shown or "error\n")


def test_each_warning_is_written_once_per_command(monkeypatch):
    """Training decodes a site's images once per method it probes: an unreadable image is said once, and said
    again by the next command run in the same process."""
    handler = _StderrHandler()
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    for msg, level in (("skipping a.png: empty", logging.WARNING), ("epoch 1", logging.INFO),
                       ("skipping a.png: empty", logging.WARNING), ("epoch 1", logging.INFO)):
        handler.handle(logging.makeLogRecord({"msg": msg, "levelno": level}))
    assert stream.getvalue() == "skipping a.png: empty\nepoch 1\nepoch 1\n"
    logger = logging.getLogger("captcha")
    monkeypatch.setattr(logger, "handlers", [handler])
    res = CliRunner().invoke(main, ["cache", "--help"])  # any command: it starts with no warning said
    assert res.exit_code == 0 and not handler.warned


def test_eval_reads_with_the_general_reader_until_a_model_is_trained(flat_captchas, tmp_path, monkeypatch):
    """`captcha eval --data DIR` with no model yet measures the shipped reader as `captcha solve` reads (held to
    --allow), writing its plots in the current folder, never into the package; --val of it is one clear line."""
    from captcha.inference.load import general_reader_path

    monkeypatch.chdir(tmp_path)
    shipped = sorted(general_reader_path().parent.iterdir())
    res = CliRunner().invoke(main, ["eval", "--data", str(flat_captchas), "--allow", "ABC123", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["captchas"]["captchas"] == 40 and rep["backend"] == "onnx-int8" and rep["captchas"]["string_acc"] >= 0.5
    assert set("".join(e["pred"] for e in rep["errors"])) <= set("ABC123")
    assert rep["files"]["confusion"] == str(tmp_path / "reader-ctc-eval" / "confusion.png")
    assert sorted(general_reader_path().parent.iterdir()) == shipped
    res = CliRunner().invoke(main, ["eval", "--val", "--checkpoint", str(general_reader_path())])
    assert res.exit_code == 2 and "records no training data" in res.stderr and "--data DIR" in res.stderr
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_data_check_finds_labels_that_do_not_match_their_images(tmp_path):
    """Rows shifted by one in labels.csv: the shipped reader, sure of most captchas, reads them otherwise."""
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"), 34)
    texts = ["A7K2", "B3XP", "Q9MZ", "H4TR", "W2EN", "K8DV", "P5GS", "Z6CJ", "M3RB", "T7HU", "E9FL", "N2WY"]
    site = tmp_path / "site"
    site.mkdir()
    for i, text in enumerate(texts):
        img = Image.new("RGB", (160, 50), "white")
        ImageDraw.Draw(img).text((14, 6), text, fill=(20, 20, 60), font=font)
        img.save(site / f"c{i:02d}.png")
    rows = [f"c{i:02d}.png,{text}" for i, text in enumerate(texts)]
    (site / "labels.csv").write_text("filename,label\n" + "\n".join(rows) + "\n")
    res = CliRunner().invoke(main, ["data", "check", "--data", str(site)])
    assert res.exit_code == 0 and res.output.strip().endswith("usable"), res.output
    shifted = [f"c{i:02d}.png,{texts[(i + 1) % len(texts)]}" for i in range(len(texts))]
    (site / "labels.csv").write_text("filename,label\n" + "\n".join(shifted) + "\n")
    res = CliRunner().invoke(main, ["data", "check", "--data", str(site)])
    assert res.exit_code == 1 and "captchas it is sure of otherwise than labelled" in res.output, res.output
    assert "NOT usable" in res.output


def test_data_check_says_copies_apart_from_problems(flat_captchas, tmp_path):
    """A copy of another captcha is a note and the folder stays usable (exit 0); a copy labelled otherwise is a
    problem (exit 1)."""
    import shutil

    site = tmp_path / "site"
    shutil.copytree(flat_captchas, site)
    name, label = (site / "labels.csv").read_text().splitlines()[1].split(",")
    shutil.copy(site / name, site / "again.png")
    with open(site / "labels.csv", "a") as f:
        f.write(f"again.png,{label}\n")
    res = CliRunner().invoke(main, ["data", "check", "--data", str(site), "--charset", "ABC123"])
    assert res.exit_code == 0, res.output
    assert f"1 note(s), which leave it usable:\n  - {site / 'again.png'}: a copy of {name}" in res.output
    assert "problem" not in res.output and res.output.strip().endswith("usable")
    (site / "labels.csv").write_text((site / "labels.csv").read_text().replace(f"again.png,{label}", "again.png,CCCC"))
    res = CliRunner().invoke(main, ["data", "check", "--data", str(site), "--charset", "ABC123"])
    assert res.exit_code == 1 and "2 problem(s):" in res.output and "one label is wrong" in res.output, res.output


def test_cache_info_names_the_runtime_and_a_wrong_one_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPTCHA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CAPTCHA_ONNX_RUNTIME", "onnxruntime")
    res = CliRunner().invoke(main, ["cache", "info", "--json"])
    info = json.loads(res.output)
    assert res.exit_code == 0 and info["runtime"] == "onnxruntime" and info["openvino_networks"] == []
    monkeypatch.setenv("CAPTCHA_ONNX_RUNTIME", "tensorrt")
    res = CliRunner().invoke(main, ["cache", "info"])
    assert res.exit_code == 2 and "unknown ONNX runtime 'tensorrt'" in res.output and "Traceback" not in res.output
