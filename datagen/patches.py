"""Square patches centred on given pixels, with the image extended by reflection (one definition).

The edge-based estimators (Karaali, Harte & Jung 2022, ``METHODS.md`` section 6.1) cut a
``size x size`` patch centred on every edge pixel of the image padded by ``size // 2`` pixels with
OpenCV's ``BORDER_REFLECT`` (``fedcba|abcdefgh|hgfedcb``: the border pixel repeated, i.e. half-sample
symmetric).  Their corpora cut training patches the same way, so a patch at the image border looks
the same in training and at inference.
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["centred_patches", "reflect_index", "reflect_pad"]


def reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Map any integer positions onto ``0..n-1`` by half-sample symmetric extension (period ``2n``):
    ``BORDER_REFLECT`` as an index map."""
    m = np.mod(idx, 2 * n)
    return np.where(m < n, m, 2 * n - 1 - m)


def reflect_pad(image: np.ndarray, pad: int) -> np.ndarray:
    """``image`` (``(H, W)`` or ``(H, W, C)``) padded by ``pad`` pixels on every side, ``BORDER_REFLECT``
    (works for any ``pad``: the reflection repeats as often as needed)."""
    img = np.ascontiguousarray(image)
    if pad <= 0:
        return img
    h, w = img.shape[:2]
    if pad < min(h, w):
        return cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REFLECT).reshape(
            (h + 2 * pad, w + 2 * pad, *img.shape[2:]))
    return img[reflect_index(np.arange(-pad, h + pad), h)][:, reflect_index(np.arange(-pad, w + pad), w)]


def centred_patches(image: np.ndarray | None, ys: np.ndarray, xs: np.ndarray, *, size: int,
                    padded: np.ndarray | None = None) -> np.ndarray:
    """``(N, size, size[, C])`` patches of ``image`` centred on pixels ``(ys[i], xs[i])`` (``size`` odd),
    cut from :func:`reflect_pad` ``(image, size // 2)`` (or from ``padded``, such a padding made once;
    ``image`` is not read then)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"patch size must be odd and >= 1, got {size}")
    half = size // 2
    if padded is None:
        padded = reflect_pad(image, half)
    ys = np.asarray(ys, dtype=np.intp)
    xs = np.asarray(xs, dtype=np.intp)
    offs = np.arange(size)
    return padded[(ys[:, None] + offs)[:, :, None], (xs[:, None] + offs)[:, None, :]]
