"""The README's code blocks work as written: Python blocks run on tiny data, every command line parses."""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from captcha.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def command_lines() -> list[list[str]]:
    """Every `captcha ...` invocation in the bash blocks (also after `python -m`, torchrun, the batch script)."""
    found = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s#.*$", "", line)
            for part in re.split(r"&&|\||;", line):
                words = shlex.split(part)
                if "captcha" in words:
                    found.append(words[words.index("captcha") + 1:])
                elif words[:2] == ["python", "scripts/solve_batch.py"]:
                    found.append(["solve-batch"] + words[2:])
    return found


def parse(args: list[str]) -> click.Command:
    """Parse ``args`` as the `captcha` command would, down to the leaf command, without running it."""
    cmd: click.Command = main
    ctx, name = None, "captcha"
    while True:
        ctx = cmd.make_context(name, list(args), parent=ctx)
        if not isinstance(cmd, click.Group):
            return cmd
        name, cmd, args = cmd.resolve_command(ctx, ctx._protected_args + ctx.args)


def test_the_readme_names_commands():
    assert len(command_lines()) >= 20


@pytest.mark.parametrize("args", command_lines(), ids=lambda a: " ".join(a)[:60])
def test_every_readme_command_line_parses(args):
    try:
        parse(args)
    except click.BadParameter as exc:
        assert "does not exist" in exc.format_message(), exc.format_message()  # example files, not a syntax error
    except SystemExit as exc:  # the CLI's one-line error path
        pytest.fail(f"`captcha {' '.join(args)}` does not parse (exit {exc.code})")


def test_python_blocks_run_as_written(tiny_model, tiny_data, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(tiny_model, tmp_path / "checkpoints" / "model.pt")
    shutil.copytree(tiny_data / "captchas" / "val", tmp_path / "captchas")
    shutil.copy(next((tmp_path / "captchas").glob("*.png")), tmp_path / "captcha.png")
    (tmp_path / "captchas" / "broken.png").write_bytes(b"not an image")
    code = blocks("python")
    assert code
    for block in code:
        proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        lines = proc.stdout.splitlines()
        # the captcha read by the general reader, then by the trained model, then one row per file
        assert lines[0].strip() and len(lines[1]) == 4 and len(lines) == 2 + 21
        assert sum("broken.png" in ln and "not an image" in ln for ln in lines) == 1
