"""Think and answer lengths of the r1grid training split in the prepared model's tokens (the paper's imbalance).

Segments follow the SFT rule (`scalevlm.labels.sequence_segment_labels`): think = first completion token
through `</think>`, answer = the rest through end of turn. Reads data/validate_segments/train.jsonl and
models/prepare_model; prints Markdown (committed as token_stats.md).

    .venv/bin/python research/testbed/token_stats.py > research/testbed/token_stats.md
"""
from __future__ import annotations

import statistics
from pathlib import Path

from scalevlm.core.segments import ANSWER, THINK
from scalevlm.labels import PieceDecoder, sequence_segment_labels
from scalevlm.modeling import load_model_and_processor
from scalevlm.validation import load_split

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    _, processor = load_model_and_processor(ROOT / "models/prepare_model")
    tok = processor.tokenizer
    decode = PieceDecoder(tok)
    think, answer = [], []
    for record in load_split(ROOT, "train"):
        ids = tok.encode(record.completion, add_special_tokens=False) + [tok.eos_token_id]
        labels = sequence_segment_labels(ids, decode)
        think.append(sum(lab == THINK for lab in labels))
        answer.append(sum(lab == ANSWER for lab in labels))
    q = statistics.quantiles(think, n=20)
    print(f"Training split: {len(think)} r1grid records, tokens of the prepared tokenizer ({len(tok)} entries).\n")
    print("| segment | mean | min | p5 | p50 | p95 | max |")
    print("|---|---|---|---|---|---|---|")
    print(f"| think | {statistics.fmean(think):.1f} | {min(think)} | {q[0]:.0f} | {q[9]:.0f} | {q[18]:.0f} | "
          f"{max(think)} |")
    qa = statistics.quantiles(answer, n=20)
    print(f"| answer (incl. tags and end of turn) | {statistics.fmean(answer):.2f} | {min(answer)} | {qa[0]:.0f} | "
          f"{qa[9]:.0f} | {qa[18]:.0f} | {max(answer)} |")
    print(f"\nMean think : answer = {statistics.fmean(think) / statistics.fmean(answer):.1f} : 1; per-sample ratio "
          f"median {statistics.median(t / a for t, a in zip(think, answer)):.1f}.")


if __name__ == "__main__":
    main()
