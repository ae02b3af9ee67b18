"""Mean absolute error of defocus maps against ground-truth disk-radius maps (RTF protocol).

Three numbers, as the literature reports them (``../shared/notes/METHODS.md`` section 2.8):

``mae_radius``    raw MAE in disk-radius pixels: ``mean |B - GT|`` per image, ``B`` converted to
                  disk radius (TIP22 Table I).
``mae_relative``  ``mae_radius / 6`` (6 = :data:`datagen.psf.MAX_RADIUS`; TIP22's "relative" numbers).
``mae_dmenet``    DMENet's protocol: both maps in Gaussian sigma, clipped to ``[0, 3.275]``
                  (:data:`datagen.psf.MAX_SIGMA`) and divided by 3.275.

Conventions
-----------
* Units (:mod:`methods.base`): ``sigma_px`` maps are converted with
  :func:`datagen.psf.sigma_to_radius` (the one place for the RTF table); ``radius_px`` maps
  are used as they are; ``relative`` maps (0..1, 1 = most blurred the method can express)
  are multiplied by the global maximum of the target domain (6 px radius, or 3.275 px sigma
  for ``mae_dmenet``), as TIP22 does; ``score`` maps have no physical unit and are ``n/a``.
  Maps whose ``HIGHER`` is ``"sharp"`` are ``n/a`` too (no defined inversion to a radius).
* ``mode``: ``"linear"`` (default, piecewise-linear interpolation of the table) or
  ``"nearest"`` (nearest table row, as the RTF / DMENet MATLAB scripts do).  It applies to
  every sigma <-> radius conversion: the prediction's, and for ``mae_dmenet`` the ground
  truth's radius -> sigma.
* ``crop``: ``None`` (default, the whole map) or ``"rtf340"`` (drop the rightmost 20
  columns of prediction and ground truth, as the TIP2018 demo does).  The ``rtf`` dataset
  already crops at load time (360x340), so the metric's own crop is for full-size maps only
  (e.g. ``rtf_full`` scored under the 340-column protocol); do not crop twice.
* Per image one value; the headline is the mean over images, ``extras["std"]`` the standard
  deviation over images (``ddof=1``, MATLAB ``std``; omitted for fewer than 2 images), as
  papers report mean +- std.  For ``relative`` maps ``extras["mean_gt_max"]`` adds the
  secondary protocol that scales by each image's ground-truth maximum instead of 6.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from datagen.psf import MAX_RADIUS, MAX_SIGMA, radius_to_sigma, sigma_to_radius

from .base import Metric, MetricResult, MetricSpec, PredInfo

__all__ = ["CROPS", "MODES", "MAEDMENet", "MAERadius", "MAERelative", "crop_map", "mae", "to_radius", "to_sigma"]

#: Named crops: columns dropped on the right of both maps.
CROPS: dict[str | None, int] = {None: 0, "rtf340": 20}
MODES = ("linear", "nearest")
_CONVERTIBLE = ("sigma_px", "radius_px", "relative")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be 'linear' or 'nearest', got {mode!r}")


def _check_units(units: str) -> None:
    if units == "score":
        raise ValueError("a 'score' blur map has no physical unit and cannot be converted to a disk radius "
                         "(only sigma_px, radius_px and relative maps can)")
    if units not in _CONVERTIBLE:
        raise ValueError(f"units must be one of {', '.join(_CONVERTIBLE)}, got {units!r}")


def to_radius(blur_map, units: str, *, mode: str = "linear", relative_max: float = MAX_RADIUS) -> np.ndarray:
    """A blur map in ``units`` -> disk radius in pixels (float64).

    Parameters
    ----------
    blur_map : array_like
        The prediction (any shape).
    units : str
        ``"sigma_px"`` (converted with :func:`datagen.psf.sigma_to_radius`), ``"radius_px"``
        (returned as is) or ``"relative"`` (multiplied by ``relative_max``).  ``"score"``
        raises :class:`ValueError`: it has no unit to convert from.
    mode : {"linear", "nearest"}, keyword-only
        Table conversion for ``sigma_px`` maps.
    relative_max : float, keyword-only
        Radius that a relative value of 1 stands for (default 6 px, :data:`datagen.psf.MAX_RADIUS`).
    """
    _check_units(units)
    _check_mode(mode)
    m = np.asarray(blur_map, dtype=np.float64)
    if units == "sigma_px":
        return sigma_to_radius(m, mode=mode)
    if units == "relative":
        return m * float(relative_max)
    return m


def to_sigma(blur_map, units: str, *, mode: str = "linear", relative_max: float = MAX_SIGMA) -> np.ndarray:
    """A blur map in ``units`` -> Gaussian sigma in pixels (float64); the sigma-domain twin of :func:`to_radius`.

    ``sigma_px`` is returned as is, ``radius_px`` goes through :func:`datagen.psf.radius_to_sigma`,
    ``relative`` is multiplied by ``relative_max`` (default 3.275 px, :data:`datagen.psf.MAX_SIGMA`).
    """
    _check_units(units)
    _check_mode(mode)
    m = np.asarray(blur_map, dtype=np.float64)
    if units == "radius_px":
        return radius_to_sigma(m, mode=mode)
    if units == "relative":
        return m * float(relative_max)
    return m


def crop_map(arr: np.ndarray, crop: str | None) -> np.ndarray:
    """Apply a named crop (:data:`CROPS`) to the column axis (axis 1) of ``arr``."""
    if crop not in CROPS:
        raise ValueError(f"crop must be None or 'rtf340', got {crop!r}")
    drop = CROPS[crop]
    if not drop:
        return arr
    if arr.ndim < 2 or arr.shape[1] <= drop:
        raise ValueError(f"crop {crop!r} drops {drop} columns; the map has shape {arr.shape}")
    return arr[:, :-drop]


def mae(pred_radius, gt_radius, *, crop: str | None = None) -> float:
    """Mean absolute error ``mean |pred - gt|`` over pixels, after the optional named ``crop``.

    Both maps must have the same shape and be finite; the unit is whatever both are in
    (disk-radius pixels for the RTF protocol).
    """
    p = np.asarray(pred_radius, dtype=np.float64)
    g = np.asarray(gt_radius, dtype=np.float64)
    if p.shape != g.shape:
        raise ValueError(f"prediction has shape {p.shape} but the ground truth has shape {g.shape}")
    if p.size == 0:
        raise ValueError("empty maps: nothing to compare")
    p, g = crop_map(p, crop), crop_map(g, crop)
    if not (np.isfinite(p).all() and np.isfinite(g).all()):
        raise ValueError("maps have NaN or infinite values")
    return float(np.mean(np.abs(p - g)))


class _MAE(Metric):
    """Shared machinery: options, applicability, per-image states, mean +- std reduction."""

    DOMAIN: ClassVar[str] = "radius"     # "radius" | "sigma"
    SCALE: ClassVar[float] = 1.0          # value = raw MAE in DOMAIN units / SCALE

    def __init__(self, *, crop: str | None = None, mode: str = "linear", **options: Any):
        unknown = sorted(set(options) - {"device"})
        if unknown:
            raise ValueError(f"{self.spec.name}: unknown option(s) {', '.join(unknown)}; known: crop, mode")
        if isinstance(crop, str) and crop.lower() == "none":
            crop = None
        if crop not in CROPS:
            raise ValueError(f"{self.spec.name}: crop must be None or 'rtf340', got {crop!r}")
        _check_mode(mode)
        super().__init__(crop=crop, mode=mode)
        self.crop, self.mode = crop, mode
        # the instance's spec records the options it actually uses
        self.spec = dataclasses.replace(type(self).spec, conventions={**type(self).spec.conventions,
                                                                      "crop": crop, "conversion": mode})

    def applicable(self, pred: PredInfo) -> str | None:
        why = super().applicable(pred)
        if why:
            return why
        if pred.units == "score":
            return f"{self.spec.name} needs a map in sigma_px, radius_px or relative units; a 'score' map has no unit"
        if pred.units not in _CONVERTIBLE:
            return f"{self.spec.name} cannot read {pred.units!r} maps"
        if pred.higher == "sharp":
            return f"{self.spec.name} needs higher = more defocus; this map points to sharpness"
        return None

    # both maps in the metric's domain, before clipping and scaling
    def _pair(self, pred: np.ndarray, gt_radius: np.ndarray, units: str, *, gt_max: bool = False):
        if self.DOMAIN == "radius":
            rel_max = float(np.max(gt_radius)) if gt_max else MAX_RADIUS
            return to_radius(pred, units, mode=self.mode, relative_max=rel_max), gt_radius
        gt = radius_to_sigma(gt_radius, mode=self.mode)
        rel_max = float(np.max(gt)) if gt_max else MAX_SIGMA
        return to_sigma(pred, units, mode=self.mode, relative_max=rel_max), gt

    def _value(self, p: np.ndarray, g: np.ndarray) -> float:  # maps already cropped
        if self.DOMAIN == "sigma":
            p, g = np.clip(p, 0.0, MAX_SIGMA), np.clip(g, 0.0, MAX_SIGMA)
        return mae(p, g) / self.SCALE

    def per_sample(self, pred: np.ndarray, sample, info: PredInfo) -> dict[str, Any]:
        gt = self.checked_target(pred, sample, info, "radius_map")
        pred = np.asarray(pred)
        if pred.shape != gt.shape:
            raise ValueError(f"{self.spec.name}: prediction has shape {pred.shape} but radius_map has shape {gt.shape}")
        if self.crop:  # the per-image GT maximum must see the same pixels as the MAE
            pred, gt = crop_map(pred, self.crop), crop_map(gt, self.crop)
        state: dict[str, Any] = {"value": self._value(*self._pair(pred, gt, info.units))}
        if info.units == "relative":
            state["value_gt_max"] = self._value(*self._pair(pred, gt, info.units, gt_max=True))
        state["crop"], state["mode"] = self.crop or "none", self.mode
        return state

    def reduce(self, states: dict[str, dict[str, Any]]) -> MetricResult:
        per = {k: float(s["value"]) for k, s in states.items()}
        values = np.array(list(per.values()), dtype=np.float64)
        value = float(values.mean()) if values.size else float("nan")
        extras: dict[str, Any] = {}
        if values.size >= 2:
            extras["std"] = float(values.std(ddof=1))
        gtmax = [float(s["value_gt_max"]) for s in states.values() if "value_gt_max" in s]
        if gtmax and len(gtmax) == len(states):
            extras["mean_gt_max"] = float(np.mean(gtmax))
        # the options the states were computed with (reduce may run on a default instance)
        for opt in ("crop", "mode"):
            seen = sorted({str(s[opt]) for s in states.values() if opt in s})
            if seen:
                extras[opt] = "/".join(seen)
        return MetricResult(value=value, per_sample=per, extras=extras)


_NEEDS = ("radius_map",)
_ACCEPTS = ("blur_map",)
_DEFAULT_CONV = {"crop": None, "conversion": "linear", "relative_maps": "x 6 px radius (x 3.275 px sigma for mae_dmenet)",
                 "sigma_radius_table": "D'Andres et al. 2016 convertion.mat (datagen.psf.SIGMA_RADIUS_TABLE)",
                 "reduce": "mean over images; extras std (ddof=1)"}


class MAERadius(_MAE):
    spec = MetricSpec(
        name="mae_radius", task="defocus_map", needs=_NEEDS, accepts=_ACCEPTS, higher_is_better=False,
        unit="px (disk radius)", version="1", threshold=0.005,
        conventions={**_DEFAULT_CONV, "formula": "mean |B - GT| in disk-radius px"},
        description="raw MAE of the defocus map in disk-radius pixels (RTF protocol, TIP22 Table I)")


class MAERelative(_MAE):
    SCALE = MAX_RADIUS
    spec = MetricSpec(
        name="mae_relative", task="defocus_map", needs=_NEEDS, accepts=_ACCEPTS, higher_is_better=False,
        unit="fraction of 6 px", version="1", threshold=0.001,
        conventions={**_DEFAULT_CONV, "formula": "mean |B - GT| in disk-radius px / 6"},
        description="raw MAE divided by the maximum disk radius 6 (TIP22's relative MAE)")


class MAEDMENet(_MAE):
    DOMAIN = "sigma"
    SCALE = MAX_SIGMA
    spec = MetricSpec(
        name="mae_dmenet", task="defocus_map", needs=_NEEDS, accepts=_ACCEPTS, higher_is_better=False,
        unit="fraction of sigma 3.275 px", version="1", threshold=0.001,
        conventions={**_DEFAULT_CONV, "formula": "mean |clip(B,0,3.275) - clip(GT,0,3.275)| / 3.275, both in Gaussian sigma px"},
        description="DMENet-style MAE: both maps in Gaussian sigma, clipped to 3.275 and divided by 3.275")
