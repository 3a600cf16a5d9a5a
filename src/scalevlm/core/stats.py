"""Uncertainty for the arm comparison: bootstrap CIs and paired tests on the same test samples (numpy, scipy).

Every random function takes a seeded ``np.random.Generator``; nothing touches a global RNG, so the same seed gives
the same numbers. Conventions: 95% intervals are percentile bootstrap intervals; p-values are two-sided.
Paired means arm ``a`` and arm ``b`` were scored on the same samples in the same order (``a[i]`` and ``b[i]``
belong to sample i) and the difference is ``mean(a) - mean(b)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

_EXACT_PERMUTATION_MAX = 16  # up to 2**16 sign patterns are enumerated exactly


def _as_array(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of numbers, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def _paired(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"paired test needs equal lengths (same samples in both arms), got {len(x)} and {len(y)}")
    return x, y


def bootstrap_ci(
    values: Any, rng: np.random.Generator, n_resamples: int = 2000, confidence: float = 0.95
) -> tuple[float, float, float]:
    """(mean, low, high): the mean of `values` with its percentile bootstrap interval.

    Empty input gives (nan, nan, nan); a single value or constant values give a zero-width interval.
    """
    x = _as_array(values, "values")
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    idx = rng.integers(0, x.size, size=(n_resamples, x.size))
    means = x[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return (float(x.mean()), float(low), float(high))


def paired_bootstrap(
    a: Any, b: Any, rng: np.random.Generator, n_resamples: int = 2000, confidence: float = 0.95
) -> tuple[float, float, float, float]:
    """(mean difference, CI low, CI high, p-value) by resampling samples (pairs kept together).

    The p-value is the two-sided bootstrap test of "no difference": the share of centred resampled differences
    at least as far from 0 as the observed one, with the +1 correction ((k + 1) / (B + 1)).
    """
    x, y = _paired(a, b)
    if x.size == 0:
        return (math.nan, math.nan, math.nan, math.nan)
    d = x - y
    observed = float(d.mean())
    idx = rng.integers(0, d.size, size=(n_resamples, d.size))
    boot = d[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(boot, [tail, 1.0 - tail])
    if np.ptp(d) <= 1e-12 * max(1.0, float(np.abs(d).max())):  # no variation: the difference is exact
        p = 1.0 if observed == 0 else 0.0
    else:
        k = int(np.sum(np.abs(boot - observed) >= abs(observed) - 1e-12))
        p = (k + 1) / (n_resamples + 1)
    return (observed, float(low), float(high), float(p))


def paired_permutation_test(a: Any, b: Any, rng: np.random.Generator, n_resamples: int = 5000) -> float:
    """Two-sided sign-flip permutation p-value for mean(a - b) == 0 (`scipy.stats.permutation_test`, paired).

    Pairs with zero difference carry no information and are dropped. With at most 16 non-zero pairs every sign
    pattern is enumerated (exact p); otherwise `n_resamples` random patterns with scipy's +1 correction.
    """
    x, y = _paired(a, b)
    d = (x - y)[x != y]
    if d.size < 2:  # no pair, or one: both of its sign patterns are as extreme as the observed one
        return 1.0
    exact = 2**d.size if d.size <= _EXACT_PERMUTATION_MAX else n_resamples
    # |sum| with "greater" counts the patterns at least as far from 0 as the observed one: two-sided by symmetry
    result = sps.permutation_test((d,), lambda v, axis: np.abs(v.sum(axis=axis)), permutation_type="samples",
                                  n_resamples=exact, alternative="greater", vectorized=True, rng=rng)
    return float(result.pvalue)


def mcnemar_exact(a: Any, b: Any) -> tuple[int, int, float]:
    """Exact McNemar test for paired binary outcomes: (a right & b wrong, a wrong & b right, two-sided p), the
    two-sided binomial test of the discordant pairs at 1/2 (`scipy.stats.binomtest`)."""
    x, y = _paired(a, b)
    if not np.all(np.isin(x, (0.0, 1.0))) or not np.all(np.isin(y, (0.0, 1.0))):
        raise ValueError("mcnemar_exact needs 0/1 outcomes in both arms")
    n_ab = int(np.sum((x == 1) & (y == 0)))
    n_ba = int(np.sum((x == 0) & (y == 1)))
    if n_ab + n_ba == 0:
        return (n_ab, n_ba, 1.0)
    return (n_ab, n_ba, float(sps.binomtest(n_ab, n_ab + n_ba, 0.5).pvalue))


@dataclass(frozen=True)
class PairedComparison:
    """Result of `compare_paired`; `p_mcnemar` and the discordant counts are None for non-binary outcomes."""

    n: int
    mean_a: float
    mean_b: float
    diff: float
    diff_low: float
    diff_high: float
    p_bootstrap: float
    p_permutation: float
    p_mcnemar: float | None
    a_only: int | None
    b_only: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_paired(a: Any, b: Any, rng: np.random.Generator, n_resamples: int = 2000) -> PairedComparison:
    """Every paired statistic for two arms on the same samples (McNemar added when both are 0/1)."""
    x, y = _paired(a, b)
    diff, low, high, p_boot = paired_bootstrap(x, y, rng, n_resamples)
    p_perm = paired_permutation_test(x, y, rng, n_resamples)
    binary = x.size > 0 and bool(np.all(np.isin(x, (0.0, 1.0))) and np.all(np.isin(y, (0.0, 1.0))))
    a_only, b_only, p_mc = mcnemar_exact(x, y) if binary else (None, None, None)
    return PairedComparison(
        n=int(x.size),
        mean_a=float(x.mean()) if x.size else math.nan,
        mean_b=float(y.mean()) if y.size else math.nan,
        diff=diff,
        diff_low=low,
        diff_high=high,
        p_bootstrap=p_boot,
        p_permutation=p_perm,
        p_mcnemar=p_mc,
        a_only=a_only,
        b_only=b_only,
    )
