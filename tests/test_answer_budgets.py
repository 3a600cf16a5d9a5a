"""The missing-<answer> rate at several generation budgets (the paper's fourth claim), from one greedy run."""

from __future__ import annotations

from scalevlm.evaluation.generation import tokens_to_open_answer
from scalevlm.evaluation.scoring import answer_budgets, missing_answer_at


def test_tokens_to_open_answer_finds_a_tag_split_over_tokens() -> None:
    assert tokens_to_open_answer(["<think>", "a", "</think>", "<answer>", "7"]) == 4
    assert tokens_to_open_answer(["<think>a</think><", "ans", "wer>", "7"]) == 3
    assert tokens_to_open_answer(["<think>", "a", "</answer>"]) is None
    assert tokens_to_open_answer([]) is None


def test_missing_answer_at_each_budget() -> None:
    rows = [{"answer_open_token": 10}, {"answer_open_token": 300}, {"answer_open_token": None},
            {"answer_open_token": 128}]
    assert answer_budgets(512) == [128, 256, 384, 512]
    got = missing_answer_at(rows, answer_budgets(512))
    assert got == {"128": 0.5, "256": 0.5, "384": 0.25, "512": 0.25}
    assert missing_answer_at([], [4]) == {"4": 0.0}
    assert answer_budgets(2) == [1, 2]
