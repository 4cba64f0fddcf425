"""Carry the pretraining font faces to a GPU machine that has none (bench/gpu_reader.sh).

The faces the reader's synthesis draws from (``fonts.pretraining_faces``) weigh ~96 MB, more than a
device call carries beside the package. Cut to the printable ASCII glyphs (fontTools' subsetter keeps
each kept glyph's outline and hinting as they are) they weigh a few MB:

    python bench/gpu_fonts.py pack .gpu/fonts      # here: subset, check every glyph renders the same, manifest
    python bench/gpu_fonts.py unpack .gpu/fonts    # there: Debian faces to their own paths, PyPI font packages
                                                   # to .gpu/fonts/pypi (put it on PYTHONPATH); checks the count
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from fontTools import subset
from PIL import Image, ImageDraw, ImageFont

from captcha.data.fonts import LATIN, pretraining_faces, pypi_folders

KEEP = "".join(chr(c) for c in range(0x20, 0x7F))


def _glyphs(path: str) -> np.ndarray:
    """Every 0-9A-Za-z glyph of the face at ``path`` rendered at 40 px, side by side."""
    font = ImageFont.truetype(path, 40)
    img = Image.new("L", (48 * len(LATIN), 64), 0)
    draw = ImageDraw.Draw(img)
    for i, c in enumerate(LATIN):
        draw.text((48 * i + 4, 4), c, font=font, fill=255)
    return np.asarray(img)


def _cut(src: Path, dst: Path) -> None:
    """The face at ``src`` cut to printable ASCII (outlines, hinting, names and layout tables kept), at ``dst``."""
    options = subset.Options()
    options.name_IDs, options.name_languages, options.notdef_outline = ["*"], ["*"], True
    options.layout_features, options.glyph_names = ["*"], True
    font = subset.load_font(str(src), options)
    sub = subset.Subsetter(options)
    sub.populate(text=KEEP)
    sub.subset(font)
    dst.parent.mkdir(parents=True, exist_ok=True)
    subset.save_font(font, str(dst), options)


def pack(out: Path) -> None:
    """Subset every pretraining face into ``out`` (Debian faces under sys/<absolute path>, PyPI packages under
    pypi/<module>/) with a manifest; stops if a subset face renders any glyph differently."""
    faces, rows = pretraining_faces(), []
    pypi_roots = pypi_folders()
    for module in pypi_roots:
        for extra in pypi_roots[module].rglob("*"):  # __init__.py and the licence file: not fonts
            if extra.is_file() and extra.suffix.lower() not in (".ttf", ".otf", ".pyc"):
                target = out / "pypi" / module / extra.relative_to(pypi_roots[module])
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(extra, target)
    for face in faces:
        kind = face.source.split(":")[0]
        if kind == "matplotlib":  # matplotlib's own faces come with matplotlib there
            rows.append({"path": face.path, "source": face.source, "carried": None})
            continue
        if kind == "pypi":
            module = face.source.split(":")[1].replace("-", "_")
            rel = Path("pypi") / module / Path(face.path).relative_to(pypi_roots[module])
        else:
            rel = Path("sys") / Path(face.path).relative_to("/")
        _cut(Path(face.path), out / rel)
        if not np.array_equal(_glyphs(face.path), _glyphs(str(out / rel))):
            sys.exit(f"{face.path}: its subset renders a glyph differently; not carried")
        rows.append({"path": face.path, "source": face.source, "carried": str(rel)})
    (out / "manifest.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{len(rows)} faces ({sum(r['carried'] is not None for r in rows)} carried) in {out}: {size / 1e6:.1f} MB")


def unpack(src: Path, root: Path = Path("/")) -> None:
    """Put the carried Debian faces back at their own paths under ``root``; check that pretraining finds every
    packed face (with ``src``/pypi on PYTHONPATH, which the caller sets before Python starts)."""
    rows = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
    for row in rows:
        if row["carried"] and row["carried"].startswith("sys/"):
            target = root / Path(row["carried"]).relative_to("sys")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / row["carried"], target)
    found = pretraining_faces()
    names = {Path(f.path).name for f in found}
    missing = [r["path"] for r in rows if Path(r["path"]).name not in names]
    print(f"pretraining faces here: {len(found)} (packed {len(rows)}); missing: {missing or 'none'}")
    if missing:
        sys.exit(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("pack", "unpack"))
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    pack(args.folder) if args.action == "pack" else unpack(args.folder)
