"""The per-image galleries: per dataset, input | ground truth | each method's output, every map with
its colour bar and unit (:mod:`.scales`); a column whose maps share one scale shows its bar once,
in the header.  A constant map (a patch dataset's ground truth sigma) is shown as its value and a
swatch on the column's scale."""
from __future__ import annotations

from markupsafe import Markup

from .context import Context, Preview
from .env import render
from .fmt import fmt, ordered
from .scales import shared

MAX_GALLERY_ROWS = 40          # preview rows shown per dataset


def _cell(p: Preview, column_scale) -> dict:
    scale = p.scale
    if p.uri is None:
        return {"missing": "—" if p.why == "no image" else p.why, "why": p.why}
    if scale is not None and scale.value is not None:
        on = column_scale or scale
        return {"value": f"{fmt(scale.value, 3)}", "unit": scale.unit, "color": on.color(scale.value),
                "title": f"ground truth: constant {fmt(scale.value, 4)} {scale.unit}".strip()}
    return {"uri": p.uri, "scale": None if column_scale is not None else scale}


def _gallery(ctx: Context, dataset: str) -> dict | None:
    entries = [p for p in ctx.run.previews if str(p.get("dataset")) == dataset]
    if not entries:
        return None
    methods = ordered(ctx.methods, [m for p in entries for m in (p.get("methods") or {})])
    shown = entries[:MAX_GALLERY_ROWS]
    grid = []
    for entry in shown:
        maps = entry.get("methods") or {}
        grid.append([ctx.preview(entry.get("input"), "input"), ctx.preview(entry.get("target"), "target"),
                     *(ctx.preview(maps.get(m), "method", m) for m in methods)])
    heads = ["input", "ground truth", *methods]
    scales = [shared([row[j].scale for row in grid if row[j].uri is not None]) for j in range(len(heads))]
    rows = []
    for entry, row in zip(shown, grid):
        key = str(entry.get("key", ""))
        alts = [f"{dataset}/{key} {h}" for h in heads]
        rows.append({"key": key, "cells": [dict(_cell(p, scales[j]), alt=alts[j]) for j, p in enumerate(row)]})
    return {"dataset": dataset, "heads": [{"name": h, "scale": s} for h, s in zip(heads, scales)], "rows": rows,
            "total": len(entries)}


def section(ctx: Context) -> Markup:
    galleries = [g for g in (_gallery(ctx, d) for d in ordered(ctx.datasets, [p.get("dataset") for p in ctx.run.previews]))
                 if g is not None]
    return render("sections/gallery.html.j2", galleries=galleries, has_previews=bool(ctx.run.previews),
                  max_rows=MAX_GALLERY_ROWS)
