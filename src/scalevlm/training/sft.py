"""SFT: typed settings (params.yaml `train_sft`), their translation to TRL's `SFTConfig` / peft's `LoraConfig`,
and one run end to end: load the base model, build the trainer, train (resuming when allowed), save, summarise.
(GRPO is `scalevlm.training.grpo`, the same shape.)

`batch_size` is the GLOBAL number of samples per optimizer step; the per-device micro-batch is derived from it,
the gradient-accumulation steps and the number of processes, so the same params give the same optimisation on
one CPU, under gradient accumulation, or under `accelerate launch` on N devices. Works in a single process and
under `accelerate launch` (DDP, FSDP, DeepSpeed): only the main process deletes or writes outputs; every process
trains.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch

from scalevlm.config import (
    Checked,
    ConfigError,
    Fraction,
    NonEmpty,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Problems,
    Text,
    config_dataclass,
    to_dict,
)
from scalevlm.records import Record
from scalevlm.runtime import set_torch_threads
from scalevlm.training.checkpoints import begin_run, fingerprint, publish_model, staging_folder
from scalevlm.training.config import LrScheduler, ScaleSettings, freeze_vision, load_dtype, use_bf16

log = logging.getLogger(__name__)
# the values each progress line shows (those the trainer logged: SCALe's weights only for SCALe)
PROGRESS_KEYS = ("loss", "loss_think", "loss_answer", "w_think", "learning_rate")


@config_dataclass
class LoraSettings(Checked):
    enabled: bool
    r: PositiveInt
    alpha: PositiveInt
    dropout: Fraction
    target_modules: Annotated[tuple[Text, ...], NonEmpty()]


@config_dataclass
class SFTSettings(Checked):
    """One SFT run (both methods share everything but the loss)."""

    seed: NonNegativeInt
    max_steps: PositiveInt
    batch_size: PositiveInt  # global samples per optimizer step
    grad_accum: PositiveInt
    learning_rate: PositiveFloat
    lr_scheduler: LrScheduler
    warmup_ratio: Fraction
    max_grad_norm: NonNegativeFloat  # 0 = no clipping
    weight_decay: NonNegativeFloat
    adam_beta1: Fraction
    adam_beta2: Fraction
    max_length: PositiveInt | None  # token truncation of prompt+completion; None = never truncate
    dtype: Literal["auto", "float32", "bfloat16"]  # auto: bfloat16 on a CUDA device that supports it, else float32
    gradient_checkpointing: bool
    logging_steps: PositiveInt
    save_steps: NonNegativeInt  # 0 = no intermediate checkpoints
    resume: bool  # resume from the newest checkpoint of an interrupted run with the same settings
    keep_checkpoints: bool  # keep checkpoints after a successful run (they are large for real models)
    dataloader_workers: NonNegativeInt
    torch_threads: NonNegativeInt  # intra-op CPU threads; 0 = torch's default. 1 suits tiny models on a shared CPU
    train_limit: PositiveInt | None  # use only the first N training records (by id); None = all
    freeze_vision: bool  # keep the vision tower and projector fixed (`freeze_vision`); the language model trains
    scale: ScaleSettings
    lora: LoraSettings

    def check(self) -> Problems:
        if self.batch_size % self.grad_accum:
            yield "batch_size", f"{self.batch_size} must be divisible by grad_accum {self.grad_accum}"

    def validate(self, world_size: int = 1) -> None:
        """The rule that needs the process count: each process gets batch_size / (grad_accum × processes)."""
        if self.batch_size % (self.grad_accum * world_size):
            raise ConfigError(f"train_sft.batch_size: {self.batch_size} must be divisible by grad_accum "
                              f"{self.grad_accum} × processes {world_size}")

    def fingerprint(self, method: str) -> str:
        """Hash of everything that shapes the optimisation trajectory (a checkpoint is resumed only if equal)."""
        ignored = ("resume", "keep_checkpoints", "logging_steps", "torch_threads", "dataloader_workers")
        payload = {k: v for k, v in to_dict(self).items() if k not in ignored}
        return hashlib.sha256(json.dumps([method, payload], sort_keys=True).encode()).hexdigest()[:16]


def sft_config(cfg: SFTSettings, output_dir: Path, world_size: int) -> Any:
    """Translate our settings to TRL's `SFTConfig` (reporting is done by our own callback, not `report_to`)."""
    from trl import SFTConfig

    cfg.validate(world_size)
    on_cuda = torch.cuda.is_available()
    return SFTConfig(
        output_dir=str(output_dir),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size // (cfg.grad_accum * world_size),
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=int(round(cfg.warmup_ratio * cfg.max_steps)),
        max_grad_norm=cfg.max_grad_norm,
        weight_decay=cfg.weight_decay,
        optim="adamw_torch",
        adam_beta1=cfg.adam_beta1,
        adam_beta2=cfg.adam_beta2,
        max_length=cfg.max_length,
        use_cpu=not on_cuda,
        bf16=use_bf16(cfg.dtype),
        fp16=False,
        gradient_checkpointing=cfg.gradient_checkpointing,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="steps" if cfg.save_steps > 0 else "no",
        save_steps=max(cfg.save_steps, 1),
        # checkpoints.CheckpointCallback keeps the newest, deleting older ones only once it is complete
        save_total_limit=None,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=cfg.dataloader_workers,
        average_tokens_across_devices=True,
        ddp_find_unused_parameters=False,
    )


def lora_target_modules(names: tuple[str, ...] | list[str]) -> str:
    """peft `target_modules` (a full-match regex) for the projections `names` of the LANGUAGE MODEL only.

    The vision towers use the same names (CLIP in LLaVA-NeXT and SigLIP in Gemma-3 have q_proj/k_proj/v_proj), so
    plain names would adapt them too. transformers' VLM classes (Qwen2-VL, Qwen2.5-VL, LLaVA-NeXT, Gemma-3) keep the
    text decoder under `language_model` (e.g. `model.language_model.layers.0.self_attn.q_proj`), the towers under
    `visual` / `vision_tower`: the scope is the same for every family.
    """
    alternatives = "|".join(re.escape(n) for n in names)
    return rf"(?:.*\.)?language_model\.(?:.*\.)?(?:{alternatives})"


def lora_config(cfg: LoraSettings) -> Any | None:
    """peft `LoraConfig` for the language model's projections (`lora_target_modules`), or None when LoRA is off."""
    if not cfg.enabled:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=lora_target_modules(cfg.target_modules), task_type="CAUSAL_LM")


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
    from transformers import PrinterCallback, set_seed

    from scalevlm.modeling import load_model_and_processor
    from scalevlm.modeling.loader import load_processor
    from scalevlm.training.data import longest_prompt, sft_dataset
    from scalevlm.training.trainer import CheckpointCallback, ProgressCallback, SCALeSFTTrainer, StepDVCLiveCallback

    # cpu=True on CPU-only machines, as TrainingArguments(use_cpu=True) would: under torchrun (WORLD_SIZE > 1) this
    # selects MULTI_CPU with the gloo backend; created first, it is the state the Trainer then shares.
    state = PartialState(cpu=not torch.cuda.is_available())
    world_size = state.num_processes
    cfg.validate(world_size)
    if cfg.max_length is not None:  # before any output is touched or the model loads
        tokens, record = longest_prompt(load_processor(str(paths.base_model)), paths.root, records)
        if tokens >= cfg.max_length:
            raise ConfigError(f"train_sft.max_length: {cfg.max_length} would cut the prompt of {record} ({tokens} "
                              f"tokens, its image tokens included) and with it the image: set it above {tokens} "
                              "plus the completion, or null")
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
    trainer.remove_callback(PrinterCallback)  # ProgressCallback prints the logs as progress lines
    trainer.add_callback(ProgressCallback(f"train_sft[{method}]", PROGRESS_KEYS))
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
