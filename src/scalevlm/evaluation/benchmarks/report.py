"""The comparison's benchmark rows: one per (arm, benchmark), with paired tests per benchmark (`stages/compare.py`).

Reads `reports/evaluate/<arm>/benchmarks/index.json` and each benchmark's `predictions.jsonl`. A benchmark is
compared when every arm evaluated it on the same data (adapter, path or hub id, config, split); the arms are then
paired on the question ids they share. A benchmark some arm lacks, or evaluated on other data, is left out and
named in the summary. Resampling uses its own generator (seeded from `compare.seed`), so adding a benchmark never
changes the test split's numbers.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from scalevlm.core.stats import bootstrap_ci, compare_paired
from scalevlm.evaluation.benchmarks import INDEX
from scalevlm.facts import ARMS, BENCHMARKS, PAIRS, PREDICTIONS, eval_report
from scalevlm.records import read_jsonl

log = logging.getLogger(__name__)
IDENTITY = ("adapter", "path_or_hub_id", "config", "split")
_STREAM = 1  # the benchmark rows' own random stream beside compare's: np.random.default_rng([seed, _STREAM])


def read_indexes(root: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """arm -> benchmark name -> headline (an arm evaluated before benchmarks existed has none)."""
    out = {}
    for arm in ARMS:
        path = root / eval_report(arm) / BENCHMARKS / INDEX
        out[arm] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return out


def shared_benchmarks(indexes: dict[str, dict[str, dict[str, Any]]]) -> tuple[list[str], dict[str, str]]:
    """(benchmarks every arm evaluated on the same data, {left-out benchmark: why})."""
    names = sorted({n for index in indexes.values() for n in index})
    shared, left_out = [], {}
    for name in names:
        missing = [arm for arm, index in indexes.items() if name not in index]
        identities = {tuple(index[name].get(k) for k in IDENTITY) for index in indexes.values() if name in index}
        if missing:
            left_out[name] = f"not evaluated by {missing}"
        elif len(identities) > 1:
            left_out[name] = f"evaluated on different data by different arms: {sorted(map(str, identities))}"
        else:
            shared.append(name)
    return shared, left_out


def compare_benchmarks(root: Path, seed: int, n_resamples: int) -> dict[str, Any]:
    """Per shared benchmark: per-arm accuracy with a bootstrap CI, format and parse rates, raw-output accuracy,
    and the paired tests of `facts.PAIRS` on the shared question ids. `{}` when no benchmark was evaluated."""
    indexes = read_indexes(root)
    shared, left_out = shared_benchmarks(indexes)
    for name, why in left_out.items():
        log.warning("benchmark %s left out of the comparison: %s", name, why)
    if not shared and not left_out:
        return {}
    rng = np.random.default_rng([seed, _STREAM])
    result: dict[str, Any] = {"benchmarks": {}, "left_out": left_out}
    for name in shared:
        preds = {arm: {row["id"]: row
                       for _, row in read_jsonl(root / eval_report(arm) / BENCHMARKS / name / PREDICTIONS)}
                 for arm in ARMS}
        ids = sorted(set.intersection(*(set(p) for p in preds.values())))
        if not ids:
            result["left_out"][name] = "the arms share no question id"
            continue
        arms = {}
        for arm in ARMS:
            rows = [preds[arm][i] for i in ids]
            acc, lo, hi = bootstrap_ci([float(r["correct"]) for r in rows], rng, n_resamples)
            arms[arm] = {"n": len(ids), "accuracy": acc, "accuracy_low": lo, "accuracy_high": hi,
                         "accuracy_raw": _mean([r["correct_raw"] for r in rows]),
                         "format_compliance": _mean([r["format_ok"] for r in rows]),
                         "answer_parse_rate": _mean([r["parsed"] for r in rows])}
        tests = [{"a": a, "b": b, **compare_paired([float(preds[a][i]["correct"]) for i in ids],
                                                   [float(preds[b][i]["correct"]) for i in ids], rng,
                                                   n_resamples).to_dict()}
                 for a, b in PAIRS]
        head = indexes[ARMS[0]][name]
        result["benchmarks"][name] = {**{k: head.get(k) for k in IDENTITY}, "n": len(ids), "arms": arms, "tests": tests}
    return result


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else math.nan


def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    """The benchmark rows and their paired tests as Markdown ('' when no benchmark was evaluated)."""
    if not result:
        return ""
    lines = ["## Benchmarks", "",
             "Exact match on the option letter as lmms-eval scores it, applied to the `<answer>` text (raw: applied to "
             "the whole completion, as lmms-eval scores an untagged answer); `scalevlm.core.mcq` has the rules.", "",
             "| benchmark | arm | n | accuracy [95% CI] | raw-output accuracy | format compliance | answer parse |",
             "|---|---|---|---|---|---|---|"]
    for name, bench in result["benchmarks"].items():
        for arm, r in bench["arms"].items():
            lines.append(f"| {name} | {arm} | {r['n']} | {_fmt(r['accuracy'])} [{_fmt(r['accuracy_low'])}, "
                         f"{_fmt(r['accuracy_high'])}] | {_fmt(r['accuracy_raw'])} | {_fmt(r['format_compliance'])} | "
                         f"{_fmt(r['answer_parse_rate'])} |")
    lines += ["", "| benchmark | comparison | Δ accuracy [95% CI] | p (McNemar) | a-only / b-only |",
              "|---|---|---|---|---|"]
    for name, bench in result["benchmarks"].items():
        for t in bench["tests"]:
            lines.append(f"| {name} | {t['a']} vs {t['b']} | {_fmt(t['diff'])} [{_fmt(t['diff_low'])}, "
                         f"{_fmt(t['diff_high'])}] | {_fmt(t['p_mcnemar'], 4)} | {t['a_only']} / {t['b_only']} |")
    lines += [f"- left out: **{name}**, {why}" for name, why in result["left_out"].items()]
    return "\n".join(lines) + "\n"
