"""Regression comparison of two run directories (``bench compare BASE CURRENT``), asv-style.

One :class:`CompareRow` per (method, dataset, metric) found in either run, with a mark:

====================  ======  ==============================================================
mark                  symbol  meaning
====================  ======  ==============================================================
``worse``             ``+``   significantly worse, and the change exceeds the metric's threshold
``better``            ``-``   significantly better, and the change exceeds the threshold
``unchanged``         `` ``   no significant change above threshold (also: n/a or unavailable
                              in both runs, or failing in both)
``too few samples``   ``?``   too few paired samples for any test to reach significance, and
                              ``|delta|`` exceeds the threshold: no mark can be given
                              (:func:`bench.stats.min_decidable_n`; 6 at the default 95 %)
``not comparable``    ``x``   dataset id, method version / params / weights sha256 (a chain's map
                              method's too) or metric version / conventions / model-file sha256
                              (NIQE, BRISQUE) differ (the reason says which), or the status moved
                              between ok and n/a / unavailable: never compared silently
``newly failing``     ``!``   failed in CURRENT but not in BASE
``fixed``             ``*``   failed in BASE, ok in CURRENT
``new``               ``>``   only in CURRENT
``missing``           ``<``   only in BASE
====================  ======  ==============================================================

Decision rule for a pair that is ``ok`` in both runs and comparable
--------------------------------------------------------------------
``delta = current - base`` of the headline (``summary.parquet``) values.  Per-sample values
(``samples.parquet``) are paired on their sample key (pairs with a non-finite value are dropped) and the
differences ``d_i = current_i - base_i``, with ``delta`` and the metric's ``threshold`` (``run.json``),
go to :func:`bench.stats.decide`: the one statement of the rule (a sign-flip permutation test of the
mean difference, exact over all ``2**n`` sign patterns for small n and Monte Carlo above; *too few
samples* below the n at which it can reach significance; a change must also exceed the threshold; from
100 pairs on a descriptive BCa interval fills ``ci_low`` / ``ci_high``).  Read it there, or in
``docs/comparisons.md``.  Randomness is seeded from ``seed`` and the row's (method, dataset, metric), so a
row's result depends neither on row order nor on which other rows exist.  When a run has no per-sample
values for the row, the threshold rule alone decides, and the reason says so.
"""
from __future__ import annotations

import math
import os
import zlib
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from datagen.errors import UserError

from . import stats
from .store import load_run

__all__ = ["MARKS", "MARK_SYMBOLS", "CompareRow", "compare_runs", "format_table", "has_regression",
           "nothing_comparable", "rows_to_json"]

#: asv-style one-character symbols for each mark.
MARK_SYMBOLS: dict[str, str] = {
    "worse": "+",
    "better": "-",
    "unchanged": " ",
    stats.TOO_FEW_MARK: "?",
    "not comparable": "x",
    "newly failing": "!",
    "fixed": "*",
    "new": ">",
    "missing": "<",
}
MARKS = tuple(MARK_SYMBOLS)
REGRESSION_MARKS = ("worse", "newly failing")
#: Marks of rows that were actually compared (both runs have the row, with comparable configurations).
COMPARED_MARKS = ("worse", "better", "unchanged", stats.TOO_FEW_MARK, "newly failing", "fixed")

_INACTIVE = ("n/a", "unavailable")


@dataclass
class CompareRow:
    method: str
    dataset: str
    metric: str
    base: float | None
    current: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    mark: str
    reason: str
    unit: str = ""
    higher_is_better: bool | None = None
    n_pairs: int = 0
    #: two-sided p-value of the sign-flip test (``None`` where another test, or none, decided)
    p_value: float | None = None
    #: the test that decided (one of :data:`bench.stats.TESTS`; ``""`` when none ran, e.g. not comparable)
    test: str = ""

    @property
    def symbol(self) -> str:
        return MARK_SYMBOLS[self.mark]


# ----------------------------------------------------------------------------------------- loading

def _summary_index(df: pd.DataFrame) -> dict[tuple[str, str, str], dict]:
    out = {}
    for rec in df.to_dict("records"):
        out[(str(rec["method"]), str(rec["dataset"]), str(rec["metric"]))] = rec   # last row wins
    return out


def _samples_index(df: pd.DataFrame | None) -> dict[tuple[str, str, str], dict[str, float]]:
    out: dict[tuple[str, str, str], dict[str, float]] = {}
    if df is None or not len(df):
        return out
    for (m, d, metric), grp in df.groupby(["method", "dataset", "metric"], sort=False):
        out[(str(m), str(d), str(metric))] = dict(zip(grp["key"].astype(str), grp["value"].astype(float)))
    return out


# ----------------------------------------------------------------------------------------- helpers

def _num(x) -> float | None:
    """A summary value as a float, or ``None`` when absent / NaN."""
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _text(x) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else str(x)


def _fmt(x) -> str:
    return repr(x) if not isinstance(x, float) else f"{x:.6g}"


def _dict_diff(a: dict, b: dict) -> str:
    keys = sorted(set(a) | set(b))
    parts = []
    for k in keys:
        if k not in a:
            parts.append(f"+{k}={_fmt(b[k])}")
        elif k not in b:
            parts.append(f"-{k}")
        elif a[k] != b[k]:
            parts.append(f"{k} {_fmt(a[k])} -> {_fmt(b[k])}")
    return ", ".join(parts)


def _weight_shas(rec: object) -> dict[str, str | None]:
    """``{weight name: sha256}`` of a weights record of run.json: a method's ``weights`` or a metric's
    ``weights_used`` (``{}`` when there is none; runs written before weights were recorded hold
    descriptions there, which count as no weights)."""
    if not isinstance(rec, dict):
        return {}
    return {str(k): v.get("sha256") for k, v in rec.items() if isinstance(v, dict)}


def _get_dict(rec: dict, *path: str) -> dict | None:
    for key in path:
        rec = rec.get(key) if isinstance(rec, dict) else None
    return rec if isinstance(rec, dict) else None


def _stage_changes(what: str, before: dict, after: dict) -> list[str]:
    """Why a method's (or a chain's map method's) run.json records make two results not comparable:
    version, parameters, weights."""
    why = []
    if before.get("version") != after.get("version"):
        why.append(f"{what} version changed ({before.get('version')} -> {after.get('version')})")
    bp, cp = before.get("params") or {}, after.get("params") or {}
    if bp != cp:
        diff = _dict_diff(bp, cp) if isinstance(bp, dict) and isinstance(cp, dict) else f"{bp!r} -> {cp!r}"
        why.append(f"{what} params changed ({diff})")
    bw, cw = _weight_shas(before.get("weights")), _weight_shas(after.get("weights"))
    if bw != cw:
        why.append(f"{what} weights changed (sha256 {_weights_diff(bw, cw)})")
    return why


def _weights_diff(before: dict, after: dict) -> str:
    return ", ".join(f"{n} {_short(before.get(n))} -> {_short(after.get(n))}" for n in sorted(set(before) | set(after))
                     if before.get(n) != after.get(n))


def _short(sha) -> str:
    return sha[:12] if isinstance(sha, str) and sha else "none"


def _changes(base_meta: dict, cur_meta: dict, method: str, dataset: str, metric: str) -> list[str]:
    """Why the pair is not comparable (empty when it is)."""
    why = []

    def section(meta, name, key):
        sec = meta.get(name)
        rec = sec.get(key) if isinstance(sec, dict) else None
        return rec if isinstance(rec, dict) else None

    bd, cd = section(base_meta, "datasets", dataset), section(cur_meta, "datasets", dataset)
    if bd is None or cd is None:
        why.append(f"dataset {dataset} is not recorded in {'base' if bd is None else 'current'} run.json")
    elif bd.get("dataset_id") != cd.get("dataset_id"):
        why.append(f"dataset id changed ({bd.get('dataset_id')} -> {cd.get('dataset_id')})")

    bm, cm = section(base_meta, "methods", method), section(cur_meta, "methods", method)
    if bm is None or cm is None:
        why.append(f"method {method} is not recorded in {'base' if bm is None else 'current'} run.json")
    else:
        why += _stage_changes("method", bm, cm)
        # a chain (bench.chains): its map method is judged like the method itself
        bsrc, csrc = (_get_dict(m, "chain", "source_info") for m in (bm, cm))
        if bsrc is not None or csrc is not None:
            why += _stage_changes("map method", bsrc or {}, csrc or {})

    bs, cs = section(base_meta, "metrics", metric), section(cur_meta, "metrics", metric)
    if bs is None or cs is None:
        why.append(f"metric {metric} is not recorded in {'base' if bs is None else 'current'} run.json")
    else:
        if bs.get("version") != cs.get("version"):
            why.append(f"metric version changed ({bs.get('version')} -> {cs.get('version')})")
        if bs.get("higher_is_better") != cs.get("higher_is_better"):
            why.append("metric direction changed")
        if bs.get("unit") != cs.get("unit"):
            why.append(f"metric unit changed ({bs.get('unit')} -> {cs.get('unit')})")
        bc, cc = bs.get("conventions") or {}, cs.get("conventions") or {}
        if bc != cc:
            diff = _dict_diff(bc, cc) if isinstance(bc, dict) and isinstance(cc, dict) else "changed"
            why.append(f"metric conventions changed ({diff})")
        # the model files of NIQE / BRISQUE; runs recorded before weights_used existed are not judged
        if "weights_used" in bs and "weights_used" in cs:
            bu, cu = _weight_shas(bs["weights_used"]), _weight_shas(cs["weights_used"])
            if bu != cu:
                why.append(f"metric weights changed (sha256 {_weights_diff(bu, cu)})")
    return why


def _row_seed(seed: int, method: str, dataset: str, metric: str) -> np.random.Generator:
    tag = zlib.crc32(f"{method}\0{dataset}\0{metric}".encode())
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(tag,)))


def _decide(row: CompareRow, pairs: dict[str, float] | None, base_pairs: dict[str, float] | None, *,
            threshold: float, higher: bool, n_boot: int, n_permutations: int, confidence: float,
            rng: np.random.Generator) -> None:
    """Fill ``delta``, ``ci_*``, ``p_value``, ``test``, ``mark`` and ``reason`` of an ok/ok comparable row."""
    if row.base is None or row.current is None:
        row.mark = "not comparable"
        row.reason = f"headline value is NaN in {'base' if row.base is None else 'current'}"
        return
    row.delta = row.current - row.base
    diffs, note = None, ""
    if base_pairs and pairs:
        keys = sorted(k for k in set(base_pairs) & set(pairs) if math.isfinite(pairs[k] - base_pairs[k]))
        diffs = np.array([pairs[k] - base_pairs[k] for k in keys], dtype=np.float64)
        total = max(len(base_pairs), len(pairs))
        if len(keys) < total:
            note = f"; paired on {len(keys)} of {total} sample keys"
        row.n_pairs = len(keys)
    dec = stats.decide(diffs, delta=row.delta, threshold=threshold, higher_is_better=higher, confidence=confidence,
                       n_permutations=n_permutations, n_boot=n_boot, rng=rng)
    row.mark, row.test, row.reason = str(dec.mark), dec.test, dec.reason() + note
    if dec.p_value is not None:
        row.p_value = float(dec.p_value)
    if dec.ci_low is not None:
        row.ci_low, row.ci_high = float(dec.ci_low), float(dec.ci_high)


# ----------------------------------------------------------------------------------------- public API

def compare_runs(base_dir: str | os.PathLike, current_dir: str | os.PathLike, *, n_boot: int = stats.N_BOOT,
                 n_permutations: int = stats.N_PERMUTATIONS, confidence: float = stats.CONFIDENCE,
                 seed: int = 0) -> list[CompareRow]:
    """Compare every (method, dataset, metric) of two run directories; rows sorted by those names.

    ``confidence``: two-sided level of the tests (:mod:`bench.stats`); ``n_permutations`` / ``n_boot``: sign
    patterns of the Monte Carlo sign-flip test / resamples of the BCa bootstrap; ``seed``: their randomness.
    Raises :class:`datagen.errors.UserError` when a run directory, its ``run.json`` or its
    ``summary.parquet`` is missing or unreadable, or when ``n_boot`` / ``n_permutations`` /
    ``confidence`` are out of range.  See the module docstring for the marks and the decision rule.
    """
    if not (0.0 < float(confidence) < 1.0):
        raise UserError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}")
    try:
        stats.check_settings(confidence=float(confidence), n_permutations=n_permutations, n_boot=n_boot)
    except ValueError as err:
        raise UserError(str(err)) from None
    base, cur = load_run(base_dir, role="base run"), load_run(current_dir, role="current run")
    bsum, csum = _summary_index(base.summary), _summary_index(cur.summary)
    bsam, csam = _samples_index(base.samples), _samples_index(cur.samples)
    rows = []
    for key in sorted(set(bsum) | set(csum)):
        method, dataset, metric = key
        b, c = bsum.get(key), csum.get(key)
        rows.append(_compare_one(key, b, c, base.meta, cur.meta, bsam.get(key), csam.get(key),
                                 n_boot=int(n_boot), n_permutations=int(n_permutations), confidence=float(confidence),
                                 rng=_row_seed(seed, method, dataset, metric),
                                 no_samples=(base.samples is None, cur.samples is None)))
    return rows


def _spec(meta: dict, metric: str) -> dict:
    sec = meta.get("metrics")
    rec = sec.get(metric) if isinstance(sec, dict) else None
    return rec if isinstance(rec, dict) else {}


def _compare_one(key, b: dict | None, c: dict | None, bmeta: dict, cmeta: dict, bpairs, cpairs, *, n_boot: int,
                 n_permutations: int, confidence: float, rng: np.random.Generator,
                 no_samples: tuple[bool, bool]) -> CompareRow:
    method, dataset, metric = key
    spec = _spec(cmeta, metric) or _spec(bmeta, metric)
    ref = c if c is not None else b
    higher = spec.get("higher_is_better", ref.get("higher_is_better"))
    higher = None if higher is None else bool(higher)
    unit = str(spec.get("unit", _text(ref.get("unit"))))
    row = CompareRow(method, dataset, metric, None, None, None, None, None, "unchanged", "", unit=unit,
                     higher_is_better=higher)
    if b is not None and _text(b.get("status")) == "ok":
        row.base = _num(b.get("value"))
    if c is not None and _text(c.get("status")) == "ok":
        row.current = _num(c.get("value"))
    if b is None:
        row.mark, row.reason = "new", f"only in current (status {_text(c.get('status')) or '?'})"
        return row
    if c is None:
        row.mark, row.reason = "missing", f"only in base (status {_text(b.get('status')) or '?'})"
        return row
    sb, sc = _text(b.get("status")), _text(c.get("status"))
    why_b, why_c = _text(b.get("reason")), _text(c.get("reason"))
    changes = _changes(bmeta, cmeta, method, dataset, metric)
    suffix = f" ({'; '.join(changes)})" if changes else ""
    if sc == "failed" and sb != "failed":
        row.mark, row.reason = "newly failing", f"{sb} -> failed: {why_c or 'no reason recorded'}{suffix}"
        return row
    if sb == "failed" and sc == "failed":
        row.mark, row.reason = "unchanged", f"failed in both: {why_c or 'no reason recorded'}{suffix}"
        return row
    if sb == "failed" and sc == "ok":
        row.mark, row.reason = "fixed", f"failed -> ok{suffix}"
        return row
    if sb in _INACTIVE and sc in _INACTIVE:
        row.mark, row.reason = "unchanged", f"{sc} in both: {why_c or why_b}".rstrip(": ")
        return row
    if sb != sc:
        row.mark = "not comparable"
        row.reason = f"status {sb} -> {sc}" + (f": {why_c or why_b}" if (why_c or why_b) else "") + suffix
        return row
    if sb != "ok":   # an unknown status on both sides
        row.mark, row.reason = "not comparable", f"status {sb!r} in both"
        return row
    if row.base is not None and row.current is not None:
        row.delta = row.current - row.base
    if changes:
        row.mark, row.reason = "not comparable", "; ".join(changes)
        return row
    if higher is None:
        row.mark, row.reason = "not comparable", f"metric {metric} has no recorded direction (higher_is_better)"
        return row
    threshold = _num(spec.get("threshold")) or 0.0
    _decide(row, cpairs, bpairs, threshold=abs(threshold), higher=higher, n_boot=n_boot,
            n_permutations=n_permutations, confidence=confidence, rng=rng)
    missing_files = [name for name, gone in zip(("base", "current"), no_samples) if gone]
    if missing_files and row.test == stats.THRESHOLD:
        row.reason += f" ({' and '.join(missing_files)} run has no samples.parquet)"
    return row


def has_regression(rows: list[CompareRow]) -> bool:
    """``True`` when any row is ``worse`` or ``newly failing``."""
    return any(r.mark in REGRESSION_MARKS for r in rows)


def nothing_comparable(rows: list[CompareRow]) -> str | None:
    """``None`` when at least one row was compared; otherwise one line saying why nothing was
    (``bench compare`` then exits 4, nothing ran)."""
    if any(r.mark in COMPARED_MARKS for r in rows):
        return None
    shared = sum(r.mark == "not comparable" for r in rows)
    if shared:
        return (f"nothing comparable: the {shared} result(s) both runs have differ in dataset, method or metric "
                "configuration (see the reasons)")
    return "nothing comparable: the two runs share no (method, dataset, metric) result"


def _cell(x: float | None, *, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+.4g}" if signed else f"{x:.4g}"


def format_table(rows: list[CompareRow]) -> str:
    """Plain-text table for the terminal: symbol, names, base, current, delta, CI (BCa, large n), p (sign-flip
    tests), mark, reason; then one line counting the marks."""
    header = ("", "method", "dataset", "metric", "base", "current", "delta", "CI", "p", "mark", "reason")
    body = []
    for r in rows:
        ci = "-" if r.ci_low is None or r.ci_high is None else f"[{r.ci_low:+.3g}, {r.ci_high:+.3g}]"
        body.append((MARK_SYMBOLS.get(r.mark, "?"), r.method, r.dataset, r.metric, _cell(r.base), _cell(r.current),
                     _cell(r.delta, signed=True), ci, "-" if r.p_value is None else f"{r.p_value:.2g}", r.mark,
                     r.reason))
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header) - 1)]
    lines = []
    for line in [header, *body]:
        cells = [str(v).ljust(w) for v, w in zip(line[:-1], widths)]
        lines.append("  ".join([*cells, str(line[-1])]).rstrip())
    counts = {m: sum(r.mark == m for r in rows) for m in MARKS}
    tally = ", ".join(f"{n} {m}" for m, n in counts.items() if n) or "nothing to compare"
    lines.append(f"{len(rows)} row(s): {tally}")
    return "\n".join(lines)


def _json_num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def rows_to_json(rows: list[CompareRow]) -> list[dict]:
    """JSON-safe dicts (non-finite numbers -> ``None``), each with its ``symbol``."""
    out = []
    for r in rows:
        d = asdict(r)
        for k in ("base", "current", "delta", "ci_low", "ci_high", "p_value"):
            d[k] = _json_num(d[k])
        d["symbol"] = MARK_SYMBOLS.get(r.mark, "?")
        out.append(d)
    return out
