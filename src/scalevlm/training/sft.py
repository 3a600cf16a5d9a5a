"""One SFT run end to end: load the base model, build the trainer, train (resuming when allowed), save, summarise.

Works in a single process and under `accelerate launch` (DDP, FSDP, DeepSpeed): only the main process deletes or
writes outputs; every process trains.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalevlm.records import Record
from scalevlm.runtime import set_torch_threads
from scalevlm.training.checkpoints import begin_run, fingerprint, publish_model, staging_folder
from scalevlm.training.config import SFTSettings, freeze_vision, load_dtype, lora_config, sft_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SFTPaths:
    root: Path  # project root (validated image paths are relative to it)
    base_model: Path  # folder from prepare_model
    model_out: Path  # final model + processor (+ checkpoints/ while training)
    live_dir: Path  # DVCLive folder (plots for `dvc plots`)


def _last(history: list[dict[str, Any]], key: str) -> float | None:
    values = [h[key] for h in history if key in h and isinstance(h[key], int | float)]
    return float(values[-1]) if values else None


def summarise(trainer: Any, wall_s: float, n_records: int, world_size: int, resumed: Path | None) -> dict[str, Any]:
    """Scalar results of a run (reports/train_sft/<method>/metrics.json)."""
    history = trainer.state.log_history
    steps = int(trainer.state.global_step)
    tokens = int(trainer.train_tokens)
    out: dict[str, Any] = {
        "method": trainer.method,
        "steps": steps,
        "train_records": n_records,
        "world_size": world_size,
        "resumed_from": resumed.name if resumed else None,
        "wall_time_s": round(wall_s, 2),
        "steps_per_s": round(steps / wall_s, 3) if wall_s > 0 else None,
        "train_tokens": tokens,
        "tokens_per_s": round(tokens / wall_s, 1) if wall_s > 0 else None,
        "train_loss_mean": _last(history, "train_loss"),
    }
    for key in ("loss", "loss_think", "loss_answer", "w_think", "w_ans", "mean_token_accuracy", "think_tokens",
                "answer_tokens"):
        value = _last(history, key)
        out[f"final_{key}"] = None if value is None or math.isnan(value) else round(value, 6)
    return out


def save_final(trainer: Any, processor: Any, out: Path, lora: bool) -> None:
    """Save a plain (LoRA-merged) model + processor that `load_model_and_processor(out)` loads."""
    from scalevlm.modeling import save_model_and_processor

    if lora:
        if trainer.accelerator.is_main_process:
            merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
            save_model_and_processor(merged, processor, out)
    else:
        trainer.save_model(str(out))  # gathers ZeRO-3 / FSDP shards; writes on the main process only
    if trainer.accelerator.is_main_process:
        (out / "training_args.bin").unlink(missing_ok=True)  # a pickle; the settings are in provenance.json


def run_sft(cfg: SFTSettings, method: str, paths: SFTPaths,
            records: Sequence[Record]) -> tuple[dict[str, Any], list[dict]]:
    """Train `method` on `records`; returns (summary, log history). Outputs are written on the main process."""
    import torch
    from accelerate import PartialState
    from transformers import set_seed

    from scalevlm.modeling import load_model_and_processor
    from scalevlm.training.data import sft_dataset
    from scalevlm.training.trainer import CheckpointCallback, SCALeSFTTrainer, StepDVCLiveCallback

    # cpu=True on CPU-only machines, as TrainingArguments(use_cpu=True) would: under torchrun (WORLD_SIZE > 1) this
    # selects MULTI_CPU with the gloo backend; created first, it is the state the Trainer then shares.
    state = PartialState(cpu=not torch.cuda.is_available())
    world_size = state.num_processes
    cfg.validate(world_size)
    run_fingerprint = fingerprint({"train_sft": cfg.fingerprint(method)}, paths.base_model, records)
    ckpt_dir, resume = begin_run(state, paths.model_out, (paths.live_dir,), run_fingerprint, cfg.resume)

    if not torch.cuda.is_available():
        set_torch_threads(cfg.torch_threads)
    set_seed(cfg.seed)
    model, processor = load_model_and_processor(paths.base_model, dtype=load_dtype(cfg.dtype))
    if cfg.freeze_vision:
        log.info("train_sft[%s]: vision frozen (%d parameters)", method, freeze_vision(model))
    dataset = sft_dataset(paths.root, records)
    trainer = SCALeSFTTrainer(
        model=model,
        args=sft_config(cfg, ckpt_dir, world_size),
        train_dataset=dataset,
        processing_class=processor,
        peft_config=lora_config(cfg.lora),
        callbacks=[StepDVCLiveCallback(paths.live_dir, resume=resume is not None), CheckpointCallback()],
        method=method,
        scale=cfg.scale,
    )
    log.info("train_sft[%s]: %d records, %d steps, world size %d%s", method, len(records), cfg.max_steps, world_size,
             f", resuming {resume}" if resume else "")
    start = time.perf_counter()
    trainer.train_or_resume(resume)
    wall = time.perf_counter() - start
    save_final(trainer, processor, staging_folder(paths.model_out), cfg.lora.enabled)  # every rank takes part
    state.wait_for_everyone()
    if state.is_main_process:
        publish_model(paths.model_out, cfg.keep_checkpoints)  # the previous model stays until this one is whole
        (paths.live_dir / "metrics.json").unlink(missing_ok=True)  # duplicate of the stage's metrics.json
    return summarise(trainer, wall, len(records), world_size, resume), json.loads(json.dumps(trainer.state.log_history))
