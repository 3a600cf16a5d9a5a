"""Summary table of the testbed-3 runs: results.jsonl (one line per run) + gens/<tag>_<loss>_s<seed>.jsonl (every
held-out generation). Prints markdown; `python analyze.py > summary.md`."""
from __future__ import annotations

import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
ROW = re.compile(r"row (\d): ((?:red|blue|white)(?: (?:red|blue|white))*) \((\d+) red")
TOTAL = re.compile(r"total is (\d+)")


def from_gens(path: str) -> dict:
    with open(path) as fh:
        g = [json.loads(line) for line in fh]
    n = len(g)
    s = dict(rows_ok=0, red_pos_ok=0, answered=0, ans_ok_answered=0, think_ok_answered=0, both_answered=0)
    for x in g:
        block = x["gen"].split("So the total")[0]
        cells = {int(m[0]): m[1].split() for m in ROW.findall(block)}
        counts = {int(m[0]): int(m[2]) for m in ROW.findall(block)}
        s["rows_ok"] += all(counts.get(k + 1) == x["grid"][k].count("red") for k in range(4))
        s["red_pos_ok"] += all(cells.get(k + 1) is not None
                               and [c == "red" for c in cells[k + 1]] == [c == "red" for c in x["grid"][k]]
                               for k in range(4))
        m = re.search(r"<answer>(.*?)</answer>", x["gen"])
        tot = TOTAL.findall(x["gen"].split("</think>")[0])
        think_ok = bool(tot) and int(tot[0]) == x["total"]
        if m:
            s["answered"] += 1
            ok = m.group(1).strip() == x["answer"]
            s["ans_ok_answered"] += ok
            s["think_ok_answered"] += think_ok
            s["both_answered"] += ok and think_ok
    return {"row_counts_ok": s["rows_ok"] / n, "red_positions_ok": s["red_pos_ok"] / n,
            "acc_if_answered": s["ans_ok_answered"] / max(1, s["answered"]),
            "p_ans_given_think_answered": s["both_answered"] / max(1, s["think_ok_answered"]),
            "n_answered": s["answered"]}


def main() -> None:
    with open(os.path.join(HERE, "results.jsonl")) as fh:
        runs = [json.loads(line) for line in fh]
    print("| tag | phase | loss | seed | steps | train s | eval s | caption exact | think correct | row counts ok | "
          "acc | P(ans ok given think ok) | acc if answered | P(ans ok given think ok, answered) | consistent | "
          "missing <answer> @max_new | gen think len (ref think tokens) | CE think / answer seg / answer letter | "
          "chance (most frequent letter) |")
    print("|" + "---|" * 19)
    for r in runs:
        if r["phase"] == "pretrain":
            print(f"| {r['tag']} | pretrain | - | {r['seed']} | {r['steps_done']} | {r['train_s']} | {r['eval_s']} | "
                  f"{r['caption_exact']:.3f} (cell {r['cell_acc']:.3f}) |" + " |" * 11)
            continue
        gp = os.path.join(HERE, "gens", f"{r['tag']}_{r['loss']}_s{r['seed']}.jsonl")
        g = from_gens(gp) if os.path.exists(gp) else {}

        def f(k: str, g: dict = g) -> str:
            return f"{g[k]:.3f}" if k in g else "n/a"
        print(f"| {r['tag']} | sft | {r['loss']} | {r['seed']} | {r['steps_done']} | {r['train_s']} | {r['eval_s']} | "
              f"{r['caption_exact']:.3f} | {r['think_correct']:.3f} | {f('row_counts_ok')} | {r['acc']:.3f} | "
              f"{r['p_ans_given_think']:.3f} | {f('acc_if_answered')} | {f('p_ans_given_think_answered')} | "
              f"{r['consistent']:.3f} | {r['missing_answer']:.3f} @{r['max_new_tokens']} | "
              f"{r['gen_think_len']:.0f} ({r['think_tokens_mean']:.0f}) | {r['ce_think']} / {r['ce_answer']} / "
              f"{r['ce_ansval']} | {r['chance_letter']:.3f} |")


if __name__ == "__main__":
    main()
