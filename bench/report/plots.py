"""The report's plots as inline SVG (matplotlib's object-oriented ``Figure`` API: no pyplot, no global
backend state).  Labels are plain text: mathtext is off, so a ``$`` in a name is just a ``$``.
Every function returns :class:`markupsafe.Markup` (the SVG is markup; matplotlib escapes the text in it)."""
from __future__ import annotations

import hashlib
import io
import math
import re

import numpy as np
import pandas as pd
from markupsafe import Markup

from .fmt import direction, fmt, isnum, ordered, parse_extras, slug


def svg(fig, prefix: str) -> Markup:
    """A Figure as inline SVG: no XML prolog/DOCTYPE/namespace URLs, element ids made unique by ``prefix``;
    its width and height (pt) stay, the page only scales it down (``max-width: 100%``)."""
    # ids and references inside the SVG: never a name's raw characters, and two names never one id
    safe = slug(prefix)
    prefix = safe if safe == prefix else f"{safe}-{hashlib.sha256(prefix.encode()).hexdigest()[:8]}"
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight",
                metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text)
    text = text.replace("xlink:href=", "href=")
    text = text.replace('id="', f'id="{prefix}-').replace('href="#', f'href="#{prefix}-')
    text = text.replace("url(#", f"url(#{prefix}-")
    return Markup(text.strip())


def figure(width: float = 6.0, height: float = 4.2, *, nrows: int = 1, ncols: int = 1, **kw):
    """A Figure and its axes (one ``Axes`` for 1x1, else the 2-D array)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes[0, 0] if nrows == ncols == 1 else axes


def plot_context():
    """The rc settings of every plot (text as SVG text, stable ids, no mathtext)."""
    import matplotlib

    return matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "defocusbench", "text.parse_math": False,
                                  "font.size": 10, "axes.grid": True, "grid.alpha": 0.3})


def pr_plot(ctx, dataset: str, frame: pd.DataFrame) -> Markup:
    """Precision-recall curves of ``dataset``: one line per method (and metric), best F in the legend."""
    metrics = ordered(ctx.metrics, frame["metric"])
    several = len(metrics) > 1
    fig, ax = figure()
    for method in ordered(ctx.methods, frame["method"]):
        for metric in metrics:
            part = frame[(frame["method"] == method) & (frame["metric"] == metric)].sort_values("point")
            recall = pd.to_numeric(part["recall"], errors="coerce").to_numpy(dtype=float)
            precision = pd.to_numeric(part["precision"], errors="coerce").to_numpy(dtype=float)
            ok = np.isfinite(recall) & np.isfinite(precision)
            recall, precision = recall[ok], precision[ok]
            if not len(recall):
                continue
            denom = precision + recall
            f = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
            label = (f"{method} ({metric})" if several else method) + f"  F={f.max():.3f}"
            ax.plot(recall, precision, label=label, color=ctx.colors.get(method), lw=1.6,
                    marker="o" if len(recall) <= 25 else None, ms=3)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Precision–recall: {dataset}")
    if ax.lines:
        ax.legend(loc="lower left", fontsize=8)
    return svg(fig, slug("pr", dataset))


def bar_plot(ctx, metric: str, rows: pd.DataFrame) -> Markup | None:
    """Horizontal bars of ``metric``: one panel per dataset, one bar per method (its colour), the value
    written at the bar's end, error bars at the reported std, the best bar outlined; the title says
    the unit and which direction is better.  ``None`` when no row has a value."""
    rows = rows[(rows["status"] == "ok") & pd.to_numeric(rows["value"], errors="coerce").notna()]
    if rows.empty:
        return None
    datasets = ordered(ctx.datasets, rows["dataset"])
    methods = ordered(ctx.methods, rows["method"])
    ncols = min(3, len(datasets))
    nrows = math.ceil(len(datasets) / ncols)
    label_w = min(2.3, 0.9 + 0.06 * max(len(m) for m in methods))
    fig, axes = figure(label_w + 2.3 * ncols, 0.9 + nrows * (0.45 + 0.24 * len(methods)), nrows=nrows, ncols=ncols,
                       sharey=True)
    axes = np.atleast_2d(axes)
    hib = ctx.higher_is_better(metric, rows)
    unit = ctx.unit(metric, rows)
    arrow, words = direction(hib)
    ys = np.arange(len(methods))
    for i, dataset in enumerate(datasets):
        ax = axes[i // ncols, i % ncols]
        part = rows[rows["dataset"] == dataset]
        values = {}
        errs = {}
        for rec in part.to_dict("records"):
            values[str(rec["method"])] = float(rec["value"])
            std = parse_extras(rec.get("extras")).get("std")
            errs[str(rec["method"])] = float(std) if isnum(std) else 0.0
        best = None
        if hib is not None and len(values) >= 2:
            best = (max if hib else min)(values.values())
        shown = [m for m in methods if m in values]
        y = [ys[methods.index(m)] for m in shown]
        v = [values[m] for m in shown]
        e = [errs[m] for m in shown]
        ax.barh(y, v, height=0.72, color=[ctx.colors.get(m) for m in shown],
                edgecolor=["black" if values[m] == best else "none" for m in shown], linewidth=1.4,
                xerr=e if any(e) else None, capsize=2, error_kw={"elinewidth": 0.8, "alpha": 0.7})
        ends = [val + err if val >= 0 else val - err for val, err in zip(v, e)]
        lo, hi = min(0.0, *ends), max(0.0, *ends)
        span = (hi - lo) or 1.0
        for yy, val, end, m in zip(y, v, ends, shown):
            star = " ★" if values[m] == best else ""
            ax.text(end + 0.015 * span if val >= 0 else end - 0.015 * span, yy, fmt(val, 3) + star, va="center",
                    ha="left" if val >= 0 else "right", fontsize=7.5)
        ax.set_xlim(lo - (0.25 * span if lo < 0 else 0), hi + 0.25 * span)
        ax.set_title(dataset, fontsize=9.5)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(unit or metric, fontsize=8.5)
        ax.tick_params(axis="x", labelsize=8)
    for j in range(len(datasets), nrows * ncols):
        axes[j // ncols, j % ncols].set_visible(False)
    axes[0, 0].set_yticks(ys)
    axes[0, 0].set_yticklabels(methods, fontsize=8.5)
    axes[0, 0].invert_yaxis()
    height = fig.get_size_inches()[1]
    fig.suptitle(f"{metric}{f' [{unit}]' if unit else ''} {arrow} {words}".replace("  ", " "), fontsize=10.5,
                 y=1 + 0.12 / height, va="bottom")
    return svg(fig, slug("bar", metric))


def confusion_plot(matrix, *, title: str, prefix: str, size: tuple[float, float] = (5.4, 4.8),
                   labels: list[str] | None = None) -> Markup | None:
    """A confusion matrix (rows = true level, columns = predicted), each row normalised to 1 so the
    diagonal is the per-class recall; ``None`` when ``matrix`` is not square."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or not m.size:
        return None
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    fig, ax = figure(*size)
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    ax.grid(False)
    ax.set_xlabel("predicted level")
    ax.set_ylabel("true level")
    ticks = list(range(0, m.shape[0], max(1, math.ceil(m.shape[0] / 10))))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    if labels is not None and len(labels) == m.shape[0]:
        ax.set_xticklabels([labels[t] for t in ticks])
        ax.set_yticklabels([labels[t] for t in ticks])
    fig.colorbar(im, ax=ax, label="share of the true level's samples")
    ax.set_title(title, fontsize=9.5)
    return svg(fig, prefix + "-confusion")
