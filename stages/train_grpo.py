"""train_grpo (× init): TRL GRPOTrainer from an SFT model, rewarded by the segment rule and answer matching.

deps:  models/train_sft/<init>/, data/validate_segments/train.jsonl (+ images), src/scalevlm/training,
       src/scalevlm/core/rewards.py, params.yaml[train_grpo]
outs:  models/train_grpo/<init>/ (weights, processor, provenance.json; checkpoints/ while a run is in progress),
       reports/train_grpo/<init>/metrics.json (wall time, reward means), reports/train_grpo/<init>/dvclive/ (curves)
cmd:   python -m stages.train_grpo --init <vanilla|scale>

The run (rewards, dataset, trainer, resume) is `scalevlm.training.grpo.run_grpo`, the settings and their
translation to TRL are there too (`GRPOSettings`, `grpo_config`): the shape of SFT's library code.
`models/train_grpo/<init>` is a persistent DVC output so that an interrupted run can resume (`resume: true`)
from its newest complete checkpoint; a finished run leaves only the final model (unless `keep_checkpoints: true`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from scalevlm.errors import MissingInputError
from scalevlm.facts import DVCLIVE, INITS, METRICS, TRAIN_SFT, model_dir, report_dir
from scalevlm.runtime import matrix_main, write_json
from scalevlm.training.grpo import GRPOSettings

NAME = "train_grpo"
log = logging.getLogger(NAME)

Config = GRPOSettings  # params.yaml[train_grpo]; defined in the library, as SFT's settings are


def run(cfg: Config, root: Path, init: str) -> dict[str, Any]:
    """GRPO from models/train_sft/<init>; rewrites models/train_grpo/<init> and reports/train_grpo/<init>, or
    resumes them from the newest complete checkpoint of an interrupted run with the same fingerprint."""
    from accelerate import PartialState

    from scalevlm.training.grpo import GRPOPaths, run_grpo
    from scalevlm.validation import read_split

    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; expected one of {INITS}")
    sft_dir = root / model_dir(TRAIN_SFT, init)
    if not sft_dir.is_dir():
        raise MissingInputError(f"{sft_dir} not found: run `dvc repro train_sft@{init}` first")
    records = read_split(root, "train", cfg.train_limit)
    report = root / report_dir(NAME, init)
    paths = GRPOPaths(root=root, init_model=sft_dir, model_out=root / model_dir(NAME, init), report_dir=report,
                      live_dir=report / DVCLIVE)
    metrics = run_grpo(cfg, init, paths, records, {"init": init, "init_model": model_dir(TRAIN_SFT, init).as_posix()})
    if PartialState().is_main_process:
        write_json(report / METRICS, metrics)
    return {k: metrics[k] for k in ("init", "resumed_from", "wall_time_s", "steps", "rewards")}


def main(argv: list[str] | None = None) -> int:
    return matrix_main(NAME, Config, run, argv, "--init", INITS, "which SFT model to start from")


if __name__ == "__main__":
    raise SystemExit(main())
