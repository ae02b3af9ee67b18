"""Zhuo & Sim 2011: defocus map from the gradient ratio at edges, propagated by the matting Laplacian.

Re-implemented from the description in ``METHODS.md`` §2.4-2.5 (the authors' MATLAB release,
academic-only licence, was not copied).  Pipeline, for an RGB image ``I`` in [0, 1]:

1. Gray ``g`` = BT.601 luma in float64 (the weights of :func:`methods.base.to_gray`; MATLAB ``rgb2gray``).
2. Edges: Canny as MATLAB's ``edge(g, 'canny', 0.1, 1)`` of the demo (:func:`canny_matlab`): gradient by
   a derivative-of-Gaussian of sigma 1, magnitude divided by its image maximum, hysteresis thresholds
   ``high = 0.1`` and ``low = 0.4 * 0.1 = 0.04`` of that normalised magnitude, 8-connected.
3. Gradient magnitudes ``m1``, ``m2`` of ``g`` with first-derivative-of-Gaussian kernels of
   ``sigma1 = std = 1`` and ``sigma2 = 1.5 * std`` (kernel grid ``[-w, w]^2``, ``w = 2*ceil(2*sigma)+1``,
   ``imfilter(..., 'replicate', 'conv')``), ratio ``R = m1 / m2``.
4. At edge pixels with ``1.01 < R <= sigma2/sigma1``: ``s = sqrt((R^2 sigma1^2 - sigma2^2) / (1 - R^2))``
   (the re-blur model of a Gaussian-blurred step edge), clipped at ``max_blur = 3``; elsewhere 0.
5. Sparse joint bilateral filter of ``s`` (:func:`sparse_bilateral_filter`): window ``ceil(4*5)+1 = 21``,
   spatial sigma 5, range sigma ``0.1 * max_blur`` on the RGB guide (sum over channels of the
   per-channel Gaussian range weights), extra weight ``exp(-s_q)``, only over non-zero sparse pixels,
   replicate border; evaluated only at the non-zero pixels.
6. Propagation: ``(L + lam*D) x = lam*D*s`` with ``D = diag(s > 1e-4)``, ``L`` the matting Laplacian of
   the RGB image (3x3 windows, ``eps = 1e-7`` added to the window covariance as in Zhuo's
   ``getLaplacian.m``), ``lam = 0.001`` (:mod:`datagen.propagate`).

Output: Gaussian sigma in pixels (``UNITS = "sigma_px"``), higher = more blurred.  The propagated
solution is clipped to ``[0, max_blur]`` by default (``clip_output``; Zhuo's code leaves it unclipped
and only displays ``[0, maxBlur]``; the linear solve over/undershoots by a few hundredths).
An image without any usable edge gives an all-zero map.
"""
from __future__ import annotations

import math
from typing import Literal

import cv2
import numpy as np
from pydantic import Field
from scipy import ndimage

from datagen import psf
from datagen.propagate import matting_stencil, solve_propagation

from ..base import LUMA_BT601, Method, Params, check_image

#: Sparse values at or below this are "no estimate" (Zhuo's ``0.0001``).
SPARSE_EPS = 1e-4
#: Canny on an image whose largest gradient magnitude is below this (intensity units) finds no edge.
FLAT_GRADIENT = 1e-10


# ---------------------------------------------------------------------------------------------
# Canny, MATLAB semantics
# ---------------------------------------------------------------------------------------------

def _matlab_smooth_gradient(gray: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB Canny's derivative-of-Gaussian gradients ``(dI/dx, dI/dy)`` (x = columns, y = rows, downwards).

    1-D sampled Gaussian on ``-ceil(4 sigma)..ceil(4 sigma)`` normalised to sum 1; its derivative is the
    central-difference ``gradient`` of that kernel (one-sided at the two ends) rescaled so that its
    positive taps sum to 1 and its negative taps to -1.  ``dI/dx`` = Gaussian along y, then the
    derivative kernel along x (and vice versa), both as convolutions with replicate border.
    """
    ext = math.ceil(4 * sigma)
    x = np.arange(-ext, ext + 1, dtype=np.float64)
    gk = np.exp(-(x * x) / (2 * sigma * sigma))
    gk /= gk.sum()
    dk = np.gradient(gk)
    pos, neg = dk > 0, dk < 0
    dk[pos] /= dk[pos].sum()
    dk[neg] /= -dk[neg].sum()
    dk = dk[::-1].copy()                         # convolution = correlation with the flipped kernel
    g = np.asarray(gray, dtype=np.float64)
    gx = cv2.sepFilter2D(g, cv2.CV_64F, dk, gk, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.sepFilter2D(g, cv2.CV_64F, gk, dk, borderType=cv2.BORDER_REPLICATE)
    return gx, gy


def matlab_auto_threshold(mag: np.ndarray, *, not_edge_fraction: float = 0.7) -> float:
    """MATLAB's default Canny high threshold: 64-bin histogram of the normalised magnitude, the first
    bin whose cumulative count exceeds 70 % of the pixels, divided by 64."""
    counts = np.bincount(np.rint(np.clip(mag, 0, 1) * 63).astype(np.int64).ravel(), minlength=64)
    return float((np.nonzero(np.cumsum(counts) > not_edge_fraction * mag.size)[0][0] + 1) / 64)


def _nonmax_suppress(mag: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Interior pixels whose magnitude is >= both neighbours interpolated along the gradient direction.

    The two neighbours at ``+-`` one step along ``(gy, gx)`` are interpolated between the axis
    neighbour and the diagonal neighbour with weight ``min(|gx|,|gy|) / max(|gx|,|gy|)`` (MATLAB's
    four-sector scheme); border pixels are never maxima.
    """
    h, w = mag.shape
    out = np.zeros((h, w), dtype=bool)
    if h < 3 or w < 3:
        return out
    m = mag[1:-1, 1:-1]
    ax_, ay_ = np.abs(gx[1:-1, 1:-1]), np.abs(gy[1:-1, 1:-1])
    sx = np.where(gx[1:-1, 1:-1] >= 0, 1, -1)
    sy = np.where(gy[1:-1, 1:-1] >= 0, 1, -1)
    horiz = ax_ >= ay_
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(horiz, ay_ / ax_, ax_ / ay_)
    d = np.nan_to_num(d, nan=0.0)
    yy, xx = np.mgrid[1:h - 1, 1:w - 1]
    # axis neighbour: along x when the gradient is mostly horizontal, along y otherwise
    ay_off = np.where(horiz, 0, sy)
    ax_off = np.where(horiz, sx, 0)
    n1 = (1 - d) * mag[yy + ay_off, xx + ax_off] + d * mag[yy + sy, xx + sx]
    n2 = (1 - d) * mag[yy - ay_off, xx - ax_off] + d * mag[yy - sy, xx - sx]
    out[1:-1, 1:-1] = (m >= n1) & (m >= n2) & (m > 0)
    return out


def canny_matlab(gray: np.ndarray, *, threshold: float | None = 0.1, sigma: float = 1.0,
                 low_ratio: float = 0.4) -> np.ndarray:
    """Canny edges with the semantics of MATLAB's ``edge(I, 'canny', threshold, sigma)``.

    Re-implemented from MATLAB's documented algorithm (current releases):

    * gradients: derivative-of-Gaussian of ``sigma`` (:func:`_matlab_smooth_gradient`), magnitude
      ``hypot(dx, dy)`` normalised by its maximum, so thresholds are fractions of the strongest gradient;
    * scalar ``threshold`` ``T``: ``high = T``, ``low = low_ratio * T`` (MATLAB ``ThresholdRatio = 0.4``);
      ``threshold=None`` (MATLAB ``[]``): ``high`` from :func:`matlab_auto_threshold`;
    * non-maximum suppression with interpolation along the gradient (:func:`_nonmax_suppress`), edge
      candidates need ``mag > low``; hysteresis (``bwselect(..., 8)``) keeps the 8-connected candidate
      components that contain a pixel with ``mag > high``.  No extra thinning.
    * deviation: an image whose largest gradient magnitude is ``<= 1e-10`` (flat up to rounding) has no
      edges (MATLAB would normalise the rounding noise to 1 and find spurious ones).

    Check: on RTF image 01 (V channel, ``sigma = sqrt(2)``, ``threshold=None``) this reproduces the
    MATLAB edge map shipped with Karaali et al. 2022 (``precomputed_edges/edge_01.png``) pixel for pixel.
    Returns a boolean ``(H, W)`` map.
    """
    g = np.asarray(gray, dtype=np.float64)
    if g.ndim != 2:
        raise ValueError(f"expected a 2-D gray image, got shape {g.shape}")
    gx, gy = _matlab_smooth_gradient(g, sigma)
    mag = np.hypot(gx, gy)
    top = mag.max()
    if top <= FLAT_GRADIENT:             # a flat image: only rounding noise, which normalising would amplify
        return np.zeros(g.shape, dtype=bool)
    mag /= top
    high = matlab_auto_threshold(mag) if threshold is None else float(threshold)
    low = float(low_ratio) * high
    cand = _nonmax_suppress(mag, gx, gy) & (mag > low)
    labels, count = ndimage.label(cand, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return cand
    strong = np.zeros(count + 1, dtype=bool)
    strong[np.unique(labels[cand & (mag > high)])] = True
    strong[0] = False
    return strong[labels]


# ---------------------------------------------------------------------------------------------
# Gradient ratio -> sparse sigma
# ---------------------------------------------------------------------------------------------

def gaussian_gradient_magnitude(gray: np.ndarray, sigma: float) -> np.ndarray:
    """``|grad(g * G_sigma)|`` with sampled first-derivative-of-Gaussian kernels on ``[-w, w]``, ``w = 2*ceil(2 sigma)+1``.

    ``g1x(x, y) = -x / (2 pi sigma^4) exp(-(x^2+y^2) / (2 sigma^2))`` written separably as
    ``(-x/sigma^2) G1(x) * G1(y)`` with ``G1`` the normalised Gaussian of :mod:`datagen.psf`
    (identical to the continuous normalisation to < 1e-5 for sigma >= 1); replicate border, convolution.
    """
    w = 2 * math.ceil(2 * sigma) + 1
    g1 = psf.gaussian_kernel1d(sigma, radius=w)
    x = np.arange(-w, w + 1, dtype=np.float64)
    d1 = (-x / (sigma * sigma) * g1)[::-1].copy()   # flipped: convolution, as MATLAB imfilter 'conv'
    g = np.asarray(gray, dtype=np.float64)
    gx = cv2.sepFilter2D(g, cv2.CV_64F, d1, g1, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.sepFilter2D(g, cv2.CV_64F, g1, d1, borderType=cv2.BORDER_REPLICATE)
    return np.hypot(gx, gy)


def sparse_sigma_from_ratio(gray: np.ndarray, edges: np.ndarray, *, sigma1: float = 1.0, sigma2: float = 1.5,
                            max_blur: float = 3.0, min_ratio: float = 1.01) -> np.ndarray:
    """Sparse blur sigma at edge pixels from the gradient-magnitude ratio ``R = m1/m2`` (0 where no estimate)."""
    m1 = gaussian_gradient_magnitude(gray, sigma1)
    m2 = gaussian_gradient_magnitude(gray, sigma2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = m1 / m2
        ok = edges & np.isfinite(ratio) & (ratio > min_ratio) & (ratio <= sigma2 / sigma1)
        r2 = np.where(ok, ratio * ratio, 0.0)
        s = np.where(ok, np.sqrt(np.maximum((r2 * sigma1 ** 2 - sigma2 ** 2) / (1.0 - r2), 0.0)), 0.0)
    return np.minimum(s, max_blur)


def sparse_bilateral_filter(sparse: np.ndarray, guide: np.ndarray, *, sigma_spatial: float = 5.0,
                            sigma_range: float = 0.3, eps: float = SPARSE_EPS) -> np.ndarray:
    """Zhuo & Sim's joint bilateral filter of a sparse map, evaluated at its non-zero pixels only.

    For each pixel ``p`` with ``s_p > eps``: ``out_p = sum_q w_pq s_q / sum_q w_pq`` over the
    ``(ceil(4 sigma_spatial)+1)^2`` window (replicate border), restricted to ``s_q > eps``, with
    ``w_pq = G_spatial(q-p) * sum_c exp(-(guide_c(q) - guide_c(p))^2 / (2 sigma_range^2)) * exp(-s_q)``.
    Pixels with ``s_p <= eps`` stay 0.  Vectorised over the sparse pixels, one pass per window offset:
    ``O(n_sparse * window^2)``.
    """
    s = np.asarray(sparse, dtype=np.float64)
    gd = np.asarray(guide, dtype=np.float64)
    if gd.ndim == 2:
        gd = gd[..., None]
    h, w = s.shape
    size = math.ceil(sigma_spatial * 4) + 1
    half = (size - 1) // 2
    ks = psf.gaussian_kernel1d(sigma_spatial, radius=half)
    out = np.zeros_like(s)
    py, px = np.nonzero(s > eps)
    if py.size == 0:
        return out
    gp = gd[py, px]                                   # (n, C)
    wexp = np.where(s > eps, np.exp(-s), 0.0)         # exp(-s_q), 0 for non-sparse neighbours
    num = np.zeros(py.size)
    den = np.zeros(py.size)
    inv2r = 1.0 / (2.0 * sigma_range * sigma_range)
    for dy in range(-half, half + 1):
        qy = np.clip(py + dy, 0, h - 1)
        for dx in range(-half, half + 1):
            qx = np.clip(px + dx, 0, w - 1)
            wq = wexp[qy, qx]
            if not wq.any():
                continue
            diff = gd[qy, qx] - gp
            wr = np.exp(-(diff * diff) * inv2r).sum(axis=1)
            wt = (ks[dy + half] * ks[dx + half]) * wr * wq
            num += wt * s[qy, qx]
            den += wt
    out[py, px] = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return out


def zhuo_sim_defocus(image: np.ndarray, *, std: float = 1.0, std_ratio: float = 1.5, canny_threshold: float = 0.1,
                     canny_sigma: float = 1.0, max_blur: float = 3.0, bilateral: bool = True,
                     sigma_spatial: float = 5.0, range_factor: float = 0.1, lam: float = 1e-3,
                     epsilon: float = 1e-7, solver: str = "auto", tol: float = 1e-6,
                     return_sparse: bool = False):
    """The full Zhuo & Sim pipeline on an RGB image in [0, 1]; returns the dense sigma map (float64).

    With ``return_sparse=True`` returns ``(dense, sparse, edges)``.
    """
    rgb = np.asarray(image, dtype=np.float64)
    gray = rgb @ LUMA_BT601.astype(np.float64)
    edges = canny_matlab(gray, threshold=canny_threshold, sigma=canny_sigma)
    sigma1, sigma2 = std, std_ratio * std
    sparse = sparse_sigma_from_ratio(gray, edges, sigma1=sigma1, sigma2=sigma2, max_blur=max_blur)
    if bilateral:
        sparse = sparse_bilateral_filter(sparse, rgb, sigma_spatial=sigma_spatial, sigma_range=range_factor * max_blur)
    mask = sparse > SPARSE_EPS
    lap = matting_stencil(rgb, epsilon=epsilon, radius=1, scale_epsilon=False)
    dense = solve_propagation(lap, sparse, mask, lam=lam, solver=solver, tol=tol)
    if return_sparse:
        return dense, sparse, edges
    return dense


class ZhuoSim(Method):
    NAME = "zhuo_sim2011"
    VERSION = "1"
    PROVIDES = "blur_map"
    UNITS = "sigma_px"
    HIGHER = "blurred"
    DESCRIPTION = ("Zhuo & Sim 2011: Gaussian-derivative gradient ratio at Canny edges -> sparse sigma, "
                   "sparse joint bilateral filter, matting-Laplacian propagation")
    REFERENCE = "S. Zhuo, T. Sim, Defocus map estimation from a single image, Pattern Recognition 44(9), 2011"

    class Params(Params):
        std: float = Field(1.0, gt=0, description="sigma1 of the first re-blur (MATLAB demo std=1)")
        std_ratio: float = Field(1.5, gt=1, description="sigma2 = std_ratio * std (Zhuo: 1.5)")
        canny_threshold: float = Field(0.1, gt=0, lt=1, description="MATLAB edge(...,'canny',T,sigma): high=T, low=0.4T")
        canny_sigma: float = Field(1.0, gt=0, description="Canny smoothing sigma (demo: 1)")
        max_blur: float = Field(3.0, gt=0, description="clip of the sparse sigma (demo maxBlur=3)")
        bilateral: bool = Field(True, description="apply the sparse joint bilateral filter")
        sigma_spatial: float = Field(5.0, gt=0, description="bilateral spatial sigma (window ceil(4*sd)+1)")
        range_factor: float = Field(0.1, gt=0, description="bilateral range sigma = range_factor * max_blur")
        lam: float = Field(1e-3, gt=0, description="propagation data weight lambda")
        epsilon: float = Field(1e-7, gt=0, description="matting Laplacian covariance regulariser")
        solver: Literal["auto", "direct", "cg"] = Field("auto", description="linear solver (datagen.propagate)")
        tol: float = Field(1e-6, gt=0, description="CG relative residual tolerance")
        clip_output: bool = Field(True, description="clip the dense map to [0, max_blur]")

    def predict(self, image: np.ndarray) -> np.ndarray:
        img = check_image(image)
        p = self.params
        dense = zhuo_sim_defocus(img, std=p.std, std_ratio=p.std_ratio, canny_threshold=p.canny_threshold,
                                 canny_sigma=p.canny_sigma, max_blur=p.max_blur, bilateral=p.bilateral,
                                 sigma_spatial=p.sigma_spatial, range_factor=p.range_factor, lam=p.lam,
                                 epsilon=p.epsilon, solver=p.solver, tol=p.tol)
        if p.clip_output:
            dense = np.clip(dense, 0.0, p.max_blur)
        return dense.astype(np.float32)
