"""Contrast Adaptive Sharpening (CAS) of AMD FidelityFX: the CAS comparison of Galetto & Deng (2022,
Fig. 13f / Table 6, "lambda = -0.125").  Reimplemented from the published description of the
FidelityFX CAS filter (its "no scaling" path); no code copied.

Algorithm, per RGB channel and pixel (FidelityFX's ``CAS_SLOW`` path, with the exact reciprocal and
square root of ``CAS_GO_SLOWER``), on the 3x3 neighbourhood::

    a b c
    d e f
    g h i

1. Soft minimum and maximum (the "better diagonals" variant, ``better_diagonals=True``)::

       mn = min(b, d, e, f, h) + min(a, b, c, d, e, f, g, h, i)      (cross min + box min, in [0, 2])
       mx = max(b, d, e, f, h) + max(a, ..., i)
       amp = sqrt(clip(min(mn, 2 - mx) / mx, 0, 1))

   ``better_diagonals=False`` uses the cross only: ``mn, mx`` over ``b, d, e, f, h`` and
   ``amp = sqrt(clip(min(mn, 1 - mx) / mx, 0, 1))``.  ``amp`` is small where the neighbourhood already
   reaches near 0 or 1 (little headroom: little sharpening) and ``mx = 0`` gives ``amp = 0``.
2. Weight ``w = amp * peak`` with ``peak = -1 / lerp(8, 5, sharpness) = -1 / (8 - 3 sharpness)``
   (``sharpness`` in ``[0, 1]``: ``peak`` from ``-1/8`` to ``-1/5``).
3. The 5-tap cross filter, normalised by its weight sum::

       out = (w (b + d + f + h) + e) / (1 + 4 w)

   then clipped to ``[0, 1]`` (CAS's ``saturate``).  ``green_weight=True`` is FidelityFX's fast default
   instead: the green channel's ``w`` filters all three channels (needs 3 channels).

Galetto's "``lambda = -0.125``" is the peak weight: ``-0.125 = -1/8 = -1/lerp(8, 5, 0)``, i.e.
``sharpness = 0`` (the default here; the mildest setting of CAS).

Conventions: values are used as given (sRGB as decoded; CAS works on whatever the shader samples),
the border replicates the edge pixel (a clamp-to-edge texture sampler), float32 throughout.  A
constant image is returned unchanged (``4 w c + c = c (1 + 4 w)``).  Deterministic.
"""
from __future__ import annotations

import numpy as np
from pydantic import Field

from ..base import Method, Params, check_image

__all__ = ["ContrastAdaptiveSharpening", "cas_peak", "contrast_adaptive_sharpen"]


def cas_peak(sharpness: float) -> float:
    """CAS's negative lobe weight ``-1 / lerp(8, 5, sharpness)``; ``sharpness = 0`` gives ``-0.125``."""
    if not 0.0 <= sharpness <= 1.0:
        raise ValueError(f"sharpness must be in [0, 1], got {sharpness!r}")
    return -1.0 / (8.0 + (5.0 - 8.0) * float(sharpness))


def contrast_adaptive_sharpen(image: np.ndarray, *, sharpness: float = 0.0, better_diagonals: bool = True,
                              green_weight: bool = False) -> np.ndarray:
    """AMD FidelityFX CAS on each channel of an ``(H, W, C)`` (or ``(H, W)``) image in ``[0, 1]``;
    float32 of the same shape in ``[0, 1]``.  See the module docstring for the formulas."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim not in (2, 3) or img.size == 0:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {img.shape}")
    peak = np.float32(cas_peak(sharpness))
    pad = ((1, 1), (1, 1)) + ((0, 0),) * (img.ndim - 2)
    p = np.pad(img, pad, mode="edge")
    h, w = img.shape[:2]

    def at(dy: int, dx: int) -> np.ndarray:
        return p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    b, d, e, f, hh = at(-1, 0), at(0, -1), at(0, 0), at(0, 1), at(1, 0)
    cross_min = np.minimum.reduce([b, d, e, f, hh])
    cross_max = np.maximum.reduce([b, d, e, f, hh])
    if better_diagonals:
        a, c, g, i = at(-1, -1), at(-1, 1), at(1, -1), at(1, 1)
        mn = cross_min + np.minimum.reduce([cross_min, a, c, g, i])
        mx = cross_max + np.maximum.reduce([cross_max, a, c, g, i])
        headroom = np.minimum(mn, np.float32(2.0) - mx)
    else:
        mn, mx = cross_min, cross_max
        headroom = np.minimum(mn, np.float32(1.0) - mx)
    ratio = np.divide(headroom, mx, out=np.zeros_like(mx), where=mx > 0)
    amp = np.sqrt(np.clip(ratio, 0.0, 1.0))
    wgt = amp * peak
    if green_weight:
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"green_weight needs an (H, W, 3) RGB image, got shape {img.shape}")
        wgt = np.repeat(wgt[..., 1:2], 3, axis=2)
    out = (wgt * (b + d + f + hh) + e) / (np.float32(1.0) + np.float32(4.0) * wgt)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


class ContrastAdaptiveSharpening(Method):
    NAME = "cas_amd"
    VERSION = "1"
    PROVIDES = "enhanced_image"
    UNITS = "image"
    HIGHER = "n/a"
    DESCRIPTION = ("AMD FidelityFX Contrast Adaptive Sharpening: per-channel 5-tap cross filter with a weight set "
                   "by the 3x3 min/max headroom, normalised, clipped to [0, 1]")
    REFERENCE = ("AMD FidelityFX Contrast Adaptive Sharpening (CAS), GPUOpen, 2019; setting (peak -0.125 = "
                 "sharpness 0) of Galetto & Deng, The Visual Computer, 2022, Fig. 13f")

    class Params(Params):
        sharpness: float = Field(0.0, ge=0, le=1, description="CAS sharpness; peak weight -1/lerp(8, 5, s), "
                                                              "0 -> -0.125 (Galetto's lambda)")
        better_diagonals: bool = Field(True, description="soft min/max from cross + 3x3 box (else cross only)")
        green_weight: bool = Field(False, description="filter all channels with the green channel's weight "
                                                      "(FidelityFX fast path) instead of per-channel weights")

    def predict(self, image: np.ndarray) -> np.ndarray:
        img = check_image(image)
        p = self.params
        return contrast_adaptive_sharpen(img, sharpness=p.sharpness, better_diagonals=p.better_diagonals,
                                         green_weight=p.green_weight)
