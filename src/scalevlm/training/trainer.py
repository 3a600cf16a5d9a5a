"""Our trainers and callbacks: `SCALeSFTTrainer` (SCALe or vanilla loss through TRL's fused LM head),
`ResumableGRPOTrainer`, the checkpoint-completion callback and the DVCLive callback. What they need of TRL and
transformers beyond the public API is in `scalevlm.training.trl_adapter`.

How the global counts reach the loss (exact gradient accumulation and data parallelism):
`Trainer` fetches all micro-batches of an optimizer step up front (`on_step_batches`). There we compute each
micro-batch's per-token segment labels, count samples / think tokens / answer tokens over the whole step, and
all-reduce (sum) the counts over processes. Each micro-batch loss is then `sum over its samples / global count`
(`core.scale_loss`), times the number of processes because DDP/FSDP/DeepSpeed average gradients over ranks; the
accumulated gradient is therefore exactly that of one batch of `batch_size` samples on one process.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from trl import GRPOTrainer

from scalevlm.core.progress import progress_line
from scalevlm.core.scale_loss import ScaleStats, SegmentCounts, scale_loss, segment_counts
from scalevlm.facts import SCALE
from scalevlm.labels import PieceDecoder, batch_segment_labels
from scalevlm.training.checkpoints import PREFIX, commit
from scalevlm.training.config import ScaleSettings
from scalevlm.training.methods import segment_weighting
from scalevlm.training.trl_adapter import FusedHeadSFTTrainer, FusedOutput, StrictResumeMixin

SEGMENTS_KEY = "segment_labels"
# Trainer logs that are not curves: bookkeeping (epoch, FLOPs, tokens seen) and the one-point run summary at the end
# (our metrics.json has the run's time and tokens)
NOT_PLOTTED = frozenset({"epoch", "total_flos", "num_tokens", "train_runtime", "train_samples_per_second",
                         "train_steps_per_second", "train_loss"})
MODES = ("train", "eval")
log = logging.getLogger(__name__)


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


class ProgressCallback(TrainerCallback):
    """One progress line per log on the main process: step N/M, elapsed, ETA and the values named by `keys`
    (`core.progress`), in place of the raw `{'loss': ...}` dicts transformers prints when its bar is off.

    Pass `trainer.remove_callback(PrinterCallback)` with it; the bar stays off (`disable_tqdm`), so a log file or
    DVC's output reads the same as a terminal."""

    def __init__(self, name: str, keys: tuple[str, ...]) -> None:
        self.name, self.keys = name, keys
        self.start, self.first_step = time.perf_counter(), 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.start, self.first_step = time.perf_counter(), state.global_step  # a resumed run's pace is its own

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if state.is_world_process_zero and logs and "train_runtime" not in logs:
            line = progress_line(state.global_step, state.max_steps, self.first_step,
                                 time.perf_counter() - self.start, logs, self.keys)
            log.info("%s: %s", self.name, line)


class SCALeSFTTrainer(StrictResumeMixin, FusedHeadSFTTrainer):
    """SFTTrainer whose loss is a method's segment weighting (`training.methods`): SCALe or the plain token mean.

    Resuming from a checkpoint restores every model tensor or fails (`trl_adapter.StrictResumeMixin`).

    Both methods run the same code path (TRL's fused LM head, no [B, T, V] logits) and log the same per-segment
    statistics, so vanilla and SCALe curves are comparable. Logged every `logging_steps` (averaged over the
    window): `w_think`, `w_ans` (scale only), `loss_think`, `loss_answer` (mean over samples of L_think(i) /
    L_ans(i), exact over processes and micro-batches), `think_tokens`, `answer_tokens`, `samples` (per step),
    with `scale.tags: token_mean` also `loss_tags` (token mean over the structural tokens) and `tag_tokens`, and
    as TRL logs them `entropy`, `mean_token_accuracy` and `num_tokens` (tokens seen by this run, `train_tokens`).
    """

    def __init__(self, *args: Any, method: str = SCALE, scale: ScaleSettings | None = None, **kwargs: Any) -> None:
        self.weighting = segment_weighting(method, scale)  # refuses an unknown method before the model loads
        super().__init__(*args, **kwargs)
        self.method = method
        tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)
        self.decode_piece = PieceDecoder(tokenizer)
        self.step_counts: SegmentCounts | None = None  # global counts of the current optimizer step
        self.train_tokens = 0  # attention-mask tokens trained on in this process's run, over all ranks
        self.window: dict[str, dict[str, list[float]]] = {m: defaultdict(list) for m in MODES}  # since the last log
        self.window_stats: dict[str, ScaleStats | None] = dict.fromkeys(MODES)

    # -- weights and counts -------------------------------------------------------------------------------------

    def current_weights(self) -> tuple[float, float]:
        """(w_think, w_ans) at p = global_step / max_steps; (1, 1) placeholders for an unscheduled method."""
        return self.weighting.weights(self.state.global_step, self.state.max_steps)

    def on_step_batches(self, batches: list[dict[str, Any]], device: torch.device) -> None:
        total = SegmentCounts(0, 0, 0)
        for batch in batches:
            segments = self.segment_labels(batch["labels"])
            batch[SEGMENTS_KEY] = segments
            total = total + segment_counts(segments[:, 1:])
        counts = torch.tensor([total.samples, total.think_tokens, total.answer_tokens, total.tag_tokens], device=device)
        if self.accelerator.num_processes > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        self.step_counts = SegmentCounts(*(int(c) for c in counts.tolist()))
        window = self.window["train"]
        window["samples"].append(self.step_counts.samples)
        window["think_tokens"].append(self.step_counts.think_tokens)
        window["answer_tokens"].append(self.step_counts.answer_tokens)
        if self.weighting.tags == "token_mean":
            window["tag_tokens"].append(self.step_counts.tag_tokens)
        if self.weighting.schedule is not None:
            w_think, w_ans = self.current_weights()
            window["w_think"].append(w_think)
            window["w_ans"].append(w_ans)

    def segment_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """[B, T] segment labels of a batch's label ids under this run's tag rules (`training.labels`)."""
        return batch_segment_labels(labels, self.decode_piece, close_tag=self.weighting.close_tag,
                                    tags=self.weighting.tags)

    # -- loss ---------------------------------------------------------------------------------------------------

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        mode = "train" if self.model.training else "eval"
        segments = inputs.pop(SEGMENTS_KEY, None)
        step_counts = self.step_counts if (mode == "train" and segments is not None) else None
        if segments is None:  # evaluation batches do not pass through on_step_batches
            segments = self.segment_labels(inputs["labels"])
        fused = self.fused_forward(model, inputs)
        seg = segments[:, 1:].to(fused.token_loss.device)
        w_think, w_ans = self.current_weights()
        loss, stats = scale_loss(
            fused.token_loss,
            seg,
            w_think,
            w_ans,
            self.weighting.normalisation,
            num_samples=None if step_counts is None else step_counts.samples,
            num_think_tokens=None if step_counts is None else step_counts.think_tokens,
            num_answer_tokens=None if step_counts is None else step_counts.answer_tokens,
            num_tag_tokens=None if step_counts is None else step_counts.tag_tokens,
        )
        if step_counts is not None and self.accelerator.num_processes > 1:
            loss = loss * self.accelerator.num_processes  # gradients are averaged over ranks; the counts are global
        self.record_batch(mode, fused, stats, inputs)
        return (loss, self.logits_outputs(model, inputs)) if return_outputs else loss

    # -- logging ------------------------------------------------------------------------------------------------

    def record_batch(self, mode: str, fused: FusedOutput, stats: ScaleStats, inputs: dict[str, Any]) -> None:
        """Add one micro-batch's statistics, summed over processes, to the logging window of `mode`."""
        segment_stats = torch.tensor(stats.as_list(), dtype=torch.float32, device=fused.metric_sums.device)
        local = torch.cat([fused.metric_sums, segment_stats]).unsqueeze(0)
        total = self.accelerator.gather_for_metrics(local).sum(dim=0)  # one gather for all of them
        valid, entropy, correct = total[0], total[1], total[2]
        window = self.window[mode]
        window["entropy"].append((entropy / valid).item() if valid > 0 else 0.0)
        window["mean_token_accuracy"].append((correct / valid).item() if valid > 0 else 0.0)
        if mode == "train":
            tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self.train_tokens += tokens // self.tensor_parallel_size()
        window["num_tokens"] = [self.train_tokens]
        batch = ScaleStats.from_list(total[3:].tolist())
        previous = self.window_stats[mode]
        self.window_stats[mode] = batch if previous is None else previous + batch

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the window's means to `logs` (prefixed `eval_` in evaluation, as TRL does), then log as TRL does."""
        mode = "train" if self.model.training else "eval"
        prefix = "eval_" if mode == "eval" else ""
        means = {key: sum(values) / len(values) for key, values in self.window[mode].items()}
        stats = self.window_stats[mode]
        if stats is not None and stats.think_samples > 0:
            means["loss_think"] = stats.loss_think
        if stats is not None and stats.answer_samples > 0:
            means["loss_answer"] = stats.loss_answer
        if stats is not None and stats.tag_tokens > 0:
            means["loss_tags"] = stats.loss_tags
        logs.update({prefix + key: value for key, value in means.items()})
        self.window[mode].clear()
        self.window_stats[mode] = None
        super().log(logs, start_time)


class ResumableGRPOTrainer(StrictResumeMixin, GRPOTrainer):
    """TRL's GRPOTrainer whose resume restores every model tensor or fails (`trl_adapter.StrictResumeMixin`)."""


class StepDVCLiveCallback(TrainerCallback):
    """Every `Trainer` log to DVCLive, with the plot x-axis = optimizer step and without DVC side effects.

    A plain callback on DVCLive's public `Live` API rather than transformers' `DVCLiveCallback`, which creates its
    `Live` with defaults (editing dvc.yaml, creating DVC experiments) and logs every TrainingArguments field. This
    `Live` writes `<dir>/plots/metrics/**.tsv` (for `dvc plots`) and `<dir>/metrics.json`; parameters are saved by
    the stage (provenance.json) instead. Names are standardised as DVCLive's Hugging Face integration does.
    """

    def __init__(self, live_dir: Path, resume: bool = False) -> None:
        self.live_dir = Path(live_dir)
        self.resume = resume
        self.live: Any = None

    def open(self, state: Any) -> Any:
        """The `Live` object on the main process (created at the first call), None on the others."""
        from dvclive import Live

        if state.is_world_process_zero and self.live is None:
            self.live = Live(dir=str(self.live_dir), resume=self.resume, report=None, save_dvc_exp=False, dvcyaml=None)
        return self.live if state.is_world_process_zero else None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.open(state)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        from dvclive.plots import Metric
        from dvclive.utils import standardize_metric_name

        live = self.open(state)
        if live is None:
            return
        live.step = state.global_step
        for key, value in (logs or {}).items():
            if key in NOT_PLOTTED:
                continue
            if Metric.could_log(value):
                live.log_metric(standardize_metric_name(key, "dvclive.huggingface"), value)
            else:
                log.warning("not logged to DVCLive: %s = %r is not a scalar", key, value)
        live.next_step()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.live is not None and state.is_world_process_zero:
            self.live.end()
