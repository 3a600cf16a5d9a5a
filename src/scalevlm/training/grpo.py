"""GRPO: typed settings (params.yaml `train_grpo`), their translation to TRL's `GRPOConfig`, and one run end to end
(load the SFT model, build the trainer, train resuming when allowed, save, summarise) — the shape of SFT's
`training/config.py` + `training/sft.py`, in one module so that SFT does not depend on GRPO's code.

Rewards (core/rewards.py): `format` (1 iff the completion is well-formed), `accuracy` (1 iff its answer block
matches the gold answer under the answer type's normalisation) and optional `length` shaping; their weights go to
`GRPOConfig(reward_weights=…)`, a weight of 0 drops the reward. The dataset keeps `answer`, `answer_type` and
`choices` beside `prompt`/`images`, and TRL hands those columns to the rewards as keyword lists. TRL logs each
reward's mean per step (`rewards/<name>/mean`); they go to DVCLive and, averaged, to the summary.
Under `accelerate launch` only the main process deletes or writes outputs; every process trains.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch

from scalevlm.config import (
    Checked,
    ConfigError,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Problems,
    Range,
    config_dataclass,
    to_dict,
)
from scalevlm.core.rewards import reward_functions
from scalevlm.errors import MissingInputError
from scalevlm.facts import TRAIN_GRPO
from scalevlm.records import Record
from scalevlm.runtime import set_torch_threads
from scalevlm.training.checkpoints import begin_run, clear_staging, fingerprint, publish_model
from scalevlm.training.config import HeldOutSettings, freeze_vision, load_dtype, use_bf16

log = logging.getLogger(__name__)
PROGRESS_KEYS = ("reward", "kl", "loss", "completions/mean_length")  # the values each progress line shows
# settings that do not change the trajectory: a checkpoint saved under other values may be resumed
UNSHAPING = ("resume", "keep_checkpoints", "save_steps", "logging_steps", "torch_threads")


@config_dataclass
class RewardWeights(Checked):
    format: NonNegativeFloat
    accuracy: NonNegativeFloat
    length: NonNegativeFloat  # 0 = no length shaping

    def check(self) -> Problems:
        if not (self.format or self.accuracy or self.length):
            yield "format", "every reward weight is 0; GRPO needs at least one reward (e.g. format: 0.5, accuracy: 1.0)"


# TRL's GRPO losses; `luspo` is left out: it needs importance_sampling_level 'sequence', which we do not expose.
LossType = Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "vespo"]


@config_dataclass
class GRPOSettings(Checked):
    """One GRPO run from an SFT model (both inits share everything)."""

    seed: NonNegativeInt
    max_steps: PositiveInt
    learning_rate: PositiveFloat
    lr_scheduler: Literal["constant_with_warmup", "linear", "cosine"]
    warmup_ratio: Annotated[float, Range(ge=0, lt=1)]
    # GLOBAL completions per optimizer step (= per-device × processes) = prompts × num_generations
    batch_size: PositiveInt
    num_generations: Annotated[int, Range(ge=2)]  # completions per prompt (the GRPO group; one has no advantage)
    max_completion_length: Annotated[int, Range(ge=8)]  # tokens; fewer cannot hold <think>…</think><answer>…</answer>
    beta: NonNegativeFloat  # KL coefficient; 0 = no reference model (TRL's default, cheapest)
    temperature: PositiveFloat
    loss_type: LossType
    reward_weights: RewardWeights
    max_think_chars: PositiveInt  # length reward: full bonus up to this many think characters
    train_limit: PositiveInt | None  # first N training records by id; None = all
    freeze_vision: bool  # keep the vision tower and projector fixed, as in SFT
    logging_steps: PositiveInt
    gradient_checkpointing: bool  # off for the tiny model (~60% slower steps when on); on for large models on GPU
    dtype: Literal["auto", "float32", "bfloat16"]  # auto = bf16 on a CUDA GPU that supports it; fp32 on CPU
    use_vllm: bool  # GPU users: generate with vLLM (needs `pip install vllm`); passed through to TRL
    vllm_mode: Literal["colocate", "server"]
    trust_remote_code: bool
    # CPU threads for torch; 0 = torch's default (see `scalevlm.runtime.set_torch_threads`)
    torch_threads: NonNegativeInt
    save_steps: NonNegativeInt  # checkpoint every N steps (and at the end) so a killed run resumes; 0 = none
    resume: bool  # resume from the newest complete checkpoint of an interrupted run with the same fingerprint
    keep_checkpoints: bool  # keep checkpoints after a successful run
    heldout: HeldOutSettings

    def check(self) -> Problems:
        if self.batch_size % self.num_generations:
            yield "batch_size", f"{self.batch_size} must be a multiple of num_generations {self.num_generations}"

    def validate(self, world_size: int = 1) -> None:
        """The rule that needs the process count: each process generates batch_size / processes completions."""
        if self.batch_size % world_size:
            raise ConfigError(f"train_grpo.batch_size: {self.batch_size} must be divisible by processes {world_size}")


def grpo_config(cfg: GRPOSettings, output_dir: Path, weights: list[float], world_size: int = 1) -> Any:
    """Our settings → TRL's GRPOConfig (CPU-safe: bf16 only on CUDA; checkpoints under `output_dir`). The per-device
    batch is batch_size / processes, so a run under `accelerate launch` takes the same global step as one process."""
    cfg.validate(world_size)
    from trl import GRPOConfig

    from scalevlm.evaluation.generation import GRPO_CHAT_TEMPLATE_KWARGS

    on_cuda = torch.cuda.is_available()
    return GRPOConfig(
        output_dir=str(output_dir),
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=int(round(cfg.warmup_ratio * cfg.max_steps)),  # transformers 5 takes steps (as SFT's config)
        per_device_train_batch_size=cfg.batch_size // world_size,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        beta=cfg.beta,
        temperature=cfg.temperature,
        loss_type=cfg.loss_type,
        reward_weights=weights,
        chat_template_kwargs=GRPO_CHAT_TEMPLATE_KWARGS,  # prompt ids exactly as SFT and evaluation tokenise them
        use_vllm=cfg.use_vllm,
        vllm_mode=cfg.vllm_mode,
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=not on_cuda,
        bf16=on_cuda and use_bf16(cfg.dtype),  # `auto` = bf16 where the GPU supports it, as in SFT
        activation_checkpointing=cfg.gradient_checkpointing,
        logging_steps=cfg.logging_steps,
        save_strategy="steps" if cfg.save_steps > 0 else "no",
        save_steps=max(cfg.save_steps, 1),
        # checkpoints.CheckpointCallback keeps the newest, deleting older ones once it is complete
        save_total_limit=None,
        report_to="none",  # DVCLive is attached as a callback of ours (no dvc.yaml edits, no git experiments)
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


@dataclass(frozen=True)
class GRPOPaths:
    root: Path  # project root (validated image paths are relative to it)
    init_model: Path  # the SFT model GRPO starts from
    model_out: Path  # final model + processor + provenance.json (+ checkpoints/ while training)
    report_dir: Path  # DVCLive folder's parent (reports/train_grpo/<init>)
    live_dir: Path  # DVCLive folder (plots for `dvc plots`)


def _summary_name(key: str) -> str | None:
    """Our name for a TRL log key worth summarising: each reward's mean, the weighted total, completion length."""
    if key.startswith("rewards/") and key.endswith("/mean"):
        return key[len("rewards/") : -len("/mean")]  # e.g. accuracy_reward
    return {"reward": "reward", "completions/mean_length": "completion_tokens", "kl": "kl"}.get(key)


def reward_summary(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-reward mean over all logged steps and at the first and last logged step (TRL logs per-step means)."""
    names = sorted({(name, key) for h in log_history for key in h if (name := _summary_name(key))})
    summary: dict[str, Any] = {}
    for name, key in names:
        values = [float(h[key]) for h in log_history if key in h]
        summary[name] = {"mean": statistics.fmean(values), "first": values[0], "last": values[-1]}
    return summary


def run_fingerprint(cfg: GRPOSettings, init: str, init_model: Path, records: Sequence[Record]) -> str:
    """What a resumed run must share with the interrupted one: settings, starting model, training records."""
    settings = {k: v for k, v in to_dict(cfg).items() if k not in UNSHAPING}
    return fingerprint({TRAIN_GRPO: settings, "init": init}, init_model, records)


def run_grpo(cfg: GRPOSettings, init: str, paths: GRPOPaths, records: Sequence[Record],
             provenance: dict[str, Any]) -> dict[str, Any]:
    """GRPO from `paths.init_model` on `records`; rewrites the model and the DVCLive curves, or resumes them from
    the newest complete checkpoint of an interrupted run with the same fingerprint. `provenance` is saved with the
    model. Returns the run's metrics (written by the caller)."""
    from accelerate import PartialState
    from transformers import PrinterCallback

    from scalevlm.modeling import load_model_and_processor, save_model_and_processor
    from scalevlm.provenance import write_provenance
    from scalevlm.training.data import grpo_dataset
    from scalevlm.training.heldout import HeldOutCallback
    from scalevlm.training.trainer import (
        CheckpointCallback,
        ProgressCallback,
        ResumableGRPOTrainer,
        StepDVCLiveCallback,
    )
    from scalevlm.validation import read_split

    state = PartialState()
    cfg.validate(state.num_processes)  # before any work
    set_torch_threads(cfg.torch_threads)
    funcs, weights = reward_functions(
        {"format": cfg.reward_weights.format, "accuracy": cfg.reward_weights.accuracy,
         "length": cfg.reward_weights.length},
        cfg.max_think_chars,
    )
    dataset = grpo_dataset(paths.root, records)
    model, processor = load_model_and_processor(paths.init_model, cfg.trust_remote_code, load_dtype(cfg.dtype))
    if cfg.freeze_vision:
        log.info("train_grpo[%s]: vision frozen (%d parameters)", init, freeze_vision(model))
    # TRL left-pads prompt ids itself but builds the multimodal fields (mm_token_type_ids) with the processor's own
    # padding side: a right-padding tokenizer misaligns them and Qwen2-VL's rope index fails as soon as prompts
    # differ in length (images of different sizes). The original side is restored before saving.
    saved_side, processor.tokenizer.padding_side = processor.tokenizer.padding_side, "left"
    # the previous model stays in place until the new one is whole (`publish_model` below)
    fp = run_fingerprint(cfg, init, paths.init_model, records)
    ckpt_dir, resume = begin_run(state, paths.model_out, (paths.report_dir,), fp, cfg.resume)
    live = StepDVCLiveCallback(paths.live_dir, resume=resume is not None)
    h = cfg.heldout
    try:
        held_records = read_split(paths.root, "val", h.samples)
    except FileNotFoundError as e:
        raise MissingInputError(f"{e} (GRPO's held-out accuracy is measured on the val split)") from None
    heldout = HeldOutCallback(paths.root, held_records, h, cfg.max_completion_length, live)
    trainer = ResumableGRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=grpo_config(cfg, ckpt_dir, weights, state.num_processes),
        train_dataset=dataset,
        processing_class=processor,
        # curves per optimizer step, no DVC side effects; checkpoints count once complete
        callbacks=[live, heldout, CheckpointCallback()],
    )
    trainer.remove_callback(PrinterCallback)  # ProgressCallback prints the logs as progress lines
    trainer.add_callback(ProgressCallback(f"train_grpo[{init}]", PROGRESS_KEYS))
    if resume:
        log.info("train_grpo[%s]: resuming %s", init, resume)
    start = time.perf_counter()
    trainer.train_or_resume(resume)
    wall = time.perf_counter() - start
    processor.tokenizer.padding_side = saved_side
    metrics = {
        "init": init,
        "resumed_from": resume.name if resume else None,
        "wall_time_s": round(wall, 3),
        "steps": trainer.state.global_step,
        "train_samples": len(dataset),
        "reward_names": [f.__name__ for f in funcs],
        "reward_weights": weights,
        "rewards": reward_summary(trainer.state.log_history),
        "heldout": heldout.summary(),
    }
    if trainer.accelerator.is_main_process:  # under `accelerate launch` only one process writes
        (paths.live_dir / "metrics.json").unlink(missing_ok=True)  # duplicate of the stage's metrics.json
        staging = clear_staging(paths.model_out)
        save_model_and_processor(trainer.accelerator.unwrap_model(trainer.model), processor, staging)
        write_provenance(staging, TRAIN_GRPO, cfg, paths.root, provenance)
        # one rename: a kill before it resumes from the last checkpoint, which is deleted only now (unless kept)
        publish_model(paths.model_out, cfg.keep_checkpoints)
    state.wait_for_everyone()
    log.info("GRPO from %s: %d steps in %.1fs, rewards %s", init, metrics["steps"], wall, metrics["rewards"])
    return metrics
