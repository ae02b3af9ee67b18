"""Metric registry: ``name -> "module:Class"``, imported only when used (pyiqa is heavy).

``list_metrics("mae*")`` filters by glob; ``create_metric(name, **options)`` returns an
instance; ``get_metric(name).spec`` is the metadata (direction, unit, version, conventions).
Third-party metrics register through the ``defocusbench.metrics`` entry-point group, or, in a
notebook, with ``register_metric(MyMetric)`` (under ``MyMetric.spec.name``, for this process).
"""
from __future__ import annotations

from datagen.registry import Registry

from .base import Metric, MetricResult, MetricSpec, PredInfo

__all__ = ["Metric", "MetricResult", "MetricSpec", "PredInfo", "create_metric", "get_metric", "list_metrics",
           "register_metric", "select_metrics"]

_BUILTIN = {
    # defocus maps vs ground-truth radius maps (RTF)
    "mae_radius": "bench.metrics.mae:MAERadius",
    "mae_relative": "bench.metrics.mae:MAERelative",
    "mae_dmenet": "bench.metrics.mae:MAEDMENet",
    # blur detection vs binary masks (CUHK)
    "accuracy_alpha": "bench.metrics.detection:AccuracyGlobalAlpha",
    "accuracy_oracle": "bench.metrics.detection:AccuracyOracle",
    "pr_hifst": "bench.metrics.detection:PRHiFST",
    # patch-level sigma on corpus splits (gauss20)
    "mae_sigma": "bench.metrics.patch:MAESigma",
    "level_accuracy": "bench.metrics.patch:LevelAccuracy",
    # full-reference restoration / enhancement
    "psnr": "bench.metrics.fidelity:PSNR",
    "ssim": "bench.metrics.fidelity:SSIM",
    "psnr_y": "bench.metrics.fidelity:PSNRY",
    "ssim_y": "bench.metrics.fidelity:SSIMY",
    # no-reference IQA through pyiqa (lazy import)
    "niqe": "bench.metrics.iqa:NIQE",
    "brisque": "bench.metrics.iqa:BRISQUE",
    "piqe": "bench.metrics.iqa:PIQE",
}


_REGISTRY = Registry("metric", _BUILTIN, group="defocusbench.metrics", base=Metric, name_attr="spec.name")


def list_metrics(pattern: str | None = None) -> list[str]:
    return _REGISTRY.names(pattern)


def select_metrics(spec: str, *, option: str = "--metrics") -> list[str]:
    """Names matched by ``spec`` (``all``, names, globs, comma-separated); ``KeyError`` with one line
    (did-you-mean) for a part that matches nothing."""
    return _REGISTRY.select(spec, option=option)


def get_metric(name: str) -> type[Metric]:
    return _REGISTRY.get(name)


def create_metric(name: str, **options) -> Metric:
    return get_metric(name)(**options)


def register_metric(cls: type[Metric], *, replace: bool = False) -> type[Metric]:
    """Register metric class ``cls`` under ``cls.spec.name`` in this process (a notebook): it then works
    wherever a built-in does (``create_metric``, ``bench.harness.run(metrics=...)``, ``list_metrics``).
    Returns ``cls``.  A taken name is a one-line :class:`~datagen.errors.UserError` unless ``replace=True``."""
    return _REGISTRY.register(cls, replace=replace)
