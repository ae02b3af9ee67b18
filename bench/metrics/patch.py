"""Patch-level blur estimation on corpus splits (``gauss20``): one sigma per patch.

A method's map over a patch is summarised by its median (robust to the few pixels a local
estimator gets wrong), converted to Gaussian sigma (``sigma_px`` as is; ``radius_px`` through
:func:`datagen.psf.radius_to_sigma`, which saturates at sigma 3.275) and compared with the
patch's true sigma (0 for the sharp class).
"""
from __future__ import annotations

import numpy as np

from datagen import psf

from .base import Metric, MetricResult, MetricSpec, PredInfo, mean_result

_CONVERTIBLE = ("sigma_px", "radius_px")
#: Levels of the 20-class accuracy (gauss20: 0 = sharp, k = sigma k px).
LEVELS = 20


def patch_sigma(pred: np.ndarray, units: str) -> float:
    """Median of a blur map over a patch, in Gaussian sigma (px)."""
    med = float(np.median(pred))
    return med if units == "sigma_px" else float(psf.radius_to_sigma(med))


class _PatchMetric(Metric):
    def applicable(self, pred: PredInfo) -> str | None:
        base = super().applicable(pred)
        if base:
            return base
        if pred.units not in _CONVERTIBLE or pred.higher != "blurred":
            return f"{self.spec.name} needs a map in sigma or radius pixels (got {pred.units}, higher = {pred.higher})"
        return None


class MAESigma(_PatchMetric):
    spec = MetricSpec(
        name="mae_sigma", task="patch_blur", needs=("sigma_map",), accepts=("blur_map",), higher_is_better=False,
        unit="px (sigma)", version="1", threshold=0.05,
        conventions={"summary": "median of the map over the patch", "units": "Gaussian sigma px",
                     "radius_to_sigma": "datagen.psf.radius_to_sigma (linear, saturates at 3.275)"},
        description="mean |median predicted sigma - true sigma| over patches")

    def per_sample(self, pred, sample, info):
        return {"value": abs(patch_sigma(pred, info.units) - float(sample.targets["sigma_map"].flat[0]))}

    def reduce(self, states) -> MetricResult:
        return mean_result(states)


class LevelAccuracy(_PatchMetric):
    spec = MetricSpec(
        name="level_accuracy", task="patch_blur", needs=("sigma_map",), accepts=("blur_map",), higher_is_better=True,
        unit="fraction", version="2", threshold=0.01,
        conventions={"level": "round(median predicted sigma), clipped to the corpus range",
                     "classes": "gauss20: 0 = sharp, k = sigma k px",
                     "confusion": "extras: counts, rows = true level, columns = predicted level (0..19)"},
        description="fraction of patches whose rounded sigma equals the true level (the 20-class accuracy)")

    def per_sample(self, pred, sample, info):
        true = int(np.clip(round(float(sample.targets["sigma_map"].flat[0])), 0, LEVELS - 1))
        level = int(np.clip(np.rint(patch_sigma(pred, info.units)), 0, LEVELS - 1))
        return {"value": float(level == true), "true": true, "pred": level}

    def reduce(self, states) -> MetricResult:
        result = mean_result(states)
        confusion = np.zeros((LEVELS, LEVELS), dtype=np.int64)
        for s in states.values():
            confusion[int(s["true"]), int(s["pred"])] += 1
        result.extras["confusion"] = confusion.tolist()
        return result
