"""The paper's four claims, judged by one set of rules for one run (`compare`) and for a multi-seed study.

Every rule reads a difference a − b with its 95% interval: over the test samples of one run (paired bootstrap,
`core.comparison.paired_tests`) or over seeds (paired t-interval, `core.seeds.paired_over_seeds`). A claim is
**supported** when the interval lies on the claimed side, **contradicted** when it lies on the other side, and
**undecided** otherwise:

1. SCALe-SFT beats vanilla SFT: the interval of sft-scale − sft-vanilla lies above 0.
2. SCALe-SFT matches vanilla SFT + GRPO at a fraction of the training time: accuracy non-inferior within
   `NONINFERIORITY` (the interval's low end ≥ −margin) AND the time ratio SCALe-SFT / (vanilla SFT + GRPO) at most
   `COST_FRACTION` (its interval's high end; the paper reports about 1/7). Contradicted when the accuracy is
   below the margin (interval's high end < −margin) or the time ratio is above the fraction (its low end).
3. SCALe + GRPO is the best arm: its interval against every other arm lies above 0; a tie is not "best".
   Contradicted when another arm is better (an interval below 0).
4. SCALe-SFT leaves fewer outputs without `<answer>`: the interval of the missing-rate difference lies below 0,
   at each generation budget measured; "not testable" when neither arm ever misses it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from scalevlm.facts import CLAIM_ARM, GRPO_VANILLA, SFT_SCALE, SFT_VANILLA

NONINFERIORITY = 0.03  # "matches": at most 3 accuracy points below (the paper's differences are of this size)
COST_FRACTION = 0.5  # "a fraction of the training time": at most half (the paper: about 1/7)
SUPPORTED, CONTRADICTED, UNDECIDED = "supported", "contradicted", "undecided"
CLAIMS = (
    "1. SCALe-SFT beats vanilla SFT",
    "2. SCALe-SFT matches vanilla SFT + GRPO at a fraction of the training time",
    "3. SCALe + GRPO is the best arm",
    "4. SCALe-SFT leaves fewer outputs without <answer> than vanilla SFT",
)


@dataclass(frozen=True)
class Difference:
    """a − b (accuracy, or a rate) with its 95% interval; `evidence` is how the caller states it."""

    a: str
    b: str
    diff: float
    low: float
    high: float
    evidence: str = ""


@dataclass(frozen=True)
class Interval:
    """A value with its 95% interval (low = high = value for a single run)."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Verdict:
    claim: str
    verdict: str  # supported | contradicted | undecided | not testable, then ": why"
    evidence: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def direction(d: Difference, higher_is_better: bool = True) -> int:
    """+1 when the interval lies wholly on the better side of 0, -1 on the worse side, 0 when it holds 0."""
    low, high = (d.low, d.high) if higher_is_better else (-d.high, -d.low)
    return 1 if low > 0 else (-1 if high < 0 else 0)


def _word(sign: int, why: str = "") -> str:
    base = {1: SUPPORTED, -1: CONTRADICTED}.get(sign, UNDECIDED)
    return f"{base}: {why}" if why else base


def beats(d: Difference) -> Verdict:
    """Claim 1 on sft-scale − sft-vanilla."""
    return Verdict(CLAIMS[0], _word(direction(d), "the interval holds 0" if direction(d) == 0 else ""), d.evidence)


def matches_at_a_fraction(d: Difference, ratio: Interval | None) -> Verdict:
    """Claim 2 on sft-scale − grpo-vanilla and the time ratio SCALe-SFT / (vanilla SFT + GRPO)."""
    accuracy = 1 if d.low >= -NONINFERIORITY else (-1 if d.high < -NONINFERIORITY else 0)
    if ratio is None:
        cost, cost_text = 0, "training times missing"
    else:
        cost = 1 if ratio.high <= COST_FRACTION else (-1 if ratio.low > COST_FRACTION else 0)
        cost_text = f"time ratio {ratio.value:.2f} [{ratio.low:.2f}, {ratio.high:.2f}] (paper: ~1/7)"
    why = []
    if accuracy == -1:
        why.append(f"more than {NONINFERIORITY:.2f} less accurate")
    if cost == -1:
        why.append(f"time ratio above {COST_FRACTION:.2f}")
        if accuracy == 1:
            why.append(f"accuracy within the {NONINFERIORITY:.2f} margin")
    if accuracy == 1 and cost == 1:
        sign = 1
    elif why:
        sign = -1
    else:
        sign = 0
        why = ["accuracy within the margin, cost undecided" if accuracy == 1 else
               "accuracy undecided" if cost == 1 else "accuracy and cost undecided"]
    return Verdict(CLAIMS[1], _word(sign, "; ".join(why) if sign != 1 else ""), f"{d.evidence}; {cost_text}")


def best_arm(ds: Sequence[Difference]) -> Verdict:
    """Claim 3 on grpo-scale − each other arm: supported only when it is better than every one."""
    signs = {d.b: direction(d) for d in ds}
    evidence = "; ".join(f"vs {d.b}: {d.evidence}" for d in ds)
    if signs and all(s == 1 for s in signs.values()):
        return Verdict(CLAIMS[2], SUPPORTED, evidence)
    better = [a for a, s in signs.items() if s == -1]
    if better:
        return Verdict(CLAIMS[2], _word(-1, ", ".join(better) + " more accurate"), evidence)
    tied = [a for a, s in signs.items() if s == 0]
    return Verdict(CLAIMS[2], _word(0, "not better than " + ", ".join(tied) + " (a tie is not best)"), evidence)


def fewer_missing(by_budget: Mapping[str, Difference], never_missing: bool) -> Verdict:
    """Claim 4 on the missing-`<answer>` rate, sft-scale − sft-vanilla, at each budget (lower is better); the
    verdict is the largest budget's, the others are evidence."""
    if not by_budget:
        return Verdict(CLAIMS[3], "not testable: no missing-<answer> rates", "")
    evidence = "; ".join(f"@{b}{' tokens' if b.isdigit() else ''}: {d.evidence}" for b, d in by_budget.items())
    if never_missing:
        return Verdict(CLAIMS[3], "not testable: neither arm misses <answer> at any budget", evidence)
    largest = by_budget[max(by_budget, key=lambda b: int(b) if b.isdigit() else float("inf"))]  # "max_new_tokens"
    return Verdict(CLAIMS[3], _word(direction(largest, higher_is_better=False)), evidence)


def verdicts(acc: Mapping[tuple[str, str], Difference], ratio: Interval | None,
             missing: Mapping[str, Difference] | None, never_missing: bool) -> list[Verdict]:
    """Every claim the given differences allow: `acc` maps (a, b) to the accuracy difference a − b; claims whose
    arms are absent (an SFT-only study has no GRPO arms) are left out."""
    out = []
    if (SFT_SCALE, SFT_VANILLA) in acc:
        out.append(beats(acc[(SFT_SCALE, SFT_VANILLA)]))
    if (SFT_SCALE, GRPO_VANILLA) in acc:
        out.append(matches_at_a_fraction(acc[(SFT_SCALE, GRPO_VANILLA)], ratio))
    best = [d for (a, _), d in acc.items() if a == CLAIM_ARM]
    if best:
        out.append(best_arm(best))
    if missing is not None:
        out.append(fewer_missing(missing, never_missing))
    return out
