"""Evaluating a loaded model on the benchmarks, and writing what it found.

Per benchmark, under `reports/evaluate/<arm>/benchmarks/<name>/`:

- `predictions.jsonl`: one line per scored question (id, group, target, choices, completion, pred = the `<answer>`
  text by the segment rule, correct, correct_raw, format_ok, parsed, token counts), sorted by id.
- `metrics.json`: accuracy (lmms-eval's exact match on the extracted answer, `scalevlm.core.mcq`), accuracy_raw
  (the same rule on the raw completion, as lmms-eval scores an untagged answer), format compliance, answer-parse
  rate, think/answer lengths, accuracy per group (ScienceQA subject, IconQA question type), and the rows skipped
  by reason.
- `samples_<lmms task>.jsonl`: the per-sample log in lmms-eval's `--log_samples` shape (`doc_id`, `doc`, `target`,
  `input`, `resps`, `filtered_resps`, `exact_match`), so tools that read lmms-eval sample logs read these.

`benchmarks/index.json` lists every benchmark evaluated with its headline numbers (`{}` when none are configured);
`stages/compare.py` reads it (one row per arm and benchmark).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scalevlm.core import mcq
from scalevlm.core.rewards import extract_answer
from scalevlm.core.segments import parse_completion
from scalevlm.evaluation.benchmarks import INDEX
from scalevlm.evaluation.benchmarks.sources import Benchmark, BenchmarkError, Item, Skipped, lmms_task, read
from scalevlm.evaluation.generation import Generation, GenerationOptions, generate
from scalevlm.facts import METRICS, PREDICTIONS
from scalevlm.records import write_jsonl
from scalevlm.runtime import write_json

SKIP_EXAMPLES = 5  # ids kept per skip reason


def score(item: Item, gen: Generation) -> dict[str, Any]:
    """The predictions.jsonl line of one question (see the module doc)."""
    seg = parse_completion(gen.text)
    pred = extract_answer(gen.text)
    if item.choices is not None:
        correct, raw = mcq.letter_match(pred, item.target), mcq.letter_match(gen.text, item.target)
        parsed = mcq.letter_of(pred, len(item.choices)) is not None
    else:
        correct, raw, parsed = (mcq.text_match(pred, item.target), mcq.text_match(gen.text, item.target),
                                bool(pred and pred.strip()))
    return {
        "id": item.id, "group": item.group, "target": item.target,
        "choices": list(item.choices) if item.choices is not None else None,
        "completion": gen.text, "pred": pred, "correct": int(correct), "correct_raw": int(raw),
        "format_ok": int(seg.ok), "reason": seg.reason.value if seg.reason else None, "parsed": int(parsed),
        "completion_tokens": gen.completion_tokens, "think_tokens": gen.think_tokens,
        "answer_tokens": gen.answer_tokens,
    }


def lmms_sample(doc_id: int, item: Item, row: dict[str, Any]) -> dict[str, Any]:
    """One line of an lmms-eval `--log_samples` file for this question."""
    return {"doc_id": doc_id, "doc": item.doc, "target": item.target, "input": item.prompt,
            "resps": [[row["completion"]]], "filtered_resps": [row["pred"] or ""], "exact_match": float(row["correct"])}


def _mean(values: Sequence[float]) -> float:
    return float(statistics.fmean(values)) if values else 0.0


def summarise(bench: Benchmark, rows: Sequence[dict[str, Any]], skipped: Sequence[Skipped]) -> dict[str, Any]:
    by_reason = Counter(s.reason for s in skipped)
    examples: dict[str, list[str]] = {}
    for s in skipped:
        if len(examples.setdefault(s.reason, [])) < SKIP_EXAMPLES:
            examples[s.reason].append(f"{s.id}: {s.detail}")
    groups = sorted({r["group"] for r in rows})
    return {
        "benchmark": bench.name, "adapter": bench.adapter, "path_or_hub_id": bench.path_or_hub_id,
        "config": bench.config,
        "split": bench.split, "revision": bench.revision, "lmms_eval_task": lmms_task(bench),
        "n": len(rows), "rows_read": len(rows) + len(skipped), "skipped": dict(sorted(by_reason.items())),
        "skipped_examples": examples,
        "accuracy": _mean([r["correct"] for r in rows]), "accuracy_raw": _mean([r["correct_raw"] for r in rows]),
        "format_compliance": _mean([r["format_ok"] for r in rows]),
        "answer_parse_rate": _mean([r["parsed"] for r in rows]),
        "missing_answer_rate": _mean([float(r["pred"] is None) for r in rows]),
        "think_tokens_mean": _mean([r["think_tokens"] for r in rows]),
        "answer_tokens_mean": _mean([r["answer_tokens"] for r in rows]),
        "by_group": {g: {"n": sum(r["group"] == g for r in rows),
                         "accuracy": _mean([r["correct"] for r in rows if r["group"] == g])} for g in groups},
    }


def evaluate_benchmark(bench: Benchmark, root: Path, model: Any, processor: Any, options: GenerationOptions,
                       batch_size: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(predictions rows, lmms-eval sample lines, metrics) of one benchmark, generated in batches of `batch_size`."""
    from tqdm.auto import tqdm

    items: list[Item] = []
    skipped: list[Skipped] = []
    scored: list[tuple[Item, dict[str, Any]]] = []

    def flush() -> None:
        gens = generate(model, processor, [list(i.images) for i in items], [i.prompt for i in items], options)
        scored.extend((i, score(i, g)) for i, g in zip(items, gens, strict=True))
        items.clear()

    with tqdm(desc=f"benchmark {bench.name}", unit="sample") as bar:
        for entry in read(bench, root):
            if isinstance(entry, Skipped):
                skipped.append(entry)
                continue
            items.append(entry)
            if len(items) == batch_size:
                flush()
                bar.update(batch_size)
        if items:
            bar.update(len(items))
            flush()
    if not scored:
        raise BenchmarkError(f"evaluate.benchmarks[{bench.name}]: no scorable question among {len(skipped)} rows read "
                         f"(skipped: {dict(Counter(s.reason for s in skipped))})")
    scored.sort(key=lambda pair: pair[0].id)
    rows = [row for _, row in scored]
    samples = [lmms_sample(k, item, row) for k, (item, row) in enumerate(scored)]
    return rows, samples, summarise(bench, rows, skipped)


HEADLINE = ("adapter", "path_or_hub_id", "config", "split", "n", "accuracy", "accuracy_raw", "format_compliance",
            "answer_parse_rate")


def evaluate_benchmarks(benches: Sequence[Benchmark], root: Path, model: Any, processor: Any,
                        options: GenerationOptions,
                        batch_size: int, out: Path) -> dict[str, dict[str, Any]]:
    """Evaluate every benchmark and write `out/<name>/…` and `out/index.json`; returns the index."""
    index: dict[str, dict[str, Any]] = {}
    out.mkdir(parents=True, exist_ok=True)
    for bench in benches:
        rows, samples, metrics = evaluate_benchmark(bench, root, model, processor, options, batch_size)
        folder = out / bench.name
        write_jsonl(folder / PREDICTIONS, rows)
        write_jsonl(folder / f"samples_{metrics['lmms_eval_task']}.jsonl", samples)
        write_json(folder / METRICS, metrics)
        index[bench.name] = {k: metrics[k] for k in HEADLINE}
    write_json(out / INDEX, index)
    return index
