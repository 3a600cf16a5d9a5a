"""The issue-10 precondition on the committed default run: is the think right under vanilla SFT?

`evaluate`'s think_correct_rate judges the think's *final* conclusion ("So N of the 16 cells are red.", the count the
answer is computed from). This script also reads the *perception* part of each generated think against the drawn
cells in the test records' provenance: the caption block (all 16 cells right) and the first conclusion ("So the
total is N.", right after the caption). Reads reports/evaluate/<arm>/predictions.jsonl and
data/validate_segments/test.jsonl; prints a Markdown table (committed as precondition.md).

    .venv/bin/python research/testbed/precondition.py > research/testbed/precondition.md
"""
from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARMS = ("sft-vanilla", "sft-scale", "grpo-vanilla", "grpo-scale")


def main() -> None:
    records = {}
    for line in (ROOT / "data/validate_segments/test.jsonl").open():
        r = json.loads(line)
        records[r["id"]] = r
    print("| arm | n | caption exact (16 cells) | first conclusion right (perception) | final conclusion right "
          "(evaluate's think_correct_rate) |")
    print("|---|---|---|---|---|")
    for arm in ARMS:
        n = caption = first = final = 0
        for line in (ROOT / "reports/evaluate" / arm / "predictions.jsonl").open():
            p = json.loads(line)
            cells = records[p["id"]]["provenance"]["cells"]
            reds = sum(row.count("red") for row in cells)
            think = p["completion"].split("</think>")[0]
            rows = re.findall(r"row (\d+): ([a-z ]+?) \(", think)
            caption += len(rows) >= len(cells) and all(rows[i][1].split() == cells[i] for i in range(len(cells)))
            firsts = re.findall(r"So the total is (\d+)\.", think)
            first += bool(firsts) and int(firsts[0]) == reds
            final += p.get("think_correct", 0)
            n += 1
        print(f"| {arm} | {n} | {caption / n:.3f} | {first / n:.3f} | {final / n:.3f} |")


if __name__ == "__main__":
    main()
