"""TRL glue: `SCALeSFTTrainer` (SCALe or vanilla loss through TRL's fused LM head), strict resume for it and for
GRPO (`StrictResumeMixin`, `ResumableGRPOTrainer`), the checkpoint-completion callback and the DVCLive callback.

How the global counts reach the loss (exact gradient accumulation and data parallelism):
`Trainer` fetches all micro-batches of an optimizer step up front (`get_batch_samples`). There we compute each
micro-batch's per-token segment labels, count samples / think tokens / answer tokens over the whole step, and
all-reduce (sum) the counts over processes. Each micro-batch loss is then `sum over its samples / global count`
(`core.scale_loss`), times the number of processes because DDP/FSDP/DeepSpeed average gradients over ranks; the
accumulated gradient is therefore exactly that of one batch of `batch_size` samples on one process.
`loss_is_scaled_for_ga = True` stops `Trainer` from dividing by the accumulation steps a second time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.integrations import DVCLiveCallback
from trl import GRPOTrainer, SFTTrainer

from scalevlm.core.scale_loss import SegmentCounts, progress, scale_loss, schedule_weights, segment_counts
from scalevlm.training.checkpoints import PREFIX, checkpoint_step, commit, load_model_weights, verify_adapter
from scalevlm.training.config import ScaleSettings
from scalevlm.training.labels import PieceDecoder, batch_segment_labels

SEGMENTS_KEY = "segment_labels"
log = logging.getLogger(__name__)


class StrictResumeMixin:
    """Put before a `Trainer` subclass: resuming loads every model tensor or fails (`scalevlm.training.checkpoints`).

    Overrides `Trainer._load_from_checkpoint`, a private method of transformers 5.23, because that is where the
    checkpoint's weights are loaded with a non-strict `load_state_dict` under names that `save_pretrained` did not
    write (0 of the tiny Qwen2-VL's tensors matched, silently). FSDP and DeepSpeed restore their own states, saved
    under the model's own names (DeepSpeed strictly), and keep transformers' code; a PEFT adapter is loaded by
    transformers/PEFT and then checked tensor by tensor.
    """

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        from peft import PeftModel

        target = self.model if model is None else model  # type: ignore[attr-defined]
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:  # type: ignore[attr-defined]
            super()._load_from_checkpoint(resume_from_checkpoint, model)  # type: ignore[misc]
        elif isinstance(target, PeftModel):
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
            self._load_from_checkpoint(str(checkpoint))
            self.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))  # type: ignore[arg-type]
            return
        if finished:  # their states are restored inside train() only
            log.warning("resuming the final checkpoint %s under FSDP/DeepSpeed trains one step past max_steps", checkpoint)
        self.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)  # type: ignore[attr-defined]


class CheckpointCallback(TrainerCallback):
    """Once the Trainer saved checkpoint-<step> on every process, mark it complete and drop the older ones
    (`checkpoints.commit`). Use with `save_total_limit=None`: the Trainer's own rotation runs before the marker
    exists, so a kill in between would leave no complete checkpoint."""

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from accelerate import PartialState

        PartialState().wait_for_everyone()  # rank > 0 writes its own RNG state into the checkpoint
        if state.is_world_process_zero:
            commit(Path(args.output_dir) / f"{PREFIX}{state.global_step}", state.global_step)
        PartialState().wait_for_everyone()


class SCALeSFTTrainer(StrictResumeMixin, SFTTrainer):
    """SFTTrainer whose loss is SCALe (`method="scale"`) or the plain token mean (`method="vanilla"`).

    Resuming from a checkpoint restores every model tensor or fails (`checkpoints.StrictResumeMixin`).

    Both methods run the same code path (TRL's fused LM head, no [B, T, V] logits) and log the same per-segment
    statistics, so vanilla and SCALe curves are comparable. Logged every `logging_steps` (averaged over the
    window): `w_think`, `w_ans` (scale only), `loss_think`, `loss_answer` (mean over samples of L_think(i) /
    L_ans(i), exact over processes and micro-batches), `think_tokens`, `answer_tokens`, `samples` (per step).
    """

    loss_is_scaled_for_ga = True

    def __init__(self, *args: Any, method: str = "scale", scale: ScaleSettings | None = None, **kwargs: Any) -> None:
        if method not in ("scale", "vanilla"):
            raise ValueError(f"method must be 'scale' or 'vanilla', got {method!r}")
        if method == "scale" and scale is None:
            raise ValueError("method='scale' needs ScaleSettings")
        super().__init__(*args, **kwargs)
        self.method = method
        self.scale = scale
        tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)
        self._decode_piece = PieceDecoder(tokenizer)
        self._step_counts: SegmentCounts | None = None

    # -- weights and counts -------------------------------------------------------------------------------------

    def current_weights(self) -> tuple[float, float]:
        """(w_think, w_ans) at p = global_step / max_steps; (1, 1) placeholders for vanilla (unused)."""
        if self.method == "vanilla" or self.scale is None:
            return 1.0, 1.0
        p = progress(self.state.global_step, self.state.max_steps)
        return schedule_weights(self.scale.schedule, p, self.scale.w_start, self.scale.w_end)

    def get_batch_samples(self, epoch_iterator: Iterator, num_batches: int, device: torch.device) -> tuple[list, Any]:
        batches, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        total = SegmentCounts(0, 0, 0)
        for batch in batches:
            segments = batch_segment_labels(batch["labels"], self._decode_piece)
            batch[SEGMENTS_KEY] = segments
            total = total + segment_counts(segments[:, 1:])
        counts = torch.tensor([total.samples, total.think_tokens, total.answer_tokens], device=device)
        if self.accelerator.num_processes > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        self._step_counts = SegmentCounts(*(int(c) for c in counts.tolist()))
        metrics = self._metrics["train"]
        metrics["samples"].append(self._step_counts.samples)
        metrics["think_tokens"].append(self._step_counts.think_tokens)
        metrics["answer_tokens"].append(self._step_counts.answer_tokens)
        if self.method == "scale":
            w_think, w_ans = self.current_weights()
            metrics["w_think"].append(w_think)
            metrics["w_ans"].append(w_ans)
        return batches, num_items_in_batch

    # -- loss ---------------------------------------------------------------------------------------------------

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        mode = "train" if self.model.training else "eval"
        segments = inputs.pop(SEGMENTS_KEY, None)
        step_counts = self._step_counts if (mode == "train" and segments is not None) else None
        if segments is None:  # evaluation batches do not pass through get_batch_samples
            segments = batch_segment_labels(inputs["labels"], self._decode_piece)
        inputs["use_cache"] = False
        outputs = model(**inputs, fused_lm_head=True)  # log_probs [B, T-1], 0 on ignored positions
        token_loss = -outputs.log_probs
        seg = segments[:, 1:].to(token_loss.device)
        w_think, w_ans = self.current_weights()
        normalisation = "vanilla" if self.method == "vanilla" else self.scale.normalisation  # type: ignore[union-attr]
        loss, stats = scale_loss(
            token_loss,
            seg,
            w_think,
            w_ans,
            normalisation,
            num_samples=None if step_counts is None else step_counts.samples,
            num_think_tokens=None if step_counts is None else step_counts.think_tokens,
            num_answer_tokens=None if step_counts is None else step_counts.answer_tokens,
        )
        if step_counts is not None and self.accelerator.num_processes > 1:
            loss = loss * self.accelerator.num_processes  # gradients are averaged over ranks; the counts are global
        self._log_segment_stats(mode, token_loss.detach(), seg)
        self._log_token_metrics(mode, inputs, outputs)
        if return_outputs:
            with torch.no_grad():
                outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
        return (loss, outputs) if return_outputs else loss

    def _log_segment_stats(self, mode: str, token_loss: torch.Tensor, seg: torch.Tensor) -> None:
        """Sums and counts of per-sample segment means, gathered over processes; `log` turns them into means."""
        values = []
        for label in (1, 2):
            mask = seg == label
            n = mask.sum(dim=1)
            per_sample = torch.where(mask, token_loss, 0.0).sum(dim=1) / n.clamp(min=1)
            values += [per_sample[n > 0].sum(), (n > 0).sum().to(per_sample.dtype)]
        packed = self.accelerator.gather_for_metrics(torch.stack(values).float().unsqueeze(0)).sum(dim=0).tolist()
        metrics = self._metrics[mode]
        for i, name in enumerate(("loss_think", "loss_answer")):
            metrics[f"_{name}_sum"].append(packed[2 * i])
            metrics[f"_{name}_n"].append(packed[2 * i + 1])

    def _log_token_metrics(self, mode: str, inputs: dict[str, Any], outputs: Any) -> None:
        """TRL's own metrics (entropy, token accuracy, tokens seen), as its default compute_loss logs them."""
        gather = self.accelerator.gather_for_metrics
        num_valid = gather(outputs.label_mask.sum()).sum()
        entropy_sum = gather(outputs.entropy.detach().sum()).sum()
        num_correct = gather(outputs.is_top1.sum()).sum()
        metrics = self._metrics[mode]
        metrics["entropy"].append((entropy_sum / num_valid).item() if num_valid > 0 else 0.0)
        metrics["mean_token_accuracy"].append((num_correct / num_valid).item() if num_valid > 0 else 0.0)
        if mode == "train":
            self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item() // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        metrics = self._metrics["train" if self.model.training else "eval"]
        for name in ("loss_think", "loss_answer"):
            sums, counts = metrics.pop(f"_{name}_sum", []), metrics.pop(f"_{name}_n", [])
            if sum(counts) > 0:
                metrics[name] = [sum(sums) / sum(counts)]
        super().log(logs, start_time)


class ResumableGRPOTrainer(StrictResumeMixin, GRPOTrainer):
    """TRL's GRPOTrainer whose resume restores every model tensor or fails (`checkpoints.StrictResumeMixin`)."""


class StepDVCLiveCallback(DVCLiveCallback):
    """transformers' DVCLive integration, with the plot x-axis = optimizer step and without DVC side effects.

    The Live object writes `<dir>/plots/metrics/**.tsv` (for `dvc plots`) and `<dir>/metrics.json`; it neither
    edits dvc.yaml nor creates DVC experiments, and parameters are saved by the stage (provenance.json) instead.
    """

    def __init__(self, live_dir: Path, resume: bool = False) -> None:
        super().__init__()
        self._live_dir = Path(live_dir)
        self._resume = resume

    def setup(self, args: Any, state: Any, model: Any) -> None:
        from dvclive import Live

        self._initialized = True
        if state.is_world_process_zero and self.live is None:
            self.live = Live(dir=str(self._live_dir), resume=self._resume, report=None, save_dvc_exp=False, dvcyaml=None)

    def on_log(self, args: Any, state: Any, control: Any, model: Any = None, logs: dict | None = None, **kwargs: Any) -> None:
        if not self._initialized:
            self.setup(args, state, model)
        if state.is_world_process_zero:
            self.live.step = state.global_step
        super().on_log(args, state, control, model=model, logs=logs, **kwargs)
