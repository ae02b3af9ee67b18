"""What every section reads: a :class:`bench.store.Run` (read leniently) and the orderings, colours
and metric facts derived from it once."""
from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..store import Run, load_run
from .fmt import clean, ordered
from .scales import Scale, preview_scale

MAX_PREVIEW_BYTES = 2_000_000  # a single thumbnail larger than this is not embedded
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]
#: How a metric is plotted when its spec does not say (``run.json`` metrics ``plot``).
DEFAULT_PLOT = "bar"
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".gif": "image/gif"}


@dataclass(frozen=True)
class Preview:
    """One gallery image: a ``data:`` URI (or ``None`` and why not) and its colour scale."""

    uri: str | None
    why: str = ""
    scale: Scale | None = None


@dataclass(frozen=True)
class Context:
    """The run and what the sections share: names in display order, one colour per method."""

    run: Run
    methods: list[str]
    datasets: list[str]
    metrics: list[str]
    colors: dict[str, str]

    @classmethod
    def load(cls, run_dir: Path) -> Context:
        run = load_run(run_dir, lenient=True)
        meta = run.meta
        methods_meta, datasets_meta = meta.get("methods") or {}, meta.get("datasets") or {}
        seen_methods = [*run.summary["method"], *run.curves["method"], *run.timings["method"],
                        *(f.get("method") for f in run.failures)]
        seen_datasets = [*run.summary["dataset"], *run.curves["dataset"], *run.timings["dataset"],
                         *(f.get("dataset") for f in run.failures)]
        methods = ordered(methods_meta, [*methods_meta, *seen_methods])
        metrics_meta = meta.get("metrics") or {}
        return cls(run=run, methods=methods, datasets=ordered(datasets_meta, [*datasets_meta, *seen_datasets]),
                   metrics=ordered(metrics_meta, [*metrics_meta, *run.summary["metric"]]),
                   colors={m: PALETTE[i % len(PALETTE)] for i, m in enumerate(methods)})

    # ------------------------------------------------------------------ run.json records

    @property
    def run_id(self) -> str:
        return str(self.run.meta.get("run_id") or self.run.dir.name)

    def method_meta(self, name: str) -> dict:
        return (self.run.meta.get("methods") or {}).get(name) or {}

    def dataset_meta(self, name: str) -> dict:
        return (self.run.meta.get("datasets") or {}).get(name) or {}

    def metric_meta(self, name: str) -> dict:
        return (self.run.meta.get("metrics") or {}).get(name) or {}

    # ------------------------------------------------------------------ metric facts

    def higher_is_better(self, metric: str, rows: pd.DataFrame | None = None) -> bool | None:
        """The metric's direction: from its summary rows, else its spec in ``run.json``, else None."""
        if rows is not None and len(rows):
            values = [v for v in map(clean, rows["higher_is_better"]) if v is not None]
            if values:
                return bool(values[0])
        value = self.metric_meta(metric).get("higher_is_better")
        return None if value is None else bool(value)

    def unit(self, metric: str, rows: pd.DataFrame | None = None) -> str:
        """The metric's unit: from its summary rows, else its spec, else ``""``."""
        for v in (rows["unit"] if rows is not None and len(rows) else []):
            v = clean(v)
            if v:
                return str(v)
        return str(self.metric_meta(metric).get("unit") or "")

    def plot_kind(self, metric: str) -> str:
        """How the metric is plotted: the spec's ``plot`` (``"bar"``: one bar per method and dataset;
        ``"none"``), else :data:`DEFAULT_PLOT` (every scalar metric gets bars)."""
        kind = self.metric_meta(metric).get("plot")
        return kind if isinstance(kind, str) and kind else DEFAULT_PLOT

    # ------------------------------------------------------------------ previews

    def preview(self, rel: Any, kind: str, method: str | None = None) -> Preview:
        """A preview (path relative to ``previews/`` or to the run) as a data URI with its scale."""
        if not isinstance(rel, str) or not rel:
            return Preview(None, "no image")
        root = self.run.dir.resolve()
        for base in (self.run.dir / "previews", self.run.dir):
            candidate = (base / rel).resolve()
            if not candidate.is_relative_to(root):
                return Preview(None, "path outside the run directory")
            if candidate.is_file():
                if candidate.stat().st_size > MAX_PREVIEW_BYTES:
                    return Preview(None, "image too large to embed")
                mime = _MIME.get(candidate.suffix.lower())
                if mime is None:
                    return Preview(None, f"unsupported image type {candidate.suffix}")
                data = candidate.read_bytes()
                scale = preview_scale(kind, data, method_meta=self.method_meta(method) if method else None)
                return Preview(f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", scale=scale)
        return Preview(None, "image file missing")
