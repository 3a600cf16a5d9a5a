"""Accuracy by answer value for the budget sweep: does either arm learn the answer step (16 - N) for the values
the training data rarely asks for, or only the frequent ones?

Reads the per-sample predictions committed in each experiment (`reports/evaluate/<arm>/predictions.jsonl` at the
experiment's git ref, in the repository that ran the sweep) and writes `rare_values.md` beside this file.

    python reports/study/r1grid-v3-budget/rare_values.py <repository that ran the sweeps>
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ARMS = ("sft-vanilla", "sft-scale")  # spelled as in scalevlm.facts; this script runs outside the package
RARE_SHARE = 0.04  # a gold value is "rare" when under 4% of the pooled test samples have it


def refs(repo: Path) -> dict[str, str]:
    out = subprocess.run(["git", "show-ref"], cwd=repo, capture_output=True, text=True, check=True).stdout
    return {line.split("/")[-1]: line.split()[0] for line in out.splitlines() if "refs/exps/" in line}


def predictions(repo: Path, rev: str, arm: str) -> list[dict]:
    text = subprocess.run(["git", "show", f"{rev}:reports/evaluate/{arm}/predictions.jsonl"], cwd=repo,
                          capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def main(repo: Path) -> str:
    found = refs(repo)
    runs = {}  # (budget, seed) -> exp rev: 300 steps is the r1grid-v3 study itself
    for seed in (0, 1, 2):
        for name, budget in ((f"r1grid-v3-0-s{seed}", 300), (f"r1grid-v3-budget-0-s{seed}", 600)):
            if name in found:
                runs[(budget, seed)] = found[name]
    both = {s for _, s in runs if (300, s) in runs and (600, s) in runs}  # the same seeds at every budget
    runs = {key: rev for key, rev in runs.items() if key[1] in both}
    rows: dict[tuple[int, str], list[dict]] = defaultdict(list)
    for (budget, _), rev in sorted(runs.items()):
        for arm in ARMS:
            rows[(budget, arm)] += predictions(repo, rev, arm)
    gold = Counter(r["gold"] for r in rows[(300, ARMS[0])])
    total = sum(gold.values())
    rare = sorted((v for v, n in gold.items() if n / total < RARE_SHARE), key=int)
    seeds = sorted({s for _, s in runs})
    lines = [f"Seeds {seeds}, pooled: {total} test samples per arm and budget. Rare gold values (under "
             f"{RARE_SHARE:.0%} of them): {rare} ({sum(gold[v] for v in rare)} samples).", "",
             "| budget | arm | accuracy | on rare values | distinct values emitted | most emitted |",
             "|---|---|---|---|---|---|"]
    for (budget, arm), preds in sorted(rows.items()):
        on_rare = [p for p in preds if p["gold"] in rare]
        emitted = Counter(p["pred"] for p in preds if p["pred"] is not None)
        top = ", ".join(f"{v} ×{n}" for v, n in emitted.most_common(3))
        lines.append(f"| {budget} | {arm} | {sum(p['correct'] for p in preds) / len(preds):.3f} | "
                     f"{sum(p['correct'] for p in on_rare) / max(len(on_rare), 1):.3f} ({len(on_rare)}) | "
                     f"{len(emitted)} | {top} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    text = main(Path(sys.argv[1]))
    (Path(__file__).parent / "rare_values.md").write_text(text)
    print(text)
