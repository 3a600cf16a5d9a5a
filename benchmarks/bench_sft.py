"""Benchmark: cost of the SCALe loss per optimizer step, vs vanilla and vs TRL's own default SFT loss path.

Three trainers on the same initial model and the same collated batches (the train split, `train_sft.batch_size`):
  trl      plain `trl.SFTTrainer` (its default compute_loss: fused LM head, token mean)
  vanilla  `SCALeSFTTrainer(method="vanilla")` (same fused head, token mean over global counts, segment stats)
  scale    `SCALeSFTTrainer(method="scale")`   (segment labels from label ids, per-sample segment means)
One optimizer step = `get_batch_samples` (where SCALe computes segment labels and counts) + `training_step`
(forward, loss, backward) + optimizer step. Variants are interleaved step by step, so machine load drifts
affect all three alike; the median step time is reported.
Peak memory: on CUDA `torch.cuda.max_memory_allocated`; on CPU the peak of the torch allocator's live bytes
during one step, from the profiler's per-op allocation records (self_cpu_memory_usage in start order).

Usage: python benchmarks/bench_sft.py [--steps 30] [--warmup 5]
Writes reports/benchmarks/sft.json and reports/benchmarks/sft.md. Targets: scale/vanilla step time <= 1.03,
peak memory <= 1.05.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from scalevlm.config import load_config  # noqa: E402
from scalevlm.runtime import write_json  # noqa: E402
from scalevlm.training.data import sft_dataset  # noqa: E402
from scalevlm.training.sft import SFTSettings, sft_config  # noqa: E402
from scalevlm.validation import read_split  # noqa: E402
from stages.prepare_model import Config as PrepareConfig  # noqa: E402

VARIANTS = ("trl", "vanilla", "scale")
TARGETS = {"scale_over_vanilla_time": 1.03, "scale_over_vanilla_memory": 1.05}
OUT = ROOT / "reports" / "benchmarks"


def base_model(tmp: Path) -> tuple[Any, Any]:
    """The prepared model if the pipeline has made one, else the tiny model built from params."""
    from scalevlm.modeling import build_tiny, load_model_and_processor
    from scalevlm.prompts import training_text

    prepared = ROOT / "models" / "prepare_model"
    if (prepared / "config.json").is_file():
        return load_model_and_processor(prepared, dtype="float32")
    cfg = load_config(PrepareConfig, ROOT / "params.yaml", "prepare_model")
    return build_tiny((training_text(r) for r in read_split(ROOT, "train")), cfg.tiny)


def make_trainer(variant: str, model: Any, processor: Any, dataset: Any, cfg: SFTSettings, out: Path) -> Any:
    from trl import SFTTrainer

    from scalevlm.training.trainer import SCALeSFTTrainer

    args = sft_config(cfg, out / variant, world_size=1)
    common = {"model": copy.deepcopy(model), "args": args, "train_dataset": dataset, "processing_class": processor}
    trainer = SFTTrainer(**common) if variant == "trl" else SCALeSFTTrainer(**common, method=variant, scale=cfg.scale)
    trainer.create_optimizer_and_scheduler(num_training_steps=cfg.max_steps)
    trainer.state.max_steps = cfg.max_steps
    trainer.model.train()
    return trainer


def one_step(trainer: Any, batch: dict[str, Any]) -> None:
    batches, num_items = trainer.get_batch_samples(iter([dict(batch)]), 1, trainer.args.device)
    trainer.training_step(trainer.model, batches[0], num_items)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.state.global_step += 1


def timed_step(trainer: Any, batch: dict[str, Any]) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    one_step(trainer, batch)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def peak_step_memory(trainer: Any, batch: dict[str, Any]) -> float:
    """Peak live bytes allocated during one step, above the level at its start (MiB)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        one_step(trainer, batch)
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        one_step(trainer, batch)
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak / 2**20


def run(steps: int, warmup: int) -> dict[str, Any]:
    cfg = load_config(SFTSettings, ROOT / "params.yaml", "train_sft")
    if cfg.torch_threads > 0 and not torch.cuda.is_available():
        torch.set_num_threads(cfg.torch_threads)  # as the stage does
    torch.manual_seed(cfg.seed)
    with tempfile.TemporaryDirectory() as tmp:
        model, processor = base_model(Path(tmp))
        # a seeded sample, so batches mix the sources as training does (ids sort by source)
        records = random.Random(cfg.seed).sample(read_split(ROOT, "train"), cfg.batch_size * (steps + warmup))
        dataset = sft_dataset(ROOT, records)
        trainers = {v: make_trainer(v, model, processor, dataset, cfg, Path(tmp)) for v in VARIANTS}
        collate = trainers["trl"].data_collator
        batches = [collate([dataset[i] for i in range(s, s + cfg.batch_size)])
                   for s in range(0, len(records), cfg.batch_size)]
        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for i, batch in enumerate(batches):
            for v in VARIANTS if i % 2 == 0 else reversed(VARIANTS):  # alternate the order: no variant always first
                t = timed_step(trainers[v], batch)
                if i >= warmup:
                    times[v].append(t)
        memory = {v: max(peak_step_memory(trainers[v], b) for b in batches[:3]) for v in VARIANTS}
    seq = [int(b["input_ids"].shape[1]) for b in batches]
    result: dict[str, Any] = {
        "device": "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)",
        "batch_size": cfg.batch_size,
        "steps_timed": steps,
        "mean_seq_len": round(statistics.mean(seq), 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "step_ms": {v: {"median": round(1000 * statistics.median(t), 2), "p10": round(1000 * _q(t, 0.1), 2),
                        "p90": round(1000 * _q(t, 0.9), 2)} for v, t in times.items()},
        "peak_step_mib": {v: round(m, 2) for v, m in memory.items()},
    }
    med = {v: statistics.median(t) for v, t in times.items()}
    result["ratios"] = {
        "scale_over_vanilla_time": round(med["scale"] / med["vanilla"], 4),
        "scale_over_vanilla_memory": round(memory["scale"] / memory["vanilla"], 4),
        "scale_over_trl_time": round(med["scale"] / med["trl"], 4),
        "scale_over_trl_memory": round(memory["scale"] / memory["trl"], 4),
        "vanilla_over_trl_time": round(med["vanilla"] / med["trl"], 4),
        "vanilla_over_trl_memory": round(memory["vanilla"] / memory["trl"], 4),
    }
    result["targets"] = TARGETS
    result["within_targets"] = {k: result["ratios"][k] <= t for k, t in TARGETS.items()}
    return result


def _q(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "# SFT loss benchmark: SCALe vs vanilla vs TRL default",
        "",
        f"Device: {r['device']}; batch {r['batch_size']}; {r['steps_timed']} timed steps per variant (interleaved); "
        f"mean padded length {r['mean_seq_len']} tokens; load average {r['load_average']}.",
        "",
        "| variant | median step (ms) | p10 | p90 | peak step memory (MiB) |",
        "|---|---|---|---|---|",
    ]
    for v in VARIANTS:
        s = r["step_ms"][v]
        lines.append(f"| {v} | {s['median']} | {s['p10']} | {s['p90']} | {r['peak_step_mib'][v]} |")
    lines += ["", "| ratio | value | target |", "|---|---|---|"]
    for k, v in r["ratios"].items():
        lines.append(f"| {k} | {v} | {r['targets'].get(k, '')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    result = run(args.steps, args.warmup)
    write_json(OUT / "sft.json", result)
    (OUT / "sft.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


if __name__ == "__main__":
    main()
