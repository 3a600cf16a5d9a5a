"""GRPO rewards: every rule and the reward-hacking cases, in both TRL completion shapes (pure, milliseconds)."""

from __future__ import annotations

import pytest

from scalevlm.core.rewards import (
    accuracy_reward,
    completion_text,
    extract_answer,
    format_reward,
    make_length_reward,
    reward_functions,
)


def conv(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


# (name, completion, format reward, accuracy reward against gold "7" / integer)
CASES = [
    ("well_formed", "<think>3 and 4</think><answer>7</answer>", 1.0, 1.0),
    ("well_formed_spaces", "  <think> 3 and 4 </think>\n<answer> 7 </answer>\n", 1.0, 1.0),
    ("wrong_answer", "<think>3 and 4</think><answer>8</answer>", 1.0, 0.0),
    ("normalised_answer", "<think>x</think><answer>007.</answer>", 1.0, 1.0),
    ("repeated_answer_blocks", "<think>x</think><answer>7</answer><answer>8</answer>", 0.0, 0.0),
    ("repeated_same_answer", "<think>x</think><answer>7</answer><answer>7</answer>", 0.0, 0.0),
    ("repeated_think", "<think>a</think><think>b</think><answer>7</answer>", 0.0, 0.0),
    ("empty_answer", "<think>it is 7</think><answer> </answer>", 0.0, 0.0),
    ("answer_only_in_think", "<think><answer>7</answer></think><answer>x</answer>", 0.0, 0.0),
    ("answer_outside_tags", "<think>x</think><answer>8</answer> 7", 0.0, 0.0),
    ("answer_before_think", "7 <think>x</think><answer>7</answer>", 0.0, 0.0),
    ("text_between_blocks", "<think>x</think> so 7 <answer>7</answer>", 0.0, 0.0),
    ("nested_answer_in_think", "<think>x <answer>7</think></answer>", 0.0, 0.0),
    ("wrong_order", "<answer>7</answer><think>x</think>", 0.0, 0.0),
    ("missing_think", "<answer>7</answer>", 0.0, 0.0),
    ("missing_answer", "<think>the answer is 7</think>", 0.0, 0.0),
    ("unclosed_answer", "<think>x</think><answer>7", 0.0, 0.0),
    ("bare_answer", "7", 0.0, 0.0),
    ("empty", "", 0.0, 0.0),
    ("empty_think", "<think></think><answer>7</answer>", 0.0, 0.0),
    ("hedged_answer", "<think>x</think><answer>7 or 8</answer>", 1.0, 0.0),
]


@pytest.mark.parametrize(("name", "text", "fmt", "acc"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("shape", ["str", "conversational"])
def test_format_and_accuracy(name: str, text: str, fmt: float, acc: float, shape: str) -> None:
    completion = text if shape == "str" else conv(text)
    assert format_reward(None, [completion]) == [fmt]
    assert accuracy_reward(None, [completion], answer=["7"], answer_type=["integer"], choices=[None]) == [acc]


def test_accuracy_uses_answer_type_and_choices_per_sample() -> None:
    completions = [conv("<think>x</think><answer>B</answer>"), conv("<think>x</think><answer>0.5</answer>"),
                   conv("<think>x</think><answer>The Cat</answer>"), conv("<think>x</think><answer>C</answer>")]
    rewards = accuracy_reward(
        [[]] * 4,
        completions,
        completion_ids=[[1]] * 4,
        answer=["blue", "1/2", "cat", "red"],
        answer_type=["choice", "number", "text", "choice"],
        choices=[["red", "blue"], None, None, ["red", "blue", "green"]],
        trainer_state=object(),  # TRL passes extra kwargs; they are ignored
    )
    assert rewards == [1.0, 1.0, 1.0, 0.0]


def test_accuracy_defaults_and_skips() -> None:
    assert accuracy_reward(None, ["<think>x</think><answer>Cat</answer>"], answer=["cat"]) == [1.0]
    assert accuracy_reward(None, ["<think>x</think><answer>7</answer>"], answer=[None]) == [None]


def test_accuracy_requires_answer_column() -> None:
    with pytest.raises(KeyError, match="needs the dataset column 'answer'"):
        accuracy_reward(None, ["x"], answer_type=["integer"])
    with pytest.raises(ValueError, match="1 values for 2 completions"):
        accuracy_reward(None, ["x", "y"], answer=["1"])


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("plain", "plain"),
        ([{"role": "assistant", "content": "msg"}], "msg"),
        ([{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "image"},
                                            {"type": "text", "text": "b"}]}], "ab"),
        ([], ""),
    ],
)
def test_completion_text(completion: object, expected: str) -> None:
    assert completion_text(completion) == expected  # type: ignore[arg-type]


def test_extract_answer_only_from_well_formed() -> None:
    assert extract_answer("<think>x</think><answer> 42 </answer>") == "42"
    assert extract_answer("<think>x</think><answer>42</answer> extra") is None


@pytest.mark.parametrize(
    ("think_chars", "expected"),
    [(5, 1.0), (10, 1.0), (15, 0.5), (20, 0.0), (40, 0.0)],
)
def test_length_reward_shaping(think_chars: int, expected: float) -> None:
    reward = make_length_reward(10)
    text = f"<think>{'x' * think_chars}</think><answer>7</answer>"
    assert reward(None, [text]) == [pytest.approx(expected)]
    assert reward.__name__ == "length_reward"  # TRL logs each reward under its function name


def test_length_reward_needs_format() -> None:
    assert make_length_reward(10)(None, ["<think>x</think>7"]) == [0.0]
    with pytest.raises(ValueError, match="must be > 0"):
        make_length_reward(0)


@pytest.mark.parametrize(
    ("weights", "names", "kept"),
    [
        ({"format": 0.5, "accuracy": 1.0, "length": 0.0}, ["format_reward", "accuracy_reward"], [0.5, 1.0]),
        ({"format": 0.0, "accuracy": 1.0, "length": 0.1}, ["accuracy_reward", "length_reward"], [1.0, 0.1]),
        ({"accuracy": 2.0}, ["accuracy_reward"], [2.0]),
    ],
)
def test_reward_functions_follow_weights(weights: dict[str, float], names: list[str], kept: list[float]) -> None:
    funcs, got = reward_functions(weights, max_think_chars=100)
    assert [f.__name__ for f in funcs] == names
    assert got == kept


def test_reward_functions_reject_bad_weights() -> None:
    with pytest.raises(ValueError, match="unknown reward names"):
        reward_functions({"fmt": 1.0}, 100)
    with pytest.raises(ValueError, match="every reward weight is 0"):
        reward_functions({"format": 0.0, "accuracy": 0.0}, 100)
