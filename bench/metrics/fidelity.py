"""Full-reference fidelity: PSNR and SSIM with pinned conventions (restoration / enhancement).

Conventions (``../shared/notes/METHODS.md`` section 2.8), the one place they are written down
------------------------------------------------------------------------------------------------
* Images are float in ``[0, 1]``, **data range 1**; computed in float64 whatever the input dtype.
* **PSNR** ``= 10 log10(1 / MSE)``, the MSE taken over all pixels *and* channels (RGB) at once.
  Identical images (MSE = 0) would give ``inf``; the value is capped at :data:`PSNR_CAP` = 100 dB
  (a finite number that averages, sorts and serialises; MSE 1e-10 is 100 dB, far beyond any
  real restoration).  ``cap=None`` returns the uncapped value (``inf`` for identical images).
* **SSIM** (Wang et al. 2004) with a Gaussian window of sigma 1.5 truncated at 3.5 sigma
  (11x11), ``K1 = 0.01``, ``K2 = 0.03``, ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2`` with ``L = 1``, and
  population (co)variances, i.e. **no sample-covariance correction** (as MATLAB ``ssim``).
  Local statistics use :func:`scipy.ndimage.gaussian_filter` with ``mode="reflect"``
  (half-sample symmetric border ``d c b a | a b c d``); the SSIM map is then averaged
  **without the 5-pixel border** (the window's half-width), exactly as
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)``.  (MATLAB ``ssim`` pads with ``replicate`` and
  averages the whole map, so its values differ slightly near borders.)  RGB: the mean of
  the three per-channel SSIMs.
* ``psnr_y`` / ``ssim_y`` score BT.601 *full-range* luma ``Y' = 0.299 R + 0.587 G + 0.114 B``
  in ``[0, 1]`` (the weights of :func:`methods.base.to_gray`, computed in float64), not the studio-swing ``Y`` (16..235) of MATLAB
  ``rgb2ycbcr`` that super-resolution papers use.
* Predictions are clipped to ``[0, 1]`` before scoring (deconvolution overshoots; papers clip
  before saving); the reference is used as given.  Per image one value; the headline is the
  mean over images (mean of per-image PSNR, not PSNR of the mean MSE), ``extras["std"]`` the
  standard deviation over images (``ddof=1``; omitted for fewer than 2 images).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from methods.base import LUMA_BT601

from .base import Metric, MetricResult, MetricSpec, PredInfo

__all__ = ["PSNR", "PSNRY", "PSNR_CAP", "SSIM", "SSIMY", "luma", "psnr", "ssim", "ssim_map"]

#: PSNR reported for identical images (dB); every PSNR is ``min(value, PSNR_CAP)``.
PSNR_CAP = 100.0
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
BORDER_MODE = "reflect"


def _pair(ref, img) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(ref, dtype=np.float64)
    b = np.asarray(img, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"reference has shape {a.shape} but the image has shape {b.shape}")
    if a.ndim not in (2, 3) or a.size == 0:
        raise ValueError(f"expected (H, W) or (H, W, C) images, got shape {a.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("images have NaN or infinite values")
    return a, b


def psnr(ref, img, *, data_range: float = 1.0, cap: float | None = PSNR_CAP) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)``.

    Parameters
    ----------
    ref, img : array_like, (H, W) or (H, W, C)
        Reference and test image, float in ``[0, data_range]``.
    data_range : float, keyword-only
        Peak value (1 for images in ``[0, 1]``).
    cap : float or None, keyword-only
        Upper bound of the result (default :data:`PSNR_CAP` = 100 dB, so identical images give
        100, not ``inf``); ``None`` leaves it uncapped.
    """
    a, b = _pair(ref, img)
    mse = float(np.mean((a - b) ** 2))
    value = math.inf if mse == 0 else 10.0 * math.log10(float(data_range) ** 2 / mse)
    return value if cap is None else min(value, float(cap))


def luma(image) -> np.ndarray:
    """``(H, W, 3)`` RGB -> ``(H, W)`` BT.601 full-range luma in float64 (the weights of
    :func:`methods.base.to_gray`, without its float32 rounding); 2-D input is returned as float64."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        return image
    if image.ndim != 3 or image.shape[-1] < 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    return image[..., :3] @ LUMA_BT601.astype(np.float64)


def _window_radius(sigma: float, truncate: float) -> int:
    return int(truncate * sigma + 0.5)   # as scipy.ndimage


def ssim_map(ref, img, *, data_range: float = 1.0, sigma: float = SSIM_SIGMA, truncate: float = SSIM_TRUNCATE,
             k1: float = SSIM_K1, k2: float = SSIM_K2) -> np.ndarray:
    """Per-pixel SSIM of two 2-D images (float64, same shape, borders included)."""
    a, b = _pair(ref, img)
    if a.ndim != 2:
        raise ValueError(f"ssim_map takes 2-D images, got shape {a.shape}")
    r = _window_radius(sigma, truncate)
    if min(a.shape) < 2 * r + 1:
        raise ValueError(f"images of shape {a.shape} are smaller than the {2 * r + 1}x{2 * r + 1} SSIM window")

    def blur(x):
        return gaussian_filter(x, sigma=sigma, truncate=truncate, mode=BORDER_MODE)

    ux, uy = blur(a), blur(b)
    vx = blur(a * a) - ux * ux          # population variance (no N/(N-1) correction)
    vy = blur(b * b) - uy * uy
    vxy = blur(a * b) - ux * uy
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def ssim(ref, img, *, data_range: float = 1.0, sigma: float = SSIM_SIGMA, truncate: float = SSIM_TRUNCATE,
         k1: float = SSIM_K1, k2: float = SSIM_K2) -> float:
    """Mean structural similarity (Gaussian window), averaged over channels for ``(H, W, C)`` input.

    Parameters
    ----------
    ref, img : array_like, (H, W) or (H, W, C)
        Reference and test image, float in ``[0, data_range]``; the last axis is channels.
    data_range : float, keyword-only
        Dynamic range ``L`` in ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2``.
    sigma, truncate : float, keyword-only
        Gaussian window (1.5 and 3.5: an 11x11 window).
    k1, k2 : float, keyword-only
        Stabilising constants (0.01, 0.03).

    Notes
    -----
    The map is averaged without a border of ``int(truncate * sigma + 0.5)`` pixels; see the
    module docstring for the full convention (matches scikit-image with pinned arguments).
    """
    a, b = _pair(ref, img)
    pad = _window_radius(sigma, truncate)
    opts = {"data_range": data_range, "sigma": sigma, "truncate": truncate, "k1": k1, "k2": k2}
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    vals = []
    for c in range(a.shape[-1]):
        s = ssim_map(a[..., c], b[..., c], **opts)
        vals.append(float(s[pad:s.shape[0] - pad, pad:s.shape[1] - pad].mean()))
    return float(np.mean(vals))


class _Fidelity(Metric):
    """Per image: clip the prediction to [0, 1], optionally take luma, score against ``sharp``."""

    LUMA = False

    def __init__(self, **options: Any):
        unknown = sorted(set(options) - {"device"})
        if unknown:
            raise ValueError(f"{self.spec.name}: unknown option(s) {', '.join(unknown)}; the conventions are pinned")
        super().__init__()

    def score(self, ref: np.ndarray, img: np.ndarray) -> float:
        raise NotImplementedError

    def per_sample(self, pred: np.ndarray, sample, info: PredInfo) -> dict[str, Any]:
        ref = self.checked_target(pred, sample, info, "sharp")
        img = np.clip(np.asarray(pred, dtype=np.float64), 0.0, 1.0)
        if img.shape != ref.shape:
            raise ValueError(f"{self.spec.name}: prediction has shape {img.shape} but sharp has shape {ref.shape}")
        if self.LUMA:
            ref, img = luma(ref), luma(img)
        return {"value": self.score(ref, img)}

    def reduce(self, states: dict[str, dict[str, Any]]) -> MetricResult:
        per = {k: float(s["value"]) for k, s in states.items()}
        values = np.array(list(per.values()), dtype=np.float64)
        extras = {"std": float(values.std(ddof=1))} if values.size >= 2 else {}
        return MetricResult(value=float(values.mean()) if values.size else float("nan"), per_sample=per, extras=extras)


_NEEDS = ("sharp",)
_ACCEPTS = ("enhanced_image", "restored_image")
_COMMON = {"data_range": 1.0, "pred_clip": [0.0, 1.0], "dtype": "float64", "reduce": "mean over images; extras std (ddof=1)"}
_PSNR_CONV = {**_COMMON, "mse_over": "all pixels and channels", "cap_db": PSNR_CAP}
_SSIM_CONV = {**_COMMON, "window": "gaussian", "sigma": SSIM_SIGMA, "truncate": SSIM_TRUNCATE, "window_size": 11,
              "k1": SSIM_K1, "k2": SSIM_K2, "covariance": "population (no sample correction, MATLAB ssim)",
              "border": f"scipy.ndimage mode={BORDER_MODE!r}; 5 px border excluded from the mean (skimage)"}
_RGB = {"channels": "RGB, mean of per-channel values"}
_LUMA = {"channels": "BT.601 full-range luma Y' = 0.299 R + 0.587 G + 0.114 B (methods.base.to_gray)"}


class PSNR(_Fidelity):
    spec = MetricSpec(name="psnr", task="restoration", needs=_NEEDS, accepts=_ACCEPTS, higher_is_better=True,
                      unit="dB", version="1", threshold=0.05, conventions={**_PSNR_CONV, "channels": "RGB, one MSE over all channels"},
                      description="PSNR against the all-in-focus image, RGB in [0, 1], capped at 100 dB")

    def score(self, ref, img):
        return psnr(ref, img)


class SSIM(_Fidelity):
    spec = MetricSpec(name="ssim", task="restoration", needs=_NEEDS, accepts=_ACCEPTS, higher_is_better=True,
                      unit="fraction", version="1", threshold=0.001, conventions={**_SSIM_CONV, **_RGB},
                      description="SSIM (Gaussian 11x11, sigma 1.5, MATLAB constants), mean over RGB channels")

    def score(self, ref, img):
        return ssim(ref, img)


class PSNRY(PSNR):
    LUMA = True
    spec = MetricSpec(name="psnr_y", task="restoration", needs=_NEEDS, accepts=_ACCEPTS, higher_is_better=True,
                      unit="dB", version="1", threshold=0.05, conventions={**_PSNR_CONV, **_LUMA},
                      description="PSNR on BT.601 luma, [0, 1], capped at 100 dB")


class SSIMY(SSIM):
    LUMA = True
    spec = MetricSpec(name="ssim_y", task="restoration", needs=_NEEDS, accepts=_ACCEPTS, higher_is_better=True,
                      unit="fraction", version="1", threshold=0.001, conventions={**_SSIM_CONV, **_LUMA},
                      description="SSIM (Gaussian 11x11, sigma 1.5, MATLAB constants) on BT.601 luma")
