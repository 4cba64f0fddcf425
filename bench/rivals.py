"""The general-purpose solvers the benches compare with, behind one call (imported by the bench scripts)."""

from __future__ import annotations

import io
from typing import Callable

from captcha.data.images import load_image
from captcha.data.svg import looks_like_svg


def ddddocr_reader(chars: str) -> Callable[[bytes], str] | None:
    """ddddocr's default model as image bytes -> upper-case text, restricted to ``chars`` in either case
    (how the benches compare with it); None when ddddocr is not installed (`pip install ddddocr`)."""
    try:
        import ddddocr
    except ImportError:
        return None
    ocr = ddddocr.DdddOcr(show_ad=False)
    ocr.set_ranges(chars.upper() + chars.lower())
    return lambda data: ocr.classification(data).upper()


def rival_input(data: bytes) -> bytes:
    """An image as a general-purpose solver is handed it: an SVG drawn as png first by this package's renderer as the
    page shows it (they open no SVG, so their users convert one first), any other image as it is."""
    if not looks_like_svg(data):
        return data
    out = io.BytesIO()
    load_image(data, svg_apart=False).save(out, "PNG")
    return out.getvalue()
