"""The statistics of run comparisons, in one place: when is a paired change *worse*, *better*, *unchanged*,
or are there *too few samples to decide*.

``bench compare`` (:mod:`bench.compare`) pairs the per-sample values of two runs on their sample key and hands
the differences ``d_i = current_i - base_i`` to :func:`decide`, with the change of the headline value ``delta``
and the metric's practical ``threshold`` (``run.json``).  The rule, at the two-sided level
``alpha = 1 - confidence`` (default 0.05):

=======================  =================================================================================
paired samples ``n``     test of "the differences are symmetric about 0" (scipy's statistics, none of ours)
=======================  =================================================================================
no per-sample values     none: the threshold rule alone decides (e.g. a run without ``samples.parquet``)
``n < n_min`` (0..5)     none can reach ``p <= alpha``: the exact sign-flip test's smallest p-value is
                         ``2 / 2**n`` (0.0625 at n = 5).  The row is *too few samples to decide*, unless
                         ``|delta| <= threshold`` already makes it *unchanged* whatever a test would say
``n_min <= n <= 12``     exact sign-flip permutation test of the mean difference over all ``2**n`` sign
                         patterns: ``scipy.stats.permutation_test(permutation_type="samples")``, which
                         enumerates them when ``2**n <= N_PERMUTATIONS``
``n > 12``               the same test on :data:`N_PERMUTATIONS` random sign patterns; its Monte Carlo
                         p-value ``(k + 1) / (N + 1)`` (two-sided: doubled) is valid at every n
=======================  =================================================================================

``n_min`` = :func:`min_decidable_n` (6 at ``alpha = 0.05``).  A row is *worse* (*better*) only when the test
is significant, the mean difference, the headline ``delta`` and the metric's direction agree on the bad (good)
side, and ``|delta| > threshold``; otherwise it is *unchanged* and the reason says which condition failed.
So each one-sided question ("worse?") is asked at ``alpha / 2`` = 2.5 %.  The sign-flip test is exact (up to
its Monte Carlo error) whenever, with no change, a difference is as likely to be ``+d`` as ``-d``: true when
both runs draw each sample's value from one distribution, whatever its shape.

From :data:`BOOTSTRAP_MIN_N` pairs on, the row also gets the BCa bootstrap interval of the mean difference
(``scipy.stats.bootstrap(method="BCa")``, :data:`N_BOOT` resamples of the keys) as a *description* of the
change's size.  It never decides: with heavy-tailed differences it excludes 0 more often than ``alpha`` even at
n = 500 (``docs/comparisons.md`` has the measurements), while the sign-flip test holds its level at every n.

Randomness (Monte Carlo sign patterns, bootstrap resamples) comes from the generator the caller passes;
``bench compare`` seeds one per row, so a row's result depends neither on row order nor on the other rows.
:data:`COMPARISON_RULE` states the rule as data (``run.json`` records it); ``docs/comparisons.md`` has the
measured rates and the smallest n that detects a change of a given size.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["BOOTSTRAP_MIN_N", "COMPARISON_RULE", "CONFIDENCE", "N_BOOT", "N_PERMUTATIONS", "RULE_VERSION", "TESTS",
           "Decision", "check_settings", "comparison_rule", "decide", "min_decidable_n", "min_p_value", "which_test"]

#: version of the rule below; 1 was a percentile bootstrap interval at every n >= 2 (invalid for small n).
RULE_VERSION = 2
#: default two-sided confidence level; ``alpha = 1 - confidence``.
CONFIDENCE = 0.95
#: sign patterns of the sign-flip test: all ``2**n`` of them when ``2**n <= N_PERMUTATIONS`` (n <= 12: exact),
#: else this many random ones (Monte Carlo).
N_PERMUTATIONS = 4999
#: fewest pairs for which a row shows the (descriptive) BCa interval of the mean difference.
BOOTSTRAP_MIN_N = 100
#: bootstrap resamples of that interval.
N_BOOT = 2000

THRESHOLD, TOO_FEW, EXACT, MONTE_CARLO = "threshold rule", "too few samples", "sign-flip exact", "sign-flip monte carlo"
#: what :func:`decide` may base a mark on (``Decision.test``).
TESTS = (THRESHOLD, TOO_FEW, EXACT, MONTE_CARLO)
#: the marks :func:`decide` gives.
WORSE, BETTER, UNCHANGED, TOO_FEW_MARK = "worse", "better", "unchanged", "too few samples"

_CHUNK = 4_000_000   # resampled values held in memory at once


def _alpha(confidence: float) -> float:
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return 1.0 - confidence


def min_p_value(n: int, *, alternative: str = "two-sided") -> float:
    """Smallest p-value the exact sign-flip test can give with ``n`` paired differences: ``2 / 2**n``
    two-sided, ``1 / 2**n`` one-sided (``alternative`` "greater" or "less"), at most 1.

    The observed sign pattern is one of ``2**n`` equally likely ones under the null, so no data can do better;
    zero differences (whose sign flip changes nothing) and ties only make it larger."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n!r}")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be two-sided, greater or less, got {alternative!r}")
    sides = 2.0 if alternative == "two-sided" else 1.0
    return min(1.0, sides / 2.0 ** n)


def min_decidable_n(*, confidence: float = CONFIDENCE, alternative: str = "two-sided") -> int:
    """Fewest paired samples with which the exact sign-flip test can reach ``p <= 1 - confidence``
    (6 for the default two-sided 0.05; 5 for a one-sided 0.05)."""
    alpha = _alpha(confidence)
    n = 0
    while min_p_value(n, alternative=alternative) > alpha:
        n += 1
    return n


def which_test(n: int | None, *, confidence: float = CONFIDENCE, n_permutations: int = N_PERMUTATIONS) -> str:
    """What the rule bases the mark on (one of :data:`TESTS`) for ``n`` paired samples (``None``: no
    per-sample values).  The sign-flip test is exact when ``2**n <= n_permutations``: scipy then enumerates."""
    if n is None:
        return THRESHOLD
    if n < min_decidable_n(confidence=confidence):
        return TOO_FEW
    return EXACT if 2 ** n <= n_permutations else MONTE_CARLO


def _rule(confidence: float) -> dict:
    alpha = round(_alpha(confidence), 12)
    n_min = min_decidable_n(confidence=confidence)
    n_exact = max(n_min - 1, int(math.log2(N_PERMUTATIONS)))
    flip = "scipy.stats.permutation_test((d,), mean, permutation_type='samples', alternative='two-sided')"
    return {
        "version": RULE_VERSION,
        "statistic": "mean of the paired per-sample differences d = current - base, paired on the sample key",
        "alternative": "two-sided", "alpha": alpha, "confidence": confidence, "min_decidable_n": n_min,
        "tests": [
            {"n": "no per-sample values", "test": THRESHOLD, "how": "the sign of delta, when |delta| > threshold"},
            {"n": [0, n_min - 1], "test": TOO_FEW,
             "how": f"no test can decide: the exact sign-flip test's smallest p-value 2/2**n exceeds {alpha}; "
                    f"'{UNCHANGED}' when |delta| <= threshold, else '{TOO_FEW_MARK}'"},
            {"n": [n_min, n_exact], "test": EXACT, "how": f"{flip}, all 2**n sign patterns"},
            {"n": [n_exact + 1, None], "test": MONTE_CARLO, "resamples": N_PERMUTATIONS,
             "how": f"{flip}, random sign patterns, p = (k + 1) / (N + 1) per side"},
        ],
        "mark": f"'{WORSE}' ('{BETTER}') when p <= alpha, the mean difference and the headline delta both lie on "
                "the bad (good) side of the metric's direction, and |delta| > the metric's threshold (run.json); "
                f"otherwise '{UNCHANGED}'",
        "interval": {"n": [BOOTSTRAP_MIN_N, None], "resamples": N_BOOT, "decides": False,
                     "how": f"scipy.stats.bootstrap((d,), mean, method='BCa', confidence_level={confidence})"},
        "seed": "per row: numpy SeedSequence(seed, spawn_key=(crc32(method NUL dataset NUL metric),))",
        "doc": "docs/comparisons.md",
    }


#: the rule as data, at the default confidence; :func:`comparison_rule` returns a copy for ``run.json``.
COMPARISON_RULE: dict = _rule(CONFIDENCE)


def comparison_rule(*, confidence: float = CONFIDENCE) -> dict:
    """The comparison rule as a JSON-safe dict (a fresh copy): version, level, test per n, seeding."""
    return copy.deepcopy(COMPARISON_RULE) if confidence == CONFIDENCE else _rule(confidence)


def check_settings(*, confidence: float = CONFIDENCE, n_permutations: int = N_PERMUTATIONS,
                   n_boot: int = N_BOOT) -> None:
    """Raise ``ValueError`` (one line) unless :func:`decide` can work with these settings: ``0 < confidence < 1``,
    enough sign patterns for the Monte Carlo p-value ``2 / (n_permutations + 1)`` to reach ``alpha``, ``n_boot >= 1``."""
    alpha = _alpha(confidence)
    if not (isinstance(n_permutations, int | np.integer) and 2 / (n_permutations + 1) <= alpha):
        raise ValueError(f"n_permutations must be a whole number >= {math.ceil(2 / alpha) - 1} (to reach "
                         f"p <= {alpha:.4g}), got {n_permutations!r}")
    if not (isinstance(n_boot, int | np.integer) and n_boot >= 1):
        raise ValueError(f"n_boot must be a whole number >= 1, got {n_boot!r}")


# ----------------------------------------------------------------------------------------- the decision

@dataclass(frozen=True)
class Decision:
    """What :func:`decide` found for a batch of paired comparisons (arrays of the batch's shape; 0-d for one).

    ``p_value``: two-sided, of the sign-flip test (``None`` when none ran).  ``ci_low`` / ``ci_high``: the
    descriptive BCa interval (``None`` below :data:`BOOTSTRAP_MIN_N` pairs).  ``why`` says what settled each
    ``mark``: ``threshold`` (the threshold rule, or ``|delta| <= threshold`` with too few samples), ``too few``,
    ``not significant``, ``disagree`` (the mean difference and the headline delta point different ways),
    ``below threshold`` or ``significant``."""

    test: str
    n: int
    confidence: float
    threshold: float
    n_permutations: int
    delta: np.ndarray
    mark: np.ndarray
    why: np.ndarray
    p_value: np.ndarray | None = None
    ci_low: np.ndarray | None = None
    ci_high: np.ndarray | None = None

    @property
    def alpha(self) -> float:
        return _alpha(self.confidence)

    def reason(self, index: tuple = ()) -> str:
        """One line explaining the mark at ``index`` (``()`` for a single comparison)."""
        delta, why, n = float(self.delta[index]), str(self.why[index]), self.n
        size, thr = f"|delta| {_g(abs(delta))}", f"threshold {_g(self.threshold)}"
        if self.test == THRESHOLD:
            return f"{size} {'>' if why == 'significant' else '<='} {thr}; no per-sample values: threshold rule only"
        if self.test == TOO_FEW:
            if why == "threshold":
                return f"{size} <= {thr} ({n} paired sample(s): too few samples for a test)"
            return (f"too few samples to decide: {n} paired sample(s); the exact sign-flip test needs "
                    f"n >= {min_decidable_n(confidence=self.confidence)} to reach p <= {_g(self.alpha)} "
                    f"(its smallest p-value at n={n} is {_g(min_p_value(n))})")
        p = float(self.p_value[index])
        kind = "exact sign-flip test" if self.test == EXACT else f"sign-flip test ({self.n_permutations} patterns)"
        found = f"{kind} p={_g(p)} {'>' if p > self.alpha else '<='} {_g(self.alpha)} (n={n})"
        if why == "not significant":
            return found
        if why == "disagree":
            return f"{found}, but the mean per-sample difference and the headline delta disagree in direction"
        if why == "below threshold":
            return f"{found}, but {size} <= {thr}"
        return f"{found} and {size} > {thr}"


def _g(x: float) -> str:
    return f"{x:.4g}"


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def _batch(d: np.ndarray) -> int:
    """Resamples per batch so that about :data:`_CHUNK` values are held at once."""
    return max(1, _CHUNK // max(1, d.size))


def _sign_flip_p(d: np.ndarray, *, n_permutations: int, rng) -> np.ndarray:
    """Two-sided p-values of the sign-flip test of the mean along the last axis (scipy; exact when
    ``2**n <= n_permutations``)."""
    from scipy.stats import permutation_test

    res = permutation_test((d,), _mean, permutation_type="samples", vectorized=True, n_resamples=n_permutations,
                           alternative="two-sided", axis=-1, rng=rng, batch=_batch(d))
    return np.asarray(res.pvalue, dtype=np.float64)


def _bca(d: np.ndarray, *, confidence: float, n_boot: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """BCa bootstrap interval of the mean along the last axis (scipy); resampling the differences resamples
    the sample keys (the paired bootstrap).  Constant ``d`` gives ``[d, d]`` (BCa is 0/0 there)."""
    from scipy.stats import bootstrap

    with warnings.catch_warnings():   # the constant rows' 0/0, answered below
        warnings.simplefilter("ignore")
        res = bootstrap((d,), _mean, method="BCa", n_resamples=int(n_boot), confidence_level=confidence,
                        vectorized=True, axis=-1, rng=rng, batch=_batch(d))
    const = np.ptp(d, axis=-1) == 0
    lo = np.where(const, d[..., 0], np.asarray(res.confidence_interval.low, dtype=np.float64))
    hi = np.where(const, d[..., 0], np.asarray(res.confidence_interval.high, dtype=np.float64))
    return lo, hi


def decide(diffs, *, higher_is_better: bool, threshold: float = 0.0, delta=None, confidence: float = CONFIDENCE,
           n_permutations: int = N_PERMUTATIONS, n_boot: int = N_BOOT, interval: bool = True,
           rng: np.random.Generator | int | None = 0) -> Decision:
    """Mark paired comparisons by the rule of this module: the function ``bench compare`` uses for every row.

    ``diffs``: finite paired differences ``current - base`` (metric units) along the last axis, one comparison
    per leading index (shape ``(n,)`` for one, ``(m, n)`` for ``m`` at once), in a fixed order; ``None`` when a
    run has no per-sample values (then ``delta`` is required and the threshold rule decides).  ``delta``: the
    change of the headline values (default: the mean of ``diffs``).  ``threshold``: the metric's practical
    threshold in its units (a change must exceed it).  ``higher_is_better``: the metric's direction.
    ``confidence``: two-sided level, ``alpha = 1 - confidence``.  ``interval=False`` skips the descriptive BCa
    interval (it never changes a mark).  ``rng``: generator or seed of the Monte Carlo sign patterns and the
    bootstrap resamples (a batch shares them).  Raises ``ValueError`` on bad settings."""
    check_settings(confidence=confidence, n_permutations=n_permutations, n_boot=n_boot)
    alpha = _alpha(confidence)
    threshold = abs(float(threshold))
    d = None if diffs is None else np.asarray(diffs, dtype=np.float64)
    if d is None and delta is None:
        raise ValueError("decide needs paired differences or a headline delta")
    if d is not None and (d.ndim == 0 or not np.isfinite(d).all()):
        raise ValueError("diffs must be finite, with the samples along the last axis (drop pairs with NaN first)")
    n = None if d is None else d.shape[-1]
    if delta is None:
        delta = d.mean(axis=-1)
    delta = np.asarray(delta, dtype=np.float64) if d is None else np.broadcast_to(delta, d.shape[:-1]).astype(float)
    test = which_test(n, confidence=confidence, n_permutations=int(n_permutations))
    sign = -1.0 if higher_is_better else 1.0             # sign * change > 0: the bad side
    bad, good = sign * delta > 0, sign * delta < 0
    big = np.abs(delta) > threshold
    direction = np.where(bad, WORSE, BETTER)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    fields: dict = {}
    if test == THRESHOLD:
        hit = big & (bad | good)
        mark, why = np.where(hit, direction, UNCHANGED), np.where(hit, "significant", "threshold")
    elif test == TOO_FEW:
        mark, why = np.where(big, TOO_FEW_MARK, UNCHANGED), np.where(big, "too few", "threshold")
    else:
        p = _sign_flip_p(d, n_permutations=int(n_permutations), rng=gen)
        stat = sign * d.mean(axis=-1)
        significant = p <= alpha
        agree = ((stat > 0) & bad) | ((stat < 0) & good)
        why = np.select([~significant, ~agree, ~big], ["not significant", "disagree", "below threshold"],
                        "significant")
        mark = np.where(why == "significant", direction, UNCHANGED)
        fields["p_value"] = p
    if interval and n is not None and n >= BOOTSTRAP_MIN_N:
        fields["ci_low"], fields["ci_high"] = _bca(d, confidence=confidence, n_boot=int(n_boot), rng=gen)
    return Decision(test=test, n=0 if n is None else n, confidence=confidence, threshold=threshold,
                    n_permutations=int(n_permutations), delta=delta, mark=np.asarray(mark), why=np.asarray(why),
                    **fields)
