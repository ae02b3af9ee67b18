"""Point-spread functions and the linear operators built from them: the one place for kernels.

Conventions
-----------
* Kernels are float64, centred, odd-sized and sum to 1.
* A Gaussian of standard deviation ``sigma`` (pixels) is *sampled* at integer offsets
  ``-r..r`` and renormalised, with half-width ``r = ceil(truncate * sigma)``
  (MATLAB ``fspecial('gaussian')`` semantics; ``truncate=3`` keeps 99.73 % of the mass
  before renormalisation).
* Borders are named explicitly everywhere.  ``"reflect"`` is the half-sample symmetric
  extension ``d c b a | a b c d`` (scipy ``mode="reflect"``, MATLAB ``"symmetric"``,
  numpy ``np.pad(mode="symmetric")``).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

#: 4-neighbour discrete Laplacian, ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]``.
LAPLACIAN_3X3 = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def gaussian_radius(sigma: float, *, truncate: float = 3.0) -> int:
    """Half-width ``ceil(truncate * sigma)`` in pixels of a sampled Gaussian kernel."""
    if sigma < 0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be a finite value >= 0, got {sigma!r}")
    return math.ceil(truncate * sigma - 1e-9)


def gaussian_kernel1d(sigma: float, *, truncate: float = 3.0, radius: int | None = None) -> np.ndarray:
    """Sampled, normalised 1-D Gaussian.

    Parameters
    ----------
    sigma : float
        Standard deviation in pixels; ``0`` gives the identity kernel ``[1.]``.
    truncate : float, keyword-only
        Half-width in units of sigma (ignored when ``radius`` is given).
    radius : int, keyword-only
        Explicit half-width, e.g. ``1`` for a fixed 3-tap kernel.

    Returns
    -------
    ndarray, shape (2 * radius + 1,)
    """
    r = gaussian_radius(sigma, truncate=truncate) if radius is None else int(radius)
    if sigma == 0:
        k = np.zeros(2 * r + 1)
        k[r] = 1.0
        return k
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def convolution_matrix(kernel: np.ndarray, n_out: int) -> np.ndarray:
    """Banded matrix ``A`` of shape ``(n_out, n_out + 2r)`` with ``A @ x == correlate(x, kernel, 'valid')``.

    For a symmetric kernel, correlation and convolution coincide.  Used to blur a crop
    from its halo with two small matrix products (exact, no approximation).
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    width = kernel.size
    a = np.zeros((n_out, n_out + width - 1))
    rows = np.arange(n_out)[:, None]
    a[rows, rows + np.arange(width)[None, :]] = kernel
    return a


def quantize_kernel(kernel: np.ndarray, *, bits: int = 16) -> np.ndarray:
    """Integer taps ``q`` with ``q.sum() == 2**bits`` and ``|q - kernel * 2**bits| < 1`` per tap.

    Fixed-point form of a normalised, symmetric, odd-sized kernel for exact integer filtering
    (``datagen`` blurs in fixed point so that every machine computes the same bytes).  Taps are
    floored, then the missing units go to the centre (when their count is odd) and to the
    symmetric pairs with the largest remainders, so the result stays symmetric.

    Error: for any signal ``x`` in ``[0, v]``, ``|sum(q * x) / 2**bits - sum(kernel * x)| <
    (v / 2) * kernel.size / 2**bits`` (the tap errors sum to zero).

    Returns
    -------
    ndarray of int64, same shape as ``kernel``
    """
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 1 or k.size % 2 == 0 or not np.array_equal(k, k[::-1]) or (k < 0).any():
        raise ValueError("quantize_kernel needs a 1-D, odd-sized, symmetric, non-negative kernel")
    if abs(k.sum() - 1.0) > 1e-9:
        raise ValueError(f"kernel must sum to 1 (got {k.sum()!r})")
    h = k.size // 2
    scaled = k * 2.0 ** bits
    q = np.floor(scaled).astype(np.int64)
    missing = (1 << bits) - int(q.sum())          # 0 <= missing < k.size
    if missing % 2:
        q[h] += 1
        missing -= 1
    remainders = (scaled - q)[h + 1:]
    for j in np.argsort(-remainders, kind="stable")[: missing // 2]:
        q[h + 1 + j] += 1
        q[h - 1 - j] += 1
    return q


#: Gaussian sigma <-> disk radius (pixels) of D'Andres et al. 2016 (RTF), ``convertion.mat``:
#: column 0 sigma, column 1 radius ``0.5, 0.75, ..., 6.0``.  The one place for this mapping.
SIGMA_RADIUS_TABLE = np.array([
    [0.300, 0.50], [0.500, 0.75], [0.650, 1.00], [0.775, 1.25], [0.875, 1.50], [0.975, 1.75],
    [1.125, 2.00], [1.275, 2.25], [1.375, 2.50], [1.525, 2.75], [1.650, 3.00], [1.800, 3.25],
    [1.925, 3.50], [2.050, 3.75], [2.200, 4.00], [2.325, 4.25], [2.450, 4.50], [2.600, 4.75],
    [2.725, 5.00], [2.875, 5.25], [3.000, 5.50], [3.150, 5.75], [3.275, 6.00],
])
MAX_RADIUS = 6.0   # largest disk radius of the table (RTF ground truth range 0.5..6)
MAX_SIGMA = 3.275  # the Gaussian sigma that maps to MAX_RADIUS


def sigma_to_radius(sigma, *, mode: str = "linear") -> np.ndarray:
    """Gaussian sigma (px) -> equivalent disk radius (px) through :data:`SIGMA_RADIUS_TABLE`.

    ``mode="linear"``: piecewise-linear interpolation; below the first row the radius scales
    linearly to 0 (``sigma * 0.5 / 0.3``), above the last it is clamped to 6.  ``"nearest"``:
    the radius of the row with the closest sigma (MATLAB ``min(abs(table(:,1) - s))``; ties
    take the first row), as in the RTF evaluation scripts.
    """
    s = np.asarray(sigma, dtype=np.float64)
    sig, rad = SIGMA_RADIUS_TABLE[:, 0], SIGMA_RADIUS_TABLE[:, 1]
    if mode == "linear":
        out = np.interp(s, sig, rad)
        low = s < sig[0]
        return np.where(low, np.maximum(s, 0) * (rad[0] / sig[0]), out)
    if mode == "nearest":
        return rad[np.argmin(np.abs(s[..., None] - sig), axis=-1)]
    raise ValueError(f"mode must be 'linear' or 'nearest', got {mode!r}")


def radius_to_sigma(radius, *, mode: str = "linear") -> np.ndarray:
    """Disk radius (px) -> Gaussian sigma (px); the inverse of :func:`sigma_to_radius` (same modes)."""
    r = np.asarray(radius, dtype=np.float64)
    sig, rad = SIGMA_RADIUS_TABLE[:, 0], SIGMA_RADIUS_TABLE[:, 1]
    if mode == "linear":
        out = np.interp(r, rad, sig)
        return np.where(r < rad[0], np.maximum(r, 0) * (sig[0] / rad[0]), out)
    if mode == "nearest":
        return sig[np.argmin(np.abs(r[..., None] - rad), axis=-1)]
    raise ValueError(f"mode must be 'linear' or 'nearest', got {mode!r}")


def disk_kernel(radius: float) -> np.ndarray:
    """MATLAB ``fspecial('disk', radius)``: a pillbox whose weights are the exact area of each pixel
    inside the circle, normalised to sum 1; shape ``(2c+1, 2c+1)`` with ``c = ceil(radius - 0.5)``.

    ``radius <= 0.5`` gives the 1x1 identity (so the RTF level "r = 0.5" is sharp).  Reimplemented
    from the area formula; the values agree with MATLAB's to < 5e-6 (see tests).
    """
    rad = float(radius)
    if rad <= 0 or not math.isfinite(rad):
        raise ValueError(f"disk radius must be a finite value > 0, got {radius!r}")
    crad = math.ceil(rad - 0.5)
    if crad == 0:
        return np.ones((1, 1))
    x, y = np.meshgrid(np.arange(-crad, crad + 1, dtype=np.float64), np.arange(-crad, crad + 1, dtype=np.float64))
    maxxy, minxy = np.maximum(abs(x), abs(y)), np.minimum(abs(x), abs(y))
    r2 = rad * rad
    m1 = np.where(r2 < (maxxy + 0.5) ** 2 + (minxy - 0.5) ** 2, minxy - 0.5,
                  np.sqrt(np.maximum(r2 - (maxxy + 0.5) ** 2, 0)))
    m2 = np.where(r2 > (maxxy - 0.5) ** 2 + (minxy + 0.5) ** 2, minxy + 0.5,
                  np.sqrt(np.maximum(r2 - (maxxy - 0.5) ** 2, 0)))
    a1, a2 = np.arcsin(np.clip(m1 / rad, -1, 1)), np.arcsin(np.clip(m2 / rad, -1, 1))
    edge = ((r2 < (maxxy + 0.5) ** 2 + (minxy + 0.5) ** 2) & (r2 > (maxxy - 0.5) ** 2 + (minxy - 0.5) ** 2)) | \
           ((minxy == 0) & (maxxy - 0.5 < rad) & (maxxy + 0.5 >= rad))
    sgrid = (r2 * (0.5 * (a2 - a1) + 0.25 * (np.sin(2 * a2) - np.sin(2 * a1))) - (maxxy - 0.5) * (m2 - m1)
             + (m1 - minxy + 0.5)) * edge
    sgrid = sgrid + ((maxxy + 0.5) ** 2 + (minxy + 0.5) ** 2 < r2)
    sgrid[crad, crad] = min(math.pi * r2, math.pi / 2)
    if rad > crad - 0.5 and r2 < (crad - 0.5) ** 2 + 0.25:
        m1s = math.sqrt(r2 - (crad - 0.5) ** 2)
        m1n = m1s / rad
        sg0 = 2 * (r2 * (0.5 * math.asin(m1n) + 0.25 * math.sin(2 * math.asin(m1n))) - m1s * (crad - 0.5))
        for i, j in ((2 * crad, crad), (crad, 2 * crad), (crad, 0), (0, crad)):
            sgrid[i, j] = sg0
        for i, j in ((2 * crad - 1, crad), (crad, 2 * crad - 1), (crad, 1), (1, crad)):
            sgrid[i, j] -= sg0
    sgrid[crad, crad] = min(sgrid[crad, crad], 1)
    return sgrid / sgrid.sum()


def gaussian_blur(image: np.ndarray, sigma: float, *, truncate: float = 3.0) -> np.ndarray:
    """Blur a gray ``(H, W)`` or per-channel ``(H, W, C)`` image with the separable sampled Gaussian
    of :func:`gaussian_kernel1d`, reflect border; float32 of the same shape (``sigma <= 0``: a copy)."""
    img = np.asarray(image, dtype=np.float32)
    if sigma <= 0:
        return img.copy()
    k = gaussian_kernel1d(sigma, truncate=truncate).astype(np.float32)
    return cv2.sepFilter2D(img, cv2.CV_32F, k, k, borderType=cv2.BORDER_REFLECT).reshape(img.shape)


def disk_blur(image: np.ndarray, radius: float) -> np.ndarray:
    """Pillbox blur with :func:`disk_kernel` (MATLAB ``fspecial('disk', radius)``), reflect border; float32."""
    k = disk_kernel(radius).astype(np.float32)
    img = np.asarray(image, dtype=np.float32)
    return cv2.filter2D(img, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT).reshape(img.shape)


def varying_disk_blur(image: np.ndarray, radius_map: np.ndarray) -> np.ndarray:
    """Spatially varying pillbox blur, gather model: each output pixel is the :func:`disk_blur` of the
    whole image (reflect border) with its own radius ``radius_map[y, x]`` (px; ``<= 0.5`` = sharp).

    Computed as one whole-image blur per distinct radius, each pixel taken from the blur of its own
    radius, which equals a per-pixel gather with that pixel's kernel.  float32 of ``image``'s shape
    (``(H, W)`` or ``(H, W, C)``); ``radius_map`` is ``(H, W)``.
    """
    img = np.asarray(image, dtype=np.float32)
    radii = np.asarray(radius_map, dtype=np.float64)
    if radii.shape != img.shape[:2]:
        raise ValueError(f"radius_map {radii.shape} must have the image's size {img.shape[:2]}")
    out = np.empty_like(img)
    for r in np.unique(radii):
        where = radii == r
        out[where] = img[where] if r <= 0.5 else disk_blur(img, float(r))[where]
    return out


#: Border extensions by name (see the module conventions) -> OpenCV border type.
_CV_BORDERS = {"reflect": cv2.BORDER_REFLECT, "replicate": cv2.BORDER_REPLICATE}


def disk_blur_stack(image: np.ndarray, radii, *, border: str = "replicate") -> np.ndarray:
    """``image`` and its whole-image :func:`disk_kernel` blurs, float64 ``(len(radii) + 1, H, W[, C])``:
    entry 0 is the image itself (sharp), entry ``1 + i`` the correlation with ``disk_kernel(radii[i])``
    under ``border`` (``"replicate"``: ``a a | a b c``, as SVBR-Net's data; or ``"reflect"``), each
    output pixel ``sum_{u,v} k[u, v] * image[y + u - c, x + v - c]`` in float64."""
    if border not in _CV_BORDERS:
        raise ValueError(f"border must be one of {', '.join(_CV_BORDERS)}, got {border!r}")
    img = np.asarray(image, dtype=np.float64)
    out = np.empty((len(radii) + 1, *img.shape))
    out[0] = img
    for i, r in enumerate(radii):
        out[i + 1] = cv2.filter2D(img, cv2.CV_64F, disk_kernel(float(r)), borderType=_CV_BORDERS[border]).reshape(img.shape)
    return out


def select_levels(stack: np.ndarray, level_index: np.ndarray) -> np.ndarray:
    """Per pixel, the entry ``level_index[y, x]`` of a :func:`disk_blur_stack`: the spatially varying
    disk blur of the gather model (each pixel blurred by its own level's kernel), float64."""
    idx = np.asarray(level_index)
    if idx.shape != stack.shape[1:3]:
        raise ValueError(f"level map {idx.shape} must have the image's size {stack.shape[1:3]}")
    if idx.size and (idx.min() < 0 or idx.max() >= stack.shape[0]):
        raise ValueError(f"level indices must lie in 0..{stack.shape[0] - 1}")
    sel = idx.astype(np.intp).reshape(1, *idx.shape, *([1] * (stack.ndim - 3)))
    return np.take_along_axis(stack, sel, axis=0)[0]
