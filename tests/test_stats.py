"""Bootstrap intervals and paired tests on constructed inputs with known answers (pure, fast)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scalevlm.core.stats import (
    bootstrap_ci,
    compare_paired,
    mcnemar_exact,
    paired_bootstrap,
    paired_permutation_test,
)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_bootstrap_constant_has_zero_width() -> None:
    assert bootstrap_ci([0.5] * 20, rng()) == (0.5, 0.5, 0.5)


def test_bootstrap_empty_is_nan() -> None:
    assert all(math.isnan(v) for v in bootstrap_ci([], rng()))


def test_bootstrap_binary_matches_normal_approximation() -> None:
    values = np.array([1.0, 0.0] * 500)  # p = 0.5, n = 1000: half-width ≈ 1.96·sqrt(.25/1000) ≈ 0.031
    mean, low, high = bootstrap_ci(values, rng(), n_resamples=4000)
    assert mean == 0.5
    assert low == pytest.approx(0.5 - 0.031, abs=0.006)
    assert high == pytest.approx(0.5 + 0.031, abs=0.006)


def test_bootstrap_is_seeded() -> None:
    values = np.random.default_rng(1).random(50)
    assert bootstrap_ci(values, rng(7)) == bootstrap_ci(values, rng(7))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([1] * 10 + [0] * 10, [0] * 20, (10, 0, 2 / 1024)),  # 10 discordant, all one way: 2·0.5**10
        ([1, 0] * 5, [0, 1] * 5, (5, 5, 1.0)),
        ([1] * 5, [1] * 5, (0, 0, 1.0)),
        ([1, 1, 0, 0], [0, 0, 0, 1], (2, 1, 1.0)),  # 2·P(X<=1 | n=3) = 2·4/8 capped at 1
        ([1, 1, 1, 0, 0], [0, 0, 0, 0, 0], (3, 0, 0.25)),
    ],
)
def test_mcnemar_exact(a: list[int], b: list[int], expected: tuple[int, int, float]) -> None:
    n_ab, n_ba, p = mcnemar_exact(a, b)
    assert (n_ab, n_ba) == expected[:2]
    assert p == pytest.approx(expected[2])


def test_mcnemar_rejects_non_binary() -> None:
    with pytest.raises(ValueError, match="0/1 outcomes"):
        mcnemar_exact([0.5], [1])


def test_permutation_exact_small() -> None:
    # 4 pairs, all a > b by 1: only the all-plus and all-minus patterns reach |sum| = 4 → p = 2/16
    assert paired_permutation_test([1, 1, 1, 1], [0, 0, 0, 0], rng()) == pytest.approx(2 / 16)
    assert paired_permutation_test([1, 2, 3], [1, 2, 3], rng()) == 1.0


def test_permutation_large_shift_and_null() -> None:
    r = np.random.default_rng(3)
    b = r.random(200)
    assert paired_permutation_test(b + 1.0, b, rng(), n_resamples=999) == pytest.approx(1 / 1000)
    noise = r.normal(size=200)
    assert paired_permutation_test(b + 0.01 * noise, b, rng(), n_resamples=999) > 0.05


def test_paired_bootstrap_known_difference() -> None:
    b = np.random.default_rng(4).random(100)
    diff, low, high, p = paired_bootstrap(b + 0.2, b, rng())
    assert diff == pytest.approx(0.2)
    assert low == pytest.approx(0.2) and high == pytest.approx(0.2)  # constant difference: exact
    assert p == 0.0
    diff, low, high, p = paired_bootstrap(b, b, rng())
    assert (diff, low, high, p) == (0.0, 0.0, 0.0, 1.0)


def test_paired_bootstrap_noisy_difference_covers_truth() -> None:
    r = np.random.default_rng(5)
    a = (r.random(400) < 0.7).astype(float)
    b = (r.random(400) < 0.5).astype(float)
    diff, low, high, p = paired_bootstrap(a, b, rng())
    assert low < 0.2 < high
    assert low < diff < high
    assert p < 0.01


def test_paired_needs_equal_lengths() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        paired_bootstrap([1, 0], [1], rng())
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([1.0, float("nan")], rng())


def test_compare_paired_binary_and_continuous() -> None:
    a = [1] * 30 + [0] * 10
    b = [1] * 20 + [0] * 20
    res = compare_paired(a, b, rng())
    assert res.n == 40 and res.diff == pytest.approx(0.25)
    assert (res.a_only, res.b_only) == (10, 0)
    assert res.p_mcnemar == pytest.approx(2 / 1024)
    assert res.diff_low <= 0.25 <= res.diff_high
    cont = compare_paired([0.5, 0.7, 0.9], [0.4, 0.6, 0.8], rng())
    assert cont.p_mcnemar is None and cont.a_only is None
    assert set(cont.to_dict()) >= {"diff", "diff_low", "diff_high", "p_bootstrap", "p_permutation", "p_mcnemar"}


def test_progress_lines_give_step_share_elapsed_eta_and_the_named_values() -> None:
    from scalevlm.core.progress import clock, eta_s, progress_line

    expected = ["0:00", "1:00", "1:01", "59:59", "1:00:00", "1:02:05"]
    assert [clock(s) for s in (0, 59.6, 61, 3599, 3600, 3725)] == expected
    assert eta_s(100, 600, 0, 50.0) == 250.0  # 0.5 s per step, 500 steps left
    assert eta_s(150, 600, 100, 25.0) == 225.0  # a resumed run: its own 50 steps set the pace
    assert eta_s(100, 600, 100, 5.0) is None and eta_s(0, 600, 0, 0.0) is None
    line = progress_line(120, 600, 0, 100.0, {"loss": 0.51234, "w_think": 0.7, "flag": True}, ("loss", "kl", "flag"))
    assert line == "step 120/600 (20%) | 1:40 elapsed | ETA 6:40 | loss 0.5123"
    assert progress_line(0, 600, 0, 0.0) == "step 0/600 (0%) | 0:00 elapsed | ETA ?"
