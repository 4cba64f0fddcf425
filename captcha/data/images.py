"""Decoding untrusted image files into RGB pixels, safely and with one error type.

Kept free of torch so the ONNX solving path stays light.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from ..config import ANIMATION_FRAMES, DEFAULT_MAX_PIXELS, SVG_APART
from ..errors import ImageError
from .svg import MAX_SVG_BYTES, looks_like_svg, render_svg

# .jfif and .jpe are JPEG under the names browsers on Windows save it with
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jfif", ".jpe", ".bmp", ".gif", ".webp", ".svg")
# The only decoders run on untrusted bytes: Pillow's others (TIFF, ICO, PCX, SGI, TGA, JPEG 2000, EPS
# through Ghostscript...) are never reached, whatever the file says it is.
ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
READ_FORMATS = ", ".join([*(f.lower() for f in ALLOWED_FORMATS), "svg"])  # as messages name them; svg: data.svg
# Images in formats it does not decode: named in an error, never passed over in silence
REFUSED_SUFFIXES = (".tif", ".tiff", ".ico", ".tga", ".jp2", ".j2k", ".pcx", ".ppm", ".pgm", ".pbm", ".pnm", ".sgi",
                    ".eps", ".psd", ".avif", ".heic", ".heif", ".jxl")

LIGHT_INK = 200  # opaque pixels this light on average, over a mostly transparent ground, go onto black (_ground)
ImageInput = Union[str, os.PathLike, bytes, bytearray, Image.Image]
# Text this long of base64's characters alone (never a '.', so never a file name with its suffix) is an image
# written out, as web pages embed them and scrapers pass them on
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/=\s]{64,}")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz", ".7z", ".rar")


def unpack_hint(path: str | os.PathLike) -> str | None:
    """How to unpack ``path`` where its name is an archive's (``unzip site.zip -d site``), else None: a folder of
    captchas often arrives as one, and no command here reads inside it."""
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(ARCHIVE_SUFFIXES):
        return None
    if name.endswith(".zip"):
        return f"unzip {path} -d {path.parent / path.name.split('.')[0]}"
    return f"tar xf {path}" if ".tar" in name or name.endswith(".tgz") else "unpack it"


def is_image_name(path: str | os.PathLike) -> bool:
    """True when the file name has one of the supported image suffixes."""
    return str(path).lower().endswith(IMAGE_SUFFIXES)


def is_refused_image_name(path: str | os.PathLike) -> bool:
    """True when the file name is an image's in a format it does not decode (TIFF, HEIC...)."""
    return str(path).lower().endswith(REFUSED_SUFFIXES)


def refused_format(path: str | os.PathLike) -> str:
    """What is wrong with an image file in a format it does not decode, and how to fix it."""
    return f"a {Path(path).suffix.lower()} image, a format it does not read ({READ_FORMATS}): convert it to png"


def _written_out(src: object) -> bool:
    """True for an image given as text: base64, bare or in a ``data:`` URL."""
    return isinstance(src, str) and (src.startswith("data:") or _BASE64_TEXT.fullmatch(src) is not None)


def describe(src: object) -> str:
    """How an error names an input: its path, or what it is (bytes, a PIL image, an image written out as text)."""
    if isinstance(src, (bytes, bytearray)):
        return f"<{len(src)} bytes>"
    if isinstance(src, Image.Image):
        return "<PIL image>"
    if _written_out(src):
        return f"<image as text, {len(src)} characters>"
    return str(src) if isinstance(src, (str, os.PathLike)) else f"<{type(src).__name__}>"


def decode_base64(text: str, name: str) -> bytes:
    """The bytes of an image written out as base64, bare or in a ``data:`` URL; :class:`ImageError` if it is not."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(f"{name}: not valid base64") from None


def _flatten(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB, compositing transparency onto white as a browser would show it, or onto black where the
    opaque part is light ink over a mostly transparent ground (made for a dark page: on white it would vanish)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale 16-bit values down instead of clipping everything to white.
        arr = np.asarray(img, dtype=np.float64)
        if arr.max() > 255:
            arr = arr * (255.0 / 65535.0)
        img = Image.fromarray(np.clip(arr, 0, 255).astype("uint8"), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _ground(np.asarray(rgba)))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != "RGB":
        img = img.convert("RGB")  # L, 1, CMYK, YCbCr, F ...
    return img


def _svg_file(path: Path) -> bytes | None:
    """The bytes of a file Pillow could not identify where it starts as an SVG document does, else None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
            return head + fh.read(MAX_SVG_BYTES) if looks_like_svg(head) else None  # render_svg refuses more
    except OSError:
        return None


def _embedded(data: bytes, max_pixels: int) -> Image.Image | None:
    """A raster an SVG's ``image`` carries -> RGBA (its first frame), in the formats and size a captcha is read in;
    None for one that cannot be read, which the SVG leaves out as a browser does."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning: the size is bounded here
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            if img.width < 1 or img.height < 1 or img.width * img.height > max_pixels:
                return None
            img.load()
            return img.convert("RGBA")
    except Exception:  # noqa: BLE001 - any decoder's error: the image is not drawn, the document still is
        return None


def _ground(rgba: np.ndarray) -> tuple[int, int, int, int]:
    """The colour a transparent image goes onto: white, or black where under half of it is opaque and that part is
    light (its mean luminance over LIGHT_INK)."""
    opaque = rgba[..., 3] > 127
    if 0 < opaque.sum() < 0.5 * opaque.size:
        luminance = rgba[opaque][:, :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        if luminance.mean() > LIGHT_INK:
            return (0, 0, 0, 255)
    return (255, 255, 255, 255)


def shown_as_is(path: str | os.PathLike) -> bool:
    """Whether a browser shows the file at ``path`` as it is read: one frame of a raster format (browsers draw all
    of ALLOWED_FORMATS). Not an SVG, whatever its name (drawn by data.svg), nor an animation (read as its frames
    merged: :func:`merged_frames`), nor a file it cannot open."""
    try:
        with Image.open(path, formats=ALLOWED_FORMATS) as img:
            return not getattr(img, "is_animated", False)
    except Exception:  # noqa: BLE001 - unreadable files are said where they are read
        return False


def merged_frames(frames: list[Image.Image]) -> Image.Image:
    """An animation's RGB frames as one image: each pixel as the frame that shows it furthest from the background
    (the commonest colour of the frames' edges), so ink any frame shows is kept, a glyph at its strongest.

    Animated captchas blink their glyphs in turn (Java's GIF generators fade each glyph out in one frame and in
    over the next, so no frame shows them all: the first leaves the first glyph out), and a reader of the first
    frame alone never sees what it lacks; static ink is the same in every frame, whichever is taken.
    """
    if len(frames) == 1 or len({f.size for f in frames}) > 1:
        return frames[0]
    stack = np.stack([np.asarray(f, dtype=np.int16) for f in frames])  # (frames, H, W, 3)
    edges = np.concatenate([stack[:, 0], stack[:, -1], stack[:, :, 0], stack[:, :, -1]], axis=1).reshape(-1, 3)
    # near colours as one (GIF palettes), each a number in the order of its (r, g, b): the commonest, the first of
    # equals, in a count of 32,768 bins rather than a sort of the edge's rows (the frames' merge was most of an
    # animated captcha's solving time outside the network)
    near = edges >> 3
    counts = np.bincount((near[:, 0] << 10) | (near[:, 1] << 5) | near[:, 2], minlength=1 << 15)
    code = int(counts.argmax())
    background = np.array([code >> 10, (code >> 5) & 31, code & 31], dtype=np.int16) * 8 + 4
    apart = np.abs(stack - background)
    far = (apart[..., 0] + apart[..., 1] + apart[..., 2]).argmax(0)  # (H, W): the frame each pixel is taken from
    pixels = far.size
    merged = stack.reshape(-1, 3)[far.ravel() * pixels + np.arange(pixels)].reshape(*far.shape, 3)
    return Image.fromarray(merged.astype(np.uint8), "RGB")


def load_image(src: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None,
               svg_apart: bool = SVG_APART) -> Image.Image:
    """Decode a path, bytes, a PIL image or an image written out as base64 text (bare or a ``data:`` URL) into an
    RGB PIL image, or raise :class:`ImageError`.

    The size is checked from the header before any pixel is decoded, EXIF rotation is applied, an animation's frames
    are merged (:func:`merged_frames`; its first ANIMATION_FRAMES), an SVG document is drawn (:mod:`.svg`; with
    ``svg_apart``, one whose glyphs are elements of their own as those glyphs alone, side by side), and every
    mode is flattened onto white RGB (black under light ink on a transparent ground: :func:`_ground`). Errors name
    the input by ``name`` (default: its path, or its size for bytes).
    """
    name = name or describe(src)
    if _written_out(src):
        src = decode_base64(src, name)
    if isinstance(src, Image.Image):
        img = src
    else:
        if isinstance(src, (bytes, bytearray)):
            if len(src) == 0:
                raise ImageError(f"{name}: empty input, no image data")
            fp: io.BytesIO | Path = io.BytesIO(bytes(src))
        else:
            fp = Path(src)
            if fp.is_dir():
                raise ImageError(f"{name}: is a directory, not an image file")
            if not fp.exists():
                raise ImageError(f"{name}: no such file")
            if fp.stat().st_size == 0:
                raise ImageError(f"{name}: empty file (0 bytes)")
        try:
            img = Image.open(fp, formats=ALLOWED_FORMATS)
        except UnidentifiedImageError:
            data = fp.getvalue() if isinstance(fp, io.BytesIO) else _svg_file(fp)
            if data is not None and looks_like_svg(data):  # drawn by our own renderer: Pillow reads no SVG
                return _flatten(render_svg(data, name, max_pixels, lambda raster: _embedded(raster, max_pixels),
                                           apart=svg_apart))
            unpack = unpack_hint(fp) if isinstance(fp, Path) else None
            if unpack:
                raise ImageError(f"{name}: an archive, not an image: unpack it first ({unpack}) and pass its images "
                                 "or their folder") from None
            if isinstance(fp, Path) and is_refused_image_name(fp):
                raise ImageError(f"{name}: {refused_format(fp)}") from None
            raise ImageError(f"{name}: not an image, or not in an allowed format ({READ_FORMATS}); convert it to "
                             "png") from None
        except Image.DecompressionBombError as exc:
            raise ImageError(f"{name}: refused, header claims a huge image: {exc}") from None
        except OSError as exc:
            raise ImageError(f"{name}: cannot open: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a decoder's own errors (ValueError on an oversized PNG chunk...)
            raise ImageError(f"{name}: unreadable image header ({type(exc).__name__}: {exc}); re-save the image "
                             "without its metadata") from None
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageError(f"{name}: image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: {width}x{height} pixels is over the limit of {max_pixels} "
            "(raise max_pixels if this is really a captcha)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning: we bound size ourselves
            if getattr(img, "is_animated", False):
                # at most max_pixels decoded in all, as for one image
                count = min(ANIMATION_FRAMES, max(1, max_pixels // (width * height)))
                frames = zip(range(count), ImageSequence.Iterator(img))
                return merged_frames([_flatten(frame.copy()) for _, frame in frames])  # a frame is the seeked image
            img.load()
            img = ImageOps.exif_transpose(img) or img
            return _flatten(img)
    except Exception as exc:  # noqa: BLE001 - every decoder error becomes the project's own
        raise ImageError(f"{name}: corrupt or truncated image data: {exc}") from None


def file_digest(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, in hex: the same file wherever it is copied (a captcha in two folders, the
    checkpoint a compiled model was made from)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
