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

import numpy as np

#: 4-neighbour discrete Laplacian, ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]``.
LAPLACIAN_3X3 = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def gaussian_radius(sigma: float, *, truncate: float = 3.0) -> int:
    """Half-width ``ceil(truncate * sigma)`` in pixels of a sampled Gaussian kernel."""
    if sigma < 0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be a finite value >= 0, got {sigma!r}")
    return int(math.ceil(truncate * sigma - 1e-9))


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
