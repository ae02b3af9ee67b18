"""Blur-map unit conversion: the one place that turns one method's map into the units another needs.

A map consumer (``Method.NEEDS_MAP``: ``"radius_px"`` or ``"sigma_px"``) runs after a map
producer (``PROVIDES = "blur_map"``) or after a dataset's ground-truth map.  The producer's
``UNITS`` and ``HIGHER`` say how to read its map:

* ``"radius_px"`` <-> ``"sigma_px"``: through the D'Andres table
  (:func:`datagen.psf.sigma_to_radius` / :func:`datagen.psf.radius_to_sigma`, piecewise linear);
* ``"relative"`` (0..1, 1 = most blurred): ``x 6`` px disk radius (:data:`RELATIVE_TO_RADIUS`, the
  largest radius of the RTF range; TIP22's convention, ``METHODS.md`` 2.8), then as a radius;
* ``"score"`` (a statistic without physical unit) and maps that point the other way
  (``HIGHER = "sharp"``) cannot be converted: :class:`MapUnitsError` with the reason.

Converted maps are float32, non-negative and finite (NaN or infinite values are refused).
"""
from __future__ import annotations

import numpy as np

from datagen.errors import UserError
from datagen.psf import MAX_RADIUS, radius_to_sigma, sigma_to_radius

__all__ = ["CONSUMABLE", "RELATIVE_TO_RADIUS", "MapUnitsError", "convert_map", "why_not_convertible"]

#: Units a map consumer may ask for.
CONSUMABLE = ("radius_px", "sigma_px")
#: A relative map (0..1) times this is a disk radius in px.
RELATIVE_TO_RADIUS = MAX_RADIUS


class MapUnitsError(UserError):
    """A map that cannot feed a consumer (its units, direction, size or values); one line."""


def why_not_convertible(units: str, higher: str = "blurred") -> str | None:
    """``None`` when a map in ``units`` (pointing ``higher``) can be converted to a radius or sigma
    map; otherwise the one-line reason."""
    if units == "score":
        return ("its map is a sharpness/blurriness score without physical units; a deblurring method needs a "
                "disk radius or Gaussian sigma in pixels")
    if units not in ("radius_px", "sigma_px", "relative"):
        return f"its output is in {units!r} units, not a blur map"
    if higher != "blurred":
        return "its map is higher where the image is sharp; a blur map must be higher where it is blurred"
    return None


def convert_map(blur_map: np.ndarray, *, units: str, to: str, higher: str = "blurred",
                shape: tuple[int, int] | None = None) -> np.ndarray:
    """``blur_map`` (``(H, W)``, in ``units``) in the units ``to`` (``"radius_px"`` or ``"sigma_px"``),
    float32.

    ``shape``: the image's ``(H, W)``; a map of another size is refused.  Negative values are
    clipped to 0 (sharp) after conversion.  :class:`MapUnitsError` (one line) for a map that
    cannot be converted, has the wrong size, or holds NaN / infinite values.
    """
    if to not in CONSUMABLE:
        raise ValueError(f"to must be one of {CONSUMABLE}, got {to!r}")
    reason = why_not_convertible(units, higher)
    if reason:
        raise MapUnitsError(f"cannot use this blur map: {reason}")
    m = np.asarray(blur_map, dtype=np.float64)
    if m.ndim != 2:
        raise MapUnitsError(f"a blur map must be 2-D (H, W), got shape {m.shape}")
    if shape is not None and m.shape != tuple(shape):
        raise MapUnitsError(f"the blur map is {m.shape[1]}x{m.shape[0]} but the image is {shape[1]}x{shape[0]}")
    if not np.isfinite(m).all():
        raise MapUnitsError(f"the blur map has {int((~np.isfinite(m)).sum())} NaN or infinite value(s)")
    if units == "relative":
        m, units = m * RELATIVE_TO_RADIUS, "radius_px"
    if units != to:
        m = sigma_to_radius(m) if to == "radius_px" else radius_to_sigma(m)
    return np.ascontiguousarray(np.maximum(m, 0.0), dtype=np.float32)
