"""train_sft: supervised fine-tuning of the prepared model, vanilla or SCALe (a dvc.yaml matrix over `method`).

deps:  models/prepare_model, data/validate_segments (train split), src/scalevlm/training, src/scalevlm/core,
       params.yaml[train_sft]
outs:  models/train_sft/<method>/ (model, processor, provenance.json; checkpoints/ while a run is in progress),
       reports/train_sft/<method>/metrics.json (wall time, tokens/s, final losses, weights),
       reports/train_sft/<method>/dvclive/ (per-step curves for `dvc plots show`)
cmd:   python -m stages.train_sft --method {vanilla|scale}
       accelerate launch --config_file configs/accelerate/ddp.yaml -m stages.train_sft --method scale

vanilla: TRL's token-mean cross-entropy over the completion tokens. scale: SCALe (core/scale_loss.py) with the
`scale:` schedule and normalisation. Everything else (data, steps, optimiser, seed) is shared by both arms.
`models/train_sft/<method>` is a persistent DVC output so that an interrupted run can resume (`resume: true`)
from its newest checkpoint; a finished run leaves only the final model (unless `keep_checkpoints: true`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from scalevlm.errors import MissingInputError
from scalevlm.facts import BASE_MODEL, DVCLIVE, LOG_HISTORY, METHODS, METRICS, SCALE, model_dir, report_dir
from scalevlm.provenance import write_provenance
from scalevlm.runtime import matrix_main, write_json
from scalevlm.training.sft import SFTPaths, SFTSettings, run_sft
from scalevlm.validation import read_split

NAME = "train_sft"
log = logging.getLogger(NAME)

Config = SFTSettings  # params.yaml[train_sft]; defined in the library so the benchmark and tests share it


def run(cfg: Config, root: Path, method: str = SCALE) -> dict[str, Any]:
    if method not in METHODS:
        raise ValueError(f"--method {method!r} is not one of {list(METHODS)}")
    base = root / BASE_MODEL
    if not (base / "config.json").is_file():
        raise MissingInputError(f"no prepared model at {base}; run `dvc repro prepare_model` first")
    records = read_split(root, "train", cfg.train_limit)
    paths = SFTPaths(
        root=root,
        base_model=base,
        model_out=root / model_dir(NAME, method),
        live_dir=root / report_dir(NAME, method) / DVCLIVE,
    )
    summary, history = run_sft(cfg, method, paths, records)
    from accelerate import PartialState

    if PartialState().is_main_process:
        write_provenance(paths.model_out, NAME, cfg, root,
                         {"method": method, "base_model": str(BASE_MODEL), "summary": summary})
        write_json(root / report_dir(NAME, method) / METRICS, summary)
        write_json(root / report_dir(NAME, method) / LOG_HISTORY, history)
    return summary


def main(argv: list[str] | None = None) -> int:
    return matrix_main(NAME, Config, run, argv, "--method", METHODS, "the matrix arm: vanilla or scale")


if __name__ == "__main__":
    raise SystemExit(main())
