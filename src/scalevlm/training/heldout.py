"""Held-out accuracy over GRPO steps, and stopping once it plateaus.

Every `every` optimizer steps (and once before the first), greedy completions of a fixed set of held-out records
(the val split) are scored with the evaluation's rules: accuracy, format compliance, and — where records state
what a right think concludes (`core.think_facts`) — think correctness and answer–think consistency. The curve goes
to DVCLive (`heldout/*`, x = step) and to the run's metrics. With `patience` > 0 training stops when held-out
accuracy has not risen by more than `min_delta` over its best for `patience` evaluations in a row: GRPO is trained
until its held-out gain plateaus, as the paper's is, instead of for a fixed token budget. With `restore_best` the
run ends with the weights of its best evaluation (a CPU copy is kept in memory: the size of the model), so a late
decline on held-out data is not what the next stage gets; the test split is never used for this choice.

On resume the curve restarts from the resumed step (the evaluations before it are in the earlier run's DVCLive
points) and so does the plateau count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from scalevlm.core.answers import is_correct
from scalevlm.core.rewards import extract_answer
from scalevlm.core.segments import parse_completion
from scalevlm.core.think_facts import judge_think
from scalevlm.records import Record
from scalevlm.training.config import HeldOutSettings

log = logging.getLogger(__name__)


def score(records: Sequence[Record], texts: Sequence[str]) -> dict[str, float | None]:
    """Accuracy, format compliance, think correctness and answer–think consistency of completions of `records`."""
    correct = fmt = 0
    judged: list[Any] = []
    for record, text in zip(records, texts, strict=True):
        pred = extract_answer(text)
        correct += int(pred is not None and is_correct(pred, record.answer, record.answer_type, record.choices))
        fmt += int(parse_completion(text).ok)
        if (j := judge_think(text, pred, record.provenance.get("think_fact"))) is not None:
            judged.append(j)
    n = len(records)
    consistent = [j.consistent for j in judged if j.consistent is not None]
    return {
        "accuracy": correct / n, "format_compliance": fmt / n,
        "think_correct": sum(j.correct for j in judged) / len(judged) if judged else None,
        "answer_think_consistency": sum(consistent) / len(consistent) if consistent else None,
    }


def _unwrap(model: Any) -> Any:
    return getattr(model, "module", model)  # DDP wraps the model under `accelerate launch`


class HeldOutCallback(TrainerCallback):
    def __init__(self, root: Path, records: Sequence[Record], settings: HeldOutSettings, max_new_tokens: int,
                 live: Any) -> None:
        """`settings`: params.yaml `train_grpo.heldout`; `live`: the run's `StepDVCLiveCallback` (its DVCLive `Live`
        receives the curve)."""
        self.root, self.records, self.every = Path(root), list(records), settings.every
        self.max_new_tokens, self.batch_size = max_new_tokens, settings.batch_size
        self.patience, self.min_delta, self.live = settings.patience, settings.min_delta, live
        self.restore_best = settings.restore_best
        self.best_step: int | None = None
        self.best_state: dict[str, Any] | None = None  # CPU copy of the weights at the best held-out accuracy
        self.restored: int | None = None
        self.history: list[dict[str, Any]] = []
        self.best: float | None = None
        self.since_best = 0
        self.stopped_at: int | None = None
        self._images: list[list[Any]] | None = None

    def images(self) -> list[list[Any]]:
        if self._images is None:
            from PIL import Image

            from scalevlm.validation import image_paths

            self._images = [[Image.open(p).convert("RGB") for p in image_paths(self.root, r)] for r in self.records]
        return self._images

    def evaluate(self, model: Any, processor: Any, step: int, state: Any) -> dict[str, Any]:
        from scalevlm.evaluation.generation import GenerationOptions, generate

        was_training = model.training
        model.eval()
        side, processor.tokenizer.padding_side = processor.tokenizer.padding_side, "left"
        start, texts = time.perf_counter(), []
        images = self.images()
        for i in range(0, len(self.records), self.batch_size):
            chunk = self.records[i : i + self.batch_size]
            gens = generate(model, processor, images[i : i + len(chunk)], [r.question for r in chunk],
                            GenerationOptions(max_new_tokens=self.max_new_tokens))
            texts += [g.text for g in gens]
        processor.tokenizer.padding_side = side
        model.train(was_training)
        point = {"step": step, **score(self.records, texts), "seconds": round(time.perf_counter() - start, 2)}
        self.history.append(point)
        live = self.live.open(state)
        if live is not None:
            live.step = step
            for key, value in point.items():
                if key not in ("step", "seconds") and value is not None:
                    live.log_metric(f"heldout/{key}", value)
        log.info("held-out at step %d: accuracy %.3f, format %.3f", step, point["accuracy"], point["format_compliance"])
        return point

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 0:  # the init's held-out accuracy: the baseline of the gain
            model = _unwrap(kwargs["model"])
            self.evaluate(model, kwargs["processing_class"], 0, state)
            self.best = self.history[-1]["accuracy"]
            self._keep(model, 0)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step % self.every and state.global_step != state.max_steps:
            return
        model = _unwrap(kwargs["model"])
        acc = self.evaluate(model, kwargs["processing_class"], state.global_step, state)["accuracy"]
        if self.best is None or acc > self.best + self.min_delta:
            self.best, self.since_best = acc, 0
            self._keep(model, state.global_step)
        else:
            self.since_best += 1
        if self.patience and self.since_best >= self.patience and self.stopped_at is None:
            # the plateau is reported where it is met, also at the last step (where training ends anyway)
            self.stopped_at = state.global_step
            if state.global_step < state.max_steps:
                log.info("held-out accuracy has not improved for %d evaluations: stopping at step %d", self.patience,
                         state.global_step)
                control.should_training_stop = True
                control.should_save = True

    def _keep(self, model: Any, step: int) -> None:
        self.best_step = step
        if self.restore_best:
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """With `restore_best`, the run ends with the weights of its best held-out evaluation (the model saved)."""
        if self.restore_best and self.best_state is not None and self.best_step != state.global_step:
            model = _unwrap(kwargs["model"])
            model.load_state_dict(self.best_state)
            self.restored = self.best_step
            log.info("restored the weights of step %d (best held-out accuracy %.3f)", self.best_step, self.best)

    def summary(self) -> dict[str, Any]:
        if not self.history:
            return {}
        first, last = self.history[0], self.history[-1]
        best = max(self.history, key=lambda h: h["accuracy"])
        return {"records": len(self.records), "first": first, "last": last, "best": best,
                "gain": last["accuracy"] - first["accuracy"], "stopped_at_plateau": self.stopped_at,
                "restored_step": self.restored, "best_step": self.best_step,
                "history": self.history}
