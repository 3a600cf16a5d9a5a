"""compare: the paper's table for this run — four arms, bootstrap CIs, paired tests, training time, plots.

deps:  reports/evaluate/<arm>/{metrics.json,predictions.jsonl,benchmarks/} for every arm,
       reports/train_sft/<method>/metrics.json and dvclive/ (curves), reports/train_grpo/<init>/metrics.json,
       reports/prepare_model/metrics.json (the base model the caveats name), params.yaml[compare]
outs:  reports/compare/{metrics.json, table.md, README.md, plots/*.png}
cmd:   python -m stages.compare

Arms are compared on the same test samples (paired by id): the accuracy difference with its paired bootstrap CI,
the paired bootstrap and sign-flip permutation p-values, and the exact McNemar test on the 0/1 outcomes.
Training time per arm is what it cost to produce it: SFT wall time, plus GRPO wall time for the GRPO arms.
Everything random draws from one `np.random.Generator(seed)`; reruns give the same bytes (plots aside).
This module reads the reports and writes the outputs; the statistics are `scalevlm.core.comparison`, the
Markdown and prose `scalevlm.report.compare_md`, the plots `scalevlm.report.compare_plots`.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from scalevlm.claims import Interval, verdicts
from scalevlm.config import Checked, NonNegativeInt, PositiveInt, Problems, Range, config_dataclass
from scalevlm.core.comparison import arm_table, majority_accuracy, paired_tests, shared_ids
from scalevlm.errors import MissingInputError
from scalevlm.evaluation.benchmarks.report import compare_benchmarks
from scalevlm.evaluation.benchmarks.report import markdown as benchmark_markdown
from scalevlm.facts import (
    ARMS,
    CLAIM_PAIRS,
    COMPARE_REPORT,
    CURVES,
    INITS,
    METHODS,
    METRICS,
    MISSING_PAIR,
    PAIRS,
    PAPER_METRICS,
    PREDICTIONS,
    PREPARE,
    STUDY_REPORTS,
    TIME_RATIO,
    TRAIN_GRPO,
    TRAIN_SFT,
    arm,
    eval_report,
    report_dir,
)
from scalevlm.guard import atomic_dir
from scalevlm.records import read_jsonl
from scalevlm.report.compare_md import RunFacts, claim_lines, differences, markdown_table, readme
from scalevlm.report.compare_plots import plot_all
from scalevlm.runtime import stage_main, write_json
from scalevlm.study import claims_markdown

NAME = "compare"
log = logging.getLogger(NAME)


@config_dataclass
class Config(Checked):
    n_resamples: PositiveInt
    seed: NonNegativeInt
    alpha: Annotated[float, Range(gt=0, lt=1)]  # the arms and the pairs compared are facts (scalevlm.facts)
    # a committed multi-seed study (reports/study/<name>/, flows.sweep) whose seed-level claim verdicts the README
    # quotes beside this run's; None: none. dvc.yaml makes reports/study a dep, so a new study re-runs compare.
    study: str | None = None

    def check(self) -> Problems:
        if self.study is not None and (not self.study or "/" in self.study or self.study.startswith(".")):
            yield "study", f"the name of a folder under {STUDY_REPORTS}/ (a sweep's name), or null; got {self.study!r}"


# Inputs -----------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MissingInputError(f"{path} is missing; run the stage that writes it first (dvc repro {NAME} runs them)")
    return json.loads(path.read_text(encoding="utf-8"))


def _wall_time(metrics: dict[str, Any]) -> float | None:
    """`wall_time_s` of a train stage's metrics.json (both train stages write it), None when absent."""
    value = metrics.get("wall_time_s")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def load_arms(root: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, dict[str, Any]]]]:
    """(metrics by arm, predictions by arm keyed by sample id)."""
    metrics, preds = {}, {}
    for name in ARMS:
        folder = root / eval_report(name)
        metrics[name] = _read_json(folder / METRICS)
        preds[name] = {row["id"]: row for _, row in read_jsonl(folder / PREDICTIONS)}
    return metrics, preds


def training_times(root: Path) -> dict[str, float | None]:
    """Wall time per arm: SFT for sft-*, SFT + GRPO (from that SFT model) for grpo-*; None if unknown."""
    sft = {m: _wall_time(_read_json(root / report_dir(TRAIN_SFT, m) / METRICS)) for m in METHODS}
    grpo = {m: _wall_time(_read_json(root / report_dir(TRAIN_GRPO, m) / METRICS)) for m in INITS}
    times: dict[str, float | None] = {}
    for method in METHODS:
        times[arm("sft", method)] = sft[method]
        s, g = sft[method], grpo[method]
        times[arm("grpo", method)] = s + g if s is not None and g is not None else None
        times[f"grpo-only-{method}"] = g
    return times


def grpo_runs(root: Path) -> dict[str, dict[str, Any]]:
    """Per GRPO init: steps run, how the run ended (held-out plateau, the max_steps cap) and its held-out accuracy."""
    out = {}
    for init in INITS:
        m = _read_json(root / report_dir(TRAIN_GRPO, init) / METRICS)
        held = m.get("heldout") or {}
        out[init] = {"steps": m.get("steps"), "stopped_at_plateau": held.get("stopped_at_plateau"),
                     "restored_step": held.get("restored_step"),
                     "heldout_first": (held.get("first") or {}).get("accuracy"),
                     "heldout_best": (held.get("best") or {}).get("accuracy"), "heldout_records": held.get("records")}
    return out


def read_curves(report: Path) -> dict[str, tuple[list[float], list[float]]]:
    """Every DVCLive scalar series under the report folder's `dvclive/plots/metrics` as name -> (steps, values)."""
    curves: dict[str, tuple[list[float], list[float]]] = {}
    base = report / CURVES
    for tsv in sorted(base.rglob("*.tsv")) if base.is_dir() else []:
        with tsv.open(encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        column = tsv.stem
        if rows and column in rows[0]:
            curves[tsv.relative_to(base).with_suffix("").as_posix()] = (
                [float(r["step"]) for r in rows], [float(r[column]) for r in rows])
    return curves


def majority_baseline(root: Path, ids: list[str]) -> float | None:
    """Chance level: accuracy of always answering the most frequent training answer, on the compared samples."""
    from scalevlm.validation import load_split

    try:
        train, test = load_split(root, "train"), load_split(root, "test")
    except FileNotFoundError:
        return None
    wanted = set(ids)
    return majority_accuracy([r.answer for r in train], [r.answer for r in test if r.id in wanted])


def run_facts(root: Path, metrics: dict[str, dict[str, Any]], bench: dict[str, Any]) -> RunFacts:
    """What the caveats say the run is: prepare_model's report (when it is missing, a warning and a caveat saying
    the model is unknown: the numbers do not need it), the test sources, the compared benchmarks."""
    path = root / report_dir(PREPARE) / METRICS
    model = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if not model:
        log.warning("%s is missing: the report cannot say which model these numbers are for", path)
    return RunFacts(model_source=model.get("source"), model_class=model.get("model_class"),
                    parameters=model.get("parameters"),
                    test_sources=tuple(sorted({s for m in metrics.values() for s in m.get("by_source", {})})),
                    benchmarks=tuple(bench.get("benchmarks", {})))


def study_verdicts(root: Path, name: str | None) -> str | None:
    """The committed study's seed-level verdicts on the paper's claims, as markdown (None without a study)."""
    if name is None:
        return None
    path = STUDY_REPORTS / name / "study.json"
    if not (root / path).is_file():
        raise MissingInputError(f"compare.study: {path} is missing; run `python -m flows.sweep sweeps/<spec>.yaml` for "
                                f"a sweep named {name!r}, or set compare.study to null")
    result = json.loads((root / path).read_text(encoding="utf-8"))
    if not result.get("claims"):
        raise MissingInputError(f"compare.study: {path} has no claim verdicts (a study of both SFT arms over seeds has "
                                "them; an ablation of one arm does not); name such a study or set compare.study to "
                                "null")
    return claims_markdown(result).replace("## The paper's claims at seed level",
                                           f"## The paper's claims at seed level (`{path.parent}/`, not this run)", 1)


def missing_answer_tests(preds: dict[str, dict[str, dict[str, Any]]], ids: list[str],
                         metrics: dict[str, dict[str, Any]],
                         rng: np.random.Generator, n_resamples: int) -> dict[str, dict[str, Any]]:
    """The paper's fourth claim: per generation budget evaluate measured (`missing_answer_at`), the paired test of
    "has not opened `<answer>` within b tokens", SCALe-SFT vs vanilla SFT; without budgets, the plain missing-tag test
    at evaluate's max_new_tokens."""
    a, b = MISSING_PAIR
    budgets = sorted(set(metrics[a].get("missing_answer_at") or {}) & set(metrics[b].get("missing_answer_at") or {}),
                     key=int)
    names = {x: f"missing_answer@{x}" for x in budgets} or {"max_new_tokens": "missing_answer"}
    return {x: paired_tests(preds, ids, [MISSING_PAIR], rng, n_resamples, name=name)[0] for x, name in names.items()}


# Stage ------------------------------------------------------------------------------------------------------


def run(cfg: Config, root: Path) -> dict[str, Any]:
    metrics, preds = load_arms(root)
    ids, dropped = shared_ids(preds)
    if dropped:
        log.warning("samples not present in every arm are left out of the paired comparison: %s", dropped)
    if not ids:
        raise ValueError("the arms share no test sample ids; evaluate them on the same test split")
    rng = np.random.default_rng(cfg.seed)
    times = training_times(root)
    table = arm_table(metrics, preds, ids, times, rng, cfg.n_resamples, PAPER_METRICS)
    tests = paired_tests(preds, ids, PAIRS, rng, cfg.n_resamples)
    by_pair = {(t["a"], t["b"]): t for t in tests}
    missing = tuple(pair for pair in CLAIM_PAIRS if pair not in by_pair)  # claims need them; the table does not
    by_pair.update({(t["a"], t["b"]): t for t in paired_tests(preds, ids, missing, rng, cfg.n_resamples)})
    missing_tests = missing_answer_tests(preds, ids, metrics, rng, cfg.n_resamples)
    s, v = (times.get(a) for a in TIME_RATIO)
    ratio = s / v if s is not None and v else None
    out = root / COMPARE_REPORT
    curves = {m: read_curves(root / report_dir(TRAIN_SFT, m)) for m in METHODS}
    never = all(t["a_only"] == 0 and t["b_only"] == 0 and t["diff"] == 0 for t in missing_tests.values())
    found = verdicts(differences(list(by_pair.values())), None if ratio is None else Interval(ratio, ratio, ratio),
                     {b: differences([t])[MISSING_PAIR] for b, t in missing_tests.items()}, never)
    claim_text = claim_lines(found)
    chance = majority_baseline(root, ids)
    grpo = grpo_runs(root)
    summary = {"n": len(ids), "chance_majority_answer": chance, "arms": table, "tests": tests, "grpo_runs": grpo,
               "missing_answer_tests": missing_tests, "claims": [v.to_dict() for v in found], "train_time_s": times,
               "time_ratio_scale_sft_over_sft_plus_grpo": ratio, "left_out_samples": dropped}
    bench = compare_benchmarks(root, cfg.seed, cfg.n_resamples)  # ScienceQA/IconQA rows; {} when none were evaluated
    if bench:
        summary["benchmarks"] = bench
    facts = run_facts(root, metrics, bench)
    seed_level = study_verdicts(root, cfg.study)
    with atomic_dir(out) as staging:  # the previous report stays whole until this one is
        plots = plot_all(staging / "plots", table, preds, ids, curves, chance)
        write_json(staging / METRICS, summary)
        (staging / "table.md").write_text(markdown_table(table, tests, ratio) + benchmark_markdown(bench),
                                          encoding="utf-8")
        (staging / "README.md").write_text(readme(table, tests, claim_text, metrics, times, ratio, cfg.alpha, chance,
                                                  facts, grpo, seed_level, cfg.study)
                                           + benchmark_markdown(bench), encoding="utf-8")
    log.info("compared %d arms on %d samples; plots %s", len(ARMS), len(ids), plots)
    return {"n": len(ids), "accuracy": {a: table[a]["accuracy"] for a in ARMS}, "time_ratio": ratio}


def main(argv: list[str] | None = None) -> int:
    return stage_main(NAME, Config, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
