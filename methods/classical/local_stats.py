"""Classical local sharpness measures over 16x16 windows (the baselines of Galetto & Deng 2022, §4.1).

Galetto & Deng compare their CNN with "entropy, standard deviation and variance of the Laplacian"
maps: "the blurriness of a pixel is measured by a quantity such as the entropy or standard deviation
of a patch of pixels centred at that pixel ... For the variance of Laplacian, the image is filtered by
using the Laplacian operator [and] the blurriness of a pixel is measured by the variance of a patch of
pixels of the filtered image centred at that pixel ... we use a patch size of 16 x 16".  All three
statistics *grow with sharpness* (a defocused patch has less contrast, less high-frequency energy and
fewer distinct grey levels), so the maps are ``UNITS = "score"``, ``HIGHER = "sharp"``; the paper's
figures show them as blurriness images without saying how they were inverted or normalised.

Common conventions (all three maps)
-----------------------------------
* Input: gray BT.601 luma (:func:`methods.base.to_gray`) in [0, 1].
* Dense, one value per pixel: the ``window x window`` patch of pixel ``(y, x)`` spans rows
  ``y - window//2 .. y + (window-1)//2`` (and the same for columns), i.e. for the even window 16 the
  pixel sits at position (8, 8) of its patch (centre rounded down-right; OpenCV's default anchor).
* Border: ``"reflect"`` (half-sample symmetric, ``d c b a | a b c d``; OpenCV ``BORDER_REFLECT``,
  MATLAB ``"symmetric"``), the project's convention (:mod:`datagen.psf`); every patch holds
  ``window^2`` samples.
* Moments via box filters in float64 (``O(1)`` per pixel regardless of the window);
  ``var = E[x^2] - E[x]^2`` clipped at 0.
* Intensity scale ``scale`` (default 255): std and variance of the Laplacian are computed on
  ``scale * gray``, i.e. on the 0..255 scale on which Galetto et al. threshold the variance of the
  Laplacian (``phi > 1000`` for sharp 32x32 patches, §3.1).
"""
from __future__ import annotations

import cv2
import numpy as np
from pydantic import Field

from datagen import psf

from ..base import Method, Params, check_image, to_gray

__all__ = ["LocalEntropy", "LocalStd", "VarLaplacian", "local_entropy", "local_std",
           "local_variance_of_laplacian"]

WINDOW = 16


def _check_gray(gray: np.ndarray, window: int) -> np.ndarray:
    g = np.asarray(gray, dtype=np.float64)
    if g.ndim != 2:
        raise ValueError(f"expected a 2-D gray image, got shape {g.shape}")
    if int(window) != window or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    return g


def _box_mean(x: np.ndarray, window: int) -> np.ndarray:
    return cv2.boxFilter(x, cv2.CV_64F, (window, window), normalize=True, borderType=cv2.BORDER_REFLECT)


def _local_variance(x: np.ndarray, window: int) -> np.ndarray:
    mean = _box_mean(x, window)
    return np.maximum(_box_mean(x * x, window) - mean * mean, 0.0)


def local_variance_of_laplacian(gray: np.ndarray, *, window: int = WINDOW, scale: float = 255.0,
                                presmooth_sigma: float = 0.0) -> np.ndarray:
    """Variance over each ``window x window`` patch of the 3x3 Laplacian ``[[0,1,0],[1,-4,1],[0,1,0]]``
    (:data:`datagen.psf.LAPLACIAN_3X3`, Pech-Pacheco et al. 2000) of ``scale * gray``; float64 (H, W).

    The Laplacian is computed on the whole image (reflect border) before the windowed variance.
    ``presmooth_sigma > 0`` first smooths with a 3x3 Gaussian of that sigma (Galetto's patch filter
    for the training set; off by default for the map, which the paper describes without it).
    """
    g = _check_gray(gray, window) * float(scale)
    if presmooth_sigma > 0:
        k = psf.gaussian_kernel1d(presmooth_sigma, radius=1)
        g = cv2.sepFilter2D(g, cv2.CV_64F, k, k, borderType=cv2.BORDER_REFLECT)
    lap = cv2.filter2D(g, cv2.CV_64F, psf.LAPLACIAN_3X3, borderType=cv2.BORDER_REFLECT)
    return _local_variance(lap, int(window))


def local_std(gray: np.ndarray, *, window: int = WINDOW, scale: float = 255.0) -> np.ndarray:
    """Standard deviation (``1/N``, population) of ``scale * gray`` over each ``window x window`` patch; float64."""
    g = _check_gray(gray, window) * float(scale)
    return np.sqrt(_local_variance(g, int(window)))


def local_entropy(gray: np.ndarray, *, window: int = WINDOW, bins: int = 256) -> np.ndarray:
    """Shannon entropy (bits) of the grey-level histogram of each ``window x window`` patch; float64.

    Histogram: ``bins`` equal bins with centres ``k / (bins-1)`` over [0, 1] (MATLAB ``imhist``
    semantics; with the default 256 bins an 8-bit grey level ``k/255`` falls exactly into bin ``k``),
    i.e. ``q = rint(clip(gray, 0, 1) * (bins-1))``; ``H = -sum_b p_b log2 p_b`` with
    ``p_b = count_b / window^2``.  Range ``[0, log2(min(bins, window^2))]`` (0..8 bits for 16x16).
    One box filter per grey level present in the image: ``O(levels * N)``.
    """
    g = _check_gray(gray, window)
    window = int(window)
    if int(bins) != bins or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    q = np.rint(np.clip(g, 0.0, 1.0) * (bins - 1)).astype(np.int32)
    n = window * window
    # c log2 c for the integer counts 0..n (0 log 0 = 0)
    c = np.arange(n + 1, dtype=np.float64)
    clogc = np.zeros(n + 1)
    clogc[1:] = c[1:] * np.log2(c[1:])
    acc = np.zeros(g.shape)
    for level in np.unique(q):
        ind = (q == level).astype(np.float32)
        counts = cv2.boxFilter(ind, cv2.CV_32F, (window, window), normalize=False, borderType=cv2.BORDER_REFLECT)
        acc += clogc[np.rint(counts).astype(np.int32)]
    return np.maximum(np.log2(n) - acc / n, 0.0)


class _LocalStat(Method):
    VERSION = "1"
    PROVIDES = "blur_map"
    UNITS = "score"
    HIGHER = "sharp"
    REFERENCE = ("F. Galetto, G. Deng, Single image defocus map estimation through patch blurriness "
                 "classification and its applications, The Visual Computer, 2022 (Sect. 4.1, 16x16 patches)")

    def _compute(self, gray: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, image: np.ndarray) -> np.ndarray:
        img = check_image(image)
        return self._compute(to_gray(img).astype(np.float64)).astype(np.float32)


class VarLaplacian(_LocalStat):
    NAME = "var_laplacian"
    DESCRIPTION = "Local variance (16x16 window) of the 3x3 Laplacian of the gray image (0..255 scale); higher = sharper"

    class Params(Params):
        window: int = Field(WINDOW, ge=2, description="side of the square window (pixels)")
        scale: float = Field(255.0, gt=0, description="intensity scale applied to gray in [0, 1]")
        presmooth_sigma: float = Field(0.0, ge=0, description="3x3 Gaussian pre-smoothing sigma (0 = off)")

    def _compute(self, gray: np.ndarray) -> np.ndarray:
        p = self.params
        return local_variance_of_laplacian(gray, window=p.window, scale=p.scale, presmooth_sigma=p.presmooth_sigma)


class LocalEntropy(_LocalStat):
    NAME = "local_entropy"
    DESCRIPTION = "Local Shannon entropy (bits, 256-bin gray histogram) over 16x16 windows; higher = sharper"

    class Params(Params):
        window: int = Field(WINDOW, ge=2, description="side of the square window (pixels)")
        bins: int = Field(256, ge=2, le=65536, description="histogram bins over [0, 1] (centres k/(bins-1))")

    def _compute(self, gray: np.ndarray) -> np.ndarray:
        return local_entropy(gray, window=self.params.window, bins=self.params.bins)


class LocalStd(_LocalStat):
    NAME = "local_std"
    DESCRIPTION = "Local standard deviation of the gray image (0..255 scale) over 16x16 windows; higher = sharper"

    class Params(Params):
        window: int = Field(WINDOW, ge=2, description="side of the square window (pixels)")
        scale: float = Field(255.0, gt=0, description="intensity scale applied to gray in [0, 1]")

    def _compute(self, gray: np.ndarray) -> np.ndarray:
        return local_std(gray, window=self.params.window, scale=self.params.scale)
