"""bench.compare: marks, the paired tests, status transitions and bad input, on tiny run directories
written here with pandas in the store's schema (run.json, summary.parquet, samples.parquet).  The statistics
themselves (null rates, power, the rule) are measured in tests/test_compare_stats.py."""
from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest

from bench.compare import (
    MARK_SYMBOLS,
    CompareRow,
    compare_runs,
    format_table,
    has_regression,
    nothing_comparable,
    rows_to_json,
)
from datagen.errors import UserError

N = 40                                  # the Monte Carlo sign-flip test decides at this n
KEYS = [f"img{i:03d}" for i in range(200)]

META = {
    "format": "defocusbench-run",
    "methods": {"zhuo": {"version": "1", "params": {"lam": 0.001}}, "nlbm": {"version": "2", "params": {}}},
    "datasets": {"rtf": {"dataset_id": "rtf-aaaa"}, "synth_enhance": {"dataset_id": "se-bbbb"}},
    "metrics": {
        "mae_radius": {"version": "1", "higher_is_better": False, "threshold": 0.005, "unit": "px",
                       "conventions": {"crop": None}},
        "psnr": {"version": "1", "higher_is_better": True, "threshold": 0.05, "unit": "dB", "conventions": {}},
    },
}


def base_values(seed: int = 1) -> dict[tuple[str, str, str], np.ndarray]:
    rng = np.random.default_rng(seed)
    return {("zhuo", "rtf", "mae_radius"): 0.17 + 0.05 * rng.random(N),
            ("nlbm", "rtf", "mae_radius"): 0.30 + 0.05 * rng.random(N),
            ("zhuo", "synth_enhance", "psnr"): 25 + 2 * rng.random(N)}


def write_run(path, values: dict, *, meta: dict | None = None, status: dict | None = None, samples: bool = True):
    """One run directory: ``values`` maps (method, dataset, metric) -> per-sample array (or a
    float headline with no samples); ``status`` maps a key to (status, reason)."""
    meta = copy.deepcopy(META if meta is None else meta)
    status = status or {}
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps(meta))
    srows, prows = [], []
    for (m, d, metric), vals in values.items():
        st, reason = status.get((m, d, metric), ("ok", ""))
        spec = meta["metrics"][metric]
        arr = np.atleast_1d(np.asarray(vals, dtype=float))
        ok = st == "ok"
        srows.append({"method": m, "dataset": d, "metric": metric, "value": float(arr.mean()) if ok else float("nan"),
                      "n": int(arr.size) if ok else 0, "status": st, "reason": reason, "extras": "{}",
                      "higher_is_better": spec["higher_is_better"], "unit": spec["unit"]})
        if ok and np.ndim(vals) > 0:
            prows += [{"method": m, "dataset": d, "metric": metric, "key": KEYS[i], "value": float(v)}
                      for i, v in enumerate(arr)]
    pd.DataFrame(srows).to_parquet(path / "summary.parquet", index=False)
    if samples:
        pd.DataFrame(prows, columns=["method", "dataset", "metric", "key", "value"]).to_parquet(
            path / "samples.parquet", index=False)
    return path


def by_key(rows: list[CompareRow]) -> dict[tuple[str, str, str], CompareRow]:
    return {(r.method, r.dataset, r.metric): r for r in rows}


ZR = ("zhuo", "rtf", "mae_radius")
NR = ("nlbm", "rtf", "mae_radius")
ZP = ("zhuo", "synth_enhance", "psnr")


def test_identical_runs_are_unchanged(tmp_path):
    vals = base_values()
    a, b = write_run(tmp_path / "a", vals), write_run(tmp_path / "b", vals)
    rows = compare_runs(a, b)
    assert [(r.method, r.dataset, r.metric) for r in rows] == sorted([ZR, NR, ZP])
    assert all(r.mark == "unchanged" for r in rows)
    assert all(r.delta == 0 and r.p_value == 1.0 and r.ci_low is None and r.n_pairs == N for r in rows)
    assert {r.test for r in rows} == {"sign-flip monte carlo"}
    assert not has_regression(rows)


def test_clear_degradation_is_worse_in_both_directions(tmp_path):
    vals = base_values()
    rng = np.random.default_rng(7)
    cur = dict(vals)
    cur[ZR] = vals[ZR] + 0.05 + 0.01 * rng.standard_normal(N)      # lower is better: up = worse
    cur[ZP] = vals[ZP] - 1.0 + 0.1 * rng.standard_normal(N)        # higher is better: down = worse
    rows = by_key(compare_runs(write_run(tmp_path / "a", vals), write_run(tmp_path / "b", cur)))
    assert rows[ZR].mark == "worse" and rows[ZR].delta > 0 and rows[ZR].p_value <= 0.001
    assert rows[ZP].mark == "worse" and rows[ZP].delta < 0 and rows[ZP].p_value <= 0.001
    assert rows[NR].mark == "unchanged"
    assert rows[ZR].higher_is_better is False and rows[ZP].higher_is_better is True
    assert "sign-flip test (4999 patterns) p=" in rows[ZR].reason and "> threshold 0.005" in rows[ZR].reason
    assert has_regression(list(rows.values()))


def test_clear_improvement_is_better(tmp_path):
    vals = base_values()
    cur = dict(vals)
    cur[ZR] = vals[ZR] - 0.03      # lower error
    cur[ZP] = vals[ZP] + 0.5       # higher PSNR
    rows = by_key(compare_runs(write_run(tmp_path / "a", vals), write_run(tmp_path / "b", cur)))
    assert rows[ZR].mark == "better" and rows[ZP].mark == "better"
    assert not has_regression(list(rows.values()))


def test_significant_but_below_threshold_is_unchanged(tmp_path):
    vals = base_values()
    cur = dict(vals)
    cur[ZR] = vals[ZR] + 0.001     # every image worse, but below the 0.005 px threshold
    row = by_key(compare_runs(write_run(tmp_path / "a", vals), write_run(tmp_path / "b", cur)))[ZR]
    assert row.p_value <= 0.001                    # the test alone would flag it
    assert row.mark == "unchanged"
    assert "threshold" in row.reason


def test_noise_only_change_is_unchanged(tmp_path):
    vals = base_values()
    cur = dict(vals)
    noise = np.where(np.arange(N) % 2 == 0, 0.5, -0.48)   # mean +0.01 > threshold, huge spread
    cur[ZR] = vals[ZR] + noise
    row = by_key(compare_runs(write_run(tmp_path / "a", vals), write_run(tmp_path / "b", cur)))[ZR]
    assert abs(row.delta) > 0.005
    assert row.p_value > 0.05
    assert row.mark == "unchanged" and "> 0.05 (n=40)" in row.reason


@pytest.mark.parametrize("change, words", [
    (lambda m: m["datasets"]["rtf"].update(dataset_id="rtf-cccc"), "dataset id changed"),
    (lambda m: m["methods"]["zhuo"].update(version="2"), "method version changed"),
    (lambda m: m["methods"]["zhuo"].update(params={"lam": 0.01}), "method params changed (lam 0.001 -> 0.01)"),
    (lambda m: m["metrics"]["mae_radius"].update(version="2"), "metric version changed"),
    (lambda m: m["metrics"]["mae_radius"].update(conventions={"crop": "rtf340"}), "metric conventions changed"),
])
def test_changed_configuration_is_not_comparable(tmp_path, change, words):
    vals = base_values()
    meta = copy.deepcopy(META)
    change(meta)
    cur = dict(vals)
    cur[ZR] = vals[ZR] + 1.0       # would be "worse" if compared
    rows = by_key(compare_runs(write_run(tmp_path / "a", vals), write_run(tmp_path / "b", cur, meta=meta)))
    assert rows[ZR].mark == "not comparable"
    assert words in rows[ZR].reason
    assert rows[ZR].ci_low is None and rows[ZR].p_value is None and rows[ZR].test == ""
    assert not has_regression(list(rows.values()))


def _with_weights(meta: dict, sha: str) -> dict:
    meta = copy.deepcopy(meta)
    meta["methods"]["zhuo"]["weights"] = {"zhuo_net": {"origin": "shipped", "path": "/w/zhuo_net.pt", "sha256": sha}}
    return meta


def test_changed_weights_sha256_is_not_comparable(tmp_path):
    """Same method version and params, only the weights' sha256 differs: never compared."""
    vals = base_values()
    cur = dict(vals)
    cur[ZR] = vals[ZR] + 1.0       # would be "worse" if compared
    base = write_run(tmp_path / "a", vals, meta=_with_weights(META, "a" * 64))
    rows = by_key(compare_runs(base, write_run(tmp_path / "b", cur, meta=_with_weights(META, "b" * 64))))
    assert rows[ZR].mark == "not comparable" and rows[ZR].ci_low is None
    assert rows[ZR].reason == f"method weights changed (sha256 zhuo_net {'a' * 12} -> {'b' * 12})"
    assert rows[NR].mark == "unchanged"            # nlbm's weights did not change
    assert not has_regression([rows[ZR]])
    # the same weights (another path or origin) stay comparable: only the bytes count
    same = _with_weights(META, "a" * 64)
    same["methods"]["zhuo"]["weights"]["zhuo_net"].update(origin="user", path="/elsewhere.pt")
    rows = by_key(compare_runs(base, write_run(tmp_path / "c", cur, meta=same)))
    assert rows[ZR].mark == "worse"


def test_changed_metric_weights_are_not_comparable(tmp_path):
    """Another NIQE / BRISQUE model file (weights_used sha256) makes a metric's rows not comparable;
    a base run recorded before weights_used existed is compared as before."""
    def used(sha: str | None) -> dict:
        meta = copy.deepcopy(META)
        if sha is not None:
            meta["metrics"]["psnr"]["weights_used"] = {"niqe": {"origin": "shipped", "path": "/p", "sha256": sha}}
        return meta

    vals = base_values()
    base = write_run(tmp_path / "a", vals, meta=used("a" * 64))
    rows = by_key(compare_runs(base, write_run(tmp_path / "b", vals, meta=used("b" * 64))))
    assert rows[ZP].mark == "not comparable"
    assert rows[ZP].reason == f"metric weights changed (sha256 niqe {'a' * 12} -> {'b' * 12})"
    assert rows[ZR].mark == "unchanged"                 # mae_radius has no weights
    assert by_key(compare_runs(base, write_run(tmp_path / "c", vals, meta=used("a" * 64))))[ZP].mark == "unchanged"
    legacy = write_run(tmp_path / "d", vals, meta=used(None))
    assert by_key(compare_runs(legacy, write_run(tmp_path / "e", vals, meta=used("b" * 64))))[ZP].mark == "unchanged"


def test_status_transitions(tmp_path):
    vals = base_values()
    na = ("nlbm", "synth_enhance", "psnr")
    vals[na] = 0.0
    base_status = {NR: ("failed", "boom"), na: ("n/a", "nlbm provides blur_map")}
    cur_status = {ZR: ("failed", "3 of 40 samples failed: ValueError"), na: ("n/a", "nlbm provides blur_map")}
    rows = by_key(compare_runs(write_run(tmp_path / "a", vals, status=base_status),
                               write_run(tmp_path / "b", vals, status=cur_status)))
    assert rows[ZR].mark == "newly failing" and "3 of 40" in rows[ZR].reason and rows[ZR].current is None
    assert rows[NR].mark == "fixed"
    assert rows[na].mark == "unchanged" and "n/a in both" in rows[na].reason
    assert rows[ZP].mark == "unchanged"
    assert has_regression(list(rows.values()))


def test_failed_in_both_and_ok_to_unavailable(tmp_path):
    vals = base_values()
    rows = by_key(compare_runs(
        write_run(tmp_path / "a", vals, status={ZR: ("failed", "x")}),
        write_run(tmp_path / "b", vals, status={ZR: ("failed", "y"), ZP: ("unavailable", "weights missing")})))
    assert rows[ZR].mark == "unchanged" and "failed in both" in rows[ZR].reason
    assert rows[ZP].mark == "not comparable" and "ok -> unavailable" in rows[ZP].reason


def test_new_and_missing(tmp_path):
    vals = base_values()
    cur = dict(vals)
    del cur[NR]
    cur[("galetto", "rtf", "mae_radius")] = vals[NR]
    meta = copy.deepcopy(META)
    meta["methods"]["galetto"] = {"version": "1", "params": {}}
    rows = by_key(compare_runs(write_run(tmp_path / "a", vals), write_run(tmp_path / "b", cur, meta=meta)))
    assert rows[NR].mark == "missing" and rows[NR].base is not None and rows[NR].current is None
    assert rows[("galetto", "rtf", "mae_radius")].mark == "new"
    assert not has_regression(list(rows.values()))


NOTHING = "bench: nothing comparable: the two runs share no (method, dataset, metric) result"


def test_unrelated_runs_are_nothing_comparable_exit_4(tmp_path):
    """Two runs without a common row compared nothing: exit 4 (nothing ran), never 0."""
    from .conftest import run_bench

    vals = base_values()
    a = write_run(tmp_path / "a", {ZR: vals[ZR]})
    b = write_run(tmp_path / "b", {ZP: vals[ZP], NR: vals[NR]})
    for args in ((a, b), (a, b, "--json")):
        r = run_bench("compare", *args)
        assert r.returncode == 4, r.stdout + r.stderr
        assert r.stderr.strip().splitlines() == [NOTHING]
    # rows in common whose configuration changed are "not comparable": nothing was compared either
    meta = copy.deepcopy(META)
    meta["datasets"]["rtf"]["dataset_id"] = "rtf-other"
    c = write_run(tmp_path / "c", {ZR: vals[ZR]}, meta=meta)
    assert run_bench("compare", a, c).returncode == 4
    # a regression still wins
    assert run_bench("compare", a, write_run(tmp_path / "e", {ZR: vals[ZR] + 1.0})).returncode == 1

    assert {r.mark for r in compare_runs(a, b)} == {"new", "missing"} and nothing_comparable(compare_runs(a, b))
    assert "differ in dataset, method or metric" in nothing_comparable(compare_runs(a, c))
    assert nothing_comparable(compare_runs(a, write_run(tmp_path / "d", {ZR: vals[ZR], ZP: vals[ZP]}))) is None


@pytest.mark.parametrize("n", [1, 2, 4, 5])
def test_too_few_samples_to_decide(tmp_path, n):
    """Below 6 pairs no exact test reaches p <= 0.05: a large change is "too few samples", never a mark."""
    base = {ZR: np.linspace(0.2, 0.3, n)}
    a = write_run(tmp_path / "a", base)
    row = compare_runs(a, write_run(tmp_path / "b", {ZR: base[ZR] + 0.1}))[0]   # every sample 20x the threshold
    assert row.mark == "too few samples" and row.symbol == "?" and row.n_pairs == n
    assert row.reason.startswith(f"too few samples to decide: {n} paired sample(s)") and "n >= 6" in row.reason
    assert row.p_value is None and row.ci_low is None and row.test == "too few samples"
    rows = [row]
    assert not has_regression(rows) and nothing_comparable(rows) is None
    assert format_table(rows).splitlines()[1].startswith("?") and "1 too few samples" in format_table(rows)
    # a change within the threshold is unchanged whatever a test would say
    row = compare_runs(a, write_run(tmp_path / "c", {ZR: base[ZR] + 0.003}))[0]
    assert row.mark == "unchanged" and "too few samples for a test" in row.reason


def test_six_samples_are_enough_for_the_exact_test(tmp_path):
    base = {ZR: np.linspace(0.2, 0.3, 6)}
    row = compare_runs(write_run(tmp_path / "a", base), write_run(tmp_path / "b", {ZR: base[ZR] + 0.1}))[0]
    assert row.mark == "worse" and row.test == "sign-flip exact"
    assert row.p_value == pytest.approx(2 / 2 ** 6)      # every sign worse: the smallest two-sided p
    assert "exact sign-flip test p=0.03125 <= 0.05 (n=6)" in row.reason


def test_large_n_adds_a_bca_interval(tmp_path):
    """From 100 pairs on a row also describes the change by a BCa interval; the sign-flip test still decides."""
    n = 150
    rng = np.random.default_rng(4)
    base = {ZR: 0.2 + 0.05 * rng.random(n)}
    a = write_run(tmp_path / "a", base)
    worse = compare_runs(a, write_run(tmp_path / "b", {ZR: base[ZR] + 0.01 + 0.02 * rng.standard_normal(n)}))[0]
    assert worse.mark == "worse" and worse.test == "sign-flip monte carlo" and worse.p_value <= 0.001
    assert 0 < worse.ci_low < worse.delta < worse.ci_high
    same = compare_runs(a, write_run(tmp_path / "c", base))[0]
    assert same.mark == "unchanged" and (same.ci_low, same.ci_high) == (0.0, 0.0) and same.p_value == 1.0
    fewer = compare_runs(write_run(tmp_path / "d", {ZR: base[ZR][:99]}), write_run(tmp_path / "e", {ZR: base[ZR][:99]}))
    assert fewer[0].ci_low is None and fewer[0].p_value == 1.0


def test_missing_samples_file_falls_back_and_says_so(tmp_path):
    vals = base_values()
    cur = dict(vals)
    cur[ZP] = vals[ZP] + 0.5
    rows = by_key(compare_runs(write_run(tmp_path / "a", vals), write_run(tmp_path / "b", cur, samples=False)))
    assert rows[ZP].mark == "better"
    assert "threshold rule only" in rows[ZP].reason and "no samples.parquet" in rows[ZP].reason


def test_randomness_is_seeded_per_row(tmp_path):
    vals = base_values()
    rng = np.random.default_rng(3)
    cur = {k: v + 0.01 * rng.standard_normal(N) for k, v in vals.items()}
    a, b = write_run(tmp_path / "a", vals), write_run(tmp_path / "b", cur)
    one = [r.p_value for r in compare_runs(a, b, seed=5)]
    two = [r.p_value for r in compare_runs(a, b, seed=5)]
    other = [r.p_value for r in compare_runs(a, b, seed=6)]
    assert one == two
    assert one != other                            # Monte Carlo sign patterns at n = 40
    # a row's result does not depend on which other rows exist
    only = write_run(tmp_path / "c", {ZR: vals[ZR]})
    only_cur = write_run(tmp_path / "d", {ZR: cur[ZR]})
    alone = compare_runs(only, only_cur, seed=5)[0]
    together = by_key(compare_runs(a, b, seed=5))[ZR]
    assert alone.p_value == together.p_value


def test_unpaired_and_nan_samples_are_left_out_and_said(tmp_path):
    vals = base_values()
    cur = dict(vals)
    cur[ZR] = vals[ZR] + 0.05
    b = write_run(tmp_path / "b", cur)
    df = pd.read_parquet(b / "samples.parquet")
    zr = df.index[(df.method == "zhuo") & (df.dataset == "rtf") & (df.metric == "mae_radius")]
    df.loc[zr[:2], "value"] = np.nan                       # two values lost, one key dropped
    df.drop(index=zr[2:3]).to_parquet(b / "samples.parquet", index=False)
    rows = by_key(compare_runs(write_run(tmp_path / "a", vals), b))
    assert rows[ZR].mark == "worse"
    assert rows[ZR].n_pairs == N - 3 and f"paired on {N - 3} of {N} sample keys" in rows[ZR].reason


def test_sample_order_does_not_matter(tmp_path):
    vals = base_values()
    rng = np.random.default_rng(9)
    cur = {k: v + 0.02 * rng.standard_normal(N) for k, v in vals.items()}
    a, b = write_run(tmp_path / "a", vals), write_run(tmp_path / "b", cur)
    df = pd.read_parquet(b / "samples.parquet")
    df.sample(frac=1.0, random_state=0).to_parquet(b / "samples.parquet", index=False)
    c = write_run(tmp_path / "c", cur)
    assert [r.p_value for r in compare_runs(a, b)] == [r.p_value for r in compare_runs(a, c)]


def test_bad_input_is_a_one_line_user_error(tmp_path):
    good = write_run(tmp_path / "good", base_values())
    with pytest.raises(UserError, match="is not a run directory"):
        compare_runs(tmp_path / "nope", good)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="run.json is missing"):
        compare_runs(good, empty)
    no_summary = tmp_path / "nosum"
    no_summary.mkdir()
    (no_summary / "run.json").write_text(json.dumps(META))
    with pytest.raises(UserError, match="summary.parquet is missing"):
        compare_runs(good, no_summary)
    (no_summary / "summary.parquet").write_bytes(b"not parquet")
    with pytest.raises(UserError, match="unreadable") as err:
        compare_runs(good, no_summary)
    assert "\n" not in str(err.value)
    (no_summary / "run.json").write_text("{broken")
    with pytest.raises(UserError, match="run.json is unreadable"):
        compare_runs(good, no_summary)
    with pytest.raises(UserError, match="confidence"):
        compare_runs(good, good, confidence=95)
    with pytest.raises(UserError, match="n_permutations must be a whole number >= 39"):
        compare_runs(good, good, n_permutations=10)
    with pytest.raises(UserError, match="n_boot"):
        compare_runs(good, good, n_boot=0)


def test_format_table_and_json(tmp_path):
    vals = base_values()
    cur = dict(vals)
    cur[ZR] = vals[ZR] + 0.05
    rows = compare_runs(write_run(tmp_path / "a", vals), write_run(tmp_path / "b", cur, status={ZP: ("failed", "oom")}))
    text = format_table(rows)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["method", "dataset", "metric"]
    assert any(line.startswith("+") and "mae_radius" in line and "worse" in line for line in lines)
    assert any(line.startswith("!") and "newly failing" in line for line in lines)
    assert lines[-1].startswith("3 row(s):") and "1 worse" in lines[-1]
    js = rows_to_json(rows)
    json.dumps(js, allow_nan=False)
    assert {d["mark"] for d in js} == {"worse", "newly failing", "unchanged"}
    assert {d["symbol"] for d in js} == {"+", "!", " "}
    assert all(0 <= d["p_value"] <= 1 and d["test"] == "sign-flip monte carlo" for d in js
               if d["mark"] != "newly failing")
    assert set(MARK_SYMBOLS) == {"worse", "better", "unchanged", "too few samples", "not comparable", "newly failing",
                                 "fixed", "new", "missing"}
