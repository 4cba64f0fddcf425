"""A corpus of hostile and odd image files, made on the fly (shared by several test modules)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 60000, height: int = 60000) -> bytes:
    """A tiny PNG whose header claims a huge image."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        _png_chunk(b"IEND", b"")


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def make_corpus(folder: Path, good: Image.Image) -> dict[str, tuple[Path, bool]]:
    """name -> (path, readable?) for every odd kind of input."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = good.convert("RGB")
    w, h = rgb.size
    png = _save(rgb, "PNG")
    jpg = _save(rgb, "JPEG", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    items: dict[str, tuple[bytes, bool]] = {
        "empty.png": (b"", False),
        "truncated.png": (png[: len(png) // 2], False),
        "truncated.jpg": (jpg[: len(jpg) // 3], False),
        "text.png": (b"this is not an image\n", False),
        "bomb.png": (bomb_png(), False),
        "one-pixel.png": (_save(Image.new("RGB", (1, 1), "white"), "PNG"), True),
        "strip.png": (_save(Image.new("RGB", (10000, 1), "white"), "PNG"), True),
        "gray16.png": (_save(rgb.convert("L").point(lambda v: v * 256, "I").convert("I;16"), "PNG"), True),
        "cmyk.jpg": (_save(rgb.convert("CMYK"), "JPEG"), True),
        "palette-transparent.png": (_save(rgb.convert("P", palette=Image.ADAPTIVE), "PNG", transparency=0), True),
        "la.png": (_save(rgb.convert("LA"), "PNG"), True),
        "rgba.png": (_save(rgb.convert("RGBA"), "PNG"), True),
        "exif-rotated.jpg": (_save(rgb.rotate(90, expand=True), "JPEG", exif=exif), True),
        "good.png": (png, True),
        "spaced ünïcode name.png": (png, True),
    }
    frames = [rgb, rgb.transpose(Image.FLIP_LEFT_RIGHT)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    items["animated.gif"] = (buf.getvalue(), True)
    out = {}
    for name, (data, ok) in items.items():
        p = folder / name
        p.write_bytes(data)
        out[name] = (p, ok)
    d = folder / "directory.png"
    d.mkdir(exist_ok=True)
    out["directory.png"] = (d, False)
    out["missing.png"] = (folder / "missing.png", False)
    return out
