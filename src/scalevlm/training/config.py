"""What SFT and GRPO share: the learning-rate schedulers we accept, SCALe's method settings (read by the trainer
through `training.methods`), the held-out plateau settings, the dtype rules and freezing the vision tower.

Each training kind keeps its settings, their translation to TRL's config and its run in one module of the same
shape: `training.sft` (`SFTSettings`, `sft_config`, `run_sft`) and `training.grpo` (`GRPOSettings`,
`grpo_config`, `run_grpo`).
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from scalevlm.config import (
    Checked,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    Probability,
    config_dataclass,
)

# transformers schedulers that run with our arguments alone: cosine_with_min_lr, cosine_warmup_with_min_lr and
# warmup_stable_decay need scheduler kwargs we do not pass, reduce_lr_on_plateau needs an evaluation metric, and
# greedy needs both.
LrScheduler = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                      "inverse_sqrt"]


@config_dataclass
class ScaleSettings(Checked):
    """SCALe: w_think(p) from `schedule` between w_start (p=0) and w_end (p=1); w_ans = 1 − w_think."""

    schedule: Literal["cosine", "linear", "constant", "step"]
    w_start: Probability
    w_end: Probability
    normalisation: Literal["per_sample", "per_batch"]
    # the segment `</think>` is weighted with (ablation; evaluation keeps "think")
    close_tag: Literal["think", "answer"]
    tags: Literal["segment", "token_mean"]  # tags + end-of-turn: in their segment's mean, or at the token-mean weight


@config_dataclass
class HeldOutSettings(Checked):
    """Held-out accuracy over steps (the val split) and the plateau stop (`training.heldout`)."""

    every: PositiveInt  # optimizer steps between evaluations (and one before the first step)
    samples: PositiveInt  # first N val records by id
    batch_size: PositiveInt
    patience: NonNegativeInt  # stop after this many evaluations without a gain above min_delta; 0 = run max_steps
    min_delta: NonNegativeFloat
    restore_best: bool  # end with the weights of the best held-out evaluation (a CPU copy of the model in memory)


def use_bf16(dtype: str) -> bool:
    if dtype == "bfloat16":
        return True
    return dtype == "auto" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


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
