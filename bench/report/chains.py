"""The report's "Deblurring with blur maps" section: per restoration dataset, the matrix deblurring
method x map source of the chains of a run (SVBR-Net's Table 1), each cell SSIM / PSNR, with each
map's own MAE (``mae_radius`` of the chain's input map) above its column and the blurry input
(``identity``) as the reference row."""
from __future__ import annotations

import math

import pandas as pd
from markupsafe import Markup

from ..chains import GT, parse
from .env import render

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


def _cell(rows: pd.DataFrame, method: str) -> dict:
    """``{"text"}`` (SSIM / PSNR) or ``{"status", "reason"}`` of the first metric without a value."""
    parts = []
    for metric, fmt in CELL:
        value, status, reason = _value(rows, method, metric)
        if value is None:
            return {"status": status, "reason": reason}
        parts.append(fmt.format(value))
    return {"text": " / ".join(parts)}


def _matrix(rows: pd.DataFrame, dataset: str, order: list[str]) -> Markup | None:
    """The matrix of ``dataset`` (``rows``: its summary rows; ``order``: the run's methods), or None
    when no chain restored anything there."""
    scored = set(rows[(rows["status"] == "ok") & rows["metric"].isin([m for m, _ in CELL])]["method"])
    chained = [(m, parse(m)) for m in order if parse(m) is not None and m in scored]
    if not chained:        # no chain restored anything here (all n/a: no reference, no GT map, ...)
        return None
    consumers = list(dict.fromkeys(c.consumer for _, c in chained))
    sources = sorted(dict.fromkeys(c.source for _, c in chained), key=lambda s: (s != GT, order.index(
        next(m for m, c in chained if c.source == s))))
    maes = []
    for s in sources:
        values = [] if s == GT else [v for v in (_value(rows, f"{c}@{s}", MAP_METRIC)[0] for c in consumers)
                                     if v is not None]
        maes.append("0" if s == GT else (f"{values[0]:.3f}" if values else None))
    methods = set(rows["method"])
    reference = _cell(rows, REFERENCE) if REFERENCE in methods else None
    body = [{"consumer": c, "cells": [_cell(rows, f"{c}@{s}") if f"{c}@{s}" in methods else None for s in sources]}
            for c in consumers]
    return render("sections/chain_matrix.html.j2", dataset=dataset, sources=sources, maes=maes, reference=reference,
                  reference_name=REFERENCE, body=body)


def chains_section(ctx) -> Markup:
    """The section (a note when the run has no chain)."""
    tables = []
    summary = ctx.run.summary
    for dataset in ctx.datasets:
        rows = summary[summary["dataset"] == dataset]
        table = _matrix(rows, dataset, ctx.methods) if len(rows) else None
        if table:
            tables.append(table)
    return render("sections/chains.html.j2", tables=tables)
