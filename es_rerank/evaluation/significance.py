"""Paired significance tests and confidence intervals for per-query metric differences.

Both systems answer the same queries, so every test here is paired on the query. The headline
p-value is the paired randomization (sign-flip) test that Smucker, Allan and Carterette (2007)
recommend for IR; the paired t-test and the Wilcoxon signed-rank test are reported beside it.
Confidence intervals are percentile bootstraps with a fixed seed, so a report is reproducible.

Example:
    >>> test = paired_test([0.5, 0.2, 0.9, 0.4], [0.6, 0.2, 1.0, 0.7], seed=0)
    >>> (test.wins, test.ties, test.losses), round(test.delta, 3)
    ((3, 1, 0), 0.125)
    >>> test.p_randomization
    0.25
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# Per-query differences smaller than this count as ties (metric values are sums of fractions).
TIE_EPSILON = 1e-9
N_RESAMPLES = 10_000


@dataclass(frozen=True)
class Interval:
    """A confidence interval at `level` (e.g. 0.95)."""

    low: float
    high: float
    level: float = 0.95

    def as_list(self) -> list[float]:
        return [self.low, self.high]


@dataclass(frozen=True)
class PairedTest:
    """Treatment minus baseline over the same queries.

    p-values are None when they are undefined (fewer than two queries).
    """

    n: int
    baseline_mean: float
    treatment_mean: float
    delta: float
    delta_ci: Interval
    p_randomization: float | None
    p_ttest: float | None
    p_wilcoxon: float | None
    wins: int
    ties: int
    losses: int


def mean_ci(values: Sequence[float], level: float = 0.95, seed: int = 0,
            n_resamples: int = N_RESAMPLES) -> Interval:
    """Percentile-bootstrap confidence interval of the mean.

    Example:
        >>> mean_ci([1.0, 1.0, 1.0])
        Interval(low=1.0, high=1.0, level=0.95)
    """
    from scipy.stats import bootstrap

    data = _as_array(values)
    if len(data) == 0:
        return Interval(math.nan, math.nan, level)
    if np.all(data == data[0]):  # one query, or no spread: the bootstrap has nothing to resample
        return Interval(float(data[0]), float(data[0]), level)
    result = bootstrap((data,), np.mean, confidence_level=level, n_resamples=n_resamples,
                       method="percentile", random_state=np.random.default_rng(seed), vectorized=True)
    return Interval(float(result.confidence_interval.low), float(result.confidence_interval.high), level)


def paired_test(baseline: Sequence[float], treatment: Sequence[float], level: float = 0.95, seed: int = 0,
                n_resamples: int = N_RESAMPLES) -> PairedTest:
    """Compare per-query values of two systems on the same queries (same order in both lists).

    Example:
        >>> paired_test([0.1, 0.2], [0.1, 0.2]).p_randomization
        1.0
    """
    a, b = _as_array(baseline), _as_array(treatment)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal lengths, got {len(a)} baseline and {len(b)} treatment values")
    diff = b - a
    wins = int(np.sum(diff > TIE_EPSILON))
    losses = int(np.sum(diff < -TIE_EPSILON))
    p_rand, p_t, p_w = _p_values(diff, seed, n_resamples)
    return PairedTest(
        n=len(diff),
        baseline_mean=float(a.mean()) if len(a) else math.nan,
        treatment_mean=float(b.mean()) if len(b) else math.nan,
        delta=float(diff.mean()) if len(diff) else math.nan,
        delta_ci=mean_ci(diff, level, seed, n_resamples),
        p_randomization=p_rand, p_ttest=p_t, p_wilcoxon=p_w,
        wins=wins, ties=len(diff) - wins - losses, losses=losses,
    )


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None stays None), for comparing several variants at once.

    Example:
        >>> holm([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    indexed = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    m, running = len(indexed), 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = round(running, 12)
    return adjusted


def _p_values(diff: np.ndarray, seed: int, n_resamples: int) -> tuple[float | None, float | None, float | None]:
    from scipy.stats import permutation_test, ttest_rel, wilcoxon

    if len(diff) < 2:
        return None, None, None
    if np.all(np.abs(diff) <= TIE_EPSILON):
        return 1.0, 1.0, 1.0  # identical systems: no evidence of a difference
    # Sign-flip randomization: under H0 each query's difference is as likely negated.
    rand = permutation_test((diff,), _mean_along, permutation_type="samples", n_resamples=n_resamples,
                            vectorized=True, alternative="two-sided", random_state=np.random.default_rng(seed))
    with warnings.catch_warnings():  # near-constant differences make scipy warn about precision
        warnings.simplefilter("ignore", RuntimeWarning)
        p_t = ttest_rel(diff, np.zeros_like(diff)).pvalue
        p_w = wilcoxon(diff, zero_method="wilcox", method=_wilcoxon_method(diff)).pvalue
    return _finite(rand.pvalue), _finite(p_t), _finite(p_w)


def _wilcoxon_method(diff: np.ndarray) -> str:
    # scipy's automatic choice resamples (slowly) when zeros or tied magnitudes appear, which
    # per-query IR differences nearly always have; the normal approximation handles them.
    nonzero = np.abs(diff[np.abs(diff) > TIE_EPSILON])
    exact_ok = len(nonzero) == len(diff) <= 50 and len(np.unique(nonzero)) == len(nonzero)
    return "exact" if exact_ok else "approx"


def _mean_along(sample: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(sample, axis=axis)


def _finite(value) -> float | None:
    value = float(value)
    # A constant non-zero difference makes the t statistic infinite; its p-value is then 0.
    return None if math.isnan(value) else min(1.0, value)


def _as_array(values: Sequence[float]) -> np.ndarray:
    return np.asarray(list(values), dtype=np.float64)
