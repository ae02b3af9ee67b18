"""Blur-map-driven enhancement of Galetto & Deng (The Visual Computer, 2022, §5 "Applications"):
adaptive unsharp masking (§5.1, eqs. 8-11) and defocus magnification (§5.2, eqs. 12-13).  ``METHODS.md`` §5.5.

Pure functions, no state, no I/O.  Both take

* ``image``: float ``(H, W, 3)`` RGB in ``[0, 1]``;
* ``blur_map_sigma``: float ``(H, W)`` defocus map in Gaussian-sigma pixels (``HIGHER = "blurred"``),
  nominally ``0..19`` (the 20 classes of ``galetto2022``); values outside are clamped as stated below;

and return float32 ``(H, W, 3)`` clipped to ``[0, 1]``.  Gaussian low-passes are
:func:`datagen.psf.gaussian_blur` (sampled, normalised, ``ceil(3 sigma)`` half-width, ``"reflect"``
border) on each RGB channel.  They are not registered methods on their own (they need a map);
``galetto2022_um`` / ``galetto2022_sdof`` wrap them with the learned map.
"""
from __future__ import annotations

import math

import numpy as np

from datagen import psf

from .guided import guided_filter

__all__ = ["adaptive_um_gain", "adaptive_unsharp_mask", "defocus_magnification", "defocus_weight",
           "defocus_weight_params", "iterated_self_guided"]

#: Top of the map scale: the 20 classes of galetto2022 are sigma = 0..19.
M_MAX = 19.0
#: Centre of the defocus-magnification weight (``|M - 10|``, the authors' ``NLT.m`` 0..10 scale).
M_CENTRE = 10.0


def _check(image: np.ndarray, blur_map_sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(image, dtype=np.float32)
    m = np.asarray(blur_map_sigma, dtype=np.float32)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
    if m.shape != img.shape[:2]:
        raise ValueError(f"blur map must be (H, W) = {img.shape[:2]}, got shape {m.shape}")
    if not (np.isfinite(img).all() and np.isfinite(m).all()):
        raise ValueError("image or blur map has NaN or infinite values")
    return img, m


def adaptive_um_gain(blur_map_sigma: np.ndarray, *, alpha1: float = 46.0, beta1: float = 0.1,
                     alpha2: float = 183.0, beta2: float = 0.27, lambda_max: float = 2.0) -> np.ndarray:
    """The per-pixel gain of eqs. 9-11, ``lambda = lambda_max * lambda1 * lambda2`` (float32, map's shape).

    ``M = clip(blur_map_sigma, 0, 19) / 19``; ``lambda1 = 1 / (1 + exp(-alpha1 (M - beta1)))`` (rises
    past ``beta1``: no gain on pixels already in focus), ``lambda2 = 1 - 1 / (1 + exp(-alpha2 (M -
    beta2)))`` (falls past ``beta2``: no gain on heavy blur, which sharpening cannot restore).
    Defaults: Galetto's Fig. 13 / Table 6 values.
    """
    m = np.clip(np.asarray(blur_map_sigma, dtype=np.float64), 0.0, M_MAX) / M_MAX
    # 1/(1+exp(-z)) written with tanh: no overflow warnings for large |z|
    lam1 = 0.5 * (1.0 + np.tanh(0.5 * alpha1 * (m - beta1)))
    lam2 = 1.0 - 0.5 * (1.0 + np.tanh(0.5 * alpha2 * (m - beta2)))
    return (lambda_max * lam1 * lam2).astype(np.float32)


def adaptive_unsharp_mask(image: np.ndarray, blur_map_sigma: np.ndarray, *, alpha1: float = 46.0,
                          beta1: float = 0.1, alpha2: float = 183.0, beta2: float = 0.27,
                          lambda_max: float = 2.0, lowpass_sigma: float = 2.0) -> np.ndarray:
    """Galetto eqs. 8-11: ``J = clip(I + lambda(M) (I - B), 0, 1)`` with ``lambda`` of
    :func:`adaptive_um_gain` and ``B`` the Gaussian low-pass (``lowpass_sigma`` px, each RGB channel;
    the paper leaves ``B`` unspecified, ``METHODS.md`` §5.5 CHOICE sigma 2).

    Parameters
    ----------
    image : (H, W, 3) float RGB in [0, 1]
    blur_map_sigma : (H, W) float, Gaussian sigma in pixels (0..19; clamped)
    alpha1, beta1, alpha2, beta2, lambda_max : float, keyword-only
        Gain curve (eqs. 10-11, ``beta`` on the normalised ``[0, 1]`` map scale).
    lowpass_sigma : float, keyword-only
        Sigma (px) of the low-pass ``B``.

    Returns
    -------
    (H, W, 3) float32 in [0, 1]
    """
    img, m = _check(image, blur_map_sigma)
    lam = adaptive_um_gain(m, alpha1=alpha1, beta1=beta1, alpha2=alpha2, beta2=beta2, lambda_max=lambda_max)
    detail = img - psf.gaussian_blur(img, lowpass_sigma)
    return np.clip(img + lam[..., None] * detail, 0.0, 1.0).astype(np.float32)


def defocus_weight_params(*, c0: float = 1.0, c1: float = 7.0, w0: float = 0.999,
                          w1: float = 0.001) -> tuple[float, float]:
    """``(sigma, gamma)`` of ``W(M) = 1 - exp(-|(M - 10) / sigma|^gamma)`` with ``W(c0) = w0`` and
    ``W(c1) = w1`` (Galetto eq. 13; the authors' ``NLT.m`` solution)::

        a     = ln(-ln(1 - w0)) / ln(-ln(1 - w1))
        sigma = exp((ln(10 - c0) - a ln(10 - c1)) / (1 - a))
        gamma = ln(-ln(1 - w0)) / ln((10 - c0) / sigma)

    Requires ``0 <= c0 < c1 < 10`` and ``1 > w0 > w1 > 0`` (then ``W`` decreases from ``w0`` to ``w1``).
    """
    if not (0.0 <= c0 < c1 < M_CENTRE):
        raise ValueError(f"need 0 <= c0 < c1 < {M_CENTRE:g} (sigma px), got c0={c0!r}, c1={c1!r}")
    if not (0.0 < w1 < w0 < 1.0):
        raise ValueError(f"need 0 < w1 < w0 < 1, got w0={w0!r}, w1={w1!r}")
    l0 = math.log(-math.log(1.0 - w0))
    l1 = math.log(-math.log(1.0 - w1))
    if l1 == 0.0 or l0 == l1:
        raise ValueError(f"w0={w0!r}, w1={w1!r} give no solution (ln(-ln(1-w)) must differ and be non-zero)")
    a = l0 / l1
    sigma = math.exp((math.log(M_CENTRE - c0) - a * math.log(M_CENTRE - c1)) / (1.0 - a))
    gamma = l0 / math.log((M_CENTRE - c0) / sigma)
    return sigma, gamma


def defocus_weight(blur_map_sigma: np.ndarray, *, c0: float = 1.0, c1: float = 7.0, w0: float = 0.999,
                   w1: float = 0.001) -> np.ndarray:
    """Galetto eq. 13: ``W = 1 - exp(-|(min(M, 10) - 10) / sigma|^gamma)`` (float32), ``M`` the map in
    sigma px clamped to ``[0, 10]`` (``METHODS.md`` §5.5: above 10 the ``|M - 10|`` form would rise
    again); ``(sigma, gamma)`` from :func:`defocus_weight_params`.  ``W`` is the weight of the
    sharpened layer: ``w0`` at ``M = c0``, ``w1`` at ``M = c1``, 0 from ``M = 10`` on."""
    sigma, gamma = defocus_weight_params(c0=c0, c1=c1, w0=w0, w1=w1)
    m = np.clip(np.asarray(blur_map_sigma, dtype=np.float64), 0.0, M_CENTRE)
    return (1.0 - np.exp(-np.abs((m - M_CENTRE) / sigma) ** gamma)).astype(np.float32)


def iterated_self_guided(image: np.ndarray, *, radius: int = 33, eps: float = 128.0 / 255.0 ** 2,
                         iterations: int = 5) -> np.ndarray:
    """Each channel ``iterations`` times through the self-guided filter ``c <- GF(c, guide=c)``
    (:func:`methods.guided.guided_filter`, box windows ``2 radius + 1``, reflect border); float32."""
    out = np.array(image, dtype=np.float32, copy=True)
    chans = out[..., None] if out.ndim == 2 else out
    for k in range(chans.shape[-1]):
        ch = np.ascontiguousarray(chans[..., k])
        for _ in range(int(iterations)):
            ch = guided_filter(ch, ch, radius=radius, eps=eps)
        chans[..., k] = ch
    return out


def defocus_magnification(image: np.ndarray, blur_map_sigma: np.ndarray, *, c0: float = 1.0, c1: float = 7.0,
                          w0: float = 0.999, w1: float = 0.001, blur_radius: int = 33,
                          blur_eps: float = 128.0 / 255.0 ** 2, blur_iterations: int = 5,
                          sharpen_lambda: float = 0.25, lowpass_sigma: float = 2.0) -> np.ndarray:
    """Galetto eqs. 12-13 (synthetic shallow depth of field): ``R = clip(W S + (1 - W) B, 0, 1)``.

    * ``W`` = :func:`defocus_weight` of the map (``W(c0) = w0``, ``W(c1) = w1``);
    * ``S = clip(I + sharpen_lambda (I - G * I), 0, 1)``, fixed-gain UM (``lambda = 0.25``, Gaussian
      low-pass ``lowpass_sigma`` px on each RGB channel, as in :func:`adaptive_unsharp_mask`);
    * ``B`` = :func:`iterated_self_guided` of ``I``: each RGB channel self-guided-filtered
      ``blur_iterations`` times with radius ``blur_radius`` px and ``eps = blur_eps`` (the paper's
      ``r = 33, eps = 128`` on the 0-255 scale, i.e. ``128 / 255^2`` here; ``r`` read as the radius).

    The authors' code extras (``regionfill`` of the in-focus region, quarter-resolution filtering
    guided by ``W``) are not part of this paper version.

    Returns
    -------
    (H, W, 3) float32 in [0, 1]
    """
    img, m = _check(image, blur_map_sigma)
    wgt = defocus_weight(m, c0=c0, c1=c1, w0=w0, w1=w1)[..., None]
    sharp = np.clip(img + np.float32(sharpen_lambda) * (img - psf.gaussian_blur(img, lowpass_sigma)), 0.0, 1.0)
    blurred = iterated_self_guided(img, radius=blur_radius, eps=blur_eps, iterations=blur_iterations)
    return np.clip(wgt * sharp + (1.0 - wgt) * blurred, 0.0, 1.0).astype(np.float32)
