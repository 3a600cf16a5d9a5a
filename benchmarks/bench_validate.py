"""Benchmark: validate 10,000 curated samples (all checks, GX suites and Data Docs included) and print wall time.

    .venv/bin/python benchmarks/bench_validate.py [--n 10000] [--work DIR] [--budget 20]

Curates `n` synthetic samples (digits disabled) with `stages.curate_dataset.run` into a work folder (reused
when it already holds `n` records; curation time is not measured), then times `stages.validate_segments.run`
in a fresh process-free call, imports of the validation stack included. Exits 1 above `--budget` seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `stages` is a top-level package of the project


def curate(work: Path, n: int) -> None:
    """Synthetic records only, default params otherwise; skipped when a previous run left `n` records."""
    from scalevlm.config import load_config, load_params
    from stages import curate_dataset

    records = work / "data" / "curate_dataset" / "records.jsonl"
    if records.is_file() and sum(1 for _ in records.open()) == n:
        return
    params = load_params(ROOT / "params.yaml")
    section = params["curate_dataset"]
    section["sources"]["synthetic"]["n"] = n
    section["sources"]["digits"]["enabled"] = False
    curate_dataset.run(load_config(curate_dataset.Config, params, "curate_dataset"), work)


def bench(work: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    from scalevlm.config import load_config
    from stages import validate_segments

    cfg = load_config(validate_segments.Config, ROOT / "params.yaml", "validate_segments")
    summary = validate_segments.run(cfg, work)
    return time.perf_counter() - start, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--work", help="work folder (default: a temporary folder)")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds allowed (default: 20)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_validate_") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        (work / "data" / "local").mkdir(parents=True, exist_ok=True)
        curate(work, args.n)
        seconds, summary = bench(work)
    print(f"validated {summary['input']} samples ({summary['accepted']} accepted, {summary['rejected']} rejected) "
          f"in {seconds:.2f} s wall (GX suites and Data Docs included; budget {args.budget:.0f} s)")
    return 0 if seconds <= args.budget else 1


if __name__ == "__main__":
    raise SystemExit(main())
