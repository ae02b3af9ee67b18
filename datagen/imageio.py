"""Decoding source images, and the one place for colour conventions.

Gray is ITU-R BT.601 luma, ``Y = 0.299 R + 0.587 G + 0.114 B`` rounded to uint8 (Pillow's
``convert("L")``, integer arithmetic with rounding; what OpenCV's ``COLOR_RGB2GRAY`` and
MATLAB's ``rgb2gray`` also compute up to +-1).  16-bit images are scaled to 8 bits by
``round(v / 257)``.  Alpha is dropped.
"""
from __future__ import annotations

import hashlib
import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import SourceError

#: File name extensions the ``folder`` and ``div2k`` sources pick up.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

Image.MAX_IMAGE_PIXELS = 400_000_000  # 20k x 20k; beyond that a file is more likely an attack than a photo


def read_bytes(path: str | os.PathLike) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise SourceError(f"{path}: cannot read image ({err.strerror or err}); check the path and permissions") from None


_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")


def _eight_bit(im: Image.Image) -> np.ndarray:
    """A 16-bit (or 32-bit integer) single-channel image scaled to uint8 by ``round(v / 257)``."""
    return np.clip(np.rint(np.asarray(im, dtype=np.float64) / 257.0), 0, 255).astype(np.uint8)


def _as_gray(im: Image.Image) -> np.ndarray:
    if im.mode in _SIXTEEN_BIT:
        return _eight_bit(im)
    if im.mode not in ("L", "RGB"):
        im = im.convert("RGB")   # palette, RGBA, CMYK, LA, ...: alpha dropped
    if im.mode != "L":
        im = im.convert("L")
    return np.asarray(im, dtype=np.uint8)


def _as_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in _SIXTEEN_BIT:
        return np.repeat(_eight_bit(im)[..., None], 3, axis=2)
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)


def _decode(data: bytes, name: str, convert, ndim: int) -> np.ndarray:
    """Open ``data`` with Pillow and ``convert`` it; every failure is one :class:`SourceError` line."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            arr = convert(im)
    except UnidentifiedImageError:
        raise SourceError(f"{name}: not an image file (unrecognised format); remove it or narrow the source pattern") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise SourceError(f"{name}: corrupt or truncated image ({err}); replace or remove the file") from None
    if arr.ndim != ndim or arr.size == 0:
        raise SourceError(f"{name}: image has no pixels; replace or remove the file")
    return arr


def decode_gray(data: bytes, *, name: str) -> np.ndarray:
    """Decode encoded image bytes to a 2-D uint8 BT.601 luma array.

    Raises :class:`SourceError` with one line for corrupt, truncated or non-image data.
    """
    return _decode(data, name, _as_gray, 2)


def decode_rgb(data: bytes, *, name: str) -> np.ndarray:
    """Decode encoded image bytes to ``(H, W, 3)`` uint8 RGB (gray is replicated, alpha dropped,
    16-bit scaled by ``round(v / 257)``).  Same one-line :class:`SourceError` as :func:`decode_gray`."""
    return _decode(data, name, _as_rgb, 3)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read one image as ``(H, W, 3)`` float32 RGB in ``[0, 1]`` (the methods' input convention)."""
    return decode_rgb(read_bytes(path), name=str(path)).astype(np.float32) / np.float32(255.0)


def read_gray(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """Read and decode one image: ``(gray uint8 array, sha256 hex of the file bytes)``."""
    data = read_bytes(path)
    return decode_gray(data, name=str(path)), hashlib.sha256(data).hexdigest()
