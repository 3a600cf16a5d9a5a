"""Cross-stage facts, in one place: the stages, the methods and arms they train, the comparisons the reports make,
and every path a stage writes or reads under `data|models|reports/<stage>/<item>`.

Stages, the study, flows and tests import these names instead of spelling them; dvc.yaml cannot import, so
`tests/test_contracts.py` checks it against this module (matrix values, every outs/metrics/plots path, every data
dependency, the registry artifact's path). Paths are relative to the project root; callers join them to `root`.
Pure: no I/O, no imports from the rest of the package.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal, get_args

# Stages: stage `x` = stages/x.py = params.yaml `x:` = dvc.yaml `x` = data|models|reports/x/.
CURATE, VALIDATE, PREPARE = "curate_dataset", "validate_segments", "prepare_model"
TRAIN_SFT, TRAIN_GRPO, EVALUATE, COMPARE, PROMOTE = "train_sft", "train_grpo", "evaluate", "compare", "promote"
STAGES = (CURATE, VALIDATE, PREPARE, TRAIN_SFT, TRAIN_GRPO, EVALUATE, COMPARE, PROMOTE)

# Methods: the SFT loss. `vanilla` = TRL's token mean, `scale` = SCALe. GRPO starts from the SFT model of a method
# (its `init`), so an init is a method name.
Method = Literal["vanilla", "scale"]
METHODS: tuple[str, ...] = get_args(Method)
VANILLA, SCALE = METHODS  # registered in scalevlm.training.methods
INITS = METHODS

# Arms: `<training>-<method>`, the four evaluated models (train_sft@m → sft-m; train_grpo@m → grpo-m).
Training = Literal["sft", "grpo"]
TRAININGS: tuple[str, ...] = get_args(Training)
TRAIN_STAGE = {"sft": TRAIN_SFT, "grpo": TRAIN_GRPO}
Arm = Literal["sft-vanilla", "sft-scale", "grpo-vanilla", "grpo-scale"]  # spelled out for type checkers and the
ARMS: tuple[str, ...] = get_args(Arm)  # configs' Literal checks; equal to every training × method (tested)
SFT_VANILLA, SFT_SCALE, GRPO_VANILLA, GRPO_SCALE = ARMS  # the only spelling of an arm (tests/test_contracts.py)
SFT_ARMS: tuple[str, ...] = (SFT_VANILLA, SFT_SCALE)


def arm(training: str, method: str) -> str:
    return f"{training}-{method}"


def arm_parts(name: str) -> tuple[str, str]:
    """`grpo-scale` → ("grpo", "scale"); ValueError for a name that is not an arm."""
    if name not in ARMS:
        raise ValueError(f"unknown arm {name!r}; arms are {list(ARMS)}")
    training, method = name.split("-", 1)
    return training, method


# prepare_model.name_or_path that builds the offline tiny model (any other value is a hub id or a local folder);
# prepare_model's report names it as its `source`, which compare's caveats read.
TINY_MODEL = "tiny"
# curate_dataset's offline generators (scalevlm.sources.synthetic): a record's `source` is its curate source's name.
GENERATED_SOURCES: tuple[str, ...] = ("synthetic", "r1grid", "digits")

# dvc.yaml matrices: stage → {matrix key: values}; an item of a matrix stage is one combination.
MATRIX: dict[str, dict[str, tuple[str, ...]]] = {
    TRAIN_SFT: {"method": METHODS},
    TRAIN_GRPO: {"init": INITS},
    EVALUATE: {"train": TRAININGS, "method": METHODS},
}

# Comparisons, a vs b (difference = a − b). The paired tests of the four-arm report and of the multi-seed study:
# SCALe vs vanilla after SFT and after GRPO, SCALe-SFT vs the vanilla SFT + GRPO baseline (the paper's cost
# claim), then what GRPO adds to each method.
METHOD_PAIRS: tuple[tuple[str, str], ...] = (
    (SFT_SCALE, SFT_VANILLA), (GRPO_SCALE, GRPO_VANILLA), (SFT_SCALE, GRPO_VANILLA))
GRPO_PAIRS: tuple[tuple[str, str], ...] = ((GRPO_VANILLA, SFT_VANILLA), (GRPO_SCALE, SFT_SCALE))
PAIRS = METHOD_PAIRS + GRPO_PAIRS  # compare's table; the study (seed-level) reports METHOD_PAIRS
# promote.candidate: an arm, or the rule that picks one (the most accurate arm that passes the gate's rules)
BEST_PASSING = "best_passing"

# The paper's three claims, and the pairs that check them: SCALe-SFT beats vanilla SFT; SCALe-SFT matches
# vanilla SFT + GRPO; SCALe + GRPO is the best arm (against each other arm).
CLAIM_ARM = GRPO_SCALE
CLAIM_PAIRS: tuple[tuple[str, str], ...] = (
    (SFT_SCALE, SFT_VANILLA), (SFT_SCALE, GRPO_VANILLA), *((CLAIM_ARM, a) for a in ARMS if a != CLAIM_ARM))
MISSING_PAIR = (SFT_SCALE, SFT_VANILLA)  # the fourth claim: fewer outputs without <answer>
TIME_RATIO = (SFT_SCALE, GRPO_VANILLA)  # claim 2's cost: SCALe-SFT time / the time of vanilla SFT + its GRPO

# evaluate's metrics beyond accuracy that the reports carry per arm (compare) and aggregate over seeds (study)
PAPER_METRICS: tuple[str, ...] = (
    "think_correct_rate", "p_answer_given_think_correct", "answer_think_consistency", "think_verbosity",
    "reference_think_tokens_mean", "reference_answer_ce", "reference_think_ce", "max_new_tokens")
SEED_METRICS: tuple[str, ...] = (
    "format_compliance", "missing_answer_rate", "think_correct_rate", "p_answer_given_think_correct",
    "answer_think_consistency", "think_verbosity", "reference_answer_ce")

# Paths -----------------------------------------------------------------------------------------------------------
DATA, MODELS, REPORTS = Path("data"), Path("models"), Path("reports")
METRICS = "metrics.json"  # every stage's scalar report, reports/<stage>[/<item>]/metrics.json
PREDICTIONS = "predictions.jsonl"
# reports/evaluate/<arm>/benchmarks/: index.json and <benchmark>/ (scalevlm.evaluation.benchmarks)
BENCHMARKS = "benchmarks"
LOG_HISTORY = "log_history.json"
DVCLIVE = "dvclive"
CURVES = Path(DVCLIVE) / "plots" / "metrics"  # DVCLive's per-step scalars under a report folder (dvc plots)

LOCAL_DATA = DATA / "local"  # user JSONL files (curate_dataset.sources.local), a DVC-tracked input
CURATED = DATA / CURATE  # records.jsonl, dropped.jsonl, images/ (content-addressed)
CURATED_RECORDS = CURATED / "records.jsonl"
CURATED_IMAGES = CURATED / "images"
VALIDATED = DATA / VALIDATE  # {train,val,test,rejected}.jsonl; image paths relative to the project root
REJECTED = VALIDATED / "rejected.jsonl"
VALIDATION_DOCS = REPORTS / VALIDATE / "data_docs"
VALIDATION_GX = REPORTS / VALIDATE / "gx_results.json"
BASE_MODEL = MODELS / PREPARE
COMPARE_REPORT = REPORTS / COMPARE
PROMOTED_MODEL = MODELS / PROMOTE  # the model promote chose, copied: the registry artifact's path in dvc.yaml
PROMOTE_DECISION = REPORTS / PROMOTE / "decision.json"
PROMOTE_CANDIDATE = REPORTS / PROMOTE / "candidate.json"
STUDY_REPORTS = REPORTS / "study"  # reports/study/<sweep name>/ (flows.sweep; compare quotes one: compare.study)


def split_file(split: str) -> Path:
    """data/validate_segments/<split>.jsonl."""
    return VALIDATED / f"{split}.jsonl"


def model_dir(stage: str, item: str | None = None) -> Path:
    """models/<stage>[/<item>]."""
    return MODELS / stage / item if item else MODELS / stage


def report_dir(stage: str, item: str | None = None) -> Path:
    """reports/<stage>[/<item>]."""
    return REPORTS / stage / item if item else REPORTS / stage


def arm_model(name: str) -> Path:
    """The model an arm evaluates: models/train_<training>/<method>."""
    training, method = arm_parts(name)
    return model_dir(TRAIN_STAGE[training], method)


def eval_report(name: str) -> Path:
    """reports/evaluate/<arm>/ (metrics.json, predictions.jsonl)."""
    arm_parts(name)
    return report_dir(EVALUATE, name)


# What dvc.yaml declares per stage (item: one matrix combination) ------------------------------------------------


def outputs(stage: str, item: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """Every outs/metrics/plots path of the stage (of one matrix item)."""
    it = dict(item or {})
    if stage == CURATE:
        return CURATED, report_dir(CURATE) / METRICS
    if stage == VALIDATE:
        return VALIDATED, VALIDATION_DOCS, VALIDATION_GX, report_dir(VALIDATE) / METRICS
    if stage == PREPARE:
        return BASE_MODEL, report_dir(PREPARE) / METRICS
    if stage == TRAIN_SFT:
        m = it["method"]
        return (model_dir(TRAIN_SFT, m), report_dir(TRAIN_SFT, m) / LOG_HISTORY, report_dir(TRAIN_SFT, m) / DVCLIVE,
                report_dir(TRAIN_SFT, m) / METRICS)
    if stage == TRAIN_GRPO:
        i = it["init"]
        return model_dir(TRAIN_GRPO, i), report_dir(TRAIN_GRPO, i) / DVCLIVE, report_dir(TRAIN_GRPO, i) / METRICS
    if stage == EVALUATE:
        folder = eval_report(arm(it["train"], it["method"]))
        return folder / PREDICTIONS, folder / METRICS, folder / BENCHMARKS
    if stage == COMPARE:
        return (COMPARE_REPORT / "README.md", COMPARE_REPORT / "table.md", COMPARE_REPORT / METRICS,
                COMPARE_REPORT / "plots")
    if stage == PROMOTE:
        return PROMOTED_MODEL, PROMOTE_DECISION, PROMOTE_CANDIDATE
    raise ValueError(f"unknown stage {stage!r}; stages are {list(STAGES)}")


def inputs(stage: str, item: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """Every data dependency of the stage (of one matrix item): other stages' outputs and user data; code deps
    are generated from import closures (tools/stage_deps.py)."""
    it = dict(item or {})
    train, test = split_file("train"), split_file("test")
    if stage == CURATE:
        return (LOCAL_DATA,)
    if stage == VALIDATE:
        return (CURATED,)
    if stage == PREPARE:
        return train, CURATED_IMAGES  # images: the perception pre-training leaves every curated image out
    if stage == TRAIN_SFT:
        return BASE_MODEL, train, CURATED_IMAGES
    if stage == TRAIN_GRPO:
        return model_dir(TRAIN_SFT, it["init"]), train, CURATED_IMAGES
    if stage == EVALUATE:
        return arm_model(arm(it["train"], it["method"])), test, CURATED_IMAGES, LOCAL_DATA  # benchmark copies
    if stage == COMPARE:
        return (train, test, report_dir(PREPARE) / METRICS,  # the base model, named in the caveats
                STUDY_REPORTS,  # compare.study: a committed study's seed-level verdicts
                *(eval_report(a) / PREDICTIONS for a in ARMS), *(eval_report(a) / METRICS for a in ARMS),
                *(eval_report(a) / BENCHMARKS for a in ARMS),
                *(report_dir(TRAIN_SFT, m) / METRICS for m in METHODS),
                *(report_dir(TRAIN_SFT, m) / CURVES for m in METHODS),
                *(report_dir(TRAIN_GRPO, i) / METRICS for i in INITS))
    if stage == PROMOTE:  # every arm: promote.candidate may be a rule that picks among them
        return tuple(p for a in ARMS for p in (eval_report(a) / METRICS, eval_report(a) / PREDICTIONS, arm_model(a)))
    raise ValueError(f"unknown stage {stage!r}; stages are {list(STAGES)}")
