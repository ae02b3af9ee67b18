"""bench.stats, measured: how often the comparison rule calls a change "worse" when there is none, and how
often it finds a real one, with the very function ``bench compare`` marks every row with (``decide``).

The simulations run 1000 comparisons at once along a leading axis (one call per n; the batch shares its
sign patterns, each comparison's p-value stays valid).  Above 12 pairs they use 199 random sign patterns
instead of 4999: the Monte Carlo p-value ``(k + 1) / (N + 1)`` is valid for any N, fewer patterns only cost
a little power.  Rates are printed (``pytest -s``) for the record.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import permutation_test

from bench import compare, stats
from bench.stats import (
    comparison_rule,
    decide,
    min_decidable_n,
    min_p_value,
    which_test,
)

M = 1000                           # simulated comparisons per n
NS = (2, 3, 5, 10, 50, 200)        # paired samples per comparison
NOMINAL = 0.05                     # the issue's bound on the share of null comparisons marked "worse"
SHIFT = 1.5                        # the planted degradation, in standard deviations of the differences
FAST = {"n_permutations": 199, "interval": False}


def _runs(noise: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample values of a base and a current run for M comparisons of n images each, drawn from one
    distribution: an image's difficulty plus run noise (``normal``: sd 1; ``lognormal``: skewed and
    heavy-tailed, sigma 1.5)."""
    difficulty = 0.2 + 0.05 * rng.random((M, n))
    if noise == "normal":
        draw = lambda: rng.standard_normal((M, n))
    else:
        draw = lambda: rng.lognormal(0.0, 1.5, (M, n))
    return difficulty + draw(), difficulty + draw()


@pytest.fixture(scope="module")
def null_and_planted() -> dict[str, dict[int, dict[str, np.ndarray]]]:
    """``{noise: {n: {"null": marks, "planted": marks}}}``; planted: every current value is SHIFT sd worse."""
    rng = np.random.default_rng(12)
    out: dict = {}
    for noise in ("normal", "lognormal"):
        out[noise] = {}
        for n in NS:
            base, cur = _runs(noise, n, rng)
            null = cur - base
            batch = [null]
            if noise == "normal":
                batch.append(null + SHIFT * np.sqrt(2.0))      # differences of two sd-1 runs have sd sqrt(2)
            marks = decide(np.concatenate(batch), higher_is_better=False, threshold=0.0, rng=7, **FAST).mark
            out[noise][n] = {"null": marks[:M], "planted": marks[M:]}
    return out


@pytest.mark.parametrize("noise", ["normal", "lognormal"])
def test_null_comparisons_are_marked_worse_at_most_at_the_nominal_rate(null_and_planted, noise):
    rates = {n: float(np.mean(r["null"] == "worse")) for n, r in null_and_planted[noise].items()}
    better = {n: float(np.mean(r["null"] == "better")) for n, r in null_and_planted[noise].items()}
    print(f"\nfalse 'worse' rate ({noise} noise, {M} comparisons):", rates, "false 'better':", better)
    assert all(rate <= NOMINAL for rate in rates.values()), rates
    for n in (2, 3, 5):   # no test can decide: never a mark
        assert set(null_and_planted[noise][n]["null"]) == {"too few samples"}
    assert 0.005 < rates[10] and 0.005 < rates[200]           # the test does reject sometimes: it is not blind


def test_planted_degradation_is_marked_worse_from_n_10(null_and_planted):
    rates = {n: float(np.mean(r["planted"] == "worse")) for n, r in null_and_planted["normal"].items()}
    print(f"\ndetection of a {SHIFT} sd degradation ({M} comparisons):", rates)
    for n in (2, 3, 5):
        assert rates[n] == 0.0 and set(null_and_planted["normal"][n]["planted"]) == {"too few samples"}
    assert rates[10] >= 0.9
    assert rates[50] >= 0.99 and rates[200] >= 0.99


def test_min_p_value_is_what_scipy_attains():
    """The "too few samples" gate rests on this: the most extreme data reach exactly 2 / 2**n."""
    for n in range(2, 11):
        d = np.arange(1.0, n + 1)                             # every difference on one side
        res = permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf)
        assert res.pvalue == pytest.approx(min_p_value(n))
        one = permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf, alternative="greater")
        assert one.pvalue == pytest.approx(min_p_value(n, alternative="greater"))
    assert min_decidable_n() == 6 and min_p_value(5) == 0.0625 and min_p_value(6) == 0.03125
    assert min_decidable_n(alternative="greater") == 5 and min_decidable_n(confidence=0.99) == 8
    assert min_p_value(0) == 1.0


def test_six_identical_signs_are_significant_five_are_not():
    six = decide(np.full(6, 0.1) + np.arange(6) * 1e-3, higher_is_better=False)
    assert six.test == "sign-flip exact" and six.mark == "worse" and float(six.p_value) == pytest.approx(1 / 32)
    five = decide(np.full(5, 10.0), higher_is_better=False)
    assert five.test == "too few samples" and five.mark == "too few samples" and five.p_value is None
    assert five.reason().startswith("too few samples to decide: 5 paired sample(s)")
    issue = decide([0.00299, 0.00301], higher_is_better=False)   # a bootstrap interval "excluded 0" here
    assert issue.mark == "too few samples" and "smallest p-value at n=2 is 0.5" in issue.reason()


def test_the_rule_is_one_json_document_that_matches_test_for():
    rule = comparison_rule()
    assert json.loads(json.dumps(rule, allow_nan=False)) == rule
    assert rule["version"] == stats.RULE_VERSION and rule["alpha"] == 0.05 and rule["min_decidable_n"] == 6
    ranges = [t for t in rule["tests"] if isinstance(t["n"], list)]
    for n in range(300):
        covering = [t["test"] for t in ranges if t["n"][0] <= n and (t["n"][1] is None or n <= t["n"][1])]
        assert covering == [which_test(n)], n
    assert which_test(None) == rule["tests"][0]["test"] == "threshold rule"
    assert [which_test(n) for n in (5, 6, 12, 13)] == ["too few samples", "sign-flip exact", "sign-flip exact",
                                                     "sign-flip monte carlo"]
    rule["alpha"] = 0.5                                       # a copy: the recorded rule cannot be changed
    assert comparison_rule()["alpha"] == 0.05 and comparison_rule(confidence=0.99)["min_decidable_n"] == 8


def test_threshold_direction_and_agreement():
    worse = np.linspace(0.1, 0.2, 10)                         # every image worse on a lower-is-better metric
    assert decide(worse, higher_is_better=False).mark == "worse"
    assert decide(worse, higher_is_better=True).mark == "better"
    small = decide(worse, higher_is_better=False, threshold=0.5)
    assert small.mark == "unchanged" and small.why == "below threshold" and "<= threshold 0.5" in small.reason()
    disagree = decide(worse, higher_is_better=False, delta=-0.1)   # headline says better, samples say worse
    assert disagree.mark == "unchanged" and "disagree in direction" in disagree.reason()
    same = decide(np.zeros(10), higher_is_better=False)
    assert same.mark == "unchanged" and float(same.p_value) == 1.0
    only = decide(None, delta=0.3, threshold=0.1, higher_is_better=False)
    assert only.mark == "worse" and only.test == "threshold rule" and "threshold rule only" in only.reason()
    assert decide(None, delta=0.05, threshold=0.1, higher_is_better=False).mark == "unchanged"
    tiny = decide(np.full(3, 0.01), higher_is_better=False, threshold=0.1)
    assert tiny.mark == "unchanged" and "too few samples for a test" in tiny.reason()


def test_decide_is_deterministic_batched_and_checks_its_input():
    d = np.random.default_rng(1).standard_normal((5, 40)) + 0.3
    one, two = decide(d, higher_is_better=True, rng=3), decide(d, higher_is_better=True, rng=3)
    assert np.array_equal(one.p_value, two.p_value) and np.array_equal(one.mark, two.mark)
    assert not np.array_equal(one.p_value, decide(d, higher_is_better=True, rng=4).p_value)
    exact = decide(d[:, :8], higher_is_better=True)          # exact: a batch gives each row's own p-value
    assert [float(exact.p_value[i]) for i in range(5)] == [float(decide(r, higher_is_better=True).p_value)
                                                           for r in d[:, :8]]
    with pytest.raises(ValueError, match="finite"):
        decide([0.1, np.nan, 0.2], higher_is_better=True)
    with pytest.raises(ValueError, match="n_permutations"):
        decide(d, higher_is_better=True, n_permutations=20)
    with pytest.raises(ValueError, match="confidence"):
        decide(d, higher_is_better=True, confidence=1.0)


def test_compare_runs_marks_rows_with_decide(tmp_path):
    """The rows of ``bench compare`` carry exactly what ``decide`` says about their paired differences."""
    from .test_compare import ZR, write_run

    rng = np.random.default_rng(5)
    for i, (n, shift) in enumerate([(10, 0.0), (10, 0.03), (30, 0.01), (3, 0.05)]):
        base = 0.2 + 0.05 * rng.random(n)
        cur = base + shift + 0.01 * rng.standard_normal(n)
        row = compare.compare_runs(write_run(tmp_path / f"a{i}", {ZR: base}), write_run(tmp_path / f"b{i}", {ZR: cur}),
                                   seed=11)[0]
        dec = decide(cur - base, delta=row.delta, threshold=0.005, higher_is_better=False,
                     rng=compare._row_seed(11, *ZR))
        assert (row.mark, row.test, row.reason) == (str(dec.mark), dec.test, dec.reason())
        assert row.p_value == (None if dec.p_value is None else float(dec.p_value))
