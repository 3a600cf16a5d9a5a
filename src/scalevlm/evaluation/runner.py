"""Evaluating one model on a list of records: greedy generation in batches, teacher-forced reference losses, scoring.

`EvaluateSettings` is the typed `evaluate:` section of params.yaml (the evaluate stage's Config); the registry
consumer flow loads the same section to evaluate a fetched version exactly as the stage evaluates an arm.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from scalevlm.config import Checked, NonNegativeInt, PositiveInt, Problems, config_dataclass
from scalevlm.evaluation.benchmarks.sources import Benchmark
from scalevlm.evaluation.generation import Generation, GenerationOptions, generate, reference_losses
from scalevlm.evaluation.scoring import answer_budgets, load_metrics, missing_answer_at, prediction_row, score_rows
from scalevlm.records import Record
from scalevlm.runtime import set_torch_threads


@config_dataclass
class EvaluateSettings(Checked):
    batch_size: PositiveInt
    max_new_tokens: PositiveInt
    max_samples: PositiveInt | None  # evaluate only the first N test records by id; None = all
    dtype: Literal["auto", "float32", "bfloat16", "float16"]
    device: str  # auto | cpu | cuda | cuda:N
    trust_remote_code: bool
    torch_threads: NonNegativeInt  # CPU threads for torch; 0 = torch's default
    benchmarks: tuple[Benchmark, ...] = ()  # ScienceQA / IconQA beside the test split; empty = the test split only

    def check(self) -> Problems:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            yield "device", f"{self.device!r} is not one of auto, cpu, cuda, cuda:N (N = a GPU index)"
        names = [b.name for b in self.benchmarks]
        if len(set(names)) != len(names):
            yield "benchmarks", f"names must be unique (they name report folders), got {names}"


def batch_images(records: Sequence[Record], root: Path) -> list[list[Any]]:
    """The records' images, read from the validated layout under `root`."""
    from PIL import Image

    from scalevlm.validation import image_paths

    return [[Image.open(p).convert("RGB") for p in image_paths(root, r)] for r in records]


def generate_batch(model: Any, processor: Any, records: Sequence[Record], root: Path,
                   options: GenerationOptions) -> list[Generation]:
    """Completions of one batch of records."""
    return generate(model, processor, batch_images(records, root), [r.question for r in records], options)


def load_model(cfg: EvaluateSettings, model_dir: Path) -> tuple[Any, Any]:
    """(model, processor) from `model_dir` with the evaluation's dtype, device and threads (no seed: generation is
    greedy, so predictions are a function of the weights)."""
    from scalevlm.modeling import load_model_and_processor

    set_torch_threads(cfg.torch_threads)
    return load_model_and_processor(model_dir, cfg.trust_remote_code, cfg.dtype, cfg.device)


def evaluate_model(cfg: EvaluateSettings, root: Path, model_dir: Path, records: Sequence[Record], label: str,
                   loaded: tuple[Any, Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Greedy completions of `records` by the model in `model_dir` (or the already `loaded` one), scored:
    (per-sample rows, metrics).

    Shared by the stage and by consumers that evaluate a registry version (flows/consumer.py)."""
    from tqdm.auto import tqdm

    model, processor = loaded or load_model(cfg, model_dir)
    options = GenerationOptions(max_new_tokens=cfg.max_new_tokens)  # greedy: predictions are a function of the weights
    gen_s = 0.0
    rows: list[dict[str, Any]] = []
    with tqdm(total=len(records), desc=f"evaluate {label}", unit="sample") as bar:
        for i in range(0, len(records), cfg.batch_size):
            batch = records[i : i + cfg.batch_size]
            images = batch_images(batch, root)
            start = time.perf_counter()
            gens = generate(model, processor, images, [r.question for r in batch], options)
            gen_s += time.perf_counter() - start
            refs = reference_losses(model, processor, images, [r.question for r in batch],
                                    [r.completion for r in batch])
            rows.extend(prediction_row(r, g, f) for r, g, f in zip(batch, gens, refs, strict=True))
            bar.update(len(batch))
    accuracy, compliance = load_metrics()
    metrics = score_rows(rows, accuracy, compliance)
    metrics["generation_wall_time_s"] = round(gen_s, 3)
    metrics["max_new_tokens"] = cfg.max_new_tokens  # the budget the missing-<answer> rate is measured at
    metrics["missing_answer_at"] = missing_answer_at(rows, answer_budgets(cfg.max_new_tokens))  # the paper's claim 4
    return rows, metrics
