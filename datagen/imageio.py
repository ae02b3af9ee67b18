"""Decoding source images, and the one place for colour conventions.

Gray is ITU-R BT.601 luma, ``Y = 0.299 R + 0.587 G + 0.114 B`` rounded to uint8 (Pillow's
``convert("L")``, integer arithmetic with rounding; what OpenCV's ``COLOR_RGB2GRAY`` and
MATLAB's ``rgb2gray`` also compute up to +-1).  16-bit images are scaled to 8 bits by
``round(v / 257)``.  Alpha is dropped.

Every image we decode, here and in ``bench``, is opened by :func:`open_image`, the one place
for the pixel limit and for turning Pillow's failures into one :class:`SourceError` line that
names the file.  The limit is the setting ``DEFOCUSBENCH_MAX_IMAGE_PIXELS`` (environment,
width x height in pixels, default :data:`DEFAULT_MAX_IMAGE_PIXELS`): a larger image is
refused from its header, before any pixel is decoded, since a few KB of PNG can claim
30000 x 30000 pixels and take gigabytes to decode (a "decompression bomb").
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import SourceError, UserError

#: BT.601 luma weights (R, G, B): the one definition (``methods.base`` and ``datagen.edges`` use it).
LUMA_BT601 = (0.299, 0.587, 0.114)

#: File name extensions of images, lower case: what the ``folder`` and ``div2k`` sources and
#: ``bench``'s dataset and map readers pick up (the one list).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

#: Environment variable that overrides :data:`DEFAULT_MAX_IMAGE_PIXELS`.
MAX_PIXELS_ENV = "DEFOCUSBENCH_MAX_IMAGE_PIXELS"
#: Largest image accepted, in pixels (width x height): 120 megapixels, above the largest camera
#: sensors (~102 MP) and Pillow's own 89.5 MP warning threshold; 38x the largest DIV2K photo.
DEFAULT_MAX_IMAGE_PIXELS = 120_000_000

# We refuse images over the limit ourselves, strictly (Pillow only warns up to twice its limit,
# and its warning would be a second line on stderr); Pillow's own check stays armed at 2x.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def max_image_pixels() -> int:
    """The pixel limit in force: ``$DEFOCUSBENCH_MAX_IMAGE_PIXELS`` or :data:`DEFAULT_MAX_IMAGE_PIXELS`."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"{MAX_PIXELS_ENV}={raw!r}: expected a whole number of pixels >= 1 "
                        f"(unset it for the default {DEFAULT_MAX_IMAGE_PIXELS})")
    return value


def _too_large(name: str, limit: int, size: tuple[int, int] | None = None) -> SourceError:
    what = f"{size[0]}x{size[1]} = {size[0] * size[1]} pixels" if size else f"more than {2 * limit} pixels"
    return SourceError(f"{name}: image of {what}, over the limit of {limit} ({MAX_PIXELS_ENV}); "
                       f"a possible decompression bomb: remove the file, or raise {MAX_PIXELS_ENV} if it is a real photo")


def check_pixels(name: str, width: int, height: int) -> None:
    """Raise a one-line :class:`SourceError` naming ``name`` when ``width x height`` is over
    :func:`max_image_pixels` (also for image-sized arrays that are not image files, e.g. ``.npy`` maps)."""
    limit = max_image_pixels()
    if width * height > limit:
        raise _too_large(name, limit, (width, height))


@contextmanager
def open_image(source: str | os.PathLike | bytes, *, name: str | None = None,
               what: str = "image") -> Iterator[Image.Image]:
    """Open an image file (a path) or encoded bytes with Pillow, header parsed and size checked.

    Use as ``with open_image(path) as im: im.load(); ...``.  Any failure, inside the ``with``
    block too (decoding, conversion), is one :class:`SourceError` line naming ``name`` (default:
    the path) and ``what`` the file is to the caller (``"image"``, ``"mask"``, ``"map"``):
    unreadable file, not an image, corrupt or truncated data, or more than
    :func:`max_image_pixels` pixels (checked before any pixel is decoded).
    """
    name = str(source) if name is None else name
    limit = max_image_pixels()
    Image.MAX_IMAGE_PIXELS = limit   # Pillow's own check (it raises above 2x): a second line of defence
    try:
        f = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115 - closed below
    except OSError as err:
        raise SourceError(f"{name}: cannot read {what} ({err.strerror or err}); check the path and permissions") from None
    try:
        with f, Image.open(f) as im:
            check_pixels(name, im.width, im.height)
            yield im
    except UnidentifiedImageError:
        raise SourceError(f"{name}: corrupt or unreadable {what}: not an image file (unrecognised format); "
                          "replace or remove the file") from None
    except Image.DecompressionBombError:
        raise _too_large(name, limit) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise SourceError(f"{name}: corrupt or truncated {what} ({err}); replace or remove the file") from None


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


def _decode(data: bytes, name: str, convert, ndim: int, what: str = "image") -> np.ndarray:
    """Open ``data`` with :func:`open_image` and ``convert`` it; every failure is one :class:`SourceError` line."""
    with open_image(data, name=name, what=what) as im:
        im.load()
        arr = convert(im)
    if arr.ndim != ndim or arr.size == 0:
        raise SourceError(f"{name}: {what} has no pixels; replace or remove the file")
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
    return read_image(path, color="gray")


def read_image(path: str | os.PathLike, *, color: str = "gray", what: str = "image") -> tuple[np.ndarray, str]:
    """Read and decode one image as ``color`` (``"gray"``: ``(H, W)`` BT.601 luma, ``"rgb"``:
    ``(H, W, 3)``), uint8: ``(array, sha256 hex of the file bytes)``."""
    data = read_bytes(path)
    convert, ndim = {"gray": (_as_gray, 2), "rgb": (_as_rgb, 3)}[color]
    return _decode(data, str(path), convert, ndim, what), hashlib.sha256(data).hexdigest()
