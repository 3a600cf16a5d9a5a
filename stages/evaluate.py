"""evaluate (× arm): greedy generation on the test split, scored with the repo's `evaluate` metric modules.

deps:  models/<train stage>/<method>/ of the arm (`scalevlm.facts.arm_model`), data/validate_segments/test.jsonl (+ images),
       metrics/{answer_accuracy,format_compliance}, params.yaml[evaluate]
       data/local/ (benchmark copies, `evaluate.benchmarks`)
outs:  reports/evaluate/<arm>/{metrics.json, predictions.jsonl, benchmarks/}
cmd:   python -m stages.evaluate --arm <sft-vanilla|sft-scale|grpo-vanilla|grpo-scale>

Generation is batched with left padding and greedy (`do_sample=False`), so an arm's predictions are a function of
its weights; prompt and generation are `scalevlm.inference`'s, shared with `python -m scalevlm.predict`.
Answers are extracted by the segment rule only (a malformed completion has no answer and is wrong).
Token lengths follow the SFT segment rule on the generated ids (up to, not including, end-of-turn): think = from
the first token through `</think>`, answer = everything after; a completion without `</think>` is all think.
Metrics come from `metrics/answer_accuracy` and `metrics/format_compliance` (loaded by path, offline), over all
samples and per source and per answer type.
`evaluate.benchmarks` (empty by default) adds the paper's benchmarks, ScienceQA (image subset) and IconQA, read in
their published layouts and scored as lmms-eval scores them, with the same model and generation settings:
`reports/evaluate/<arm>/benchmarks/` (`scalevlm.benchmarks`).
"""

from __future__ import annotations

import logging
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from scalevlm.benchmarks.evaluation import evaluate_benchmarks
from scalevlm.benchmarks.sources import Benchmark, open_checked
from scalevlm.config import Checked, NonNegativeInt, PositiveInt, Problems
from scalevlm.core.answers import is_correct, is_parseable
from scalevlm.core.rewards import extract_answer
from scalevlm.core.segments import parse_completion
from scalevlm.core.think_facts import judge_think
from scalevlm.errors import MissingInputError
from scalevlm.facts import ARMS, BENCHMARKS, METRICS, PREDICTIONS, arm_model, eval_report
from scalevlm.guard import atomic_dir
from scalevlm.inference import Generation, GenerationOptions, ReferenceLoss, generate, reference_losses
from scalevlm.records import Record, write_jsonl
from scalevlm.runtime import matrix_main, set_torch_threads, write_json

NAME = "evaluate"
METRICS_DIR = Path(__file__).resolve().parents[1] / "metrics"  # code, shipped with the repo (not a data dep)
log = logging.getLogger(NAME)


@dataclass(frozen=True)
class Config(Checked):
    batch_size: PositiveInt
    max_new_tokens: PositiveInt
    max_samples: PositiveInt | None  # evaluate only the first N test records by id; None = all
    dtype: Literal["auto", "float32", "bfloat16", "float16"]
    device: str  # auto | cpu | cuda | cuda:N
    trust_remote_code: bool
    torch_threads: NonNegativeInt  # CPU threads for torch; 0 = torch's default (1 is fastest for the tiny model)
    benchmarks: tuple[Benchmark, ...] = ()  # ScienceQA / IconQA beside the test split; empty = the test split only

    def check(self) -> Problems:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            yield "device", f"{self.device!r} is not one of auto, cpu, cuda, cuda:N (N = a GPU index)"
        names = [b.name for b in self.benchmarks]
        if len(set(names)) != len(names):
            yield "benchmarks", f"names must be unique (they name report folders), got {names}"


def batch_images(records: Sequence[Record], root: Path) -> list[list[Any]]:
    """The records' images, read from the validated layout under `root`."""
    from PIL import Image

    from scalevlm.validation import image_paths

    return [[Image.open(p).convert("RGB") for p in image_paths(root, r)] for r in records]


def generate_batch(model: Any, processor: Any, records: Sequence[Record], root: Path, options: GenerationOptions) -> list[Generation]:
    """Completions of one batch of records."""
    return generate(model, processor, batch_images(records, root), [r.question for r in records], options)


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
        "completion_tokens": gen.completion_tokens, "think_tokens": gen.think_tokens, "answer_tokens": gen.answer_tokens,
        "answer_open_token": gen.answer_open_token,
        **extra,
    }


def load_metrics() -> tuple[Any, Any]:
    """The repo's two `evaluate` metric modules, loaded by path (works offline)."""
    import evaluate as hf_evaluate

    return (hf_evaluate.load(str(METRICS_DIR / "answer_accuracy")), hf_evaluate.load(str(METRICS_DIR / "format_compliance")))


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


def summarise(rows: Sequence[dict[str, Any]], accuracy: Any, compliance: Any) -> dict[str, Any]:
    summary = group_metrics(rows, accuracy, compliance)
    expected = sum(r["correct"] for r in rows) / len(rows)
    if abs(summary["accuracy"] - expected) > 1e-9:  # the metric module and the per-sample rows must agree
        raise RuntimeError(f"metric module accuracy {summary['accuracy']} != per-sample accuracy {expected}")
    for field, key in (("source", "by_source"), ("answer_type", "by_answer_type")):
        groups = sorted({r[field] for r in rows})
        summary[key] = {g: group_metrics([r for r in rows if r[field] == g], accuracy, compliance) for g in groups}
    return summary


def load_model(cfg: Config, model_dir: Path) -> tuple[Any, Any]:
    """(model, processor) from `model_dir` with the evaluation's dtype, device and threads (no seed: generation is
    greedy, so predictions are a function of the weights)."""
    from scalevlm.modeling import load_model_and_processor

    set_torch_threads(cfg.torch_threads)
    return load_model_and_processor(model_dir, cfg.trust_remote_code, cfg.dtype, cfg.device)


def evaluate_model(cfg: Config, root: Path, model_dir: Path, records: Sequence[Record], label: str,
                   loaded: tuple[Any, Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Greedy completions of `records` by the model in `model_dir` (or the already `loaded` one), scored:
    (per-sample rows, metrics).

    Shared by the stage and by consumers that evaluate a registry version (flows/consumer.py)."""
    from tqdm.auto import tqdm

    model, processor = loaded or load_model(cfg, model_dir)
    options = GenerationOptions(max_new_tokens=cfg.max_new_tokens)  # greedy: predictions are a function of the weights
    gen_s = 0.0
    rows: list[dict[str, Any]] = []
    with tqdm(total=len(records), desc=f"evaluate {label}", unit="sample") as bar:
        for i in range(0, len(records), cfg.batch_size):
            batch = records[i : i + cfg.batch_size]
            images = batch_images(batch, root)
            start = time.perf_counter()
            gens = generate(model, processor, images, [r.question for r in batch], options)
            gen_s += time.perf_counter() - start
            refs = reference_losses(model, processor, images, [r.question for r in batch], [r.completion for r in batch])
            rows.extend(prediction_row(r, g, f) for r, g, f in zip(batch, gens, refs, strict=True))
            bar.update(len(batch))
    accuracy, compliance = load_metrics()
    metrics = summarise(rows, accuracy, compliance)
    metrics["generation_wall_time_s"] = round(gen_s, 3)
    metrics["max_new_tokens"] = cfg.max_new_tokens  # the budget the missing-<answer> rate is measured at
    metrics["missing_answer_at"] = missing_answer_at(rows, answer_budgets(cfg.max_new_tokens))  # the paper's claim 4
    return rows, metrics


def run(cfg: Config, root: Path, arm: str) -> dict[str, Any]:
    """Evaluate one arm's model on the test split; rewrites reports/evaluate/<arm>/ completely."""
    from scalevlm.training.data import read_split

    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; arms are {list(ARMS)}")
    model_dir = root / arm_model(arm)
    if not model_dir.is_dir():
        raise MissingInputError(f"{model_dir} not found: train the arm first (`dvc repro {NAME}@{arm}` runs its stages)")
    records = read_split(root, "test", cfg.max_samples)
    for bench in cfg.benchmarks:  # a misconfigured benchmark stops the stage before any generation
        open_checked(bench, root)
    loaded = load_model(cfg, model_dir)
    rows, metrics = evaluate_model(cfg, root, model_dir, records, arm, loaded)
    metrics.update(arm=arm, model_dir=arm_model(arm).as_posix())
    with atomic_dir(root / eval_report(arm)) as staging:  # the previous report stays whole until this one is
        write_jsonl(staging / PREDICTIONS, rows)
        bench = evaluate_benchmarks(cfg.benchmarks, root, *loaded, GenerationOptions(max_new_tokens=cfg.max_new_tokens),
                                    cfg.batch_size, staging / BENCHMARKS)
        if bench:  # headline numbers beside the test split's, for `dvc metrics show`
            metrics["benchmarks"] = {name: {k: b[k] for k in ("n", "accuracy", "format_compliance")} for name, b in bench.items()}
        write_json(staging / METRICS, metrics)
    log.info("%s: accuracy %.3f, format %.3f on %d samples in %.1fs", arm, metrics["accuracy"],
             metrics["format_compliance"], len(rows), metrics["generation_wall_time_s"])
    return {k: metrics[k] for k in ("arm", "n", "accuracy", "format_compliance", "answer_parse_rate", "generation_wall_time_s")}


def main(argv: list[str] | None = None) -> int:
    return matrix_main(NAME, Config, run, argv, "--arm", ARMS, "which trained model to evaluate")


if __name__ == "__main__":
    raise SystemExit(main())
