"""Statistics shared by ``compare`` and ``tune``'s confirm stage: t-intervals over seeds, the paired t-test and
Holm's adjustment. Scores that are not finite (a NaN metric) are never tested: the callers say what happened.

Example:
    >>> summarize([0.70, 0.72, 0.74])["mean"]
    0.72
    >>> round(summarize([0.70, 0.72, 0.74])["ci95"], 4)
    0.0497
    >>> summarize([0.7])["ci95"] is None
    True
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

#: Paired differences whose spread is below this fraction of the scores' size are equal: what is left is floating
#: point rounding (1e-16), and a t-test on it reports p-values like 1e-29 for differences that are all the same.
EQUAL_DIFFERENCES_RTOL = 1e-9


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """n, mean, sample std and the half-width of the 95% t-interval (None for fewer than 2 values)."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"n": n, "mean": round(mean, 10), "std": None, "ci95": None}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return {"n": n, "mean": round(mean, 10), "std": std, "ci95": float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))}


def holm(p_values: Sequence[Optional[float]]) -> list[Optional[float]]:
    """Holm's step-down adjustment (controls the family-wise error rate), in the input order; None stays None.

    The k-th smallest of m p-values becomes max over j <= k of min(1, (m - j + 1) * p_(j)).

    >>> [round(p, 6) for p in holm([0.01, 0.04, 0.03, 0.005])]
    [0.03, 0.06, 0.06, 0.02]
    """
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[Optional[float]] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (len(present) - rank) * p))
        adjusted[i] = running
    return adjusted


def paired_p_value(values: Sequence[float], baseline: Sequence[float]) -> Optional[float]:
    """Two-sided paired t-test p-value; None with fewer than 2 pairs, when a score is not finite, or when every
    difference is the same (up to rounding: :data:`EQUAL_DIFFERENCES_RTOL`), where the test has nothing to measure.

    >>> paired_p_value([0.8, 0.9, 0.7], [0.7, 0.8, 0.6]) is None  # every seed +0.1 (rounded differently)
    True
    >>> paired_p_value([0.8, float("nan")], [0.7, 0.6]) is None
    True
    """
    from scipy import stats

    if not all_finite([*values, *baseline]):
        return None
    if len(values) < 2 or same_differences(values, baseline):
        return None
    return float(stats.ttest_rel(values, baseline).pvalue)


def same_differences(values: Sequence[float], baseline: Sequence[float]) -> bool:
    """Whether every paired difference is the same, up to floating-point rounding."""
    differences = [v - b for v, b in zip(values, baseline)]
    scale = max([1e-300, *(abs(x) for x in (*values, *baseline))])
    return max(differences) - min(differences) <= EQUAL_DIFFERENCES_RTOL * scale


def all_finite(values: Sequence[Optional[float]]) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)
