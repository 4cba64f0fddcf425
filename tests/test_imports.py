"""The package's shape: imports run one way down the pipeline, with no circles and no hidden imports.

Read from the source (AST), so the check covers every module, imported or not.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "captcha"

# floors of the pipeline, bottom first: a module imports only from lower floors or its own subpackage
FLOORS = {"errors": 0, "charset": 0.5, "config": 1, "data": 2, "nn": 2, "inference": 3, "eval": 4, "training": 5,
          "bench": 6, "label": 6, "cli": 7, "__main__": 8}
# third-party packages a function may import late (heavy, and optional on some path), with the reason beside it
LATE_OK = ("torch", "onnxruntime", "openvino", "onnx", "fastapi", "uvicorn", "sklearn")  # sklearn: only the splitter probe


def modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        out[name] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return out


def target(module: str, node: ast.ImportFrom | ast.Import, is_pkg: bool) -> list[str]:
    """Absolute names a node imports (``from . import x`` resolves against the module's package)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level == 0:
        return [node.module or ""]
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return [".".join(base + ([node.module] if node.module else []))]


def internal_edges(only_top_level: bool) -> dict[str, set[str]]:
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, tree in mods.items():
        is_pkg = (PACKAGE.parent / name.replace(".", "/") / "__init__.py").is_file()
        nodes = tree.body if only_top_level else list(ast.walk(tree))
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for t in target(name, node, is_pkg):
                    while t and t not in mods:
                        t = t.rpartition(".")[0]
                    if t and t != name and t != "captcha":
                        edges[name].add(t)
    return edges


def floor(module: str) -> int:
    parts = module.split(".")
    return FLOORS[parts[1]] if len(parts) > 1 else -1


def test_no_import_circles():
    edges = internal_edges(only_top_level=False)
    seen, stack = set(), []

    def visit(m: str) -> None:
        if m in stack:
            pytest.fail("import circle: " + " -> ".join(stack[stack.index(m):] + [m]))
        if m in seen:
            return
        stack.append(m)
        for n in sorted(edges[m]):
            visit(n)
        stack.pop()
        seen.add(m)

    for m in sorted(edges):
        visit(m)


def test_imports_run_down_the_pipeline():
    wrong = []
    for m, targets in internal_edges(only_top_level=False).items():
        if m == "captcha":
            continue
        for t in targets:
            same_package = m.split(".")[:2] == t.split(".")[:2]
            if not same_package and floor(t) >= floor(m):
                wrong.append(f"{m} -> {t}")
    assert not wrong, "imports up the pipeline: " + ", ".join(sorted(wrong))


def test_function_local_imports_are_only_the_optional_heavy_ones():
    """Late imports are allowed for torch/onnxruntime/fastapi/sklearn... (and the torch side of the package,
    from the CLI and the loader, which must not load torch on the ONNX path), each with a reason."""
    bad = []
    for name, tree in modules().items():
        source = (PACKAGE.parent / (name.replace(".", "/") + ".py")).read_text(encoding="utf-8").splitlines() \
            if not name.endswith("__init__") and (PACKAGE.parent / (name.replace(".", "/") + ".py")).is_file() else []
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            late = [n for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))]
            for node in late:
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                heavy = all(n.split(".")[0] in LATE_OK for n in names) and isinstance(node, ast.Import) or \
                    (isinstance(node, ast.ImportFrom) and node.level == 0 and names[0].split(".")[0] in LATE_OK)
                torch_side = isinstance(node, ast.ImportFrom) and node.level > 0 and name in (
                    "captcha.cli", "captcha.inference.load")
                if not (heavy or torch_side):
                    bad.append(f"{name}:{node.lineno} {ast.unparse(node)}")
                    continue
                if name == "captcha.cli":
                    continue  # the module docstring gives the one reason for all of them
                first = min(n.lineno for n in late)
                if not any("#" in source[i - 1] for i in range(max(1, first - 1), node.lineno + 1)):
                    bad.append(f"{name}:{node.lineno} has no comment saying why it is late")
    assert not bad, "\n".join(bad)


def test_the_onnx_path_never_loads_torch(tmp_path):
    """From the CLI's module to a Solver over an .onnx file: torch stays out of sys.modules, and scipy (a quarter
    of a second of every `captcha solve`) too."""
    code = ("import sys; import captcha.cli, captcha.inference.load, captcha.inference.batch; "
            "print('torch' in sys.modules, 'scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"
