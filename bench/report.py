"""One self-contained ``report.html`` from a benchmark run directory.

    from bench.report import write_report, render_report
    path = write_report("runs/2024-..", baseline="runs/previous")   # -> runs/2024-../report.html
    html = render_report("runs/2024-..")

The page needs no network and no JavaScript: CSS is inline, plots are inline SVG (matplotlib's SVG
backend through the object-oriented ``Figure`` API, so no pyplot/global backend state is touched),
preview thumbnails are ``data:`` URIs. Every string that comes from the run is passed through
``html.escape``; references (URLs) from method metadata are shown as text, never as links; plot
labels are plain text (matplotlib's mathtext is off, so a ``$`` in a name is just a ``$``).

Run-directory layout (written by the runner): ``run.json``, ``summary.parquet``,
``samples.parquet``, ``curves.parquet``, ``timings.parquet``, optional ``failures.jsonl`` and
``previews/index.json`` (+ PNGs). Parquet files may have zero rows; a missing or unreadable file is
reported as a warning at the top of the page instead of failing the whole report.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from datagen.atomic import atomic_write_bytes
from datagen.errors import OutputError, writable_dir

from .store import Run, load_run

__all__ = ["render_report", "write_report"]

MAX_GALLERY_ROWS = 40          # preview rows shown per dataset
MAX_PREVIEW_BYTES = 2_000_000  # a single thumbnail larger than this is not embedded
BEST_MARK = "★"

MARK_ORDER = ["newly failing", "worse", "missing", "not comparable", "new", "fixed", "better",
              "unchanged"]
STATUS_CLASS = {"complete": "good", "partial": "warn", "nothing ran": "bad"}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]

CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#d9dde5; --bg:#ffffff; --soft:#f4f6f9;
        --good:#1b7f3b; --warn:#a35d00; --bad:#b3261e; --best:#fff4c2; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--fg); background: var(--bg); margin: 0 auto; padding: 1.2rem 2rem 3rem;
       max-width: 1500px; }
h1 { font-size: 1.6rem; margin: 0 0 .4rem; }
h2 { font-size: 1.25rem; margin: 2.2rem 0 .6rem; padding-bottom: .25rem;
     border-bottom: 2px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
p.note, .muted { color: var(--muted); }
code, pre, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
                   font-size: 12.5px; }
nav.toc { margin: .6rem 0 0; display: flex; flex-wrap: wrap; gap: .3rem .9rem; }
nav.toc a { color: #2456a6; text-decoration: none; }
nav.toc a:hover { text-decoration: underline; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: .8rem 0; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; }
.badge { display: inline-block; padding: 0 .5em; border-radius: .6em; font-weight: 600;
         font-size: 12px; border: 1px solid currentColor; }
.good { color: var(--good); } .warn { color: var(--warn); } .bad { color: var(--bad); }
.warnings { background: #fff6e5; border: 1px solid #f0c36d; padding: .5rem 1rem; border-radius: 6px; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: .4rem 0 .8rem; }
th, td { border: 1px solid var(--line); padding: .28rem .6rem; vertical-align: top; }
thead th { background: var(--soft); text-align: left; }
tbody th { text-align: left; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th .unit, td .unit { color: var(--muted); font-weight: normal; font-size: 12px; }
th .dir { color: var(--muted); }
td.best { background: var(--best); }
span.best-mark { color: #b07d00; margin-left: .2em; }
td .pm { color: var(--muted); font-size: 12px; }
.st { font-size: 12px; padding: 0 .35em; border-radius: 4px; cursor: help; white-space: nowrap; }
.st-failed { background: #fde7e5; color: var(--bad); }
.st-na { background: #eef0f4; color: var(--muted); }
.st-unavailable { background: #fff1d6; color: var(--warn); }
.st-missing { color: var(--muted); }
details { margin: .2rem 0; }
details > summary { cursor: pointer; color: #2456a6; }
details pre { background: var(--soft); padding: .5rem; max-height: 24rem; overflow: auto;
              white-space: pre-wrap; word-break: break-word; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
figure.plot { margin: 0; flex: 1 1 460px; max-width: 640px; }
figure.plot figcaption { color: var(--muted); font-size: 12px; }
figure.plot svg { width: 100%; height: auto; display: block; }
table.gallery td { text-align: center; padding: .25rem; }
table.gallery img { display: block; max-width: 220px; max-height: 220px; image-rendering: auto; }
table.gallery .key { font-size: 12px; text-align: left; max-width: 12rem; word-break: break-all; }
tr.mark-worse td, tr.mark-newly-failing td { background: #fdecea; }
tr.mark-better td, tr.mark-fixed td { background: #e8f5ec; }
tr.mark-not-comparable td, tr.mark-missing td { background: #f4f4f4; }
td.sym { font-weight: 700; text-align: center; }
footer { margin-top: 2.5rem; }
footer table { font-size: 12.5px; }
@media print { details { display: block; } .scroll { overflow: visible; } }
"""


# ---------------------------------------------------------------------------------------------
# small helpers


def _e(value: Any) -> str:
    """Escape anything for HTML text and (double-quoted) attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def _isnum(value: Any) -> bool:
    try:
        return value is not None and not isinstance(value, (str, bool)) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _fmt(value: Any, digits: int = 4) -> str:
    if not _isnum(value):
        return "—"
    v = float(value)
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e6:
        text = f"{v:.{digits}g}"
        return text
    return f"{v:.{max(digits - 1, 1)}e}"


def _fmt_signed(value: Any) -> str:
    if not _isnum(value):
        return "—"
    text = _fmt(value)
    return text if text.startswith("-") else f"+{text}"


def _with_unit(text: str, unit: Any) -> str:
    unit = "" if unit is None or (isinstance(unit, float) and math.isnan(unit)) else str(unit)
    return f'{_e(text)} <span class="unit">{_e(unit)}</span>' if unit and text != "—" else _e(text)


def _slug(*parts: Any) -> str:
    text = "-".join(str(p) for p in parts)
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-").lower() or "x"


def _clean(value: Any) -> Any:
    """pandas/NumPy scalars to plain Python; NaN/None to None."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _parse_extras(raw: Any) -> dict:
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str) or not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _ordered(preferred: Iterable[str], seen: Iterable[Any]) -> list[str]:
    """``preferred`` order first (only those actually seen when ``seen`` is non-empty), then the rest sorted."""
    seen_set = {str(s) for s in seen if s is not None and not (isinstance(s, float) and math.isnan(s))}
    out = [p for p in preferred if p in seen_set]
    return out + sorted(seen_set - set(out))


def _table(head: list[str], rows: list[str], cls: str = "") -> str:
    cls_attr = f' class="{cls}"' if cls else ""
    return (f'<div class="scroll"><table{cls_attr}><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


# ---------------------------------------------------------------------------------------------
# loading


@dataclasses.dataclass
class _Run(Run):
    """A :class:`bench.store.Run` read leniently, plus what the sections derive from it."""

    @classmethod
    def load(cls, run_dir: Path) -> _Run:
        run = load_run(run_dir, lenient=True)
        return cls(**{f.name: getattr(run, f.name) for f in dataclasses.fields(Run)})

    def __post_init__(self):
        self.methods_meta: dict = self.meta.get("methods") or {}
        self.datasets_meta: dict = self.meta.get("datasets") or {}
        self.metrics_meta: dict = self.meta.get("metrics") or {}
        seen_methods = [*self.summary["method"], *self.curves["method"], *self.timings["method"],
                        *(f.get("method") for f in self.failures)]
        seen_datasets = [*self.summary["dataset"], *self.curves["dataset"], *self.timings["dataset"],
                         *(f.get("dataset") for f in self.failures)]
        self.methods = _ordered(self.methods_meta, [*self.methods_meta, *seen_methods])
        self.datasets = _ordered(self.datasets_meta, [*self.datasets_meta, *seen_datasets])
        self.metrics = _ordered(self.metrics_meta, [*self.metrics_meta, *self.summary["metric"]])
        self.colors = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(self.methods)}

    def image_uri(self, rel: Any) -> tuple[str | None, str]:
        """A data: URI for a preview path (relative to previews/ or to the run dir), or (None, why)."""
        if not isinstance(rel, str) or not rel:
            return None, "no image"
        root = self.dir.resolve()
        for base in (self.dir / "previews", self.dir):
            candidate = (base / rel).resolve()
            if not candidate.is_relative_to(root):
                return None, "path outside the run directory"
            if candidate.is_file():
                if candidate.stat().st_size > MAX_PREVIEW_BYTES:
                    return None, "image too large to embed"
                mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                        ".webp": "image/webp", ".gif": "image/gif"}.get(candidate.suffix.lower())
                if mime is None:
                    return None, f"unsupported image type {candidate.suffix}"
                data = base64.b64encode(candidate.read_bytes()).decode("ascii")
                return f"data:{mime};base64,{data}", ""
        return None, "image file missing"

    def higher_is_better(self, metric: str, rows: pd.DataFrame | None = None) -> bool | None:
        if rows is not None and len(rows):
            values = [_clean(v) for v in rows["higher_is_better"]]
            values = [v for v in values if v is not None]
            if values:
                return bool(values[0])
        meta = self.metrics_meta.get(metric) or {}
        value = meta.get("higher_is_better")
        return None if value is None else bool(value)

    def unit(self, metric: str, rows: pd.DataFrame | None = None) -> str:
        if rows is not None and len(rows):
            for v in rows["unit"]:
                v = _clean(v)
                if v:
                    return str(v)
        return str((self.metrics_meta.get(metric) or {}).get("unit") or "")


# ---------------------------------------------------------------------------------------------
# plots (inline SVG)


def _svg(fig, prefix: str) -> str:
    """A matplotlib Figure as inline SVG: no XML prolog/DOCTYPE/namespace URLs, ids made unique."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight",
                metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text)
    text = text.replace("xlink:href=", "href=")
    text = re.sub(r'(<svg[^>]*?)\s+width="[^"]*"\s+height="[^"]*"', r'\1', text, count=1)
    text = text.replace('id="', f'id="{prefix}-').replace('href="#', f'href="#{prefix}-')
    text = text.replace("url(#", f"url(#{prefix}-")
    return text.strip()


def _figure(width: float = 6.0, height: float = 4.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot()


def _plot_context():
    import matplotlib

    return matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "defocusbench", "text.parse_math": False,
                                  "font.size": 10, "axes.grid": True, "grid.alpha": 0.3})


def _pr_plot(run: _Run, dataset: str, frame: pd.DataFrame) -> str:
    metrics = _ordered(run.metrics, frame["metric"])
    several = len(metrics) > 1
    fig, ax = _figure()
    for method in _ordered(run.methods, frame["method"]):
        for metric in metrics:
            part = frame[(frame["method"] == method) & (frame["metric"] == metric)]
            if part.empty:
                continue
            part = part.sort_values("point")
            recall = pd.to_numeric(part["recall"], errors="coerce").to_numpy(dtype=float)
            precision = pd.to_numeric(part["precision"], errors="coerce").to_numpy(dtype=float)
            ok = [math.isfinite(r) and math.isfinite(p) for r, p in zip(recall, precision)]
            recall, precision = recall[ok], precision[ok]
            if not len(recall):
                continue
            denom = precision + recall
            f = [2 * p * r / d if d > 0 else 0.0 for p, r, d in zip(precision, recall, denom)]
            label = f"{method} ({metric})" if several else method
            label += f"  F={max(f):.3f}"
            ax.plot(recall, precision, label=label, color=run.colors.get(method), lw=1.6,
                    marker="o" if len(recall) <= 25 else None, ms=3)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Precision–recall: {dataset}")
    if ax.lines:
        ax.legend(loc="lower left", fontsize=8)
    return _svg(fig, _slug("pr", dataset))


def _mae_plot(run: _Run, metric: str, rows: pd.DataFrame) -> str | None:
    rows = rows[(rows["status"] == "ok") & pd.to_numeric(rows["value"], errors="coerce").notna()]
    if rows.empty:
        return None
    datasets = _ordered(run.datasets, rows["dataset"])
    methods = _ordered(run.methods, rows["method"])
    fig, ax = _figure(max(4.5, 1.2 + 0.55 * len(datasets) * max(1, len(methods))), 3.8)
    width = 0.8 / max(1, len(methods))
    plotted = False
    for j, method in enumerate(methods):
        xs, ys, errs = [], [], []
        for i, dataset in enumerate(datasets):
            cell = rows[(rows["method"] == method) & (rows["dataset"] == dataset)]
            if cell.empty or not _isnum(cell["value"].iloc[0]):
                continue
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(float(cell["value"].iloc[0]))
            std = _parse_extras(cell["extras"].iloc[0]).get("std")
            errs.append(float(std) if _isnum(std) else 0.0)
        if xs:
            plotted = True
            ax.bar(xs, ys, width=width * 0.92, label=method, color=run.colors.get(method),
                   yerr=errs if any(errs) else None, capsize=3)
    if not plotted:
        return None
    ax.set_xticks(range(len(datasets)))
    ax.set_xticklabels(datasets, rotation=15 if len(datasets) > 3 else 0)
    unit = run.unit(metric, rows)
    hib = run.higher_is_better(metric, rows)
    arrow = "" if hib is None else (" (higher is better)" if hib else " (lower is better)")
    ax.set_ylabel(f"{metric}{f' [{unit}]' if unit else ''}")
    ax.set_title(f"{metric}{arrow}")
    ax.legend(fontsize=8)
    return _svg(fig, _slug("bar", metric))


# ---------------------------------------------------------------------------------------------
# sections


def _header(run: _Run) -> str:
    info = run.meta
    git = info.get("git") or {}
    machine = info.get("machine") or {}
    sha = git.get("sha")
    sha_html = (f'<code title="{_e(sha)}">{_e(str(sha)[:12])}</code>' if sha else '<span class="muted">unknown</span>')
    if git.get("dirty"):
        sha_html += ' <span class="badge warn" title="uncommitted changes when the run started">dirty</span>'
    elif sha:
        sha_html += ' <span class="badge good">clean</span>'
    status = info.get("status", "unknown")
    status_html = f'<span class="badge {STATUS_CLASS.get(status, "warn")}">{_e(status)}</span>'
    if info.get("exit_code") is not None:
        status_html += f' <span class="muted">exit code {_e(info.get("exit_code"))}</span>'
    machine_text = ", ".join(f"{k}: {machine[k]}" for k in ("hostname", "platform", "cpu_count", "python")
                             if machine.get(k) is not None)
    seconds = info.get("seconds")
    items = [
        ("Run", f'<code>{_e(info.get("run_id", run.dir.name))}</code>'),
        ("Created", _e(info.get("created", "unknown"))),
        ("Profile", _e(info.get("profile", "unknown"))),
        ("Status", status_html),
        ("Git", sha_html),
        ("Device", _e(info.get("device", "unknown"))),
        ("Machine", _e(machine_text or "unknown")),
        ("Duration", _e(f"{float(seconds):.1f} s") if _isnum(seconds) else "—"),
        ("Scope", _e(f"{len(run.methods)} methods × {len(run.datasets)} datasets, "
                     f"{len(run.summary)} results, {len(run.failures)} failures")),
    ]
    meta = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    warnings = ""
    if run.warnings:
        warnings = ('<div class="warnings"><strong>Warnings</strong><ul>'
                    + "".join(f"<li>{_e(w)}</li>" for w in run.warnings) + "</ul></div>")
    return (f'<header><h1>DefocusBench report — {_e(info.get("run_id", run.dir.name))}</h1>'
            f'<dl class="meta">{meta}</dl>{warnings}</header>')


def _toc(sections: list[tuple[str, str]]) -> str:
    links = "".join(f'<a href="#{anchor}">{_e(title)}</a>' for anchor, title in sections)
    return f'<nav class="toc">{links}</nav>'


def _status_span(status: str, reason: str) -> str:
    cls = {"n/a": "st-na", "failed": "st-failed", "unavailable": "st-unavailable"}.get(status, "st-missing")
    return f'<span class="st {cls}" title="{_e(reason or status)}">{_e(status)}</span>'


def _leaderboard(run: _Run, dataset: str) -> str:
    rows = run.summary[run.summary["dataset"] == dataset]
    meta = run.datasets_meta.get(dataset) or {}
    desc_bits = [f"task: {meta['task']}" if meta.get("task") else "",
                 f"n = {meta['n']}" if meta.get("n") is not None else "",
                 f"version {meta['version']}" if meta.get("version") else ""]
    desc = " · ".join(b for b in desc_bits if b)
    out = [f'<h3 id="lb-{_slug(dataset)}">{_e(dataset)}</h3>']
    if desc or meta.get("description"):
        out.append(f'<p class="note">{_e(desc)}{" — " if desc and meta.get("description") else ""}'
                   f'{_e(meta.get("description", ""))}</p>')
    if rows.empty:
        out.append('<p class="note">No results for this dataset.</p>')
        return "".join(out)
    metrics = _ordered(run.metrics, rows["metric"])
    methods = _ordered(run.methods, rows["method"])
    cells: dict[tuple[str, str], dict] = {}
    for rec in rows.to_dict("records"):
        cells[(str(rec["method"]), str(rec["metric"]))] = rec

    head = ['<th>method</th>']
    best: dict[str, set[str]] = {}
    for metric in metrics:
        mrows = rows[rows["metric"] == metric]
        hib = run.higher_is_better(metric, mrows)
        unit = run.unit(metric, mrows)
        arrow = {True: "↑", False: "↓", None: ""}[hib]
        tip = {True: "higher is better", False: "lower is better", None: "no direction"}[hib]
        mdesc = (run.metrics_meta.get(metric) or {}).get("description") or ""
        head.append(f'<th class="num" title="{_e(tip + (": " + mdesc if mdesc else ""))}">{_e(metric)} '
                    f'<span class="dir">{arrow}</span>'
                    + (f' <span class="unit">[{_e(unit)}]</span>' if unit else "") + "</th>")
        scored = {}
        for rec in mrows.to_dict("records"):
            if rec.get("status") == "ok" and _isnum(rec.get("value")):
                scored[str(rec["method"])] = float(rec["value"])
        if hib is not None and len(scored) >= 2:
            target = max(scored.values()) if hib else min(scored.values())
            best[metric] = {m for m, v in scored.items() if v == target}

    # methods that do not fit this dataset at all (every cell n/a) get one line, not a row of dashes
    not_applicable = [m for m in methods
                      if all(str(_clean((cells.get((m, mt)) or {}).get("status")) or "") == "n/a" for mt in metrics)]
    methods = [m for m in methods if m not in not_applicable]
    body = []
    notes = []
    for method in methods:
        mmeta = run.methods_meta.get(method) or {}
        tip = " ".join(str(x) for x in (mmeta.get("version") and f"v{mmeta['version']}",
                                         mmeta.get("description")) if x)
        tds = [f'<th scope="row" title="{_e(tip)}">{_e(method)}</th>']
        for metric in metrics:
            rec = cells.get((method, metric))
            attrs = f'data-method="{_e(method)}" data-metric="{_e(metric)}"'
            if rec is None:
                tds.append(f'<td class="num" {attrs}><span class="st st-missing" title="no result">—</span></td>')
                continue
            status = str(_clean(rec.get("status")) or "")
            reason = str(_clean(rec.get("reason")) or "")
            if status == "ok" and _isnum(rec.get("value")):
                extras = _parse_extras(rec.get("extras"))
                n = _clean(rec.get("n"))
                tip_bits = [f"n={n}"] if n is not None else []
                tip_bits += [f"{k}={_fmt(v) if _isnum(v) else v}" for k, v in extras.items()]
                text = _with_unit(_fmt(rec["value"]), rec.get("unit") or run.unit(metric))
                if _isnum(extras.get("std")):
                    text += f' <span class="pm">± {_e(_fmt(extras["std"], 2))}</span>'
                is_best = method in best.get(metric, set())
                cls = "num best" if is_best else "num"
                if is_best:
                    text = f'<strong>{text}</strong><span class="best-mark" title="best">{BEST_MARK}</span>'
                    tip_bits.insert(0, "best in column")
                tds.append(f'<td class="{cls}" {attrs} data-status="ok" title="{_e("; ".join(tip_bits))}">'
                           f'{text}</td>')
            else:
                shown = status if status and status != "ok" else "n/a"
                if status == "ok":
                    reason = reason or "value is not a finite number"
                tds.append(f'<td class="num" {attrs} data-status="{_e(shown)}">{_status_span(shown, reason)}</td>')
                notes.append(f"<li><strong>{_e(method)}</strong> · {_e(metric)}: "
                             f"{_e(shown)}{' — ' + _e(reason) if reason else ''}</li>")
        body.append(f"<tr>{''.join(tds)}</tr>")
    out.append(_table(head, body, "leaderboard"))
    if not_applicable:
        items = []
        for m in not_applicable:
            reason = str(_clean((cells.get((m, metrics[0])) or {}).get("reason")) or "")
            items.append(f'<span class="na-method" title="{_e(reason)}">{_e(m)}</span>')
        out.append(f'<p class="note">Not applicable to {_e(dataset)} (hover for why): {", ".join(items)}</p>')
    if notes:
        out.append(f"<details><summary>{len(notes)} cell(s) without a value</summary>"
                   f"<ul>{''.join(notes)}</ul></details>")
    return "".join(out)


def _leaderboards(run: _Run) -> str:
    parts = ['<section id="leaderboards"><h2>Leaderboards</h2>',
             (f'<p class="note">Rows are methods, columns metrics; ↑/↓ give the direction, '
              f'{BEST_MARK} and bold mark the best value per column (when at least two methods have one). '
              f'Hover a cell for n and extras, or a status for its reason.</p>')]
    if run.summary.empty:
        parts.append('<p class="note">No results were recorded.</p>')
    for dataset in run.datasets:
        parts.append(_leaderboard(run, dataset))
    parts.append("</section>")
    return "".join(parts)


def _pr_section(run: _Run) -> str:
    curves = run.curves[run.curves["curve"].astype(str).str.lower() == "pr"] if len(run.curves) else run.curves
    parts = ['<section id="pr-curves"><h2>Precision–recall curves</h2>']
    if curves.empty:
        parts.append('<p class="note">No precision–recall curves in this run.</p></section>')
        return "".join(parts)
    parts.append('<div class="plots">')
    with _plot_context():
        for dataset in _ordered(run.datasets, curves["dataset"]):
            frame = curves[curves["dataset"] == dataset]
            if frame.empty:
                continue
            parts.append(f'<figure class="plot">{_pr_plot(run, dataset, frame)}'
                         f'<figcaption>{_e(dataset)}: one line per method; F is the best F-measure '
                         f'along the curve.</figcaption></figure>')
    parts.append("</div></section>")
    return "".join(parts)


def _mae_section(run: _Run) -> str:
    summary = run.summary
    mae = summary[summary["metric"].astype(str).str.lower().str.startswith("mae")] if len(summary) else summary
    parts = ['<section id="mae"><h2>MAE</h2>']
    figures = []
    if not mae.empty:
        with _plot_context():
            for metric in _ordered(run.metrics, mae["metric"]):
                svg = _mae_plot(run, metric, mae[mae["metric"] == metric])
                if svg:
                    figures.append(f'<figure class="plot">{svg}<figcaption>{_e(metric)} per dataset and '
                                   f'method (error bars: std when reported).</figcaption></figure>')
    if figures:
        parts.append(f'<div class="plots">{"".join(figures)}</div>')
    else:
        parts.append('<p class="note">No MAE metrics with values in this run.</p>')
    parts.append("</section>")
    return "".join(parts)


def _img_cell(run: _Run, rel: Any, alt: str) -> str:
    uri, why = run.image_uri(rel)
    if uri is None:
        return f'<td><span class="st st-missing" title="{_e(why)}">{_e("—" if why == "no image" else why)}</span></td>'
    return f'<td><img src="{uri}" alt="{_e(alt)}" title="{_e(alt)}"></td>'


def _gallery_section(run: _Run) -> str:
    parts = ['<section id="galleries"><h2>Per-image galleries</h2>']
    if not run.previews:
        parts.append('<p class="note">No previews in this run.</p></section>')
        return "".join(parts)
    datasets = _ordered(run.datasets, [p.get("dataset") for p in run.previews])
    for dataset in datasets:
        entries = [p for p in run.previews if str(p.get("dataset")) == dataset]
        if not entries:
            continue
        methods = _ordered(run.methods, [m for p in entries for m in (p.get("methods") or {})])
        head = ["<th>key</th>", "<th>input</th>", "<th>ground truth</th>"] + [f"<th>{_e(m)}</th>" for m in methods]
        rows = []
        for entry in entries[:MAX_GALLERY_ROWS]:
            key = str(entry.get("key", ""))
            maps = entry.get("methods") or {}
            cells = [f'<td class="key"><code>{_e(key)}</code></td>',
                     _img_cell(run, entry.get("input"), f"{dataset}/{key} input"),
                     _img_cell(run, entry.get("target"), f"{dataset}/{key} ground truth")]
            cells += [_img_cell(run, maps.get(m), f"{dataset}/{key} {m}") for m in methods]
            rows.append(f"<tr>{''.join(cells)}</tr>")
        parts.append(f'<h3 id="gal-{_slug(dataset)}">{_e(dataset)}</h3>')
        if len(entries) > MAX_GALLERY_ROWS:
            parts.append(f'<p class="note">Showing {MAX_GALLERY_ROWS} of {len(entries)} previews.</p>')
        parts.append(_table(head, rows, "gallery"))
    parts.append("</section>")
    return "".join(parts)


def _timings_section(run: _Run) -> str:
    parts = ['<section id="timings"><h2>Timings</h2>']
    t = run.timings
    if t.empty:
        parts.append('<p class="note">No timings recorded.</p></section>')
        return "".join(parts)
    t = t.assign(seconds=pd.to_numeric(t["seconds"], errors="coerce"),
                 megapixels=pd.to_numeric(t["megapixels"], errors="coerce"))
    datasets = _ordered(run.datasets, t["dataset"])
    methods = _ordered(run.methods, t["method"])

    def cell(frame: pd.DataFrame, attrs: str) -> str:
        secs, mp = float(frame["seconds"].sum()), float(frame["megapixels"].sum())
        if frame.empty:
            return f'<td class="num" {attrs}><span class="st st-missing" title="no timings">—</span></td>'
        tip = f"{len(frame)} images, {secs:.3g} s over {mp:.3g} MP"
        value = _with_unit(_fmt(secs / mp, 3), "s/MP") if mp > 0 else _e("—")
        return f'<td class="num" {attrs} title="{_e(tip)}">{value}</td>'

    head = ["<th>method</th>"] + [f'<th class="num">{_e(d)}</th>' for d in datasets] + ['<th class="num">all</th>']
    rows = []
    for method in methods:
        mt = t[t["method"] == method]
        tds = [f'<th scope="row">{_e(method)}</th>']
        tds += [cell(mt[mt["dataset"] == d], f'data-method="{_e(method)}" data-dataset="{_e(d)}"') for d in datasets]
        tds.append(cell(mt, f'data-method="{_e(method)}" data-dataset="*"'))
        rows.append(f"<tr>{''.join(tds)}</tr>")
    parts.append('<p class="note">Seconds per megapixel = total seconds / total megapixels over the images '
                 'of each method and dataset (lower is faster). Hover for counts.</p>')
    parts.append(_table(head, rows, "timings"))
    parts.append("</section>")
    return "".join(parts)


def _failures_section(run: _Run) -> str:
    parts = [f'<section id="failures"><h2>Failures ({len(run.failures)})</h2>']
    if not run.failures:
        parts.append('<p class="note">No failures recorded.</p></section>')
        return "".join(parts)
    stages = Counter(str(f.get("stage", "?")) for f in run.failures)
    parts.append('<p class="note">' + _e(", ".join(f"{n} at {s}" for s, n in sorted(stages.items()))) + "</p>")
    head = [f"<th>{h}</th>" for h in ("method", "dataset", "key", "stage", "error")]
    rows = []
    for f in run.failures:
        error = str(f.get("error") or "").strip()
        tb = str(f.get("traceback") or "").rstrip()
        err_html = f'<code>{_e(error or "(no message)")}</code>'
        if tb:
            err_html += f"<details><summary>traceback</summary><pre>{_e(tb)}</pre></details>"
        key = f.get("key")
        rows.append("<tr>" + "".join([
            f"<td>{_e(f.get('method', ''))}</td>", f"<td>{_e(f.get('dataset', ''))}</td>",
            f"<td>{'<code>' + _e(key) + '</code>' if key is not None else '<span class=muted>—</span>'}</td>",
            f"<td>{_e(f.get('stage', ''))}</td>", f"<td>{err_html}</td>"]) + "</tr>")
    parts.append(_table(head, rows, "failures"))
    parts.append("</section>")
    return "".join(parts)


def _comparison_section(run: _Run, baseline: Path) -> str:
    from bench.compare import MARK_SYMBOLS, compare_runs

    rows = list(compare_runs(baseline, run.dir))
    base_id = baseline.name
    try:
        base_id = json.loads((baseline / "run.json").read_text(encoding="utf-8")).get("run_id") or base_id
    except (OSError, ValueError, AttributeError):
        pass
    order = {m: i for i, m in enumerate(MARK_ORDER)}
    rows.sort(key=lambda r: order.get(r.mark, len(order)))
    counts = Counter(r.mark for r in rows)
    parts = ['<section id="comparison"><h2>Comparison with baseline</h2>',
             f'<p class="note">Baseline <code>{_e(base_id)}</code> → current '
             f'<code>{_e(run.meta.get("run_id", run.dir.name))}</code>. '
             + _e(", ".join(f"{counts[m]} {m}" for m in [*MARK_ORDER, *sorted(set(counts) - set(MARK_ORDER))]
                            if counts.get(m))) + "</p>"]
    if not rows:
        parts.append('<p class="note">Nothing to compare.</p></section>')
        return "".join(parts)
    legend = ", ".join(f"{MARK_SYMBOLS.get(m, '')} {m}" for m in MARK_ORDER if MARK_SYMBOLS.get(m, "").strip())
    if legend:
        parts.append(f'<p class="note">Symbols: {_e(legend)}.</p>')
    head = ['<th title="mark">±</th>'] + [f"<th>{h}</th>" for h in ("method", "dataset", "metric")] + \
           [f'<th class="num">{h}</th>' for h in ("base", "current", "delta", "95% CI of delta")] + \
           ["<th>mark</th>", "<th>reason</th>"]
    body = []
    for r in rows:
        mark, unit, lo, hi = r.mark, r.unit, r.ci_low, r.ci_high
        ci = f"[{_fmt_signed(lo)}, {_fmt_signed(hi)}]" if _isnum(lo) or _isnum(hi) else "—"
        body.append(
            f'<tr class="mark-{_slug(mark)}" data-mark="{_e(mark)}">'
            f'<td class="sym">{_e(MARK_SYMBOLS.get(mark, ""))}</td>'
            f"<td>{_e(r.method)}</td><td>{_e(r.dataset)}</td><td>{_e(r.metric)}</td>"
            f'<td class="num">{_with_unit(_fmt(r.base), unit)}</td>'
            f'<td class="num">{_with_unit(_fmt(r.current), unit)}</td>'
            f'<td class="num">{_with_unit(_fmt_signed(r.delta), unit)}</td><td class="num">{_e(ci)}</td>'
            f"<td>{_e(mark)}</td><td>{_e(r.reason)}</td></tr>")
    parts.append(_table(head, body, "comparison"))
    parts.append("</section>")
    return "".join(parts)


def _methods_section(run: _Run) -> str:
    parts = ['<section id="methods"><h2>Methods and datasets</h2>']
    if run.methods:
        head = [f"<th>{h}</th>" for h in ("method", "version", "provides", "units", "higher", "description",
                                           "reference", "params")]
        rows = []
        for m in run.methods:
            meta = run.methods_meta.get(m) or {}
            params = meta.get("params")
            params_text = json.dumps(params, sort_keys=True, default=str) if params else ""
            rows.append("<tr>" + "".join(
                [f"<td><strong>{_e(m)}</strong></td>"]
                + [f"<td>{_e(meta.get(k, ''))}</td>" for k in ("version", "provides", "units", "higher",
                                                                "description", "reference")]
                + [f'<td><code>{_e(params_text)}</code></td>']) + "</tr>")
        parts.append(_table(head, rows))
    if run.datasets:
        head = [f"<th>{h}</th>" for h in ("dataset", "id", "version", "task", "n", "description")]
        rows = []
        for d in run.datasets:
            meta = run.datasets_meta.get(d) or {}
            rows.append("<tr>" + f"<td><strong>{_e(d)}</strong></td>" + "".join(
                f"<td>{_e(meta.get(k, ''))}</td>" for k in ("dataset_id", "version", "task", "n",
                                                           "description")) + "</tr>")
        parts.append(_table(head, rows))
    parts.append("</section>")
    return "".join(parts)


def _footer(run: _Run) -> str:
    versions = run.meta.get("versions") or {}
    parts = ['<footer id="footer"><h2>Versions and metric conventions</h2>']
    if versions:
        rows = [f"<tr><td>{_e(k)}</td><td><code>{_e(v)}</code></td></tr>" for k, v in sorted(versions.items())]
        parts.append(_table(["<th>package</th>", "<th>version</th>"], rows))
    metrics = [m for m in run.metrics if m in run.metrics_meta]
    if metrics:
        head = [f"<th>{h}</th>" for h in ("metric", "task", "direction", "unit", "version", "threshold",
                                           "needs", "accepts", "conventions", "description")]
        rows = []
        for m in metrics:
            meta = run.metrics_meta[m] or {}
            hib = meta.get("higher_is_better")
            direction = "—" if hib is None else ("↑ higher is better" if hib else "↓ lower is better")
            conv = meta.get("conventions") or {}
            conv_html = "<br>".join(f"<code>{_e(k)}</code>: {_e(v)}" for k, v in conv.items()) if isinstance(
                conv, dict) else _e(conv)

            def listish(v: Any) -> str:
                return ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else ("" if v is None else str(v))

            rows.append("<tr>" + "".join([
                f"<td><strong>{_e(m)}</strong></td>", f"<td>{_e(meta.get('task', ''))}</td>",
                f"<td>{_e(direction)}</td>", f"<td>{_e(meta.get('unit', ''))}</td>",
                f"<td>{_e(meta.get('version', ''))}</td>", f"<td>{_e(listish(meta.get('threshold')))}</td>",
                f"<td>{_e(listish(meta.get('needs')))}</td>", f"<td>{_e(listish(meta.get('accepts')))}</td>",
                f"<td>{conv_html}</td>", f"<td>{_e(meta.get('description', ''))}</td>"]) + "</tr>")
        parts.append(_table(head, rows))
    fmt = run.meta.get("format", "?")
    parts.append(f'<p class="note">Generated by bench.report from run <code>{_e(run.meta.get("run_id", run.dir.name))}</code> '
                 f'(format {_e(fmt)} v{_e(run.meta.get("format_version", "?"))}).</p></footer>')
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# public API


def render_report(run_dir, *, baseline=None) -> str:
    """The report for ``run_dir`` as one self-contained HTML string.

    With ``baseline`` (another run directory) a comparison table from
    ``bench.compare.compare_runs(baseline, run_dir)`` is included.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    if baseline is not None:
        baseline = Path(baseline)
        if not baseline.is_dir():
            raise FileNotFoundError(f"baseline run directory not found: {baseline}")
    run = _Run.load(run_dir)
    from .report_cards import cards_section
    from .report_chains import chains_section

    sections = [("leaderboards", "Leaderboards"), ("pr-curves", "PR curves"), ("mae", "MAE"),
                ("chains", "Deblurring with maps"), ("galleries", "Galleries"), ("model-cards", "Model cards"), ("timings", "Timings"),
                ("failures", "Failures")]
    if baseline is not None:
        sections.append(("comparison", "Comparison"))
    sections += [("methods", "Methods & datasets"), ("footer", "Versions & conventions")]
    body = [_header(run), _toc(sections), _leaderboards(run), _pr_section(run), _mae_section(run),
            chains_section(run), _gallery_section(run), cards_section(run.methods_meta), _timings_section(run), _failures_section(run)]
    if baseline is not None:
        body.append(_comparison_section(run, baseline))
    body += [_methods_section(run), _footer(run)]
    title = f"DefocusBench report — {run.meta.get('run_id', run_dir.name)}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report(run_dir, *, baseline=None, out=None) -> Path:
    """Write the report atomically (temp file in the same folder, then ``os.replace``); return its path.

    ``out`` defaults to ``run_dir / "report.html"``.  An ``out`` that is a folder, lies under a
    file, or cannot be written is a one-line :class:`~datagen.errors.OutputError`.
    """
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "report.html"
    if out.is_dir():
        raise OutputError(f"report --out {out} is a folder; give a file name, e.g. {out / 'report.html'}")
    text = render_report(run_dir, baseline=baseline)
    writable_dir(out.parent, hint="choose another --out for the report")
    try:
        atomic_write_bytes(out, text.encode("utf-8"))
    except OSError as err:
        raise OutputError(f"cannot write report {out} ({err.strerror or err}); choose another --out") from None
    return out
