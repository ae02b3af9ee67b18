"""The leaderboard of a run: per dataset, method x metric, the best value of each metric marked.

:func:`leaderboard` turns a run's summary (``summary.parquet``) and metric specs (``run.json``'s
``metrics``) into JSON-ready tables; :func:`format_leaderboard` renders them as text (``bench run``
prints it to stdout) and ``bench run --json`` prints them as they are, so both say the same.

Conventions
    A dataset's metrics are grouped by their task (``detection``, ``defocus_map``, ``restoration``,
    ``nr_iqa``, ...; consecutive tasks scored by the same methods share one table), and a table
    lists the methods with at least one of its metrics not ``n/a``; the methods no metric of the
    dataset applies to are listed as ``not_applicable``.  A cell is ``{value, status, best,
    reason}`` with status ``ok``, ``n/a`` (the metric cannot read the method's output),
    ``unavailable`` (its weights are missing) or ``failed``; ``value`` is ``None`` unless ``ok`` and
    finite (a NaN result: ``ok``, ``None``, shown as ``nan``).
    ``best`` marks the best finite value of a column in the metric's direction
    (``higher_is_better`` of its spec, else of the summary row); ties are all marked, and a column
    with fewer than two values marks none (nothing to compare).
"""
from __future__ import annotations

import math
import os
import textwrap

import pandas as pd

__all__ = ["best_of", "format_leaderboard", "format_run_result", "leaderboard", "run_result"]

#: What the words in a cell mean (the text legend).
STATUS_WORDS = {"n/a": "the metric does not apply to the method's output",
                "unavailable": "the metric's weights are missing (bench weights list)",
                "failed": "see failures.jsonl and the report"}


def _finite(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _spec(name: str, rows: pd.DataFrame, specs: dict[str, dict]) -> dict:
    """Name, unit, direction and task of a metric: its spec, else what its summary rows say."""
    spec = specs.get(name) if isinstance(specs.get(name), dict) else {}
    higher = spec.get("higher_is_better")
    if not isinstance(higher, bool):
        higher = bool(rows["higher_is_better"].iloc[0])
    unit = spec.get("unit") if isinstance(spec.get("unit"), str) else str(rows["unit"].iloc[0])
    return {"name": name, "unit": unit, "higher_is_better": higher, "task": str(spec.get("task") or "")}


def _cell(row) -> dict:
    status = str(row["status"])
    return {"value": _finite(row["value"]) if status == "ok" else None, "status": status, "best": False,
            "reason": "" if pd.isna(row["reason"]) else str(row["reason"])}


def best_of(values: dict[str, float], *, higher_is_better: bool | None) -> set[str]:
    """The keys of the best of ``values`` (finite numbers) in the metric's direction, ties all
    included; none when the direction is unknown or fewer than two values compete.  The one rule of
    "best in column" for the terminal leaderboard and the report's."""
    if higher_is_better is None or len(values) < 2:
        return set()
    target = max(values.values()) if higher_is_better else min(values.values())
    return {k for k, v in values.items() if v == target}


def _table(metrics: list[dict], cells: dict[tuple[str, str], dict], ns: dict[tuple[str, str], int],
           methods: list[str]) -> dict:
    missing = {"value": None, "status": "n/a", "best": False, "reason": "not run"}
    rows = [{"method": m, "cells": {s["name"]: dict(cells.get((m, s["name"]), missing)) for s in metrics}}
            for m in methods]
    for s in metrics:
        column = {r["method"]: r["cells"][s["name"]] for r in rows}
        best = best_of({m: c["value"] for m, c in column.items() if c["value"] is not None},
                       higher_is_better=s["higher_is_better"])
        for m, c in column.items():
            c["best"] = m in best
    n = max((ns.get((m, s["name"]), 0) for m in methods for s in metrics), default=0)
    return {"tasks": list(dict.fromkeys(s["task"] for s in metrics if s["task"])), "n": n,
            "metrics": [{k: s[k] for k in ("name", "unit", "higher_is_better")} for s in metrics], "rows": rows}


def leaderboard(summary: pd.DataFrame, specs: dict[str, dict] | None = None) -> list[dict]:
    """Per dataset (sorted by name): ``{dataset, tables, not_applicable}``.

    ``summary``: the run's summary table (columns of :data:`bench.store.SUMMARY_COLUMNS`);
    ``specs``: metric name -> spec (``run.json``'s ``metrics``; ``higher_is_better``, ``unit``,
    ``task``).  Each table: ``{tasks, n, metrics: [{name, unit, higher_is_better}], rows:
    [{method, cells: {metric: {value, status, best, reason}}}]}``, methods sorted by name; ``n`` is
    the number of samples scored.  See the module docstring for the conventions.
    """
    specs = specs or {}
    out = []
    for dataset in sorted(pd.unique(summary["dataset"])):
        part = summary[summary["dataset"] == dataset]
        metric_specs = [_spec(m, part[part["metric"] == m], specs) for m in pd.unique(part["metric"])]
        cells, ns = {}, {}
        for _, row in part.iterrows():
            key = (str(row["method"]), str(row["metric"]))
            cells[key] = _cell(row)
            ns[key] = int(row["n"]) if cells[key]["value"] is not None else 0
        groups = _groups(metric_specs, cells)
        shown = set().union(*(methods for _, methods in groups))
        out.append({"dataset": str(dataset), "tables": [_table(g, cells, ns, sorted(m)) for g, m in groups],
                    "not_applicable": sorted({meth for meth, _ in cells} - shown)})
    return out


def _groups(metric_specs: list[dict], cells: dict[tuple[str, str], dict]) -> list[tuple[list[dict], set[str]]]:
    """The tables of a dataset: ``(metrics, methods)`` per task of its metrics, with the methods that
    have a cell other than ``n/a`` there; a task with the same methods as the one before joins its table."""
    groups: list[tuple[list[dict], set[str]]] = []
    for task in dict.fromkeys(s["task"] for s in metric_specs):
        group = [s for s in metric_specs if s["task"] == task]
        names = {s["name"] for s in group}
        methods = {meth for (meth, metric), c in cells.items() if metric in names and c["status"] != "n/a"}
        if not methods:
            continue
        if groups and groups[-1][1] == methods:
            groups[-1][0].extend(group)
        else:
            groups.append((group, methods))
    return groups


def _number(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 1e5 else f"{value:.4g}"


def _cell_text(cell: dict) -> str:
    if cell["value"] is None:
        return ("nan" if cell["status"] == "ok" else cell["status"]) + " "
    return _number(cell["value"]) + ("*" if cell["best"] else " ")


def format_leaderboard(boards: list[dict], *, width: int = 100) -> str:
    """The tables of :func:`leaderboard` as text: one block per dataset and group of metrics, a row
    per method, ``*`` after the best value of each column, the direction (``higher`` / ``lower`` is
    better) under each metric's name, its unit below the table."""
    blocks = []
    for board in boards:
        for t in board["tables"]:
            names = [m["name"] for m in t["metrics"]]
            head = [["method", *(f"{n} " for n in names)],
                    ["", *("higher " if m["higher_is_better"] else "lower " for m in t["metrics"])]]
            body = [[r["method"], *(_cell_text(r["cells"][n]) for n in names)] for r in t["rows"]]
            widths = [max(len(line[i]) for line in head + body) for i in range(len(names) + 1)]
            lines = [f"{board['dataset']}: {', '.join(t['tasks']) or 'metrics'}, {t['n']} samples"]
            for line in head + body:
                # every cell ends in its mark ("*" or a space): right-justified, the digits line up
                lines.append(("  " + line[0].ljust(widths[0] + 1) + "".join(
                    " " + c.rjust(w) for c, w in zip(line[1:], widths[1:]))).rstrip())
            units = ", ".join(f"{m['name']} {m['unit']}" for m in t["metrics"])
            lines += textwrap.wrap(f"units: {units}", width, initial_indent="  ", subsequent_indent="    ")
            blocks.append("\n".join(lines))
        if board["not_applicable"]:
            blocks.append("\n".join(textwrap.wrap(f"{board['dataset']}: no metric applies to "
                                                  f"{', '.join(board['not_applicable'])}", width,
                                                  subsequent_indent="    ")))
        elif not board["tables"]:
            blocks.append(f"{board['dataset']}: no results")
    if not any(b["tables"] for b in boards):
        return "\n\n".join(blocks) or "no results"
    used = {c["status"] for b in boards for t in b["tables"] for r in t["rows"] for c in r["cells"].values()}
    legend = ["*: the best value of its column (direction: higher or lower is better)"]
    legend += [f"{word}: {meaning}" for word, meaning in STATUS_WORDS.items() if word in used]
    return "\n\n".join([*blocks, "\n".join(legend)])


def run_result(run_dir: str | os.PathLike, exit_code: int) -> dict:
    """What ``bench run`` tells its user (``--json``): ``run_dir``, ``status``, ``exit_code``,
    ``failures`` (failure records), ``report`` (the report's path, ``None`` when not written),
    ``seconds`` and ``leaderboard`` (:func:`leaderboard`)."""
    from .store import REPORT, load_run

    run = load_run(run_dir)
    report = run.dir / REPORT
    return {"run_dir": str(run.dir), "status": run.meta.get("status"), "exit_code": int(exit_code),
            "failures": len(run.failures), "report": str(report) if report.is_file() else None,
            "seconds": run.meta.get("seconds"), "leaderboard": leaderboard(run.summary, run.meta.get("metrics"))}


def format_run_result(result: dict) -> str:
    """:func:`run_result` as text: the leaderboard, then one line on the run."""
    report = f"report {result['report']}" if result["report"] else "no report"
    return (f"{format_leaderboard(result['leaderboard'])}\n\nrun {result['run_dir']}: {result['status']} "
            f"(exit {result['exit_code']}), {result['failures']} failure(s), {report}")
