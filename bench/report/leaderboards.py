"""The leaderboards: per dataset, methods x metrics, the best value per column marked."""
from __future__ import annotations

from markupsafe import Markup

from ..leaderboard import best_of
from .context import Context
from .env import render
from .fmt import clean, direction, fmt, isnum, ordered, parse_extras, text

BEST_MARK = "★"


def _columns(ctx: Context, rows) -> tuple[list[dict], dict[str, set[str]]]:
    """The header cells (metric, direction, unit, tooltip) and the best methods per metric."""
    columns, best = [], {}
    for metric in ordered(ctx.metrics, rows["metric"]):
        mrows = rows[rows["metric"] == metric]
        hib = ctx.higher_is_better(metric, mrows)
        arrow, words = direction(hib)
        mdesc = ctx.metric_meta(metric).get("description") or ""
        columns.append({"metric": metric, "arrow": arrow, "unit": ctx.unit(metric, mrows),
                        "tip": words + (": " + mdesc if mdesc else "")})
        scored = {str(r["method"]): float(r["value"]) for r in mrows.to_dict("records")
                  if r.get("status") == "ok" and isnum(r.get("value"))}
        best[metric] = best_of(scored, higher_is_better=hib)
    return columns, best


def _cell(ctx: Context, rec: dict | None, metric: str, is_best: bool) -> dict:
    """One leaderboard cell: ``status`` ``ok`` with a value, or the shown status and its reason."""
    if rec is None:
        return {"status": None}
    status, reason = text(rec.get("status")), text(rec.get("reason"))
    if status == "ok" and isnum(rec.get("value")):
        extras = parse_extras(rec.get("extras"))
        n = clean(rec.get("n"))
        tips = (["best in column"] if is_best else []) + ([f"n={n}"] if n is not None else [])
        tips += [f"{k}={fmt(v) if isnum(v) else v}" for k, v in extras.items() if isinstance(v, (int, float, str))]
        return {"status": "ok", "value": fmt(rec["value"]), "unit": text(rec.get("unit")) or ctx.unit(metric),
                "std": fmt(extras["std"], 2) if isnum(extras.get("std")) else None, "best": is_best,
                "title": "; ".join(tips)}
    shown = status if status and status != "ok" else "n/a"
    if status == "ok":
        reason = reason or "value is not a finite number"
    return {"status": shown, "reason": reason}


def _board(ctx: Context, dataset: str) -> dict:
    rows = ctx.run.summary[ctx.run.summary["dataset"] == dataset]
    meta = ctx.dataset_meta(dataset)
    desc = " · ".join(b for b in (f"task: {meta['task']}" if meta.get("task") else "",
                                  f"n = {meta['n']}" if meta.get("n") is not None else "",
                                  f"version {meta['version']}" if meta.get("version") else "") if b)
    board = {"dataset": dataset, "desc": desc, "description": text(meta.get("description")), "rows": [],
             "columns": [], "not_applicable": [], "notes": []}
    if rows.empty:
        return board
    columns, best = _columns(ctx, rows)
    metrics = [c["metric"] for c in columns]
    recs = {(str(r["method"]), str(r["metric"])): r for r in rows.to_dict("records")}
    methods = ordered(ctx.methods, rows["method"])
    # methods that do not fit this dataset at all (every cell n/a) get one line, not a row of dashes
    for m in methods:
        if all(text((recs.get((m, mt)) or {}).get("status")) == "n/a" for mt in metrics):
            board["not_applicable"].append((m, text((recs.get((m, metrics[0])) or {}).get("reason"))))
    skip = {m for m, _ in board["not_applicable"]}
    for method in (m for m in methods if m not in skip):
        mmeta = ctx.method_meta(method)
        tip = " ".join(str(x) for x in (mmeta.get("version") and f"v{mmeta['version']}", mmeta.get("description")) if x)
        cells = []
        for metric in metrics:
            cell = _cell(ctx, recs.get((method, metric)), metric, method in best.get(metric, set()))
            cells.append(dict(cell, method=method, metric=metric))
            if cell["status"] not in (None, "ok"):
                board["notes"].append(cell | {"method": method, "metric": metric})
        board["rows"].append({"method": method, "tip": tip, "cells": cells})
    board["columns"] = columns
    return board


def section(ctx: Context) -> Markup:
    return render("sections/leaderboards.html.j2", empty=ctx.run.summary.empty, best_mark=BEST_MARK,
                  boards=[_board(ctx, d) for d in ctx.datasets])
