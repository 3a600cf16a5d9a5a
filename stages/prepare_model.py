"""prepare_model: resolve the base model every training stage starts from.

deps:  data/validate_segments (train split: the tiny tokenizer is trained on its text), data/curate_dataset/images
       (left out of perception pre-training), src/scalevlm/modeling,
       params.yaml[prepare_model]
outs:  models/prepare_model/ (config.json, model.safetensors, processor and tokenizer files, provenance.json),
       reports/prepare_model/metrics.json
cmd:   python -m stages.prepare_model

`name_or_path: tiny` builds the tiny offline Qwen2-VL (sizes in `tiny:`) with a BPE tokenizer trained on the
curated training text (questions, reasoning, answers). With `perception.enabled` (tiny only) it then pre-trains
perception, standing in for the pretrained VLM of the paper: captions of grids drawn like the curated `r1grid`
records, on images disjoint from every curated image, until the held-out caption exact-match reaches
`perception.stop_exact` (`scalevlm.modeling.perception`); the base's held-out perception is reported. A hub or
local model skips it (it already perceives; the report says so). Anything else is a hub id (e.g.
Qwen/Qwen2.5-VL-3B-Instruct; needs HF_HUB_OFFLINE=0) or a local folder, loaded through the same generic loader
the other stages use and saved, so downstream stages only ever read models/prepare_model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

from scalevlm.config import Checked, PositiveInt, Problems, Range, Text, config_dataclass
from scalevlm.errors import MissingInputError, PipelineError
from scalevlm.facts import BASE_MODEL, CURATED, CURATED_IMAGES, METRICS, TINY_MODEL, report_dir
from scalevlm.guard import atomic_dir
from scalevlm.modeling import TinySpec, build_tiny, load_model_and_processor, save_model_and_processor
from scalevlm.modeling.images import set_pixel_bounds, visual_tokens
from scalevlm.modeling.perception import PerceptionConfig, pretrain_perception
from scalevlm.prompts import training_text
from scalevlm.provenance import write_provenance
from scalevlm.records import Record
from scalevlm.runtime import set_torch_threads, stage_main, write_json
from scalevlm.sources.reasoning_grid import CAPTION_QUESTION, caption_sample
from scalevlm.sources.synthetic import GridDrawing
from scalevlm.validation import read_split

NAME = "prepare_model"
OUT_MODEL = BASE_MODEL
OUT_REPORT = report_dir(NAME)
TINY = TINY_MODEL
log = logging.getLogger(NAME)


@config_dataclass
class Config(Checked):
    name_or_path: Text  # "tiny", a hub id, or a local folder
    trust_remote_code: bool
    dtype: Literal["auto", "float32", "bfloat16", "float16"]  # dtype of the saved weights (hub models)
    tiny: TinySpec  # a modeling type; its sizes are checked here, with the same rules for every source
    min_pixels: PositiveInt | None  # Qwen2-VL / Qwen2.5-VL image processors: total-pixel bounds; null = the model's
    max_pixels: PositiveInt | None
    perception: PerceptionConfig  # tiny only: pre-train perception before SFT; a pretrained model skips it

    def check(self) -> Problems:
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            yield "min_pixels", f"{self.min_pixels} is above max_pixels {self.max_pixels}"
        sizes = [(f.name, getattr(self.tiny, f.name)) for f in fields(self.tiny)
                 if f.name not in ("seed", "rope_theta")]
        problems = [(f"tiny.{k}", p) for k, v in sizes if (p := Range(ge=1).problem(v))]
        problems += [(f"tiny.{k}", p) for k, rule in (("seed", Range(ge=0)), ("rope_theta", Range(gt=0)))
                     if (p := rule.problem(getattr(self.tiny, k)))]
        if not problems:  # TinySpec.validate divides by the sizes: only once they are positive
            try:
                self.tiny.validate()
            except ValueError as e:
                problems.append(("tiny", str(e)))
        yield from problems


def _build(cfg: Config, root: Path) -> tuple[Any, Any, dict[str, Any]]:
    if cfg.name_or_path == TINY:
        records = read_split(root, "train")
        model, processor = build_tiny((training_text(r) for r in records), cfg.tiny)
        extra: dict[str, Any] = {"tokenizer_train_records": len(records)}
        if cfg.perception.enabled:
            extra["perception"] = _pretrain(cfg.perception, model, processor, records, root)
        return model, processor, extra
    source = Path(cfg.name_or_path)
    if not source.is_absolute() and (root / source).exists():
        source = root / source
    model, processor = load_model_and_processor(
        source if source.exists() else cfg.name_or_path, trust_remote_code=cfg.trust_remote_code, dtype=cfg.dtype
    )
    if cfg.perception.enabled:
        log.info("perception pre-training skipped: %s is a pretrained model, it already perceives", cfg.name_or_path)
    return model, processor, {"perception": "skipped: a pretrained model"} if cfg.perception.enabled else {}


def _drawing(records: list[Record]) -> GridDrawing:
    """The one drawing setting of the curated grids that perception pre-training imitates (`r1grid` provenance)."""
    found = {tuple(sorted(d.items())) for r in records if isinstance(d := r.provenance.get("drawing"), dict)}
    if len(found) != 1:
        raise PipelineError(
            f"prepare_model.perception.enabled needs training records of one grid drawing (the r1grid source); found "
            f"{len(found)} drawings in {len(records)} records: enable curate_dataset.sources.r1grid, or set "
            "prepare_model.perception.enabled: false")
    return GridDrawing(**dict(next(iter(found))))


def _pretrain(cfg: PerceptionConfig, model: Any, processor: Any, records: list[Record], root: Path) -> dict[str, Any]:
    grid = _drawing(records)
    images = root / CURATED_IMAGES
    if not images.is_dir():
        raise MissingInputError(f"{images} not found: run curate_dataset first (`dvc repro curate_dataset`)")
    excluded = {p.relative_to(root / CURATED).as_posix() for p in images.rglob("*.png")}
    set_torch_threads(cfg.torch_threads)
    report = pretrain_perception(model, processor, cfg, lambda rng: caption_sample(rng, grid), CAPTION_QUESTION,
                                 excluded)
    held = report["held_out"]
    log.info("perception pre-training: %d steps in %.0fs; held-out caption exact %.3f, cells %.4f, count %.3f",
             report["steps"], report["train_time_s"], held["exact"], held["cell_accuracy"], held["count_correct"])
    return report


def run(cfg: Config, root: Path) -> dict[str, Any]:
    start = time.perf_counter()
    model, processor, extra = _build(cfg, root)
    set_pixel_bounds(processor, cfg.min_pixels, cfg.max_pixels)  # saved with the processor: every stage uses them
    out = root / OUT_MODEL
    with atomic_dir(out) as staging:  # the previous model stays in place until this one is complete
        save_model_and_processor(model, processor, staging)
        metrics = _describe(cfg, model, processor, extra)
        write_provenance(staging, NAME, cfg, root, {"model": metrics})
    write_json(root / OUT_REPORT / METRICS, {**metrics, "build_time_s": round(time.perf_counter() - start, 2)})
    log.info("prepared %s (%s, %d parameters) in %s", cfg.name_or_path, metrics["model_class"], metrics["parameters"],
             out)
    return metrics


def _describe(cfg: Config, model: Any, processor: Any, extra: dict[str, Any]) -> dict[str, Any]:
    tokenizer = getattr(processor, "tokenizer", processor)
    return {
        "source": cfg.name_or_path,
        "model_class": type(model).__name__,
        "processor_class": type(processor).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        # the processor resizes; see README, moving to a real model
        "image_tokens_64x64": visual_tokens(processor, 64, 64),
        "tags_single_tokens": all(len(tokenizer.encode(t, add_special_tokens=False)) == 1
                                  for t in ("<think>", "</think>", "<answer>", "</answer>")),
        **extra,
    }


def main(argv: list[str] | None = None) -> int:
    return stage_main(NAME, Config, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
