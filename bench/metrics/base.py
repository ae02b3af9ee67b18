"""The metric protocol: metadata as data (:class:`MetricSpec`) plus two phases.

Phase 1, :meth:`Metric.per_sample`, runs where the prediction is (a Dask worker): it turns one
prediction and its :class:`~bench.datasets.base.Sample` into a small *state*: data only (a dict
with string keys of numbers, strings, lists and small numeric NumPy arrays), because the job
cache stores it as JSON (:func:`bench.store.to_data`), never as a pickle.  Phase 2,
:meth:`Metric.reduce`, runs once per (method, dataset) on all states and returns a
:class:`MetricResult`.  Two phases because PR curves and per-method global thresholds cannot
be averaged per sample.

Predictions arrive with their method's declaration (:class:`PredInfo`): what it provides, its
units and polarity, so metrics can convert (sigma -> radius) or invert (sharpness maps) in one
place and say "n/a" for pairs that do not fit (:meth:`Metric.applicable`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class MetricSpec:
    name: str
    task: str                       # "detection" | "defocus_map" | "restoration" | "enhancement" | "nr_iqa"
    needs: tuple[str, ...]          # target keys the metric reads from the sample (() for no-reference)
    accepts: tuple[str, ...]        # prediction kinds: "blur_map", "enhanced_image", "restored_image"
    higher_is_better: bool
    unit: str
    version: str
    threshold: float                # smallest absolute change `bench compare` may call worse/better
    conventions: dict[str, Any] = field(default_factory=dict)   # pinned conventions, stored in run.json
    description: str = ""
    weights: tuple[str, ...] = ()   # weight names (bench.weights) the metric needs
    plot: str = "bar"               # how the report draws it: "bar" (a bar per method and dataset) or "none"


@dataclass(frozen=True)
class PredInfo:
    """How to read a prediction: the producing method's declaration (see :mod:`methods.base`)."""

    provides: str = "blur_map"
    units: str = "score"
    higher: str = "blurred"        # "blurred" | "sharp" | "n/a"


@dataclass
class MetricResult:
    value: float                                    # dataset-level headline (the leaderboard number)
    per_sample: dict[str, float]                    # sample key -> per-sample value (compare's bootstrap)
    extras: dict[str, float] = field(default_factory=dict)          # e.g. {"alpha": 0.37, "best_f": 0.8}
    curves: dict[str, dict[str, list]] = field(default_factory=dict)  # e.g. {"pr": {"threshold": [...], ...}}


class Metric:
    """Base class; subclasses set ``spec`` and implement :meth:`per_sample` and :meth:`reduce`."""

    spec: ClassVar[MetricSpec]

    def __init__(self, **options: Any):
        self.options = options

    def applicable(self, pred: PredInfo) -> str | None:
        """``None`` when this metric can score predictions described by ``pred``, else why not (n/a)."""
        if pred.provides not in self.spec.accepts:
            return f"{self.spec.name} scores {'/'.join(self.spec.accepts)}, not {pred.provides}"
        return None

    def checked_target(self, pred: np.ndarray, sample, info: PredInfo, name: str) -> np.ndarray:
        """The common preamble of :meth:`per_sample`: the metric applies to ``info`` and the sample
        has target ``name``; returns that target as float64.  One-line ``ValueError`` otherwise."""
        why = self.applicable(info)
        if why:
            raise ValueError(why)
        if name not in sample.targets:
            raise ValueError(f"{self.spec.name}: sample {sample.key!r} has no {name} target")
        return np.asarray(sample.targets[name], dtype=np.float64)

    def unavailable(self) -> str | None:
        """``None`` when the metric can run here, else a one-line reason shown in reports
        (e.g. ``"unavailable (weights missing: <path>; bench weights import niqe FILE)"``)."""
        return None

    def per_sample(self, pred: np.ndarray, sample, info: PredInfo) -> dict[str, Any]:
        """State for one sample.  ``pred`` follows :mod:`methods.base` conventions; ``sample`` is a
        :class:`bench.datasets.base.Sample` whose ``targets`` hold ``spec.needs``."""
        raise NotImplementedError

    def reduce(self, states: dict[str, dict[str, Any]]) -> MetricResult:
        raise NotImplementedError


def mean_result(states: dict[str, dict[str, Any]], key: str = "value") -> MetricResult:
    """The common reduction: headline = mean over samples of ``state[key]``."""
    per = {k: float(s[key]) for k, s in states.items()}
    value = float(np.mean(list(per.values()))) if per else float("nan")
    return MetricResult(value=value, per_sample=per)
