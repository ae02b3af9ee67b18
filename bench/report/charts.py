"""The charts: bars of every plotted metric (:meth:`Context.plot_kind`), grouped by the metric's task
(defocus-map MAE, patch blur, detection, restoration PSNR/SSIM, no-reference IQA), and the
confusion matrices of level classifiers; plus the precision-recall curves."""
from __future__ import annotations

import numpy as np
from markupsafe import Markup

from .context import Context
from .env import render
from .fmt import ordered, parse_extras
from .plots import bar_plot, confusion_plot, plot_context, pr_plot

#: Chart groups: a metric's ``task`` -> heading, in this order (other tasks follow, titled by name).
TASK_TITLES = {
    "defocus_map": "Defocus maps",
    "patch_blur": "Patch blur levels",
    "detection": "Blur detection",
    "restoration": "Restoration and enhancement (full reference)",
    "nr_iqa": "No-reference image quality",
}
#: ``extras`` key of a summary row holding a confusion matrix (rows = true level, columns = predicted).
CONFUSION = "confusion"


def confusion(extras: dict) -> np.ndarray | None:
    """A summary row's confusion matrix (square, counts), or ``None``."""
    raw = extras.get(CONFUSION)
    try:
        m = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    ok = m.ndim == 2 and m.shape[0] == m.shape[1] and m.size and np.isfinite(m).all() and (m >= 0).all()
    return m if ok else None


def _confusions(ctx: Context, rows) -> list[dict]:
    """Per dataset (``{"dataset", "plots"}``), one small plot per (metric, method) whose summary row
    carries a confusion matrix."""
    out: dict[str, list[dict]] = {}
    ok = rows[rows["status"] == "ok"]
    for metric in ordered(ctx.metrics, ok["metric"]):
        for dataset in ordered(ctx.datasets, ok["dataset"]):
            part = ok[(ok["metric"] == metric) & (ok["dataset"] == dataset)]
            for rec in sorted(part.to_dict("records"), key=lambda r: ctx.methods.index(r["method"])
                              if r["method"] in ctx.methods else len(ctx.methods)):
                m = confusion(parse_extras(rec["extras"]))
                if m is None:
                    continue
                acc = np.trace(m) / max(m.sum(), 1)
                svg = confusion_plot(m, title=f"{rec['method']} (accuracy {acc:.3f}, n {int(m.sum()):,})",
                                     prefix=f"cm-{metric}-{dataset}-{rec['method']}", size=(3.9, 3.4))
                if svg is not None:
                    out.setdefault(dataset, []).append({"svg": svg, "metric": metric, "method": str(rec["method"])})
    return [{"dataset": d, "plots": out[d]} for d in ordered(ctx.datasets, out)]


def section(ctx: Context) -> Markup:
    summary = ctx.run.summary
    groups = []
    if len(summary):
        tasks = {m: str(ctx.metric_meta(m).get("task") or "other") for m in ordered(ctx.metrics, summary["metric"])}
        with plot_context():
            for task in ordered(TASK_TITLES, tasks.values()):
                figures = []
                for metric in (m for m, t in tasks.items() if t == task and ctx.plot_kind(m) == "bar"):
                    rows = summary[summary["metric"] == metric]
                    svg = bar_plot(ctx, metric, rows)
                    if svg is not None:
                        figures.append({"svg": svg, "caption": str(ctx.metric_meta(metric).get("description") or "")})
                task_rows = summary[summary["metric"].isin([m for m, t in tasks.items() if t == task])]
                cms = _confusions(ctx, task_rows)
                if figures or cms:
                    groups.append({"task": task, "title": TASK_TITLES.get(task, task), "figures": figures,
                                   "confusions": cms})
    return render("sections/charts.html.j2", groups=groups)


def pr_section(ctx: Context) -> Markup:
    curves = ctx.run.curves
    curves = curves[curves["curve"].astype(str).str.lower() == "pr"] if len(curves) else curves
    figures = []
    with plot_context():
        for dataset in (ordered(ctx.datasets, curves["dataset"]) if len(curves) else []):
            frame = curves[curves["dataset"] == dataset]
            if len(frame):
                figures.append({"dataset": dataset, "svg": pr_plot(ctx, dataset, frame)})
    return render("sections/pr.html.j2", figures=figures)
