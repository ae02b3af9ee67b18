"""``gauss20``: the 20-level Gaussian patch corpus of Galetto & Deng (Visual Computer 2022, Sec. 3.1).

Pipeline per source image (gray, uint8, BT.601 luma; see :mod:`datagen.imageio`)
--------------------------------------------------------------------------------
1. Tile into non-overlapping ``patch_size`` squares from the top-left corner; the partial
   tiles at the right and bottom edges are dropped.
2. Sharpness of each tile, on 0..255 intensities: ``phi = Var(L * (G * tile))`` with ``G``
   the 3x3 sampled Gaussian of ``sharpness_sigma`` and ``L`` the 4-neighbour Laplacian
   (:data:`datagen.psf.LAPLACIAN_3X3`); population variance over the tile's pixels.  With
   ``sharpness_context="tile"`` (the paper: "we filter each patch") both filters see only the
   tile, extended by half-sample reflection; with ``"image"`` (default) they see the true
   neighbours, so the selection has no patch-border effect.
3. Tiles with ``phi > sharpness_threshold`` become class 0 (the tile itself).  Class ``k``
   (``k = 1..len(sigmas)``) is the same location cropped from the *whole image* blurred by a
   sampled Gaussian of ``sigmas[k-1]`` (half-width ``ceil(truncate * sigma)``, reflect border),
   rounded to uint8 -- so no class depends on patch-border effects.  ``blur_context="patch"``
   instead blurs the isolated tile with a reflect border (the other reading of the paper).

The blur is computed only where it is needed, in exact fixed-point arithmetic (kernel taps
quantised to ``2**-16``): the same bytes on every machine, and within one gray level of a direct
float64 convolution of the whole image (:func:`blurred_tiles`).

Default ``sharpness_sigma = 0.5`` is MATLAB's ``fspecial('gaussian', [3 3])`` default; on the
six DIV2K validation images of the test data it passes 94.2 tiles per image (median 20.5,
26.0 without the outlier 0830), consistent with the paper's 25 per validation image, whereas
``sigma = 1`` passes 2.0 per image (see README, "Fidelity of the class-0 selection").
"""
from __future__ import annotations

import itertools
from typing import Literal

import cv2
import numpy as np
from pydantic import Field as PydField
from pydantic import field_validator

from .. import psf
from ..patches import reflect_index
from .base import Field, Generator, SourceItem, StrictModel

_DEFAULT_SIGMAS = tuple(float(s) for s in range(1, 20))

#: Fixed-point precision of the blur kernels: taps are integers summing to ``2**BLUR_BITS``.
BLUR_BITS = 16
_UNIT = 2.0 ** (-2 * BLUR_BITS)               # one unit of the two-pass integer result, in gray levels
_F32_EPS = 2.0 ** -24                        # unit roundoff of float32
_SHARPNESS_STRIPE = 4                        # tile rows filtered at once by tile_sharpness
_STRIP_BUDGET = 1 << 18                      # float32 elements of strips blurred at once (1 MB: cache-sized;
                                             # 4x that is 30 % slower, with two workers sharing a cache)
_SAFETY = 1.25                               # margin on the float32 error bound n * eps * value (n terms)
_SLACK = 2.0 ** -22                          # absolute margin for the float32 arithmetic of that test


class Gauss20Params(StrictModel):
    kind: Literal["gauss20"] = "gauss20"
    patch_size: int = PydField(32, ge=3, le=1024, description="tile side in pixels")
    sigmas: tuple[float, ...] = PydField(_DEFAULT_SIGMAS, min_length=1, description="Gaussian sigma (pixels) of classes 1..K-1")
    sharpness_threshold: float = PydField(1000.0, ge=0, description="tiles with phi > threshold are sharp (class 0)")
    sharpness_sigma: float = PydField(0.5, gt=0, le=10, description="sigma of the 3x3 pre-smoothing Gaussian")
    sharpness_context: Literal["image", "tile"] = "image"
    truncate: float = PydField(3.0, gt=0, le=10, description="blur kernel half-width in sigmas")
    blur_context: Literal["image", "patch"] = "image"

    @field_validator("sigmas")
    @classmethod
    def _sigmas(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        for i, s in enumerate(v):
            if not (s > 0 and np.isfinite(s)):
                raise ValueError(f"sigma #{i} is {s}; every sigma must be a finite number > 0")
        if any(b <= a for a, b in itertools.pairwise(v)):
            raise ValueError("sigmas must be strictly increasing")
        return v


def tile_grid(shape: tuple[int, int], patch: int) -> tuple[int, int]:
    """Number of whole tiles ``(rows, cols)`` that fit in an image of ``shape``."""
    return shape[0] // patch, shape[1] // patch


def _smoothed_laplacian(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``L * (G * img)`` in float64, half-sample reflect border (``G`` = outer(k, k)), for uint8 ``img``.

    Computed as ``G * (L * img)``: both kernels are symmetric, so with a half-sample symmetric
    extension the two orders are the same operator, and ``L * img`` is exact in int16.
    """
    lap = cv2.filter2D(img, cv2.CV_16S, psf.LAPLACIAN_3X3, borderType=cv2.BORDER_REFLECT)
    return cv2.sepFilter2D(lap, cv2.CV_64F, k, k, borderType=cv2.BORDER_REFLECT)


def tile_sharpness(gray: np.ndarray, *, patch: int, sigma: float, context: str = "image") -> np.ndarray:
    """Variance of the Laplacian of the 3x3-Gaussian-smoothed tiles, raster order, 0..255 scale.

    ``gray`` is uint8.  ``context="image"`` filters the whole image (half-sample reflect at
    the image border) and then tiles; ``"tile"`` filters each tile on its own (reflect at the
    tile border).

    Returns
    -------
    ndarray, shape (rows * cols,), float64
    """
    if gray.dtype != np.uint8:
        raise TypeError(f"tile_sharpness needs a uint8 image, got {gray.dtype}")
    rows, cols = tile_grid(gray.shape, patch)
    k = psf.gaussian_kernel1d(sigma, radius=1)
    phi = np.empty((rows, cols))
    if context == "image":
        # stripes of a few tile rows plus the 2 rows each filter needs (reflected at the image
        # border): the same numbers as filtering the whole image, in cache-sized pieces
        for t in range(0, rows, _SHARPNESS_STRIPE):
            stop = min(rows, t + _SHARPNESS_STRIPE)
            stripe = gray[reflect_index(np.arange(t * patch - 2, stop * patch + 2), gray.shape[0])]
            phi[t:stop] = _tile_variance(_smoothed_laplacian(stripe, k)[2:-2], patch, cols)
    else:
        lap = np.empty((rows * patch, cols * patch))
        for y in range(0, rows * patch, patch):
            for x in range(0, cols * patch, patch):
                lap[y:y + patch, x:x + patch] = _smoothed_laplacian(gray[y:y + patch, x:x + patch], k)
        phi[:] = _tile_variance(lap, patch, cols)
    return phi.ravel()


def _tile_variance(values: np.ndarray, patch: int, cols: int) -> np.ndarray:
    """Population variance of each ``patch`` x ``patch`` tile of ``values`` (whole tiles only)."""
    rows = values.shape[0] // patch
    # (rows*patch, cols, patch) is a view (only the last axis is split); reduce the
    # contiguous axis first: 10x faster than summing over axes (1, 3) of a 4-D view
    runs = values[: rows * patch, : cols * patch].reshape(rows * patch, cols, patch)
    s1 = (runs @ np.ones(patch)).reshape(rows, patch, cols).sum(axis=1)   # a BLAS row sum
    s2 = np.einsum("ijk,ijk->ij", runs, runs).reshape(rows, patch, cols).sum(axis=1)
    n = patch * patch
    return s2 / n - (s1 / n) ** 2


def blurred_tiles(gray: np.ndarray, ys: np.ndarray, xs: np.ndarray, *, patch: int, sigmas,
                  truncate: float, context: str = "image") -> np.ndarray:
    """Gaussian-blurred crops at top-left corners ``(ys, xs)``: uint8, shape ``(n, len(sigmas), patch, patch)``.

    ``context="image"`` crops the whole image blurred with a reflect border; ``"patch"``
    blurs each isolated tile with a reflect border.

    Arithmetic (the same bytes on every machine)
    --------------------------------------------
    Each sampled Gaussian is quantised to integer taps ``q`` summing to ``2**16``
    (:func:`datagen.psf.quantize_kernel`), and a pixel is
    ``round_half_even(sum_ij q_i q_j x_ij / 2**32)`` computed *exactly* in integers, so no
    rounding error, BLAS kernel or summation order can change a byte.  Against a direct
    float64 convolution with the unquantised kernel the value before rounding differs by
    less than ``2 * 127.5 * (2h + 1) / 2**16`` (0.45 gray levels for sigma 19), so the
    stored pixels differ by at most one gray level (on DIV2K about 0.1 % of them do).

    Only the pixels of the requested crops are computed.  The columns that the tiles of each
    band of tile rows need are stacked, a cache-sized group of bands at a time; per kernel
    and group: one vertical matrix product (float32 and exact: every partial sum is an
    integer below ``2**24``), then one horizontal product for all tiles of the group in
    float32, the tiles' windows gathered as whole rows of the transposed vertical product.  That product is not exact, but a sum of ``n`` non-zero products has a relative
    error below ``n * 2**-24 / (1 - n * 2**-24)`` in any summation order, FMA or not, so a
    value farther than that from a half-integer rounds like the exact one; the rows holding
    one that is not (a few per cent) are recomputed in exact float64 integer arithmetic.
    """
    if gray.dtype != np.uint8:   # the exactness argument needs values <= 255
        raise TypeError(f"blurred_tiles needs a uint8 image, got {gray.dtype}")
    kernels = [psf.quantize_kernel(psf.gaussian_kernel1d(s, truncate=truncate), bits=BLUR_BITS) for s in sigmas]
    halves = [(q.size - 1) // 2 for q in kernels]
    exact = [psf.convolution_matrix(q, patch) for q in kernels]      # integer-valued float64, (patch, patch + 2h)
    n = len(ys)
    out = np.empty((n, len(kernels), patch, patch), np.uint8)
    if n == 0:
        return out
    if context == "patch":
        local = [reflect_index(np.arange(-h, patch + h), patch) for h in halves]   # per kernel
        for j, (y, x) in enumerate(zip(ys, xs)):
            tile = gray[y:y + patch, x:x + patch].astype(np.float64)
            for c, (a, ix) in enumerate(zip(exact, local)):
                # integers: products < 2**40, sums < 2**53, so float64 holds them exactly
                out[j, c] = np.rint((a @ tile[np.ix_(ix, ix)] @ a.T) * _UNIT)
        return out
    vertical = [a.astype(np.float32) for a in exact]                  # taps <= 2**16: exact in float32
    horizontal = [(a * _UNIT).astype(np.float32) for a in exact]   # scaled by a power of two: exact
    hmax = max(halves)
    height, width = gray.shape
    # Column strips: for each band of tile rows, the columns its tiles need under the widest
    # kernel (reflect border), each strip a row of ``strips``; bands are stacked, so that one
    # product per kernel serves every tile of a group of bands.
    groups, blocks, first, used = [], [], np.empty(n, np.int64), 0
    for y in np.unique(ys):
        idx = np.flatnonzero(ys == y)
        cols = np.unique((xs[idx][:, None] + np.arange(-hmax, patch + hmax)[None, :]).ravel())
        blocks.append((idx, cols, y))
        used += len(cols)
        if used * (patch + 2 * hmax) >= _STRIP_BUDGET:
            groups.append(blocks)
            blocks, used = [], 0
    groups += [blocks] if blocks else []
    for group in groups:
        idx = np.concatenate([i for i, _, _ in group])
        offsets = np.cumsum([0] + [len(cols) for _, cols, _ in group])
        strips = np.empty((offsets[-1], patch + 2 * hmax), np.float32)
        for (i, cols, y), o in zip(group, offsets):
            band = gray[reflect_index(np.arange(y - hmax, y + patch + hmax), height)][:, reflect_index(cols, width)]
            strips[o:o + len(cols)] = band.T
            first[i] = o + np.searchsorted(cols, xs[i] - hmax)        # each tile's window start, strip rows
        _blur_group(strips, first[idx], out, idx, halves, vertical, horizontal, exact, patch)
    return out


def _blur_group(strips: np.ndarray, first: np.ndarray, out: np.ndarray, idx: np.ndarray, halves, vertical,
                horizontal, exact, patch: int) -> None:
    """Blur the tiles ``idx`` whose widest-kernel windows start at rows ``first`` of ``strips``."""
    m, total = len(idx), len(strips)
    hmax = (strips.shape[1] - patch) // 2
    rows = slice(idx[0], idx[-1] + 1) if idx[-1] - idx[0] + 1 == m else idx   # raster order: a slice
    for c, h in enumerate(halves):
        size = patch + 2 * h
        at = first + (hmax - h)                                       # window starts, strip rows
        src = strips
        if h < hmax:                                                  # drop the strips no window needs
            edges = np.bincount(at, minlength=total + 1) - np.bincount(at + size, minlength=total + 1)
            keep = np.cumsum(edges[:-1]) > 0                          # union of the tiles' windows
            if keep.sum() < 0.5 * total:                              # (the copy costs about what it saves)
                src, at = strips[keep], np.cumsum(keep)[at] - 1
        # (strips, patch): the transposed product, so that each tile's window is a block of rows
        vert = src[:, hmax - h:hmax + h + patch] @ vertical[c].T      # exact integers < 2**24
        taps = vert[at[None, :] + np.arange(size)[:, None]].reshape(size, m * patch)   # row copies
        value = taps.T @ horizontal[c].T                              # (tile x row, col), gray levels
        rounded = np.rint(value)
        dist = np.abs(np.subtract(value, rounded, out=value), out=value)   # exact (Sterbenz)
        # rounds like the exact value y unless y may lie on the other side of a half-integer:
        # |value - y| <= gamma * y, y <= rounded + 0.5 (plus slack for this test's own float32)
        gamma = _SAFETY * (2 * h + 1) * _F32_EPS                      # 2h+1 non-zero products per sum
        dist += np.multiply(rounded, np.float32(gamma))
        unsure = np.unique(np.flatnonzero(dist >= 0.5 - 0.5 * gamma - _SLACK) // patch)   # rows holding a flag
        if unsure.size:
            fixed = taps[:, unsure].T.astype(np.float64) @ exact[c].T   # exact integers < 2**40
            rounded[unsure] = np.rint(fixed * _UNIT)
        out[rows, c] = rounded.reshape(m, patch, patch)


class Gauss20(Generator):
    KIND = "gauss20"
    VERSION = "2.0.0"   # 2.0: fixed-point blur (1.x: float64; pixels differ by <= 1 gray level)
    DESCRIPTION = "Galetto & Deng 2022: sharp gray tiles and their Gaussian-blurred versions, one class per sigma"
    Params = Gauss20Params

    def fields(self) -> dict[str, Field]:
        p = self.params.patch_size
        return {
            "image": Field("uint8", (p, p), "gray patch, BT.601 luma, 0..255", units="0..255"),
            "label": Field("int16", (), "class: 0 = sharp, k = blurred with sigmas[k-1]"),
            "sigma": Field("float32", (), "Gaussian sigma in pixels (0 for class 0)", units="px"),
            "position": Field("int32", (2,), "top-left (row, col) of the patch in its source image, pixels",
                              units="px"),
            "sharpness": Field("float32", (), "variance of Laplacian of the sharp base tile (0..255 scale)",
                               units="(0..255)^2"),
        }

    def classes(self) -> list[dict]:
        return [{"label": 0, "sigma": 0.0}] + [{"label": i + 1, "sigma": s} for i, s in enumerate(self.params.sigmas)]

    def make(self, item: SourceItem, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict]:
        image = item.image
        prm = self.params
        p = prm.patch_size
        rows, cols = tile_grid(image.shape, p)
        phi = tile_sharpness(image, patch=p, sigma=prm.sharpness_sigma, context=prm.sharpness_context)
        sel = np.flatnonzero(phi > prm.sharpness_threshold)
        ys, xs = (sel // max(cols, 1)) * p, (sel % max(cols, 1)) * p
        n, k = len(sel), 1 + len(prm.sigmas)
        images = np.empty((n, k, p, p), np.uint8)
        for j, (y, x) in enumerate(zip(ys, xs)):
            images[j, 0] = image[y:y + p, x:x + p]
        images[:, 1:] = blurred_tiles(image, ys, xs, patch=p, sigmas=prm.sigmas, truncate=prm.truncate,
                                      context=prm.blur_context)
        arrays = {
            "image": images.reshape(n * k, p, p),
            "label": np.tile(np.arange(k, dtype=np.int16), n),
            "sigma": np.tile(np.array((0.0,) + prm.sigmas, np.float32), n),
            "position": np.repeat(np.stack([ys, xs], axis=1).astype(np.int32), k, axis=0).reshape(n * k, 2),
            "sharpness": np.repeat(phi[sel].astype(np.float32), k),
        }
        stats = {"height": int(image.shape[0]), "width": int(image.shape[1]), "tiles": int(rows * cols), "sharp_tiles": int(n)}
        return arrays, stats

    def summary(self, stats: list[dict]) -> list[str]:
        sharp = [int(s["sharp_tiles"]) for s in stats if "sharp_tiles" in s]
        if not sharp:
            return []
        return [f"{sum(sharp)} sharp base patches from {len(sharp)} images ({sum(sharp) / len(sharp):.1f} per image)"]
