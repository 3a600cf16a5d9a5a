"""The one seam between our trainers and the internals of TRL and transformers' `Trainer`.

Everything the training code relies on beyond the libraries' documented API is here, written for the versions
pinned in pyproject.toml (`TRL_VERSION`, `TRANSFORMERS_VERSION`; a trainer built under other versions logs a
warning, and tests/test_private_apis.py pins them). On an upgrade, re-check each item and its test:

1. Fused LM head. `SFTTrainer.__init__` patches the model (`trl.trainer.utils.add_fused_lm_head`) so that
   `model(**inputs, fused_lm_head=True)` returns `log_probs`, `entropy`, `is_top1` and `label_mask`, each [B, T-1],
   aligned with `labels[:, 1:]`, zero on ignored positions, without building [B, T, V] logits. `SFTTrainer.
   compute_loss` must still call it that way: tests/test_train_sft.py::test_trainer_losses_match_trl_and_the_pure_loss
   (our vanilla loss equals TRL's own).
2. Step batches. `Trainer.get_batch_samples(epoch_iterator, num_batches, device)` returns every micro-batch of an
   optimizer step before the first forward, and each batch dict reaches `compute_loss` with the keys we add there:
   tests/test_train_sft.py::test_ddp_two_processes_equal_single_process (accumulation and DDP equal one batch).
3. `Trainer.loss_is_scaled_for_ga = True` stops `Trainer` from dividing the loss by the accumulation steps (same test).
4. Logging. `SFTTrainer.log(logs)` adds the means of TRL's own metric lists to `logs`, then `Trainer.log` records
   them; subclasses add their metrics to `logs` before calling it and write nothing into TRL's state.
5. Strict resume (`StrictResumeMixin`): `Trainer._load_from_checkpoint` (private) is where a checkpoint's weights are
   loaded, and `Trainer.train` tests for max_steps only after a step: tests/test_resume.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from trl import SFTTrainer

from scalevlm.training.checkpoints import checkpoint_step, load_model_weights, verify_adapter

TRL_VERSION = "1.16"  # major.minor this seam was written and tested against (items 1-4)
TRANSFORMERS_VERSION = "5.23"  # likewise, for `Trainer` (items 2, 3, 5)
log = logging.getLogger(__name__)


def version_mismatches() -> list[str]:
    """Installed trl / transformers whose major.minor differs from the versions this seam was written for."""
    import transformers
    import trl

    out = []
    for name, installed, expected in (("trl", trl.__version__, TRL_VERSION),
                                      ("transformers", transformers.__version__, TRANSFORMERS_VERSION)):
        if ".".join(installed.split(".")[:2]) != expected:
            out.append(f"{name} {installed} (written for {expected}.x)")
    return out


def check_versions() -> None:
    """Warn, naming what to re-check (this module's docstring), when the installed versions are not the ones the
    seam was written for. A warning, not an error: an upgrade may well be compatible, the tests decide."""
    mismatches = version_mismatches()
    if mismatches:
        log.warning("scalevlm.training.trl_adapter was written for trl %s / transformers %s, found %s: re-check the "
                    "items in its docstring (fused LM head outputs, get_batch_samples, loss scaling, logging, "
                    "checkpoint loading) and run tests/test_train_sft.py and tests/test_resume.py",
                    TRL_VERSION, TRANSFORMERS_VERSION, ", ".join(mismatches))


@dataclass(frozen=True)
class FusedOutput:
    """One micro-batch through TRL's fused LM head.

    token_loss: [B, T-1] per-token cross-entropy (minus the log-probs), aligned with `labels[:, 1:]`, 0 where ignored.
    metric_sums: [3] float32, detached: supervised tokens, Σ entropy, Σ top-1 correct (for entropy and accuracy).
    """

    token_loss: torch.Tensor
    metric_sums: torch.Tensor


class FusedHeadSFTTrainer(SFTTrainer):
    """`SFTTrainer` with the two hooks a loss over whole optimizer steps needs (items 1-3 of the module docstring).

    A subclass overrides `on_step_batches` (sees every micro-batch of the coming optimizer step, may add tensors to
    each batch dict) and computes its loss in `compute_loss` from `fused_forward`. Its loss must be scaled for
    gradient accumulation itself (`loss_is_scaled_for_ga`).
    """

    loss_is_scaled_for_ga = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check_versions()
        super().__init__(*args, **kwargs)

    def get_batch_samples(self, epoch_iterator: Iterator, num_batches: int, device: torch.device) -> tuple[list, Any]:
        batches, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        self.on_step_batches(batches, device)
        return batches, num_items_in_batch

    def on_step_batches(self, batches: list[dict[str, Any]], device: torch.device) -> None:
        """Every micro-batch of the coming optimizer step, before its first forward (training only)."""

    def fused_forward(self, model: Any, inputs: dict[str, Any]) -> FusedOutput:
        """Forward through the fused LM head (no logits), as `SFTTrainer.compute_loss` does."""
        inputs["use_cache"] = False
        outputs = model(**inputs, fused_lm_head=True)
        # each cast on its own: stacking an int64 count with a bf16 sum would round the count to bf16
        sums = [outputs.label_mask.sum(), outputs.entropy.detach().sum(), outputs.is_top1.sum()]
        return FusedOutput(token_loss=-outputs.log_probs, metric_sums=torch.stack([x.float() for x in sums]))

    def logits_outputs(self, model: Any, inputs: dict[str, Any]) -> Any:
        """The model's ordinary outputs (with logits), for `compute_loss(return_outputs=True)`: an extra forward."""
        with torch.no_grad():
            return model(**{k: v for k, v in inputs.items() if k != "labels"})

    def tensor_parallel_size(self) -> int:
        """Tensor-parallel ranks see the same batch, so gathered token counts are divided by this (as TRL does)."""
        config = self.accelerator.parallelism_config
        return config.tp_size if config is not None else 1


class StrictResumeMixin:
    """Put before a `Trainer` subclass: resuming loads every model tensor or fails (`scalevlm.training.checkpoints`).

    Overrides `Trainer._load_from_checkpoint` (item 5), because that is where transformers 5.23 loads a checkpoint's
    weights, with a non-strict `load_state_dict` under names that `save_pretrained` did not write (0 of the tiny
    Qwen2-VL's tensors matched, silently). FSDP and DeepSpeed restore their own states, saved under the model's own
    names (DeepSpeed strictly), and keep transformers' code; a PEFT adapter is loaded by transformers/PEFT and then
    checked tensor by tensor.
    """

    # private: transformers 5.23 Trainer._load_from_checkpoint, the only place resume loads weights (item 5)
    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        from peft import PeftModel

        target = self.model if model is None else model  # type: ignore[attr-defined]
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:  # type: ignore[attr-defined]
            # private: transformers 5.23 Trainer._load_from_checkpoint restores FSDP/DeepSpeed states itself
            super()._load_from_checkpoint(resume_from_checkpoint, model)  # type: ignore[misc]
        elif isinstance(target, PeftModel):
            # private: transformers 5.23 Trainer._load_from_checkpoint loads PEFT adapters through PEFT, checked below
            super()._load_from_checkpoint(resume_from_checkpoint, model)  # type: ignore[misc]
            verify_adapter(target, Path(resume_from_checkpoint))
        else:
            load_model_weights(target, Path(resume_from_checkpoint))

    def train_or_resume(self, checkpoint: Path | None) -> None:
        """`train(resume_from_checkpoint=checkpoint)`, except from a checkpoint saved at max_steps: that one is only
        loaded. transformers 5.23's loop tests for max_steps after a step, so resuming there trains a step too many."""
        from transformers import TrainerState

        finished = checkpoint is not None and (checkpoint_step(checkpoint) or 0) >= self.args.max_steps  # type: ignore[attr-defined]
        if finished and not (self.is_fsdp_enabled or self.is_deepspeed_enabled):  # type: ignore[attr-defined]
            # private: transformers 5.23 Trainer._load_from_checkpoint (our strict override above), item 5
            self._load_from_checkpoint(str(checkpoint))
            self.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))  # type: ignore[arg-type]
            return
        if finished:  # their states are restored inside train() only
            log.warning("resuming the final checkpoint %s under FSDP/DeepSpeed trains one step past max_steps",
                        checkpoint)
        self.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)  # type: ignore[attr-defined]
