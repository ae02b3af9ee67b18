"""Fixed-gain unsharp masking (UM): the classical sharpening baseline of NLBM (2023) and Galetto & Deng (2022).

``out = clip(img + amount * (img - G_sigma * img), 0, 1)`` with ``G_sigma`` the sampled, normalised
Gaussian of :func:`datagen.psf.gaussian_kernel1d` (half-width ``ceil(truncate * sigma)``), applied
separably with the ``"reflect"`` border (half-sample symmetric, OpenCV ``BORDER_REFLECT``; the
project's convention in :mod:`datagen.psf`).

Defaults and their sources
--------------------------
* ``sigma = 1.5``: NLBM's base/detail split ``B = Gaussian low-pass(L)`` leaves sigma unspecified;
  ``METHODS.md`` §3.4 / ambiguity 12 chose 1.5 (kernel 11 taps here with ``truncate = 3``; the notes'
  "9x9" corresponds to ``truncate = 2.67``).
* ``amount = 1.5``: NLBM eq. 7-8, ``L~ = B + Lambda*T`` with ``Lambda = rho*G(M) + eta``, ``rho = 1.5``,
  ``eta = 1`` "in the cases we show"; at full enhancement ``Lambda = 2.5``, i.e. ``L + 1.5*(L - B)``.
  (NLBM's Tables 2-3 sweep ``rho`` 0.5..3; Galetto's Fig. 13 UM uses ``lambda = 2``.)
* ``channels = "rgb"``: each RGB channel is sharpened (the formula above).  ``"luma"`` sharpens the
  BT.601 luma only, as NLBM does ("the operator acts on its luminance component only"): the luma
  detail ``amount * (Y - G*Y)`` is added to R, G and B alike, which leaves BT.601 chroma unchanged.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from datagen import psf

from ..base import Method, Params, check_image, to_gray

__all__ = ["UnsharpMask", "unsharp_mask"]


def unsharp_mask(image: np.ndarray, *, sigma: float = 1.5, amount: float = 1.5, truncate: float = 3.0,
                 channels: str = "rgb") -> np.ndarray:
    """``clip(img + amount * (img - G_sigma * img), 0, 1)`` on RGB (``channels="rgb"``) or via luma (``"luma"``)."""
    img = np.asarray(image, dtype=np.float32)
    if channels == "rgb":
        detail = img - psf.gaussian_blur(img, sigma, truncate=truncate)
    elif channels == "luma":
        y = to_gray(img)
        detail = (y - psf.gaussian_blur(y, sigma, truncate=truncate))
        detail = detail[..., None] if img.ndim == 3 else detail
    else:
        raise ValueError(f"channels must be 'rgb' or 'luma', got {channels!r}")
    return np.clip(img + np.float32(amount) * detail, 0.0, 1.0).astype(np.float32)


class UnsharpMask(Method):
    NAME = "unsharp_mask"
    VERSION = "1"
    PROVIDES = "enhanced_image"
    UNITS = "image"
    HIGHER = "n/a"
    DESCRIPTION = "Fixed-gain unsharp masking: clip(I + amount*(I - G_sigma*I), 0, 1), Gaussian low-pass, reflect border"
    REFERENCE = ("Classical UM (e.g. Ramponi 1998); fixed-UM baseline of Bhattacharya et al., IET Image Processing "
                 "17(4), 2023 (NLBM) and Galetto & Deng, The Visual Computer, 2022")

    class Params(Params):
        sigma: float = Field(1.5, gt=0, description="Gaussian low-pass sigma (px)")
        amount: float = Field(1.5, ge=0, description="detail gain")
        truncate: float = Field(3.0, gt=0, description="kernel half-width in sigmas (ceil(truncate*sigma))")
        channels: Literal["rgb", "luma"] = Field("rgb", description="sharpen each RGB channel, or the luma only")

    def predict(self, image: np.ndarray) -> np.ndarray:
        img = check_image(image)
        p = self.params
        return unsharp_mask(img, sigma=p.sigma, amount=p.amount, truncate=p.truncate, channels=p.channels)
