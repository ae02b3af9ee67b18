"""The comparison with a baseline run (:func:`bench.compare.compare_runs`): one row per method x
dataset x metric, most severe marks first.  A mark this module does not know (a state
``bench.compare`` added later, e.g. "too few samples to decide") is shown as it is, with its
reason, between the known severe marks and "unchanged"."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from markupsafe import Markup

from .context import Context
from .env import render
from .fmt import fmt, fmt_signed, isnum, slug

#: Known marks, most severe first; unknown marks go before :data:`CALM`.
SEVERE = ["newly failing", "worse", "missing", "not comparable", "too few samples", "new", "fixed", "better"]
CALM = ["unchanged"]
#: Marks with their own row colour (CSS ``tr.mark-<slug>``); others get ``mark-other``.
STYLED = {"newly failing", "worse", "missing", "not comparable", "too few samples", "fixed", "better"}


def _base_id(baseline: Path) -> str:
    try:
        return json.loads((baseline / "run.json").read_text(encoding="utf-8")).get("run_id") or baseline.name
    except (OSError, ValueError, AttributeError):
        return baseline.name


def section(ctx: Context, baseline: Path) -> Markup:
    from bench.compare import MARK_SYMBOLS, compare_runs
    from bench.stats import comparison_rule

    rows = list(compare_runs(baseline, ctx.run.dir))
    marks = [str(r.mark) for r in rows]
    order = SEVERE + sorted(set(marks) - set(SEVERE) - set(CALM)) + CALM
    rank = {m: i for i, m in enumerate(order)}
    rows.sort(key=lambda r: rank[str(r.mark)])
    counts = Counter(marks)
    body = []
    for r in rows:
        mark, unit = str(r.mark), r.unit
        ci = f"[{fmt_signed(r.ci_low)}, {fmt_signed(r.ci_high)}]" if isnum(r.ci_low) or isnum(r.ci_high) else "—"
        body.append({"mark": mark, "cls": f"mark-{slug(mark)}" if mark in STYLED else f"mark-{slug(mark)} mark-other",
                     "symbol": MARK_SYMBOLS.get(mark, ""), "method": r.method, "dataset": r.dataset,
                     "metric": r.metric, "unit": unit, "base": fmt(r.base), "current": fmt(r.current),
                     "delta": fmt_signed(r.delta), "ci": ci, "reason": r.reason,
                     "n": r.n_pairs or "—", "p": "—" if r.p_value is None else f"{r.p_value:.3g}"})
    legend = ", ".join(f"{MARK_SYMBOLS[m]} {m}" for m in order if str(MARK_SYMBOLS.get(m, "")).strip())
    rule = comparison_rule()
    return render("sections/comparison.html.j2", base_id=_base_id(baseline), run_id=ctx.run_id, body=body, rule=rule,
                  counts=", ".join(f"{counts[m]} {m}" for m in order if counts.get(m)), legend=legend)
