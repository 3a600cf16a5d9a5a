"""The four-arm comparison's statistics (`stages/compare.py`): per-arm accuracy and format compliance with
bootstrap CIs, paired tests on the samples every arm answered, the chance baseline.

Pure: the stage reads the reports and passes them in; `scalevlm.report.compare_md` writes the prose. Everything
random draws from the caller's generator, in a fixed order (arms, then pairs), so a rerun gives the same numbers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from scalevlm.core.segments import ANSWER_OPEN
from scalevlm.core.stats import bootstrap_ci, compare_paired

Rows = Mapping[str, Mapping[str, Mapping[str, Any]]]  # arm -> sample id -> prediction row (correct, format_ok, …)


def shared_ids(preds: Rows) -> tuple[list[str], dict[str, int]]:
    """(sorted ids every arm answered, {arm: how many of its samples are left out} for arms with extra ids)."""
    ids = sorted(set.intersection(*(set(p) for p in preds.values())))
    return ids, {arm: len(p) - len(ids) for arm, p in preds.items() if len(p) != len(ids)}


def arm_table(metrics: Mapping[str, Mapping[str, Any]], preds: Rows, ids: Sequence[str],
              times: Mapping[str, float | None], rng: np.random.Generator, n_resamples: int,
              carried: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Per arm (in `preds` order): accuracy and format compliance on `ids` with bootstrap CIs, the evaluate
    stage's rates, failure reasons and lengths, the training time, and the `carried` metrics when present."""
    table = {}
    for arm in preds:
        correct = [float(preds[arm][i]["correct"]) for i in ids]
        fmt = [float(preds[arm][i]["format_ok"]) for i in ids]
        acc, lo, hi = bootstrap_ci(correct, rng, n_resamples)
        f, flo, fhi = bootstrap_ci(fmt, rng, n_resamples)
        m = metrics[arm]
        table[arm] = {
            "n": len(ids), "accuracy": acc, "accuracy_low": lo, "accuracy_high": hi,
            "format_compliance": f, "format_low": flo, "format_high": fhi,
            "answer_parse_rate": m.get("answer_parse_rate"), "missing_answer_rate": m.get("missing_answer_rate"),
            "think_tokens_mean": m.get("think_tokens_mean"), "answer_tokens_mean": m.get("answer_tokens_mean"),
            "train_time_s": times.get(arm), "reasons": m.get("reasons") or {},
            "missing_answer_at": m.get("missing_answer_at") or {},
            **{k: m.get(k) for k in carried},
        }
    return table


def outcome(row: Mapping[str, Any], name: str) -> float:
    """A per-sample 0/1 outcome of a predictions.jsonl row: `correct`, `missing_answer` (no `<answer>` tag in
    the completion, as the format_compliance metric counts it), or `missing_answer@<b>` (not opened within b
    generated tokens, from the row's `answer_open_token`; see `scalevlm.evaluation.scoring.missing_answer_at`)."""
    if name == "missing_answer":
        return float(ANSWER_OPEN not in row["completion"])
    if name.startswith("missing_answer@"):
        opened = row.get("answer_open_token")
        return float(opened is None or opened > int(name.split("@", 1)[1]))
    return float(row[name])


def paired_tests(preds: Rows, ids: Sequence[str], pairs: Iterable[tuple[str, str]], rng: np.random.Generator,
                 n_resamples: int, name: str = "correct") -> list[dict[str, Any]]:
    """Per pair (a, b): the difference a − b of the outcome `name` (default: accuracy) on `ids` with its paired
    bootstrap CI and p-values."""
    out = []
    for arm_a, arm_b in pairs:
        a = [outcome(preds[arm_a][i], name) for i in ids]
        b = [outcome(preds[arm_b][i], name) for i in ids]
        out.append({"a": arm_a, "b": arm_b, **compare_paired(a, b, rng, n_resamples).to_dict()})
    return out


def decisive_p(test: Mapping[str, Any]) -> float:
    """The p-value a verdict uses: exact McNemar for 0/1 outcomes, else the permutation test."""
    return test["p_mcnemar"] if test["p_mcnemar"] is not None else test["p_permutation"]


def majority_accuracy(train_answers: Sequence[str], test_answers: Sequence[str]) -> float | None:
    """Chance level: accuracy of always answering the most frequent training answer; None without answers."""
    if not train_answers or not test_answers:
        return None
    majority = Counter(train_answers).most_common(1)[0][0]
    return sum(a == majority for a in test_answers) / len(test_answers)
