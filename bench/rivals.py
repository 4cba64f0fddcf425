"""The general-purpose solvers the benches compare with, behind one call (imported by the bench scripts)."""

from __future__ import annotations

from typing import Callable


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
