"""Benchmark: does GRPO (params.yaml `train_grpo` defaults) raise held-out accuracy over a deliberately weak SFT init?

For each seed, in a temporary project on the first embedded task (`profiles/count.yaml`: short completions, so
GRPO is cheap on a CPU): vanilla SFT
stopped early (`--sft-steps`, far before the 600 steps of the default run) is the weak init; it is evaluated on
the test split, GRPO runs from it with the project's GRPO defaults (KL to the init, 8 generations, 32
completions per step, warm-up, held-out plateau stop), and the result is evaluated on the same test samples.
The gain is paired per seed (GRPO − init): mean, 95% t-interval, paired t-test and exact sign-flip test, and per
seed an exact McNemar test on the test samples. Curation, validation and the base model are shared by the seeds.

Usage: python benchmarks/bench_grpo.py [--seeds 0 1 2] [--sft-steps 200] [--test-samples 300]
Writes reports/benchmarks/grpo_weak_init.json and .md (the committed run is what the README quotes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flows.profiles import load_profile, merge_profile  # noqa: E402
from scalevlm.config import from_dict, load_params  # noqa: E402
from scalevlm.core.seeds import paired_over_seeds  # noqa: E402
from scalevlm.core.stats import mcnemar_exact  # noqa: E402
from scalevlm.facts import GRPO_VANILLA, SFT_VANILLA  # noqa: E402
from scalevlm.records import read_jsonl  # noqa: E402
from scalevlm.runtime import write_json  # noqa: E402
from stages import curate_dataset, evaluate, prepare_model, train_grpo, train_sft, validate_segments  # noqa: E402

OUT = ROOT / "reports" / "benchmarks"


def _section(params: dict[str, Any], name: str, cls: type, **over: Any) -> Any:
    section = json.loads(json.dumps(params[name]))
    for dotted, value in over.items():
        node = section
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return from_dict(cls, section, name)


def _correct(root: Path, arm: str) -> dict[str, int]:
    rows = read_jsonl(root / "reports" / "evaluate" / arm / "predictions.jsonl")
    return {row["id"]: row["correct"] for _, row in rows}


def main() -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sft-steps", type=int, default=200, help="SFT steps of the weak init")
    ap.add_argument("--test-samples", type=int, default=300, help="first N test records (both evaluations)")
    args = ap.parse_args()
    params = load_params(ROOT / "params.yaml")
    # the first embedded task: short completions, cheap GRPO
    merge_profile(params, load_profile(ROOT, "count"), "count")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        curate_dataset.run(_section(params, "curate_dataset", curate_dataset.Config), root)
        validate_segments.run(_section(params, "validate_segments", validate_segments.Config), root)
        prepare_model.run(_section(params, "prepare_model", prepare_model.Config), root)
        ev_cfg = _section(params, "evaluate", evaluate.Config, max_samples=args.test_samples)
        runs = []
        for seed in args.seeds:
            start = time.perf_counter()
            sft_cfg = _section(params, "train_sft", train_sft.Config, seed=seed, max_steps=args.sft_steps, save_steps=0)
            train_sft.run(sft_cfg, root, "vanilla")
            sft_s = time.perf_counter() - start
            evaluate.run(ev_cfg, root, SFT_VANILLA)
            grpo_cfg = _section(params, "train_grpo", train_grpo.Config, seed=seed, save_steps=0)
            grpo = train_grpo.run(grpo_cfg, root, "vanilla")
            evaluate.run(ev_cfg, root, GRPO_VANILLA)
            init, after = _correct(root, SFT_VANILLA), _correct(root, GRPO_VANILLA)
            ids = sorted(init)
            x, y = [after[i] for i in ids], [init[i] for i in ids]
            grpo_only, init_only, p_mcnemar = mcnemar_exact(x, y)
            metrics = json.loads((root / "reports" / "train_grpo" / "vanilla" / "metrics.json").read_text())
            held = metrics["heldout"]
            runs.append({
                "seed": seed, "sft_steps": args.sft_steps, "sft_seconds": round(sft_s, 1),
                "init_accuracy": sum(init.values()) / len(ids), "grpo_accuracy": sum(after[i] for i in ids) / len(ids),
                "grpo_only": grpo_only, "init_only": init_only, "mcnemar_p": p_mcnemar,
                "grpo_steps": grpo["steps"], "grpo_seconds": grpo["wall_time_s"],
                "heldout_first": held["first"]["accuracy"], "heldout_best": held["best"]["accuracy"],
                "heldout_last": held["last"]["accuracy"], "stopped_at_plateau": held["stopped_at_plateau"],
                "heldout_curve": [(h["step"], h["accuracy"], h.get("answer_think_consistency"))
                                  for h in held["history"]],
                "kl": metrics["rewards"].get("kl"),
            })
            print(json.dumps(runs[-1]), flush=True)
            for arm_dir in ("models/train_sft/vanilla", "models/train_grpo/vanilla"):  # the next seed starts afresh
                import shutil

                shutil.rmtree(root / arm_dir, ignore_errors=True)
    paired = paired_over_seeds({r["seed"]: r["grpo_accuracy"] for r in runs},
                               {r["seed"]: r["init_accuracy"] for r in runs})
    shown = ("max_steps", "learning_rate", "lr_scheduler", "warmup_ratio", "batch_size", "num_generations", "beta",
             "heldout")
    grpo_defaults = {k: v for k, v in params["train_grpo"].items() if k in shown}
    result = {"task": "the first embedded task (profiles/count.yaml: grid count, short thinks)",
              "test_samples": args.test_samples, "grpo": grpo_defaults, "runs": runs, "paired_gain": paired.to_dict()}
    OUT.mkdir(parents=True, exist_ok=True)
    write_json(OUT / "grpo_weak_init.json", result)
    (OUT / "grpo_weak_init.md").write_text(report(result))
    print(report(result))
    return result


def report(result: dict[str, Any]) -> str:
    p = result["paired_gain"]
    lines = [
        "# GRPO from a weak SFT init (benchmarks/bench_grpo.py)", "",
        f"Task: {result['task']}; {result['test_samples']} test samples; "
        f"GRPO settings: `{json.dumps(result['grpo'])}`.", "",
        "| seed | SFT steps | init accuracy | GRPO accuracy | GRPO-only / init-only | McNemar p | "
        "GRPO steps (plateau stop) | GRPO s | held-out first → best → last |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        lines.append(f"| {r['seed']} | {r['sft_steps']} | {r['init_accuracy']:.3f} | {r['grpo_accuracy']:.3f} | "
                     f"{r['grpo_only']} / {r['init_only']} | {r['mcnemar_p']:.4f} | {r['grpo_steps']} "
                     f"({'yes' if r['stopped_at_plateau'] else 'no'}) | {r['grpo_seconds']:.0f} | "
                     f"{r['heldout_first']:.3f} → {r['heldout_best']:.3f} → {r['heldout_last']:.3f} |")
    lines += ["", f"Paired gain (GRPO − init) over {p['n']} seeds: {p['mean_diff']:+.3f} "
              f"[95% CI {p['low']:+.3f}, {p['high']:+.3f}], paired t p = {p['p_ttest']:.4f}, "
              f"exact sign-flip p = {p['p_permutation']:.4f}; GRPO better on {p['wins']} seeds, "
              f"worse on {p['losses']}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
