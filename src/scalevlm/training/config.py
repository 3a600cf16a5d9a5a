"""Typed SFT settings (params.yaml `train_sft`) and their translation to TRL's `SFTConfig` / peft's `LoraConfig`.
(GRPO's settings, translation and run are `scalevlm.training.grpo`, the same shape in one module.)

`batch_size` is the GLOBAL number of samples per optimizer step; the per-device micro-batch is derived from it,
the gradient-accumulation steps and the number of processes, so the same params give the same optimisation on
one CPU, under gradient accumulation, or under `accelerate launch` on N devices.
"""

from __future__ import annotations

import hashlib
import json
import re
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
    Probability,
    Problems,
    Text,
    to_dict,
)

# transformers schedulers that run with our arguments alone: cosine_with_min_lr, cosine_warmup_with_min_lr and
# warmup_stable_decay need scheduler kwargs we do not pass, reduce_lr_on_plateau needs an evaluation metric, and
# greedy needs both.
LrScheduler = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                      "inverse_sqrt"]


@dataclass(frozen=True)
class ScaleSettings(Checked):
    """SCALe: w_think(p) from `schedule` between w_start (p=0) and w_end (p=1); w_ans = 1 − w_think."""

    schedule: Literal["cosine", "linear", "constant", "step"]
    w_start: Probability
    w_end: Probability
    normalisation: Literal["per_sample", "per_batch"]
    # the segment `</think>` is weighted with (ablation; evaluation keeps "think")
    close_tag: Literal["think", "answer"]
    tags: Literal["segment", "token_mean"]  # tags + end-of-turn: in their segment's mean, or at the token-mean weight


@dataclass(frozen=True)
class HeldOutSettings(Checked):
    """Held-out accuracy over steps (the val split) and the plateau stop (`training.heldout`)."""

    every: PositiveInt  # optimizer steps between evaluations (and one before the first step)
    samples: PositiveInt  # first N val records by id
    batch_size: PositiveInt
    patience: NonNegativeInt  # stop after this many evaluations without a gain above min_delta; 0 = run max_steps
    min_delta: NonNegativeFloat
    restore_best: bool  # end with the weights of the best held-out evaluation (a CPU copy of the model in memory)


@dataclass(frozen=True)
class LoraSettings(Checked):
    enabled: bool
    r: PositiveInt
    alpha: PositiveInt
    dropout: Fraction
    target_modules: Annotated[tuple[Text, ...], NonEmpty()]


@dataclass(frozen=True)
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


def use_bf16(dtype: str) -> bool:
    if dtype == "bfloat16":
        return True
    return dtype == "auto" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


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


def load_dtype(dtype: str) -> str:
    """dtype the base weights are loaded in for training: bf16 on CUDA when training in bf16, else fp32.

    Loading in fp32 and training under bf16 autocast keeps fp32 weights, gradients and Adam moments (16 bytes per
    parameter: 112 GB for a 7B model). Loaded in bf16, full fine-tuning needs 8 bytes/parameter (weights,
    gradients and AdamW moments in bf16) and LoRA ~2 bytes/parameter for the frozen base, while peft keeps the
    adapters, the only weights the optimizer updates, in fp32. On CPU the weights stay fp32.
    """
    return "bfloat16" if use_bf16(dtype) and torch.cuda.is_available() else "float32"


VISION_MODULES = ("visual", "vision_tower", "multi_modal_projector")  # Qwen2(.5)-VL; LLaVA-NeXT and Gemma-3


def freeze_vision(model: Any) -> int:
    """Stop gradients to the vision tower and its projector into the language model (modules named as in
    `VISION_MODULES`, at any depth); returns how many parameters were frozen (0 means the family is unknown)."""
    frozen = 0
    for name, param in model.named_parameters():
        if any(part in VISION_MODULES for part in name.split(".")):
            param.requires_grad_(False)
            frozen += param.numel()
    if not frozen:
        raise ValueError(f"freeze_vision: no parameter of {type(model).__name__} lies under {VISION_MODULES}")
    return frozen


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
