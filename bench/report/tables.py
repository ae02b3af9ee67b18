"""The plain sections: header, timings, failures, methods and datasets, versions and conventions."""
from __future__ import annotations

import json
from collections import Counter

import pandas as pd
from markupsafe import Markup

from .context import Context
from .env import render
from .fmt import direction, fmt, isnum, listish, ordered, text

STATUS_CLASS = {"complete": "good", "partial": "warn", "nothing ran": "bad"}


def header(ctx: Context) -> Markup:
    info = ctx.run.meta
    machine = info.get("machine") or {}
    machine_text = ", ".join(f"{k}: {machine[k]}" for k in ("hostname", "platform", "cpu_count", "python")
                             if machine.get(k) is not None)
    seconds = info.get("seconds")
    status = str(info.get("status", "unknown"))
    summary = (f"{len(ctx.methods)} methods × {len(ctx.datasets)} datasets, "
               f"{len(ctx.run.summary)} results, {len(ctx.run.failures)} failures")
    return render("sections/header.html.j2", ctx=ctx, info=info, git=info.get("git") or {},
                  status=status, status_class=STATUS_CLASS.get(status, "warn"), machine=machine_text or "unknown",
                  duration=f"{float(seconds):.1f} s" if isnum(seconds) else "—", scope=summary,
                  warnings=ctx.run.warnings)


def timings(ctx: Context) -> Markup:
    t = ctx.run.timings
    if t.empty:
        return render("sections/timings.html.j2", rows=[], datasets=[])
    t = t.assign(seconds=pd.to_numeric(t["seconds"], errors="coerce"),
                 megapixels=pd.to_numeric(t["megapixels"], errors="coerce"))
    datasets = ordered(ctx.datasets, t["dataset"])

    def cell(frame: pd.DataFrame, dataset: str) -> dict:
        if frame.empty:
            return {"dataset": dataset, "value": None}
        secs, mp = float(frame["seconds"].sum()), float(frame["megapixels"].sum())
        return {"dataset": dataset, "value": fmt(secs / mp, 3) if mp > 0 else "—",
                "tip": f"{len(frame)} images, {secs:.3g} s over {mp:.3g} MP"}

    rows = []
    for method in ordered(ctx.methods, t["method"]):
        mt = t[t["method"] == method]
        rows.append({"method": method, "cells": [*(cell(mt[mt["dataset"] == d], d) for d in datasets), cell(mt, "*")]})
    return render("sections/timings.html.j2", rows=rows, datasets=datasets)


def failures(ctx: Context) -> Markup:
    fails = ctx.run.failures
    stages = Counter(str(f.get("stage", "?")) for f in fails)
    rows = [{"method": text(f.get("method")), "dataset": text(f.get("dataset")), "key": f.get("key"),
             "stage": text(f.get("stage")), "error": str(f.get("error") or "").strip() or "(no message)",
             "traceback": str(f.get("traceback") or "").rstrip()} for f in fails]
    return render("sections/failures.html.j2", rows=rows,
                  stages=", ".join(f"{n} at {s}" for s, n in sorted(stages.items())))


def methods(ctx: Context) -> Markup:
    mrows = []
    for m in ctx.methods:
        meta = ctx.method_meta(m)
        params = meta.get("params")
        mrows.append([m, *(text(meta.get(k, "")) for k in ("version", "provides", "units", "higher", "description",
                                                             "reference")),
                      json.dumps(params, sort_keys=True, default=str) if params else ""])
    drows = [[d, *(text(ctx.dataset_meta(d).get(k, "")) for k in ("dataset_id", "version", "task", "n", "description"))]
             for d in ctx.datasets]
    return render("sections/methods.html.j2", mrows=mrows, drows=drows)


def footer(ctx: Context) -> Markup:
    mrows = []
    for m in (m for m in ctx.metrics if m in (ctx.run.meta.get("metrics") or {})):
        meta = ctx.metric_meta(m)
        hib = meta.get("higher_is_better")
        arrow, words = direction(hib)
        conv = meta.get("conventions") or {}
        mrows.append({"metric": m, "task": text(meta.get("task")), "direction": f"{arrow} {words}" if arrow else "—",
                      "unit": text(meta.get("unit")), "version": text(meta.get("version")),
                      "threshold": listish(meta.get("threshold")), "needs": listish(meta.get("needs")),
                      "accepts": listish(meta.get("accepts")),
                      "conventions": list(conv.items()) if isinstance(conv, dict) else None,
                      "conventions_text": "" if isinstance(conv, dict) else text(conv),
                      "description": text(meta.get("description"))})
    info = ctx.run.meta
    return render("sections/footer.html.j2", versions=sorted((info.get("versions") or {}).items()), metrics=mrows,
                  run_id=ctx.run_id, fmt=text(info.get("format", "?")), fmt_version=text(info.get("format_version", "?")))
