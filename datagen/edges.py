"""Edge maps of the edge-based estimators and of the corpora made for them (one definition).

Karaali, Harte & Jung (TIP 2022) take the blur at edge pixels; the paper says "Canny", the released
code runs ``skimage.feature.canny`` on the HSV *hue* channel (likely a bug), and the published RTF
results used precomputed MATLAB-era edge maps.  Decided (``METHODS.md`` section 11, item 19):
Canny with ``sigma = sqrt(2)`` and scikit-image's default thresholds (10 % / 20 % of the channel's
range) on the HSV *value* channel ``V = max(R, G, B)``; ``"gray"`` (BT.601 luma) and ``"hue"`` (the
code's parity mode) are options.  The B-NET / E-NET corpora use the same function on their blurred
images, so training and inference see the same edges.
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np

from .imageio import LUMA_BT601

__all__ = ["EDGE_CHANNELS", "EDGE_SIGMA", "canny_edges", "edge_channel"]

#: Channels :func:`canny_edges` can run on.
EDGE_CHANNELS = ("v", "gray", "hue")
#: Gaussian sigma (px) of the Canny smoothing.
EDGE_SIGMA = math.sqrt(2.0)
#: Hysteresis thresholds of the released code's hue-channel Canny (``"hue"``, parity mode).
HUE_THRESHOLDS = (0.05, 0.06)


def edge_channel(rgb: np.ndarray, channel: Literal["v", "gray", "hue"] = "v") -> np.ndarray:
    """The ``(H, W)`` float64 channel in [0, 1] that edges are detected on, from ``(H, W, 3)`` RGB
    (uint8, or float in [0, 1])."""
    img = np.asarray(rgb)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
    if channel == "v":   # the max first: on uint8 it is exact and 3x less to convert
        return img.max(axis=2) / 255.0 if img.dtype == np.uint8 else img.max(axis=2).astype(np.float64)
    img = img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)
    if channel == "gray":
        return img @ np.array(LUMA_BT601)
    if channel == "hue":
        from skimage.color import rgb2hsv
        return rgb2hsv(img)[..., 0]
    raise ValueError(f"edge channel must be one of {', '.join(EDGE_CHANNELS)}, got {channel!r}")


def canny_edges(rgb: np.ndarray, *, channel: Literal["v", "gray", "hue"] = "v", sigma: float = EDGE_SIGMA,
                low: float | None = None, high: float | None = None) -> np.ndarray:
    """Binary ``(H, W)`` Canny edge map (bool) of an RGB image on ``channel`` (see the module
    docstring); ``low`` / ``high`` are hysteresis thresholds on the channel's gradient magnitude
    (default scikit-image's: 10 % and 20 % of the channel's dtype range; for ``"hue"`` the released
    code's :data:`HUE_THRESHOLDS`)."""
    from skimage.feature import canny

    if channel == "hue" and low is None and high is None:
        low, high = HUE_THRESHOLDS
    return canny(edge_channel(rgb, channel), sigma=sigma, low_threshold=low, high_threshold=high)
