"""One set of rules for the paper's claims (scalevlm.claims), used by compare (one run) and the studies (seeds)."""

from __future__ import annotations

from scalevlm.claims import (
    COST_FRACTION,
    NONINFERIORITY,
    Difference,
    Interval,
    beats,
    best_arm,
    fewer_missing,
    matches_at_a_fraction,
    verdicts,
)
from scalevlm.facts import ARMS, CLAIM_ARM, GRPO_VANILLA, SFT_SCALE, SFT_VANILLA


def d(diff: float, low: float, high: float, a: str = SFT_SCALE, b: str = SFT_VANILLA) -> Difference:
    return Difference(a, b, diff, low, high, "ev")


def test_claim_1_needs_the_interval_above_zero() -> None:
    assert beats(d(0.1, 0.05, 0.15)).verdict == "supported"
    assert beats(d(-0.1, -0.15, -0.05)).verdict == "contradicted"
    assert beats(d(0.1, -0.01, 0.2)).verdict.startswith("undecided")


def test_claim_2_needs_non_inferiority_and_a_fraction_of_the_time() -> None:
    close = d(-0.01, -NONINFERIORITY + 0.001, 0.02, b=GRPO_VANILLA)
    assert matches_at_a_fraction(close, Interval(0.14, 0.12, 0.16)).verdict == "supported"
    slow = matches_at_a_fraction(close, Interval(0.72, 0.65, 0.78))  # the r1grid-v2 study's ratio
    assert slow.verdict.startswith("contradicted") and f"above {COST_FRACTION:.2f}" in slow.verdict
    worse = matches_at_a_fraction(d(-0.1, -0.15, -0.05, b=GRPO_VANILLA), Interval(0.1, 0.1, 0.1))
    assert worse.verdict.startswith("contradicted") and "less accurate" in worse.verdict
    # "not significantly worse" is not enough: an interval reaching below the margin is undecided
    assert matches_at_a_fraction(d(0.0, -0.08, 0.08, b=GRPO_VANILLA),
                                 Interval(0.1, 0.1, 0.1)).verdict.startswith("undecided")
    assert matches_at_a_fraction(close, None).verdict.startswith("undecided")


def test_claim_3_a_tie_is_not_best() -> None:
    others = [a for a in ARMS if a != CLAIM_ARM]
    assert best_arm([d(0.1, 0.05, 0.2, CLAIM_ARM, a) for a in others]).verdict == "supported"
    tie = best_arm([d(0.1, 0.05, 0.2, CLAIM_ARM, others[0]), *(d(0.0, 0.0, 0.0, CLAIM_ARM, a) for a in others[1:])])
    assert tie.verdict.startswith("undecided") and "a tie is not best" in tie.verdict
    worse = best_arm([d(-0.1, -0.2, -0.05, CLAIM_ARM, others[0])])
    assert worse.verdict.startswith("contradicted") and others[0] in worse.verdict


def test_claim_4_reads_the_largest_budget_and_knows_when_it_is_untestable() -> None:
    fewer = {"256": d(-0.2, -0.3, -0.1), "512": d(-0.1, -0.15, -0.05)}
    assert fewer_missing(fewer, never_missing=False).verdict == "supported"
    more = {"256": d(-0.2, -0.3, -0.1), "512": d(0.1, 0.05, 0.15)}
    assert fewer_missing(more, never_missing=False).verdict == "contradicted"
    assert fewer_missing({"512": d(0, 0, 0)}, never_missing=True).verdict.startswith("not testable")


def test_verdicts_leave_out_claims_whose_arms_are_absent() -> None:
    sft_only = verdicts({(SFT_SCALE, SFT_VANILLA): d(0.1, 0.05, 0.15)}, None, None, True)
    assert [v.claim[:2] for v in sft_only] == ["1."]
