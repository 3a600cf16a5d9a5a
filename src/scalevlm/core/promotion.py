"""The promotion decision: a candidate replaces the champion only if every declared rule passes.

Pure: takes the two arms' metrics and per-sample correctness (keyed by test-sample id) and the rules, returns
a decision with one check per rule and the reasons. No registry, files or git here (see `scalevlm.registry`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from scalevlm.core.stats import paired_bootstrap


@dataclass(frozen=True)
class Rules:
    min_accuracy: float  # absolute floor on the candidate's answer accuracy
    format_floor: float  # absolute floor on format compliance
    tracked_metrics: tuple[str, ...]  # higher-is-better metrics that must not regress
    max_regression: float  # allowed drop on each tracked metric vs the champion (absolute)
    require_significant: bool  # accuracy gain must be significant under a paired bootstrap
    alpha: float  # significance level of that test (one-sided: candidate > champion)
    n_bootstrap: int
    seed: int


@dataclass(frozen=True)
class ArmResult:
    name: str
    metrics: dict[str, float]
    correct: dict[str, float]  # test-sample id -> 1.0 / 0.0


@dataclass(frozen=True)
class Check:
    rule: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Decision:
    promote: bool
    candidate: str
    champion: str | None
    checks: tuple[Check, ...]
    reasons: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(candidate: ArmResult, champion: ArmResult | None, rules: Rules) -> Decision:
    """Apply every rule; with no champion only the absolute floors apply (the first version bootstraps)."""
    checks = [
        _floor("min_accuracy", candidate.metrics.get("accuracy"), rules.min_accuracy),
        _floor("format_floor", candidate.metrics.get("format_compliance"), rules.format_floor),
    ]
    if champion is None:
        checks.append(Check("champion", True,
                            "no champion in the registry: the candidate bootstraps the first version"))
    else:
        checks += [_no_regression(m, candidate, champion, rules.max_regression) for m in rules.tracked_metrics]
        checks.append(_significant(candidate, champion, rules))
    failed = tuple(f"{c.rule}: {c.detail}" for c in checks if not c.passed)
    return Decision(
        promote=not failed,
        candidate=candidate.name,
        champion=champion.name if champion else None,
        checks=tuple(checks),
        reasons=failed or tuple(f"{c.rule}: {c.detail}" for c in checks),
    )


def _floor(rule: str, value: float | None, floor: float) -> Check:
    if value is None:
        return Check(rule, False, "metric missing from the candidate's evaluation")
    return Check(rule, value >= floor, f"{value:.4f} {'>=' if value >= floor else '<'} {floor:.4f}")


def _no_regression(metric: str, cand: ArmResult, champ: ArmResult, tolerance: float) -> Check:
    rule = f"no_regression[{metric}]"
    if metric not in cand.metrics or metric not in champ.metrics:
        return Check(rule, False, f"'{metric}' missing (candidate has {sorted(cand.metrics)})")
    drop = champ.metrics[metric] - cand.metrics[metric]
    ok = drop <= tolerance
    return Check(rule, ok, f"candidate {cand.metrics[metric]:.4f} vs champion {champ.metrics[metric]:.4f} "
                           f"(drop {drop:+.4f}, tolerance {tolerance:.4f})")


def _significant(cand: ArmResult, champ: ArmResult, rules: Rules) -> Check:
    common = sorted(set(cand.correct) & set(champ.correct))
    if not common:
        return Check("significant_gain", not rules.require_significant, "no common test samples to pair")
    a = np.array([cand.correct[i] for i in common])
    b = np.array([champ.correct[i] for i in common])
    diff, low, high, p_two = paired_bootstrap(a, b, np.random.default_rng(rules.seed), rules.n_bootstrap)
    p_one = p_two / 2 if diff > 0 else 1.0 - p_two / 2
    ok = (diff > 0 and p_one < rules.alpha) or not rules.require_significant
    detail = (f"accuracy gain {diff:+.4f} [{low:+.4f}, {high:+.4f}] on {len(common)} paired samples, "
              f"one-sided p={p_one:.4f} (alpha {rules.alpha})")
    return Check("significant_gain", ok, detail)
