"""Counts, the human summary table and the failure message of a validation run (plain data in, text out)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from scalevlm.validation.checks import ALL_REASONS, SampleCheck

UNKNOWN_SPLIT = "<unknown>"


def _split_of(check: SampleCheck) -> str:
    """The record's split (undecodable text escaped: it becomes a metrics key), or a placeholder for non-records."""
    if check.record is None:
        return UNKNOWN_SPLIT
    return _printable(check.record.split)


def _printable(text: str) -> str:
    """`text` with undecodable characters (lone surrogates) escaped, so it can be printed and written as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def reason_counts(checks: Sequence[SampleCheck]) -> Counter:
    """Records per reason (a record with several reasons counts once under each)."""
    return Counter(r for c in checks for r in c.reasons)


def reason_examples(checks: Sequence[SampleCheck], n: int) -> dict[str, list[str]]:
    """The first `n` ids (sorted) of records rejected for each reason; `line N` stands in for a missing id."""
    examples: dict[str, list[str]] = {}
    for c in sorted(checks, key=lambda c: (c.id or "", c.line)):
        for r in c.reasons:
            bucket = examples.setdefault(r, [])
            if len(bucket) < n:
                bucket.append(_printable(c.id) if c.id is not None else f"line {c.line}")
    return examples


def metrics(checks: Sequence[SampleCheck], unit: str, blank_lines: int = 0) -> dict[str, Any]:
    """DVC metrics: accepted/rejected/input (record lines), blank lines, reject rate, counts by split and by reason.

    `lines = input + blank_lines` and `input = accepted + rejected`: every line of the file is accounted for."""
    accepted = [c for c in checks if c.accepted]
    rejected = [c for c in checks if not c.accepted]
    reasons = reason_counts(checks)
    out = {
        "lines": len(checks) + blank_lines,
        "blank_lines": blank_lines,
        "input": len(checks),
        "accepted": len(accepted),
        "rejected": len(rejected),
        "reject_rate": round(len(rejected) / len(checks), 6) if checks else 0.0,
        "accepted_by_split": dict(sorted(Counter(_split_of(c) for c in accepted).items())),
        "rejected_by_split": dict(sorted(Counter(_split_of(c) for c in rejected).items())),
        "rejected_by_reason": {r: reasons[r] for r in ALL_REASONS if reasons[r]},
        "length_unit": unit,
    }
    if out["accepted"] + out["rejected"] != out["input"]:
        raise RuntimeError(f"validation lost records: {out}")  # an invariant, not a user error
    return out


def summary_table(checks: Sequence[SampleCheck], examples: int = 3, blank_lines: int = 0) -> str:
    """Counts by reason with example ids, then the totals, as a fixed-width text table."""
    counts = reason_counts(checks)
    ex = reason_examples(checks, examples)
    rows = [(r, str(counts[r]), ", ".join(ex[r])) for r in ALL_REASONS if counts[r]]
    m = metrics(checks, unit="", blank_lines=blank_lines)
    width = max([len("reason"), *(len(r) for r, _, _ in rows)])
    lines = [f"{'reason':<{width}}  {'count':>7}  examples", f"{'-' * width}  {'-' * 7}  {'-' * 8}"]
    lines += [f"{r:<{width}}  {n:>7}  {e}" for r, n, e in rows] or [f"{'(none)':<{width}}  {0:>7}"]
    lines.append("")
    lines.append(f"input {m['input']}  accepted {m['accepted']}  rejected {m['rejected']}  "
                 f"reject rate {m['reject_rate']:.2%}" + (f"  (and {blank_lines} blank lines)" if blank_lines else ""))
    lines.append("accepted by split: " + (", ".join(f"{k} {v}" for k, v in m["accepted_by_split"].items()) or "(none)"))
    return "\n".join(lines)


def failure_message(checks: Sequence[SampleCheck], failed: Sequence[dict[str, Any]], where: str, top: int = 5) -> str:
    """Why the gate failed: the failing dataset expectations, then the top reasons with counts and example ids."""
    m = metrics(checks, unit="")
    lines = [f"validate_segments failed: {len(failed)} dataset expectation(s) not met "
             f"(input {m['input']}, accepted {m['accepted']}, rejected {m['rejected']}, "
             f"reject rate {m['reject_rate']:.2%})"]
    for f in failed:
        observed = f["observed_value"] if f.get("observed_value") is not None else f.get("unexpected_count")
        observed = f"{observed:.4g}" if isinstance(observed, float) else observed
        lines.append(f"  - {f['description']}: observed {observed}"
                     + (f" ({f['exception']})" if f.get("exception") else ""))
    counts = reason_counts(checks)
    if counts:
        ex = reason_examples(checks, 3)
        lines.append("top reasons:")
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], ALL_REASONS.index(kv[0])))[:top]
        lines += [f"  - {r}: {n} (e.g. {', '.join(ex[r])})" for r, n in ranked]
    lines.append(f"see {where}")
    return "\n".join(lines)
