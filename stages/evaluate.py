"""evaluate (× arm): greedy generation on the test split, scored with the repo's `evaluate` metric modules.

deps:  models/<train stage>/<method>/ of the arm (`scalevlm.facts.arm_model`),
       data/validate_segments/test.jsonl (+ images),
       metrics/{answer_accuracy,format_compliance}, params.yaml[evaluate]
       data/local/ (benchmark copies, `evaluate.benchmarks`)
outs:  reports/evaluate/<arm>/{metrics.json, predictions.jsonl, benchmarks/}
cmd:   python -m stages.evaluate --arm <sft-vanilla|sft-scale|grpo-vanilla|grpo-scale>

The work is `scalevlm.evaluation` (`runner.evaluate_model`): generation is batched with left padding and greedy
(`do_sample=False`), so an arm's predictions are a function of its weights; prompt and generation are
`scalevlm.evaluation.generation`'s, shared with `python -m scalevlm.predict`.
Answers are extracted by the segment rule only (a malformed completion has no answer and is wrong).
Token lengths follow the SFT segment rule on the generated ids (up to, not including, end-of-turn): think = from
the first token through `</think>`, answer = everything after; a completion without `</think>` is all think.
Metrics come from `metrics/answer_accuracy` and `metrics/format_compliance` (loaded by path, offline), over all
samples and per source and per answer type.
`evaluate.benchmarks` (empty by default) adds the paper's benchmarks, ScienceQA (image subset) and IconQA, read in
their published layouts and scored as lmms-eval scores them, with the same model and generation settings:
`reports/evaluate/<arm>/benchmarks/` (`scalevlm.evaluation.benchmarks`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from scalevlm.errors import MissingInputError
from scalevlm.evaluation.benchmarks.evaluation import evaluate_benchmarks
from scalevlm.evaluation.benchmarks.sources import open_checked
from scalevlm.evaluation.generation import GenerationOptions
from scalevlm.evaluation.runner import EvaluateSettings, evaluate_model, load_model
from scalevlm.facts import ARMS, BENCHMARKS, METRICS, PREDICTIONS, arm_model, eval_report
from scalevlm.guard import atomic_dir
from scalevlm.modeling.loader import resolve_device
from scalevlm.records import write_jsonl
from scalevlm.runtime import matrix_main, write_json
from scalevlm.validation import read_split

NAME = "evaluate"
Config = EvaluateSettings  # the typed params.yaml[evaluate] section, shared with the registry consumer flow
log = logging.getLogger(NAME)


def run(cfg: Config, root: Path, arm: str) -> dict[str, Any]:
    """Evaluate one arm's model on the test split; rewrites reports/evaluate/<arm>/ completely."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; arms are {list(ARMS)}")
    resolve_device(cfg.device)  # a CUDA device this machine lacks stops the stage before it reads anything
    model_dir = root / arm_model(arm)
    if not model_dir.is_dir():
        raise MissingInputError(f"{model_dir} not found: train the arm first (`dvc repro {NAME}@{arm}` runs its "
                                "stages)")
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
            metrics["benchmarks"] = {name: {k: b[k] for k in ("n", "accuracy", "format_compliance")}
                                     for name, b in bench.items()}
        write_json(staging / METRICS, metrics)
    log.info("%s: accuracy %.3f, format %.3f on %d samples in %.1fs", arm, metrics["accuracy"],
             metrics["format_compliance"], len(rows), metrics["generation_wall_time_s"])
    return {k: metrics[k] for k in ("arm", "n", "accuracy", "format_compliance", "answer_parse_rate",
                                    "generation_wall_time_s")}


def main(argv: list[str] | None = None) -> int:
    return matrix_main(NAME, Config, run, argv, "--arm", ARMS, "which trained model to evaluate")


if __name__ == "__main__":
    raise SystemExit(main())
