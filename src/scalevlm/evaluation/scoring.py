"""Scoring generated completions: one row per sample, then the metrics of a group of rows.

`prediction_row` scores one completion with the core's rules (the segment rule, answer extraction and matching,
the think's stated conclusion); `score_rows` aggregates rows through the repo's two `evaluate` metric modules
(`metrics/answer_accuracy`, `metrics/format_compliance`, loaded by path, offline) and adds the paper's view:
think correctness, P(answer | think correct), consistency, verbosity, reference CE per segment, and the
missing-`<answer>` rate at several generation budgets. Shared by the evaluate stage, the registry consumer flow and
the benchmarks.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scalevlm.core.answers import is_correct, is_parseable
from scalevlm.core.rewards import extract_answer
from scalevlm.core.segments import parse_completion
from scalevlm.core.think_facts import judge_think
from scalevlm.evaluation.generation import Generation, ReferenceLoss
from scalevlm.records import Record

METRICS_DIR = Path(__file__).resolve().parents[3] / "metrics"  # code shipped with the repo (not a data dep)


def prediction_row(record: Record, gen: Generation, ref: ReferenceLoss | None = None) -> dict[str, Any]:
    """The per-sample line of predictions.jsonl (scored with the same core functions as the metric modules).

    With the record's `think_fact`: whether the think concluded right, and whether the answer follows from it;
    with `ref`: the teacher-forced CE of the reference completion per segment."""
    seg = parse_completion(gen.text)
    pred = extract_answer(gen.text)
    judged = judge_think(gen.text, pred, record.provenance.get("think_fact"))
    extra: dict[str, Any] = {}
    if judged is not None:
        extra.update(think_value=judged.value, think_correct=int(judged.correct),
                     think_consistent=None if judged.consistent is None else int(judged.consistent))
    if ref is not None:
        extra.update(ref_think_tokens=ref.think_tokens, ref_answer_tokens=ref.answer_tokens,
                     ref_think_ce=round(ref.think_ce, 6), ref_answer_ce=round(ref.answer_ce, 6))
    return {
        "id": record.id, "source": record.source, "answer_type": record.answer_type,
        "gold": record.answer, "choices": list(record.choices) if record.choices is not None else None,
        "completion": gen.text, "pred": pred,
        "correct": int(pred is not None and is_correct(pred, record.answer, record.answer_type, record.choices)),
        "format_ok": int(seg.ok), "reason": seg.reason.value if seg.reason else None,
        "parsed": int(is_parseable(pred, record.answer_type, record.choices)),
        "completion_tokens": gen.completion_tokens, "think_tokens": gen.think_tokens,
        "answer_tokens": gen.answer_tokens,
        "answer_open_token": gen.answer_open_token,
        **extra,
    }


def load_metrics() -> tuple[Any, Any]:
    """The repo's two `evaluate` metric modules, loaded by path (works offline)."""
    import evaluate as hf_evaluate

    return (hf_evaluate.load(str(METRICS_DIR / "answer_accuracy")),
            hf_evaluate.load(str(METRICS_DIR / "format_compliance")))


def _length_stats(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    stats = {}
    for key in ("think_tokens", "answer_tokens", "completion_tokens"):
        values = [r[key] for r in rows]
        stats[f"{key}_mean"] = float(statistics.fmean(values)) if values else 0.0
        stats[f"{key}_median"] = float(statistics.median(values)) if values else 0.0
    return stats


def answer_budgets(max_new_tokens: int) -> list[int]:
    """The generation budgets the missing-<answer> rate is reported at: 1/4, 1/2, 3/4 and all of max_new_tokens."""
    return sorted({max(1, max_new_tokens * k // 4) for k in (1, 2, 3, 4)})


def missing_answer_at(rows: Sequence[dict[str, Any]], budgets: Sequence[int]) -> dict[str, float]:
    """Per budget b, the share of rows that have not opened `<answer>` within b generated tokens. Exact for greedy
    generation (a budget-b run generates the same first b tokens), so one run at the largest budget measures all."""
    n = len(rows)
    return {str(b): sum(r["answer_open_token"] is None or r["answer_open_token"] > b for r in rows) / n if n else 0.0
            for b in budgets}


def paper_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The paper's view of the answer, where the rows allow it.

    - think_correct_rate, p_answer_given_think_correct, answer_think_consistency: over rows whose record states
      what a right think concludes (`think_fact`);
    - verbosity: generated think tokens / reference think tokens (means over the rows);
    - reference CE per token of the think and answer segments (teacher-forced on the reference completions): the
      answer-token CE is what the paper says vanilla SFT leaves high."""
    out: dict[str, Any] = {}
    judged = [r for r in rows if "think_correct" in r]
    if judged:
        right = [r for r in judged if r["think_correct"]]
        out["think_fact_n"] = len(judged)
        out["think_correct_rate"] = len(right) / len(judged)
        out["p_answer_given_think_correct"] = sum(r["correct"] for r in right) / len(right) if right else None
        consistent = [r["think_consistent"] for r in judged if r.get("think_consistent") is not None]
        out["answer_think_consistency"] = sum(consistent) / len(consistent) if consistent else None
    refs = [r for r in rows if "ref_think_tokens" in r]
    if refs:
        ref_think = sum(r["ref_think_tokens"] for r in refs)
        ref_answer = sum(r["ref_answer_tokens"] for r in refs)
        out["reference_think_tokens_mean"] = ref_think / len(refs)
        out["reference_answer_tokens_mean"] = ref_answer / len(refs)
        out["think_verbosity"] = (sum(r["think_tokens"] for r in refs) / ref_think) if ref_think else None
        out["reference_think_ce"] = sum(r["ref_think_ce"] for r in refs) / ref_think if ref_think else None
        out["reference_answer_ce"] = sum(r["ref_answer_ce"] for r in refs) / ref_answer if ref_answer else None
    return out


def group_metrics(rows: Sequence[dict[str, Any]], accuracy: Any, compliance: Any) -> dict[str, Any]:
    """Accuracy, answer-parse rate, format compliance, missing-<answer> rate, reasons, lengths and the paper's
    conditional metrics (`paper_metrics`) of `rows`."""
    acc = accuracy.compute(
        predictions=[r["completion"] for r in rows], references=[r["gold"] for r in rows],
        answer_types=[r["answer_type"] for r in rows], choices=[r["choices"] for r in rows],
    )
    fmt = compliance.compute(predictions=[r["completion"] for r in rows])
    return {
        "n": len(rows), "accuracy": acc["accuracy"], "answer_parse_rate": acc["answer_parse_rate"],
        "format_compliance": fmt["format_compliance"], "missing_answer_rate": fmt["missing_answer_rate"],
        "reasons": fmt["reasons"], **_length_stats(rows), **paper_metrics(rows),
    }


def score_rows(rows: Sequence[dict[str, Any]], accuracy: Any, compliance: Any) -> dict[str, Any]:
    summary = group_metrics(rows, accuracy, compliance)
    expected = sum(r["correct"] for r in rows) / len(rows)
    if abs(summary["accuracy"] - expected) > 1e-9:  # the metric module and the per-sample rows must agree
        raise RuntimeError(f"metric module accuracy {summary['accuracy']} != per-sample accuracy {expected}")
    for field, key in (("source", "by_source"), ("answer_type", "by_answer_type")):
        groups = sorted({r[field] for r in rows})
        summary[key] = {g: group_metrics([r for r in rows if r[field] == g], accuracy, compliance) for g in groups}
    return summary
