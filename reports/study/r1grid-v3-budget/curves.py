"""Budget curves of the two SFT arms: accuracy, format and the rare answer values at every training budget run.

Each experiment of the budget sweep (`r1grid-v3-budget-<i>-s<seed>`) and of the r1grid-v3 study
(`r1grid-v3-0-s<seed>`, 300 steps) is found by its git ref in the repository that ran them; its budget is read from
its own params.yaml (`train_sft.max_steps`), its results from its committed per-sample predictions
(`reports/evaluate/<arm>/predictions.jsonl`). Only the seeds that ran at every budget are used, so every budget
compares the same data draws, bases and SFT seeds. Writes `curves.md` beside this file.

    python reports/study/r1grid-v3-budget/curves.py <repository that ran the sweeps>
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from statistics import mean, stdev

import yaml
from scipy import stats

ARMS = ("sft-vanilla", "sft-scale")  # spelled as in scalevlm.facts; this script runs outside the package
RARE_SHARE = 0.04  # a gold value is "rare" when under 4% of the pooled test samples have it
NAMES = re.compile(r"^r1grid-v3-(?:budget-\d+|0)-s(?P<seed>\d+)$")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def experiments(repo: Path) -> dict[tuple[int, int], str]:
    """(budget, seed) -> the experiment's commit, for every budget-sweep and study experiment in `repo`."""
    runs = {}
    for line in git(repo, "show-ref").splitlines():
        rev, ref = line.split()
        found = NAMES.match(ref.rsplit("/", 1)[-1]) if "refs/exps/" in ref else None
        if found:
            budget = yaml.safe_load(git(repo, "show", f"{rev}:params.yaml"))["train_sft"]["max_steps"]
            runs[(int(budget), int(found["seed"]))] = rev
    return runs


def predictions(repo: Path, rev: str, arm: str) -> list[dict]:
    text = git(repo, "show", f"{rev}:reports/evaluate/{arm}/predictions.jsonl")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def interval(values: list[float]) -> str:
    """mean [95% t-interval] over seeds (the mean alone for one seed)."""
    if len(values) < 2:
        return f"{values[0]:+.3f} (one seed)"
    m, sd = mean(values), stdev(values)
    half = stats.t.ppf(0.975, len(values) - 1) * sd / len(values) ** 0.5
    return f"{m:+.3f} [{m - half:+.3f}, {m + half:+.3f}]"


def rate(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def main(repo: Path) -> str:
    runs = experiments(repo)
    budgets = sorted({b for b, _ in runs})
    seeds = sorted(s for s in {s for _, s in runs} if all((b, s) in runs for b in budgets))
    preds = {(b, s, arm): predictions(repo, runs[(b, s)], arm) for b in budgets for s in seeds for arm in ARMS}
    lines = [f"Budgets {budgets} (SFT steps) × seeds {seeds} (the seeds that ran at every budget; a seed is a data "
             "draw, a base and an SFT run). Per seed: accuracy / format compliance on its test split.", "",
             "| steps | " + " | ".join(f"{arm} s{s}" for arm in ARMS for s in seeds) + " |",
             "|---" * (1 + len(ARMS) * len(seeds)) + "|"]
    for b in budgets:
        cells = [f"{rate(preds[(b, s, arm)], 'correct'):.3f} / {rate(preds[(b, s, arm)], 'format_ok'):.3f}"
                 for arm in ARMS for s in seeds]
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    lines += ["", "Over the seeds: mean ± SD of each arm; SCALe − vanilla paired by seed, mean [95% t-interval].", "",
              "| steps | vanilla accuracy | SCALe accuracy | Δ accuracy | vanilla format | SCALe format | Δ format |",
              "|---|---|---|---|---|---|---|"]
    for b in budgets:
        row = [str(b)]
        for key in ("correct", "format_ok"):
            per = {arm: [rate(preds[(b, s, arm)], key) for s in seeds] for arm in ARMS}
            row += [f"{mean(per[arm]):.3f} ± {stdev(per[arm]) if len(seeds) > 1 else 0:.3f}" for arm in ARMS]
            row.append(interval([sc - va for va, sc in zip(per[ARMS[0]], per[ARMS[1]], strict=True)]))
        lines.append("| " + " | ".join(row) + " |")

    pooled: dict[tuple[int, str], list[dict]] = defaultdict(list)
    for (b, _, arm), rows in preds.items():
        pooled[(b, arm)] += rows
    gold = Counter(r["gold"] for r in pooled[(budgets[0], ARMS[0])])
    total = sum(gold.values())
    rare = sorted((v for v, n in gold.items() if n / total < RARE_SHARE), key=int)
    lines += ["", f"Rare answer values, pooled over the seeds ({total} test samples per arm and budget): the gold "
              f"values under {RARE_SHARE:.0%} of them, {rare} ({sum(gold[v] for v in rare)} samples).", "",
              "| steps | arm | accuracy | on rare values | distinct values emitted | most emitted |",
              "|---|---|---|---|---|---|"]
    for (b, arm), rows in sorted(pooled.items()):
        on_rare = [p for p in rows if p["gold"] in rare]
        emitted = Counter(p["pred"] for p in rows if p["pred"] is not None)
        top = ", ".join(f"{v} ×{n}" for v, n in emitted.most_common(3))
        lines.append(f"| {b} | {arm} | {rate(rows, 'correct'):.3f} | {rate(on_rare, 'correct'):.3f} "
                     f"({len(on_rare)}) | {len(emitted)} | {top} |")
    reasons = sorted({r["reason"] for rows in pooled.values() for r in rows if r["reason"]})
    lines += ["", "Format failures by the segment rule's reason, pooled over the seeds (count of test samples):", "",
              "| steps | arm | " + " | ".join(reasons) + " |", "|---|---" + "|---" * len(reasons) + "|"]
    for (b, arm), rows in sorted(pooled.items()):
        counts = Counter(r["reason"] for r in rows if r["reason"])
        lines.append(f"| {b} | {arm} | " + " | ".join(str(counts[x]) for x in reasons) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    text = main(Path(sys.argv[1]))
    (Path(__file__).parent / "curves.md").write_text(text)
    print(text)
