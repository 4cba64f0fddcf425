"""The wheel a user installs carries the shipped backbone, and a normal install finds it."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from captcha.config import SHIPPED_READER, SHIPPED_READER_ONNX
from captcha.nn.networks import DEFAULT_GLYPHS, SHIPPED_BACKBONES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src") / "captcha-transfer"
    anywhere = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", ".pytest_cache")
    top = {"build", "dist", "data", "runs", "checkpoints"}  # the repository's own folders, not captcha/data

    def ignore(folder: str, names: list[str]) -> set[str]:
        return set(anywhere(folder, names)) | (top & set(names) if Path(folder) == ROOT else set())

    shutil.copytree(ROOT, src, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(src)], check=True, capture_output=True, text=True)
    (whl,) = out.glob("captcha_transfer-*.whl")
    return whl


def test_the_wheel_carries_the_backbone_and_its_card(wheel):
    with zipfile.ZipFile(wheel) as zf:
        sizes = {i.filename: i.file_size for i in zf.infolist()}
    assert "captcha/label/static/index.html" in sizes  # the labelling page
    for name in (*SHIPPED_BACKBONES.values(), SHIPPED_READER):  # every backbone, the reader, their cards
        assert sizes[f"captcha/weights/{name}"] > 10_000_000
        assert f"captcha/weights/{name[:-3]}.md" in sizes
    assert sizes[f"captcha/weights/{SHIPPED_READER_ONNX}"] > 5_000_000  # solving with no training compiles nothing


def test_the_wheel_carries_every_module_of_the_package(wheel):
    """Every subpackage is a regular package (find: skips folders without __init__.py)."""
    with zipfile.ZipFile(wheel) as zf:
        shipped = {n for n in zf.namelist() if n.startswith("captcha/") and n.endswith(".py")}
    source = {p.relative_to(ROOT).as_posix() for p in (ROOT / "captcha").rglob("*.py") if "__pycache__" not in p.parts}
    assert source - shipped == set()


def test_an_installed_wheel_trains_from_the_shipped_backbone(wheel, tmp_path):
    """Installed outside the source tree, --pretrained auto resolves to the glyph backbone, not to random init."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, text=True)
    code = ("import captcha, captcha.nn.networks as m; print(captcha.__file__); print(m.shipped_backbone()); "
            "import captcha.training.train as t; assert t.__file__.startswith(captcha.__path__[0]), t.__file__; "
            "print(m.resolve_pretrained('auto')[0]); from captcha.inference.load import solving_checkpoint; "
            "print(solving_checkpoint(None))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": ""},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0].startswith(str(target)) and out[1].startswith(str(target))
    assert out[2] == f"glyphs:{SHIPPED_BACKBONES[DEFAULT_GLYPHS]}"
    assert out[3].startswith(str(target)) and out[3].endswith(SHIPPED_READER)  # solving with no training


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    rows = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return [(r.split(None, 1)[0], r.split(None, 1)[1] if " " in r else "") for r in rows]


def test_the_dockerfile_is_slim_non_root_and_checks_its_health():
    steps = _dockerfile()
    froms = [a for i, a in steps if i == "FROM"]
    assert froms and all("slim" in f for f in froms)
    final = steps[max(k for k, (i, _) in enumerate(steps) if i == "FROM"):]
    users = [a for i, a in final if i == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(i == "HEALTHCHECK" and "/ready" in a for i, a in final)
    entry = next(json.loads(a) for i, a in final if i == "ENTRYPOINT")
    assert entry[:2] == ["captcha", "serve"] and "0.0.0.0" in entry


def test_the_dockerfiles_steps_run_here_without_docker(wheel, tmp_path):
    """No docker on this machine: the image's steps in order, on the wheel the build stage makes
    (test_packaging's, built the same way): install it, start the entry point, run the HEALTHCHECK."""
    import socket
    import time

    steps = _dockerfile()
    assert any(i == "RUN" and "pip wheel" in a and "--no-deps" in a for i, a in steps)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, text=True)
    entry = next(json.loads(a) for i, a in steps if i == "ENTRYPOINT")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [a if a != "8000" else str(port) for a in entry[1:]]
    args[args.index("0.0.0.0")] = "127.0.0.1"  # the same command, kept off the network in a test
    env = {"PYTHONPATH": str(target), "PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
           "CAPTCHA_CACHE": str(tmp_path / "cache")}
    server = subprocess.Popen([sys.executable, "-m", "captcha", *args, "--backend", "torch"], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        check = json.loads(next(a for i, a in steps if i == "HEALTHCHECK").split("CMD", 1)[1])
        check = [c.replace("8000", str(port)) for c in check]
        check[0] = sys.executable
        for _ in range(120):
            if subprocess.run(check, capture_output=True).returncode == 0:
                break
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            time.sleep(0.5)
        else:
            raise AssertionError("the HEALTHCHECK never passed")
    finally:
        server.terminate()
        server.wait(20)
