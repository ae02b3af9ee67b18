"""Non-blind deconvolution with a hyper-Laplacian prior (Krishnan & Fergus, NIPS 2009), and its
spatially varying "layered" use with a disk-radius blur map (Levin et al., SIGGRAPH 2007): the
classical deblurring baseline ``kf_layered`` of Karaali & Jung (TIP22 "[41]+[42]", SVBR "[22]&[23]";
``METHODS.md`` 2.7, ambiguity 24).  Reimplemented from the papers' equations; no code copied.

What :func:`kf_deconvolve` computes
-----------------------------------
For each channel ``y`` (values in ``[0, 1]``) and a kernel ``k`` it approximately solves ::

    min_x  (lam / 2) ||k * x - y||^2  +  sum_pixels |dx x|^alpha + |dy x|^alpha

(``*`` = 2-D convolution, circular on the extended image; ``dx``, ``dy`` = forward differences
``[1, -1]``: ``(dx x)[i, j] = x[i, j+1] - x[i, j]``, circular) by half-quadratic splitting: auxiliary
``w = (wx, wy)`` and ::

    min_{x,w} (lam/2)||k*x - y||^2 + (beta/2)(||dx x - wx||^2 + ||dy x - wy||^2) + |wx|^alpha + |wy|^alpha

alternated for ``beta = beta_start, beta_start * beta_rate, ...`` while ``beta < beta_max``
(defaults 1, 2 sqrt 2, 256: the paper's 6 outer iterations), ``inner_iterations`` (w, x) rounds per
beta, starting from ``x = y``:

* **w-step** (per pixel, separable): ``w = argmin |w|^alpha + (beta/2)(w - v)^2`` with ``v = dx x``
  (resp. ``dy x``); see :func:`solve_w`.
* **x-step** (Fourier domain, exact): ``x = F^-1[(lam conj(K) Y + beta F(dx^T wx + dy^T wy)) /
  (lam |K|^2 + beta (|Dx|^2 + |Dy|^2))]`` with ``K`` = the kernel's OTF (``psf2otf``), ``|D|^2 =
  4 sin^2(pi f / N)``.  ``dx^T wx + dy^T wy`` is formed in the image domain, so each x-step is one
  real FFT and one inverse (``scipy.fft``, ``workers`` threads, single precision).

The w-step
----------
For ``alpha < 1`` the minimiser is ``0`` when ``|v| <= tau(beta)`` and otherwise the larger root of
``alpha w^(alpha-1) + beta (w - |v|) = 0`` (times ``sign v``), with the threshold (where the root's
objective equals the objective at 0) ::

    w_t = (2 (1 - alpha) / beta)^(1 / (2 - alpha)),   tau = w_t + (alpha / beta) w_t^(alpha - 1)

* ``alpha = 2/3``: with ``u = w^(1/3)`` the root solves the depressed quartic ``u^4 - |v| u + 2/(3 beta)
  = 0``, solved in closed form (Ferrari: resolvent cubic ``m^3 - c m - v^2/8 = 0``, ``c = 2/(3 beta)``,
  which above the threshold has one real root, by Cardano; ``u = (s + sqrt(2|v|/s - s^2)) / 2``,
  ``s = sqrt(2m)``).  This is the paper's quartic, written in ``w^(1/3)``.
* ``alpha = 1/2``: with ``u = w^(1/2)``, ``u^3 - |v| u + 1/(2 beta) = 0``, which above the threshold has
  three real roots: the largest by the trigonometric formula.  (The paper's cubic, in ``w^(1/2)``.)
* ``alpha = 1``: soft threshold ``max(|v| - 1/beta, 0)``; other ``alpha`` in ``(0, 2]``: a safeguarded
  Newton solve (bracketed; bisection when a Newton step leaves the bracket) of the same equation.

``w_solver="lut"`` (default) evaluates the minimiser from a per-``(alpha, beta)`` table built with the
exact solver: piecewise-linear in ``v`` on cells of width ``~LUT_STEP`` whose edges include ``+-tau``,
so the jump at the threshold is exact and no cell straddles it; ``|v|`` beyond ``LUT_RANGE`` uses the
last cell's line (the branch is nearly linear there; image gradients stay far below it).  Both solvers
touch only the values above ``tau`` when they are few (most gradients at small ``beta``).  Measured
(``benchmarks/bench_kf_layered.py --w-step``, 2-core EPYC): over the six betas of the schedule the table
costs ~21 ns per gradient value against ~38 ns for the closed form (one 500x500 RGB deconvolution of
the sharp Kodak photo: 0.19 s against 0.49 s; the 22-level ramp benchmark: 3.6 s against 4.5 s) and
agrees with it to < 1e-6 per value (tests).  Deconvolved images differ by ~3e-7 on average; a
gradient within float32 rounding of ``tau`` (a tie) can flip between 0 and ``w_t`` and move a pixel
by up to ~0.01 (kodim01, r 2).  ``"exact"`` uses the closed forms / Newton directly.

Boundaries (CHOICE, ``METHODS.md`` 2.7 "pad + edgetaper")
--------------------------------------------------------
The FFT x-step assumes a circular image; a real photo is not, and the wrap-around edge rings into the
result.  ``boundary="replicate"`` (default, as DMENet's MATLAB) or ``"reflect"`` (half-sample
symmetric, the project's border) extends the image by ``pad`` pixels on each side (default ``4 x`` the
kernel's side, at least 16; the bottom/right margins grow to an FFT-friendly size), then tapers the
extension's outer band like MATLAB ``edgetaper``: ``J = a I + (1 - a) (k (*) I)`` with ``(*)`` circular
convolution and ``a = (1 - b_rows)(1 - b_cols)^T``, ``b`` the kernel's 1-D projected autocorrelation
normalised to 1 at lag 0 and placed at lag = distance to the nearest edge (so ``J`` is the circularly
blurred image at the wrap-around and the input itself more than a kernel width inside);
``taper_passes`` repeats it (DMENet uses 4).  The taper band lies in the extension, so the image itself
is never altered before deconvolution; the result is cropped back.  ``boundary="circular"``: no
extension (the paper's model; only right for circularly blurred images).
Measured (``scripts/tune_kf_lambda.py --compare-boundaries``, 48 Kodak 256 px cases, lam 8000; mean PSNR
uniform / spatially varying blur): default 30.85 / 26.43; reflect 30.97 / 26.02; no taper 29.32 /
25.33; 4 taper passes 30.85 / 26.44; pad 2x kernel 30.85 / 25.60; pad 8x 30.85 / 26.50; circular
21.54 / 16.40.  The extension matters for varying blur because each level deconvolves regions blurred
by other kernels, whose ringing otherwise wraps around.

Layered composition (:func:`kf_layered`)
----------------------------------------
The radius map (disk radius in px) is quantised to ``levels`` (default the 23 radii 0.5, 0.75, ...,
6.0 px) with :func:`datagen.blur_maps.quantize_to_levels` (nearest, ties to the smaller; ``<= 0.5``
and the level 0.5 are sharp: ``fspecial('disk', 0.5)`` is the identity, so those pixels are copied
unchanged).  For every other level present the *whole* image is deconvolved with that level's disk
(:func:`datagen.psf.disk_kernel`) and the level's pixels are taken from it; the result is clipped to
``[0, 1]``, float32.  Known weakness of the layered scheme (not a bug): each level is deconvolved over
regions blurred by other kernels, whose ringing leaks into the level's own pixels near level
boundaries, more so with a larger ``lam``.

``lam`` (CHOICE, ambiguity 24): ``KFLayered``'s default 8000 maximises the mean PSNR of
``scripts/tune_kf_lambda.py`` (48 uint8 Kodak cases, half uniform, half spatially varying, true map);
the KF demo's 2000 scores 0.8 dB lower there.  See the script for the table and the caveats.
"""
from __future__ import annotations

import functools
import math
import time
from typing import Literal

import numpy as np
import scipy.fft as sfft
from pydantic import Field, field_validator

from datagen import psf
from datagen.blur_maps import quantize_to_levels
from datagen.generators.base import increasing_radii
from datagen.generators.disk23_edges import DISK23_RADII

from ..base import Method, Params, check_image

__all__ = ["KF_LEVELS", "KFLayered", "kf_deconvolve", "kf_layered", "solve_w", "w_threshold"]

#: The 23 disk radii (px) of the RTF / Karaali maps: 0.5, 0.75, ..., 6.0 (0.5 = sharp).
KF_LEVELS = tuple(float(r) for r in DISK23_RADII)
#: Target cell width of the w-step table (units of image gradient, i.e. of ``[0, 1]`` intensity).
LUT_STEP = 1e-4
#: The table covers ``|v| <= LUT_RANGE``; beyond it the last cell's line is used.
LUT_RANGE = 4.0
#: The w-step evaluates only the values above the threshold when they are fewer than this fraction
#: (a gather/scatter of a few values beats a pass over all; measured crossover ~0.35).
SPARSE_FRACTION = 0.35
_BOUNDARIES = ("reflect", "replicate", "circular")


# ------------------------------------------------------------------------------------------------
# w-subproblem: argmin_w |w|^alpha + (beta/2) (w - v)^2
# ------------------------------------------------------------------------------------------------

def _check_alpha_beta(alpha: float, beta: float) -> None:
    if not (math.isfinite(alpha) and 0 < alpha <= 2):
        raise ValueError(f"alpha must be in (0, 2], got {alpha!r}")
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a finite value > 0, got {beta!r}")


def w_threshold(beta: float, alpha: float) -> tuple[float, float]:
    """``(tau, w_t)``: for ``|v| <= tau`` the w-step gives 0; just above it, ``|w| = w_t``.

    ``alpha >= 1`` (convex): ``tau = 1/beta`` for ``alpha = 1`` (soft threshold), ``0`` above, and
    ``w_t = 0``.
    """
    _check_alpha_beta(alpha, beta)
    if alpha >= 1:
        return (1.0 / beta if alpha == 1 else 0.0), 0.0
    w_t = (2.0 * (1.0 - alpha) / beta) ** (1.0 / (2.0 - alpha))
    return w_t + alpha / beta * w_t ** (alpha - 1.0), w_t


def _branch_two_thirds(a: np.ndarray, beta: float) -> np.ndarray:
    """Larger root of ``(2/3) w^(-1/3) + beta (w - a) = 0`` for ``a >= tau`` (closed form, see module)."""
    c = 2.0 / (3.0 * beta)
    h = a * a / 16.0
    d = np.sqrt(np.maximum(h * h - c ** 3 / 27.0, 0.0))      # > 0 above tau: one real resolvent root
    m = np.cbrt(h + d) + np.cbrt(h - d)
    s = np.sqrt(2.0 * m)
    u = 0.5 * (s + np.sqrt(np.maximum(2.0 * a / s - s * s, 0.0)))
    return u * u * u


def _branch_half(a: np.ndarray, beta: float) -> np.ndarray:
    """Larger root of ``(1/2) w^(-1/2) + beta (w - a) = 0`` for ``a >= tau`` (trigonometric cubic)."""
    arg = np.clip(-(3.0 / (4.0 * beta * a)) * np.sqrt(3.0 / a), -1.0, 1.0)
    u = 2.0 * np.sqrt(a / 3.0) * np.cos(np.arccos(arg) / 3.0)
    return u * u


def _branch_newton(a: np.ndarray, beta: float, alpha: float, lo: float, iterations: int = 100) -> np.ndarray:
    """Root of ``g(w) = alpha w^(alpha-1) + beta (w - a)`` in ``[lo, a]`` (the larger root for alpha < 1,
    the only one for alpha > 1): Newton steps kept inside a shrinking bracket, bisection otherwise."""
    lo_w = np.full_like(a, lo)
    hi_w = a.copy()
    w = a.copy() if alpha < 1 else 0.5 * (lo_w + hi_w)
    for _ in range(iterations):
        wp = np.maximum(w, 1e-300)
        g = alpha * wp ** (alpha - 1.0) + beta * (w - a)
        dg = alpha * (alpha - 1.0) * wp ** (alpha - 2.0) + beta
        neg = g < 0
        lo_w = np.where(neg, w, lo_w)
        hi_w = np.where(neg, hi_w, w)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = w - g / dg
        inside = (step > lo_w) & (step < hi_w) & np.isfinite(step)
        w_new = np.where(inside, step, 0.5 * (lo_w + hi_w))
        if np.all(np.abs(w_new - w) <= 1e-15 * np.maximum(a, 1.0)):
            return w_new
        w = w_new
    return w


def _branch(a: np.ndarray, beta: float, alpha: float, w_t: float) -> np.ndarray:
    """The non-zero minimiser's magnitude for ``|v| = a`` above the threshold (float64)."""
    if alpha == 2.0 / 3.0:
        return _branch_two_thirds(a, beta)
    if alpha == 0.5:
        return _branch_half(a, beta)
    if alpha == 1.0:
        return a - 1.0 / beta
    if alpha == 2.0:
        return beta * a / (2.0 + beta)
    return _branch_newton(a, beta, alpha, w_t)


def solve_w(v, beta: float, alpha: float = 2.0 / 3.0, *, method: str = "exact") -> np.ndarray:
    """Per element ``argmin_w |w|^alpha + (beta / 2) (w - v)^2`` (the HQS w-step).

    ``method="exact"``: closed form for ``alpha`` = 2/3 (quartic), 1/2 (cubic), 1 (soft threshold),
    2 (linear); safeguarded Newton for other ``alpha`` in ``(0, 2]``; computed in float64.
    ``"lut"``: the per-``(alpha, beta)`` piecewise-linear table (module docstring) in ``v``'s floating
    dtype.  Both evaluate only the values above the threshold when they are fewer than
    :data:`SPARSE_FRACTION` of all (the rest are 0); the table is applied to every value otherwise.
    At ``|v| == tau`` exactly (a tie: 0 and the root have the same objective) either may be returned.
    Returns an array of ``v``'s shape and floating dtype (float64 for integer input).
    """
    _check_alpha_beta(alpha, beta)
    if method not in ("exact", "lut"):
        raise ValueError(f"method must be 'exact' or 'lut', got {method!r}")
    v = np.asarray(v)
    if not np.issubdtype(v.dtype, np.floating):
        v = v.astype(np.float64)
    tau, w_t = w_threshold(beta, alpha)
    table = _lut(float(alpha), float(beta), v.dtype.str) if method == "lut" else None
    big = np.abs(v) > v.dtype.type(tau)
    n_big = int(np.count_nonzero(big))
    if table is not None and n_big > SPARSE_FRACTION * v.size:
        return _lut_apply(v, table)
    out = np.zeros_like(v)
    if n_big:
        vb = v[big]
        if table is not None:
            out[big] = _lut_apply(vb, table)
        else:
            out[big] = np.copysign(_branch(np.abs(vb).astype(np.float64), beta, alpha, w_t), vb)
    return out


@functools.lru_cache(maxsize=64)
def _lut(alpha: float, beta: float, dtype: str) -> tuple[np.ndarray, np.ndarray, float, float, int]:
    """``(slope, intercept, inv_h, offset, n)``: ``w(v) = slope[i] v + intercept[i]`` on cell
    ``i = floor(v inv_h + offset)`` of width ``h``; ``+-tau`` are cell edges."""
    tau, w_t = w_threshold(beta, alpha)
    if tau > 0:
        k = max(1, math.ceil(tau / LUT_STEP))
        h = tau / k
    else:
        h = LUT_STEP
    half = math.ceil(LUT_RANGE / h)                  # cells on each side of 0
    nodes = np.arange(-half, half + 1, dtype=np.float64) * h     # 2 half + 1 nodes, 2 half cells
    a = np.abs(nodes)
    mag = np.zeros_like(a)
    big = a > tau * (1 + 1e-12)
    mag[big] = _branch(a[big], beta, alpha, w_t)
    # cell i spans [nodes[i], nodes[i+1]]; on the positive side the cell starting at tau uses the
    # non-zero branch at its left node (the value just above tau), on the negative side symmetric.
    left = np.copysign(mag[:-1], nodes[:-1])
    right = np.copysign(mag[1:], nodes[1:])
    if tau > 0:
        at = a > tau * (1 - 1e-12)
        at &= ~big                                   # the nodes at +-tau themselves
        branch_tau = _branch(np.array([tau]), beta, alpha, w_t)[0] if alpha < 1 else 0.0
        i_pos = np.flatnonzero(at & (nodes > 0))
        i_neg = np.flatnonzero(at & (nodes < 0))
        left[i_pos] = branch_tau                     # cell [tau, tau + h): starts on the branch
        right[i_neg - 1] = -branch_tau               # cell (-tau - h, -tau]: ends on the branch
    slope = (right - left) / h
    intercept = left - slope * nodes[:-1]
    dt = np.dtype(dtype)
    return slope.astype(dt), intercept.astype(dt), 1.0 / h, float(half), 2 * half


def _lut_apply(v: np.ndarray, table) -> np.ndarray:
    slope, intercept, inv_h, offset, n = table
    t = v * v.dtype.type(inv_h)
    t += v.dtype.type(offset)
    idx = t.astype(np.int32)          # truncation = floor for t >= 0; t < 0 (v < -LUT_RANGE) -> cell 0
    np.clip(idx, 0, n - 1, out=idx)
    out = np.take(slope, idx)
    out *= v
    out += np.take(intercept, idx)
    return out


# ------------------------------------------------------------------------------------------------
# kf_deconvolve
# ------------------------------------------------------------------------------------------------

def _otf(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """MATLAB ``psf2otf`` for a real FFT: the kernel zero-padded to ``shape``, its centre
    (``size // 2``) moved to ``(0, 0)``; ``rfft2`` (complex64)."""
    kh, kw = kernel.shape
    full = np.zeros(shape, dtype=np.float64)
    full[:kh, :kw] = kernel
    full = np.roll(full, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    return sfft.rfft2(full).astype(np.complex64)


def _taper_profile(n: int, proj: np.ndarray) -> np.ndarray:
    """``1 - b`` along one axis of length ``n``: ``b`` = the projection's autocorrelation (1 at lag 0)
    at lag = distance to the nearest end."""
    ac = np.correlate(proj, proj, mode="full")[len(proj) - 1:]
    ac = ac / ac[0]
    idx = np.arange(n)
    lag = np.minimum(idx, n - 1 - idx)
    b = np.where(lag < len(ac), ac[np.minimum(lag, len(ac) - 1)], 0.0)
    return 1.0 - b


def _edgetaper(y: np.ndarray, kernel: np.ndarray, otf: np.ndarray, passes: int, workers: int) -> np.ndarray:
    """MATLAB-``edgetaper``-like blend of ``y`` ``(C, H, W)`` with its circular blur near the borders."""
    hp, wp = y.shape[-2:]
    a = np.outer(_taper_profile(hp, kernel.sum(axis=1)), _taper_profile(wp, kernel.sum(axis=0))).astype(np.float32)
    for _ in range(passes):
        blurred = sfft.irfft2(sfft.rfft2(y, workers=workers) * otf, s=(hp, wp), workers=workers)
        y = a * y + (1.0 - a) * blurred
    return y


def _forward_diff(x: np.ndarray, axis: int) -> np.ndarray:
    """Circular forward difference ``x[i+1] - x[i]`` along ``axis`` (-1 or -2)."""
    g = np.empty_like(x)
    n = x.shape[axis]
    sl = lambda s: tuple([slice(None)] * (x.ndim + axis) + [s] + [slice(None)] * (-axis - 1))
    np.subtract(x[sl(slice(1, n))], x[sl(slice(0, n - 1))], out=g[sl(slice(0, n - 1))])
    np.subtract(x[sl(slice(0, 1))], x[sl(slice(n - 1, n))], out=g[sl(slice(n - 1, n))])
    return g


def _adjoint_diff_sum(wx: np.ndarray, wy: np.ndarray) -> np.ndarray:
    """``dx^T wx + dy^T wy`` with ``(d^T w)[i] = w[i-1] - w[i]`` (circular)."""
    out = np.empty_like(wx)
    np.subtract(wx[..., :, :-1], wx[..., :, 1:], out=out[..., :, 1:])
    np.subtract(wx[..., :, -1], wx[..., :, 0], out=out[..., :, 0])
    out[..., 1:, :] += wy[..., :-1, :]
    out[..., 1:, :] -= wy[..., 1:, :]
    out[..., 0, :] += wy[..., -1, :]
    out[..., 0, :] -= wy[..., 0, :]
    return out


def _diff_otf_power(shape: tuple[int, int]) -> np.ndarray:
    """``|Dx|^2 + |Dy|^2`` on the rfft2 grid: ``4 sin^2(pi f / N)`` per axis."""
    hp, wp = shape
    fy = 4.0 * np.sin(np.pi * np.arange(hp) / hp) ** 2
    fx = 4.0 * np.sin(np.pi * np.arange(wp // 2 + 1) / wp) ** 2
    return (fy[:, None] + fx[None, :]).astype(np.float32)


def _check_kernel(kernel) -> np.ndarray:
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.size == 0:
        raise ValueError(f"kernel must be a non-empty 2-D array, got shape {k.shape}")
    if not np.isfinite(k).all():
        raise ValueError("kernel has NaN or infinite values")
    if not abs(k.sum() - 1.0) < 1e-6:
        raise ValueError(f"kernel must sum to 1, sums to {k.sum():.6g}")
    return k


def _channels_first(image) -> tuple[np.ndarray, bool]:
    img = np.asarray(image)
    if img.ndim not in (2, 3) or img.size == 0:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {img.shape}")
    img = img.astype(np.float32, copy=False)
    if not np.isfinite(img).all():
        raise ValueError("image has NaN or infinite values")
    return (img[None] if img.ndim == 2 else np.moveaxis(img, -1, 0)), img.ndim == 2


def _hqs_params(lam, alpha, beta_start, beta_rate, beta_max, inner_iterations) -> list[float]:
    """The beta schedule; ``ValueError`` (one line) on bad parameters."""
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam must be a finite value > 0, got {lam!r}")
    _check_alpha_beta(alpha, beta_start)
    if not (math.isfinite(beta_rate) and beta_rate > 1):
        raise ValueError(f"beta_rate must be > 1, got {beta_rate!r}")
    if not (math.isfinite(beta_max) and beta_max > 0):
        raise ValueError(f"beta_max must be a finite value > 0, got {beta_max!r}")
    if int(inner_iterations) != inner_iterations or inner_iterations < 1:
        raise ValueError(f"inner_iterations must be an integer >= 1, got {inner_iterations!r}")
    betas, beta = [], float(beta_start)
    while beta < beta_max:
        betas.append(beta)
        beta *= beta_rate
    return betas


def kf_deconvolve(image, kernel, *, lam: float, alpha: float = 2.0 / 3.0, beta_start: float = 1.0,
                  beta_rate: float = 2.0 * math.sqrt(2.0), beta_max: float = 256.0, inner_iterations: int = 1,
                  boundary: str = "replicate", pad: int | None = None, taper_passes: int = 1,
                  w_solver: str = "lut", workers: int = 1) -> np.ndarray:
    """Deconvolve ``image`` by ``kernel`` with a hyper-Laplacian gradient prior (Krishnan & Fergus 2009).

    Parameters
    ----------
    image : array_like, (H, W) or (H, W, C)
        Blurred image, float in ``[0, 1]`` (each channel is deconvolved independently).
    kernel : array_like, (kh, kw)
        Blur kernel, sums to 1; the blur model is 2-D convolution (kernel centre at ``size // 2``;
        for the symmetric disks of :func:`datagen.psf.disk_kernel` the same as correlation).
    lam : float
        Data-term weight ``lam`` of ``(lam/2)||k*x - y||^2`` (images in ``[0, 1]``; larger = less
        regularisation).  The paper's demo uses 2000; :class:`KFLayered`'s default is tuned.
    alpha : float
        Exponent of the gradient prior, in ``(0, 2]`` (2/3 and 1/2 have closed-form w-steps).
    beta_start, beta_rate, beta_max, inner_iterations
        Continuation schedule: ``beta = beta_start * beta_rate^k`` while ``< beta_max``, with
        ``inner_iterations`` (w, x) rounds each (paper: 1, 2 sqrt 2, 256, 1).
    boundary : {"reflect", "replicate", "circular"}
        Extension before the FFT deconvolution (module docstring): reflect/replicate by ``pad`` px
        then ``taper_passes`` edgetaper passes, cropped after; ``"circular"``: none.
    pad : int or None
        Extension per side (px); ``None``: ``max(16, 4 * kernel side)``.
    taper_passes : int
        Edgetaper passes on the extended image (0 = none).
    w_solver : {"lut", "exact"}
        w-step by table (fast) or closed form / Newton (:func:`solve_w`).
    workers : int
        Threads of ``scipy.fft`` (does not change the result).

    Returns
    -------
    float32 array of ``image``'s shape, **not** clipped (ringing may leave ``[0, 1]``).
    """
    chans, gray = _channels_first(image)
    k = _check_kernel(kernel)
    betas = _hqs_params(lam, alpha, beta_start, beta_rate, beta_max, inner_iterations)
    if boundary not in _BOUNDARIES:
        raise ValueError(f"boundary must be one of {_BOUNDARIES}, got {boundary!r}")
    if w_solver not in ("lut", "exact"):
        raise ValueError(f"w_solver must be 'lut' or 'exact', got {w_solver!r}")
    if int(taper_passes) != taper_passes or taper_passes < 0:
        raise ValueError(f"taper_passes must be an integer >= 0, got {taper_passes!r}")
    _, h, w = chans.shape
    if boundary == "circular":
        top = left = 0
        y = chans
    else:
        p = max(16, 4 * max(k.shape)) if pad is None else int(pad)
        if p < 0:
            raise ValueError(f"pad must be >= 0, got {pad!r}")
        hp = sfft.next_fast_len(h + 2 * p, real=True)
        wp = sfft.next_fast_len(w + 2 * p, real=True)
        top, left = p, p
        mode = "symmetric" if boundary == "reflect" else "edge"
        y = np.pad(chans, ((0, 0), (top, hp - h - top), (left, wp - w - left)), mode=mode)
    shape = y.shape[-2:]
    otf = _otf(k, shape)
    if boundary != "circular" and taper_passes:
        y = _edgetaper(y, k, otf, int(taper_passes), workers)
    y = np.ascontiguousarray(y, dtype=np.float32)
    x = _hqs(y, otf, lam=float(lam), alpha=float(alpha), betas=betas, inner=int(inner_iterations),
             w_solver=w_solver, workers=workers)
    x = x[:, top:top + h, left:left + w]
    return np.ascontiguousarray(x[0] if gray else np.moveaxis(x, 0, -1), dtype=np.float32)


def _hqs(y: np.ndarray, otf: np.ndarray, *, lam: float, alpha: float, betas: list[float], inner: int,
         w_solver: str, workers: int) -> np.ndarray:
    """Half-quadratic splitting on the (extended) ``(C, H, W)`` float32 image ``y``."""
    shape = y.shape[-2:]
    num_data = (np.float32(lam) * np.conj(otf)) * sfft.rfft2(y, workers=workers)
    den_data = (np.float32(lam) * (otf.real ** 2 + otf.imag ** 2)).astype(np.float32)
    den_grad = _diff_otf_power(shape)
    x = y
    for beta in betas:
        den = den_data + np.float32(beta) * den_grad
        for _ in range(inner):
            wx = solve_w(_forward_diff(x, -1), beta, alpha, method=w_solver)
            wy = solve_w(_forward_diff(x, -2), beta, alpha, method=w_solver)
            rhs = sfft.rfft2(_adjoint_diff_sum(wx, wy), workers=workers)
            rhs *= np.float32(beta)
            rhs += num_data
            rhs /= den
            x = sfft.irfft2(rhs, s=shape, workers=workers)
    return x


# ------------------------------------------------------------------------------------------------
# kf_layered
# ------------------------------------------------------------------------------------------------

def _level_index(radius_map, shape: tuple[int, int], levels: tuple[float, ...]) -> np.ndarray:
    m = np.asarray(radius_map, dtype=np.float64)
    if m.shape != tuple(shape):
        raise ValueError(f"radius_map has shape {m.shape} but the image is {tuple(shape)} (H, W)")
    if not np.isfinite(m).all():
        raise ValueError(f"radius_map has {int((~np.isfinite(m)).sum())} NaN or infinite value(s)")
    return quantize_to_levels(m, levels=levels)


def kf_layered(image, radius_map, *, lam: float, alpha: float = 2.0 / 3.0, levels=KF_LEVELS,
               return_timings: bool = False, **deconv_options):
    """Spatially varying non-blind deblurring: Krishnan-Fergus per disk level, composed by ``radius_map``.

    Parameters
    ----------
    image : array_like, (H, W) or (H, W, C)
        Blurred image, float in ``[0, 1]``.
    radius_map : array_like, (H, W)
        Disk radius (px) per pixel; quantised to the nearest of ``levels`` (ties to the smaller),
        values ``<= 0.5`` and levels ``<= 0.5`` are sharp (copied unchanged).
    lam, alpha
        As :func:`kf_deconvolve` (the same for every level).
    levels : sequence of float
        Strictly increasing disk radii (px); default :data:`KF_LEVELS` (0.5, 0.75, ..., 6.0).
    return_timings : bool
        Also return ``{level: seconds}`` of the levels deconvolved.
    **deconv_options
        Passed to :func:`kf_deconvolve` (``beta_*``, ``inner_iterations``, ``boundary``, ``pad``,
        ``taper_passes``, ``w_solver``, ``workers``).

    Returns
    -------
    float32 array of ``image``'s shape in ``[0, 1]`` (and the timings when asked).
    ``ValueError`` (one line) for a map of another size or with NaN / infinite values.
    """
    levels = increasing_radii(tuple(float(r) for r in levels))
    if not 1 <= len(levels) <= 255:
        raise ValueError(f"levels must hold 1..255 radii, got {len(levels)}")
    img = np.asarray(image)
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {img.shape}")
    idx = _level_index(radius_map, img.shape[:2], levels)
    img = img.astype(np.float32, copy=False)
    if not np.isfinite(img).all():
        raise ValueError("image has NaN or infinite values")
    out = img.copy()
    timings: dict[float, float] = {}
    for i in np.unique(idx):
        r = levels[i - 1] if i > 0 else 0.0
        if r <= 0.5:
            continue                                 # sharp: fspecial('disk', r <= 0.5) is the identity
        t0 = time.perf_counter()
        where = idx == i
        out[where] = kf_deconvolve(img, psf.disk_kernel(r), lam=lam, alpha=alpha, **deconv_options)[where]
        timings[r] = time.perf_counter() - t0
    np.clip(out, 0.0, 1.0, out=out)
    return (out, timings) if return_timings else out


# ------------------------------------------------------------------------------------------------
# Method
# ------------------------------------------------------------------------------------------------

class KFLayered(Method):
    NAME = "kf_layered"
    VERSION = "1"
    PROVIDES = "restored_image"
    UNITS = "image"
    HIGHER = "n/a"
    NEEDS_MAP = "radius_px"
    DESCRIPTION = ("Non-blind spatially varying deblurring: Krishnan-Fergus hyper-Laplacian deconvolution "
                   "(alpha 2/3) per disk level, composed per pixel by a disk-radius blur map (layered)")
    REFERENCE = ("D. Krishnan, R. Fergus, Fast image deconvolution using hyper-Laplacian priors, NIPS 2009; "
                 "A. Levin, R. Fergus, F. Durand, W. T. Freeman, Image and depth from a conventional camera "
                 "with a coded aperture, SIGGRAPH 2007 (layered deblurring); baseline of Karaali et al. TIP 2022 "
                 "and Karaali & Jung ICIP 2022")

    class Params(Params):
        # lam: chosen on our own synthetic data by scripts/tune_kf_lambda.py: 6 Kodak 256x256 crops x
        # (4 uniform disks r 1, 2.5, 4, 5.5 + 4 SVBR-style varying maps), uint8-rounded, deblurred with the
        # true map over lam 500..16000: the largest lam that beats the blurry input on every kind of blur
        # (2000: mean 27.44 dB, blurry 24.39).  Larger lam wins on uniform blur (8000: best mean, 28.64)
        # but rings across level boundaries: on the product-of-ramps maps and on synth_defocus it ends
        # below the blurry input (see the script's docstring).
        lam: float = Field(2000.0, gt=0, description="data-term weight (lam/2)||k*x - y||^2, images in [0, 1]")
        alpha: float = Field(2.0 / 3.0, gt=0, le=2, description="hyper-Laplacian exponent of the gradient prior")
        levels: tuple[float, ...] = Field(KF_LEVELS, min_length=1,
                                          description="disk radii (px) the map is quantised to; <= 0.5 = sharp")
        beta_start: float = Field(1.0, gt=0, description="first half-quadratic weight beta")
        beta_rate: float = Field(2.0 * math.sqrt(2.0), gt=1, description="beta multiplier per outer iteration")
        beta_max: float = Field(256.0, gt=0, description="stop when beta reaches this")
        inner_iterations: int = Field(1, ge=1, description="(w, x) rounds per beta")
        boundary: Literal["reflect", "replicate", "circular"] = Field(
            "replicate", description="extension before the FFT deconvolution (then edgetaper, crop)")
        pad: int | None = Field(None, ge=0, description="extension per side in px (None: max(16, 4 x kernel side))")
        taper_passes: int = Field(1, ge=0, description="edgetaper passes on the extended image")
        w_solver: Literal["lut", "exact"] = Field("lut", description="w-step by table or closed form")

        _levels = field_validator("levels")(lambda v: increasing_radii(v))

    def predict_with_map(self, image: np.ndarray, blur_map: np.ndarray) -> np.ndarray:
        img = check_image(image)
        p = self.params
        return kf_layered(img, blur_map, lam=p.lam, alpha=p.alpha, levels=p.levels, beta_start=p.beta_start,
                          beta_rate=p.beta_rate, beta_max=p.beta_max, inner_iterations=p.inner_iterations,
                          boundary=p.boundary, pad=p.pad, taper_passes=p.taper_passes, w_solver=p.w_solver)
