"""The report's "Deblurring with blur maps" section: per restoration dataset, the matrix deblurring
method x map source of the chains of a run (SVBR-Net's Table 1), each cell SSIM / PSNR, with each
map's own MAE (``mae_radius`` of the chain's input map) above its column and the blurry input
(``identity``) as the reference row."""
from __future__ import annotations

import math

import pandas as pd

from .chains import GT, parse
from .report import _e, _status_span, _table

#: The metrics of a cell, in order, and how they are printed.
CELL = (("ssim", "{:.3f}"), ("psnr", "{:.2f}"))
MAP_METRIC = "mae_radius"
REFERENCE = "identity"


def _value(rows: pd.DataFrame, method: str, metric: str) -> tuple[float | None, str, str]:
    hit = rows[(rows["method"] == method) & (rows["metric"] == metric)]
    if hit.empty:
        return None, "missing", "not run"
    r = hit.iloc[0]
    value = float(r["value"]) if r["status"] == "ok" and not math.isnan(float(r["value"])) else None
    return value, str(r["status"]), str(r["reason"] or "")


def _cell(rows: pd.DataFrame, method: str) -> str:
    parts = []
    for metric, fmt in CELL:
        value, status, reason = _value(rows, method, metric)
        if value is None:
            return f"<td>{_status_span(status, reason)}</td>"
        parts.append(fmt.format(value))
    return f'<td class="num">{" / ".join(parts)}</td>'


def _matrix(rows: pd.DataFrame, dataset: str, order: list[str]) -> str | None:
    scored = set(rows[(rows["status"] == "ok") & rows["metric"].isin([m for m, _ in CELL])]["method"])
    chained = [(m, parse(m)) for m in order if parse(m) is not None and m in scored]
    if not chained:        # no chain restored anything here (all n/a: no reference, no GT map, ...)
        return None
    consumers = list(dict.fromkeys(c.consumer for _, c in chained))
    sources = sorted(dict.fromkeys(c.source for _, c in chained), key=lambda s: (s != GT, order.index(
        next(m for m, c in chained if c.source == s))))
    head = ["<th>deblurring \\ map</th>", *(f"<th>{_e(s)}</th>" for s in sources)]
    mae_row = ["<th>map MAE (radius px)</th>"]
    for s in sources:
        if s == GT:
            mae_row.append('<td class="num">0</td>')
            continue
        values = [_value(rows, f"{c}@{s}", MAP_METRIC)[0] for c in consumers]
        values = [v for v in values if v is not None]
        mae_row.append(f'<td class="num">{values[0]:.3f}</td>' if values else "<td>–</td>")
    body = ["<tr>" + "".join(mae_row) + "</tr>"]
    if REFERENCE in set(rows["method"]):
        ref = _cell(rows, REFERENCE)
        body.append(f"<tr><th>blurry input ({REFERENCE})</th>" + ref * len(sources) + "</tr>")
    for c in consumers:
        cells = [_cell(rows, f"{c}@{s}") if f"{c}@{s}" in set(rows["method"]) else "<td>–</td>" for s in sources]
        body.append(f"<tr><th>{_e(c)}</th>{''.join(cells)}</tr>")
    return (f"<h3>{_e(dataset)}</h3>" + _table(head, body, cls="chains")
            + '<p class="note">SSIM / PSNR (dB) of the restored image against the sharp reference; the first row is '
              "the error of each map source's map itself (MAE in disk-radius px against the ground truth).</p>")


def chains_section(run) -> str:
    """The section (a note when the run has no chain)."""
    parts = ['<section id="chains"><h2>Deblurring with blur maps</h2>']
    tables = []
    for dataset in run.datasets:
        rows = run.summary[run.summary["dataset"] == dataset]
        table = _matrix(rows, dataset, run.methods) if len(rows) else None
        if table:
            tables.append(table)
    parts += tables or ['<p class="note">No chains (deblurring after a blur map, e.g. svbr2022@gt) in this run.</p>']
    parts.append("</section>")
    return "".join(parts)
