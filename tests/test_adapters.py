"""The pure format normalisers: completion styles, answer cleaning, choices, answer types, conversations."""

from __future__ import annotations

import pytest

from scalevlm.sources import adapters
from scalevlm.sources.base import AdapterError

LLAVA = "<SUMMARY>plan</SUMMARY>\n<CAPTION>a cat</CAPTION>\n<REASONING>it sits</REASONING>\n<CONCLUSION>{}</CONCLUSION>"

SPLITS = [
    # (id, text, style, expected (reasoning, raw answer) or the AdapterError reason)
    ("tagged", "<think>r</think><answer>4</answer>", "tagged", ("r", "4")),
    ("tagged_auto", " <think>r</think>\n<answer>4</answer> ", "auto", ("r", "4")),
    ("tagged_repeated", "<think>r</think><answer>4</answer><answer>5</answer>", "auto", "segment_repeated_tag"),
    ("tagged_text_outside", "<think>r</think>so<answer>4</answer>", "tagged", "segment_text_outside"),
    ("no_tags", "the answer is 4", "auto", "segment_missing_think"),
    ("vr1_final_answer", "<think>r</think>\nThe sum is 4.\nFinal Answer: 4", "think_text", ("r", "4")),
    ("vr1_bold_boxed", "<think>r</think>\nSo:\n**Final Answer:** \\boxed{C}", "think_text", ("r", "C")),
    ("vr1_boxed_only", "<think>r</think>\nHence \\boxed{\\frac{1}{2}} is it.\nDone.", "think_text",
     ("r", "\\frac{1}{2}")),
    ("vr1_last_boxed_wins", "<think>r</think>\n\\boxed{1} then \\boxed{2}\nok", "think_text", ("r", "2")),
    ("vr1_answer_is", "<think>r</think>\nWe compare.\nThe answer is B.", "think_text", ("r", "B.")),
    ("vr1_one_line_tail", "<think>r</think>\n 42 ", "think_text", ("r", "42")),
    ("vr1_auto", "<think>r</think>\nFinal Answer: 7", "auto", ("r", "7")),
    ("vr1_no_marker", "<think>r</think>\nfirst line\nsecond line", "think_text", "missing_answer"),
    ("vr1_empty_tail", "<think>r</think>  ", "think_text", "missing_answer"),
    ("vr1_empty_think", "<think> </think>\n4", "think_text", "empty_think"),
    ("vr1_no_open", "r</think>\n4", "think_text", "bad_think_block"),
    ("vr1_two_thinks", "<think>a</think><think>b</think>4", "think_text", "bad_think_block"),
    ("r1ov_answer_tags", "<think>r</think>\n<answer>B</answer>", "think_text", ("r", "B")),
    ("r1ov_bad_answer_tags", "<think>r</think>\n<answer>B", "think_text", "segment_unclosed_answer"),
    ("llava", LLAVA.format("The answer is B."), "llava_cot", ("plan\n\na cat\n\nit sits", "The answer is B.")),
    ("llava_auto", LLAVA.format("4"), "auto", ("plan\n\na cat\n\nit sits", "4")),
    ("llava_reasoning_only", "<REASONING>r</REASONING><CONCLUSION>4</CONCLUSION>", "llava_cot", ("r", "4")),
    ("llava_no_conclusion", "<SUMMARY>s</SUMMARY><REASONING>r</REASONING>", "llava_cot", "missing_answer"),
    ("llava_empty_conclusion", "<REASONING>r</REASONING><CONCLUSION> </CONCLUSION>", "llava_cot", "missing_answer"),
    ("llava_no_reasoning", "<CONCLUSION>4</CONCLUSION>", "llava_cot", "empty_think"),
    ("llava_repeated", "<REASONING>a</REASONING><REASONING>b</REASONING><CONCLUSION>4</CONCLUSION>", "llava_cot",
     "llava_cot_malformed"),
    ("llava_unclosed", "<REASONING>a<CONCLUSION>4</CONCLUSION>", "llava_cot", "llava_cot_malformed"),
    ("llava_text_outside", "so <REASONING>a</REASONING><CONCLUSION>4</CONCLUSION>", "llava_cot", "llava_cot_malformed"),
]


@pytest.mark.parametrize(("text", "style", "expected"), [c[1:] for c in SPLITS], ids=[c[0] for c in SPLITS])
def test_split_completion(text: str, style: adapters.Style, expected: tuple[str, str] | str) -> None:
    if isinstance(expected, str):
        with pytest.raises(AdapterError) as err:
            adapters.split_completion(text, style)
        assert err.value.reason == expected
        assert err.value.detail  # says what is wrong and how to fix it
    else:
        assert adapters.split_completion(text, style) == expected


ANSWERS = [
    ("plain", "42", "42"),
    ("answer_is", "The answer is B.", "B"),
    ("final_answer_is", "The final answer is 12", "12"),
    ("answer_colon", "Answer: cat", "cat"),
    ("bold_final", "**Final Answer:** \\boxed{7}", "7"),
    ("math_boxed", "$\\boxed{x+1}$", "x+1"),
    ("dollars", "$3.5$", "3.5"),
    ("text_macro", "\\text{yes}", "yes"),
    ("paren_letter", "(C)", "C"),
    ("sentence_period", "A cat sits on a mat.", "A cat sits on a mat"),
    ("ellipsis_kept", "and so on...", "and so on..."),
    ("answer_word_kept", "Answers vary", "Answers vary"),
]


@pytest.mark.parametrize(("raw", "clean"), [c[1:] for c in ANSWERS], ids=[c[0] for c in ANSWERS])
def test_clean_answer(raw: str, clean: str) -> None:
    assert adapters.clean_answer(raw) == clean


CHOICES = [
    ("dotted_lines", "Which?\nA. red\nB. blue", ("red", "blue")),
    ("colon_lines_vision_r1", "Which?\nChoices:\nA: 2π\nB: 3π\nC: 6π", ("2π", "3π", "6π")),
    ("paren_lines", "Which?\n(A) red\n(B) blue\n(C) green", ("red", "blue", "green")),
    ("right_paren_lines", "Which?\nA) red\nB) blue", ("red", "blue")),
    ("inline", "Which colour? Choices: (A) red (B) light blue", ("red", "light blue")),
    ("single_option", "Note:\nA. only one", None),
    ("not_from_a", "Which?\nB. red\nC. blue", None),
    ("out_of_order", "Which?\nA. red\nC. blue", None),
    ("none", "How many cats are there?", None),
]


@pytest.mark.parametrize(("question", "choices"), [c[1:] for c in CHOICES], ids=[c[0] for c in CHOICES])
def test_split_choices(question: str, choices: tuple[str, ...] | None) -> None:
    assert adapters.split_choices(question) == choices


TYPES = [
    ("letter_choice", "B", ("x", "y"), "choice"),
    ("option_text_choice", "Light Blue", ("red", "light blue"), "choice"),
    ("letter_out_of_range", "C", ("x", "y"), "text"),
    ("letter_without_choices", "B", None, "text"),
    ("integer", "12", None, "integer"),
    ("negative_integer", "-3", None, "integer"),
    ("integer_with_choices", "3", ("x", "y"), "integer"),
    ("decimal", "3.5", None, "number"),
    ("exponent", "1e-3", None, "number"),
    ("text", "a cat", None, "text"),
    ("thousands", "1,234", None, "integer"),
    ("bad_thousands_is_text", "12,34", None, "text"),
    ("fraction", "1/2", None, "number"),
    ("percent", "50%", None, "number"),
    ("latex_is_text", "\\frac{1}{2}", None, "text"),
]


@pytest.mark.parametrize(("answer", "choices", "kind"), [c[1:] for c in TYPES], ids=[c[0] for c in TYPES])
def test_infer_answer_type(answer: str, choices: tuple[str, ...] | None, kind: str) -> None:
    assert adapters.infer_answer_type(answer, choices) == kind


def test_normalise_strips_image_placeholders_and_maps_option_to_letter() -> None:
    got = adapters.normalise("<image>\nWhich?\nA. red\nB. blue<image_2>", " r ", "The answer is B. blue")
    assert got == adapters.Normalised("Which?\nA. red\nB. blue", "r", "B", "choice", ("red", "blue"))


def test_normalise_keeps_given_type_and_choices() -> None:
    got = adapters.normalise("Pick one", "r", "yes", "text", ("yes", "no"))
    assert (got.answer_type, got.choices) == ("text", ("yes", "no"))


@pytest.mark.parametrize("empty", ["question", "reasoning", "answer"])
def test_normalise_rejects_empty_fields(empty: str) -> None:
    texts = {"question": "<image>", "reasoning": " ", "answer": "**Answer:**"}
    args = {k: (texts[k] if k == empty else "x") for k in ("question", "reasoning", "answer")}
    with pytest.raises(AdapterError, match=empty) as err:
        adapters.normalise(**args)
    assert err.value.reason == "missing_field"


CONVERSATIONS = [
    ("sharegpt", [{"from": "human", "value": "<image>q"}, {"from": "gpt", "value": "a"}], ("<image>q", "a", 2)),
    ("mulberry_roles", [{"from": "user", "value": "q"}, {"from": "assistant", "value": "a"}], ("q", "a", 2)),
    ("chat_system_ignored", [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                             {"role": "assistant", "content": "a"}], ("q", "a", 3)),
    ("chat_parts", [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "a"}]}], ("q", "a", 2)),
    ("multi_turn_first_pair", [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"},
                               {"from": "human", "value": "q2"}, {"from": "gpt", "value": "a2"}], ("q1", "a1", 4)),
    ("no_assistant", [{"from": "human", "value": "q"}], "missing_turn"),
    ("assistant_first", [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}], "missing_turn"),
    ("empty", [], "missing_field"),
    ("not_a_list", "q", "missing_field"),
    ("bad_content", [{"role": "user", "content": 3}, {"role": "assistant", "content": "a"}], "bad_message"),
]


@pytest.mark.parametrize(("turns", "expected"), [c[1:] for c in CONVERSATIONS], ids=[c[0] for c in CONVERSATIONS])
def test_conversation_pair(turns: object, expected: tuple[str, str, int] | str) -> None:
    if isinstance(expected, str):
        with pytest.raises(AdapterError) as err:
            adapters.conversation_pair(turns, "conversations")
        assert err.value.reason == expected
    else:
        assert adapters.conversation_pair(turns, "conversations") == expected
