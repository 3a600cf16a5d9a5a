"""Benchmark: curate N synthetic samples (generation, PNG encoding, hashing, dedup, split, writing).

Usage: python benchmarks/bench_curate.py [N]   (default 5000; target: under 30 s on the 2-core CI machine)
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scalevlm.config import from_dict, load_params  # noqa: E402
from stages import curate_dataset  # noqa: E402


def main(n: int = 5000) -> dict:
    section = json.loads(json.dumps(load_params(ROOT / "params.yaml")["curate_dataset"]))
    section["sources"]["synthetic"].update(enabled=True, n=n)
    for other in ("digits", "local", "hub"):
        section["sources"][other]["enabled"] = False
    cfg = from_dict(curate_dataset.Config, section, "curate_dataset")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = curate_dataset.run(cfg, Path(tmp))
        seconds = time.perf_counter() - start
    result = {"samples": n, "curated": summary["curated"], "seconds": round(seconds, 2),
              "samples_per_second": round(n / seconds, 1), "target_seconds": 30, "within_target": seconds < 30}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
