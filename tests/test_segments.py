"""The segment rule, table-driven: every reason, adversarial inputs, and offset-based token labels."""

from __future__ import annotations

import pytest
from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers, trainers

from scalevlm.core.segments import (
    ANSWER,
    IGNORE,
    THINK,
    Reason,
    decode_offsets,
    format_completion,
    parse_completion,
    think_end_char,
    token_segment_labels,
)

OK = None
CASES = [
    # (id, text, expected reason or OK, expected think, expected answer)
    ("plain", "<think>a</think><answer>b</answer>", OK, "a", "b"),
    ("surrounding_whitespace", "  \n<think>a</think>\n<answer>b</answer>\n ", OK, "a", "b"),
    ("whitespace_between", "<think>a</think>   \n\t<answer>b</answer>", OK, "a", "b"),
    ("inner_whitespace_stripped", "<think>  a b  </think><answer> 7 </answer>", OK, "a b", "7"),
    ("multiline_think", "<think>row 1\nrow 2</think><answer>3</answer>", OK, "row 1\nrow 2", "3"),
    ("unicode", "<think>größe 🙂 ≥ 2</think><answer>∑ = 5</answer>", OK, "größe 🙂 ≥ 2", "∑ = 5"),
    ("lookalike_tags_in_text", "<think>a <thinking> b</think><answer>c</answer>", OK, "a <thinking> b", "c"),
    ("html_in_text", "<think>x<b>y</b></think><answer><i>z</i></answer>", OK, "x<b>y</b>", "<i>z</i>"),
    ("uppercase_tags_are_text", "<think><THINK>a</think><answer>b</answer>", OK, "<THINK>a", "b"),
    ("empty_string", "", Reason.EMPTY, "", ""),
    ("whitespace_only", " \n\t ", Reason.EMPTY, "", ""),
    ("no_tags", "the answer is 4", Reason.MISSING_THINK, "", ""),
    ("answer_only", "<answer>4</answer>", Reason.MISSING_THINK, "", ""),
    ("think_only", "<think>a</think>", Reason.MISSING_ANSWER, "", ""),
    ("think_then_untagged_answer", "<think>a</think> 4", Reason.MISSING_ANSWER, "", ""),
    ("unclosed_think", "<think>a<answer>b</answer>", Reason.UNCLOSED_THINK, "", ""),
    ("unopened_think", "a</think><answer>b</answer>", Reason.UNOPENED_THINK, "", ""),
    ("unclosed_answer", "<think>a</think><answer>b", Reason.UNCLOSED_ANSWER, "", ""),
    ("unopened_answer", "<think>a</think>b</answer>", Reason.UNOPENED_ANSWER, "", ""),
    ("reversed_blocks", "<answer>b</answer><think>a</think>", Reason.WRONG_ORDER, "", ""),
    ("reversed_think_tags", "</think>a<think><answer>b</answer>", Reason.WRONG_ORDER, "", ""),
    ("reversed_answer_tags", "<think>a</think></answer>b<answer>", Reason.WRONG_ORDER, "", ""),
    ("repeated_think_block", "<think>a</think><think>a</think><answer>b</answer>", Reason.REPEATED_TAG, "", ""),
    ("repeated_answer_block", "<think>a</think><answer>b</answer><answer>c</answer>", Reason.REPEATED_TAG, "", ""),
    ("repeated_close_tag", "<think>a</think></think><answer>b</answer>", Reason.REPEATED_TAG, "", ""),
    ("tag_inside_think", "<think>a <answer> b</think><answer>c</answer>", Reason.REPEATED_TAG, "", ""),
    ("answer_nested_in_think", "<think>a<answer>b</answer></think>", Reason.NESTED_TAG, "", ""),
    ("think_nested_in_answer", "<answer><think>a</think>b</answer>", Reason.NESTED_TAG, "", ""),
    ("interleaved", "<think>a<answer>b</think>c</answer>", Reason.NESTED_TAG, "", ""),
    ("empty_think", "<think></think><answer>b</answer>", Reason.EMPTY_THINK, "", ""),
    ("whitespace_think", "<think> \n </think><answer>b</answer>", Reason.EMPTY_THINK, "", ""),
    ("empty_answer", "<think>a</think><answer></answer>", Reason.EMPTY_ANSWER, "", ""),
    ("whitespace_answer", "<think>a</think><answer>\t </answer>", Reason.EMPTY_ANSWER, "", ""),
    ("text_before", "Sure! <think>a</think><answer>b</answer>", Reason.TEXT_OUTSIDE, "", ""),
    ("text_between", "<think>a</think> so <answer>b</answer>", Reason.TEXT_OUTSIDE, "", ""),
    ("text_after", "<think>a</think><answer>b</answer> done", Reason.TEXT_OUTSIDE, "", ""),
    ("end_token_after", "<think>a</think><answer>b</answer><|im_end|>", Reason.TEXT_OUTSIDE, "", ""),
    ("zero_width_space_outside", "\u200b<think>a</think><answer>b</answer>", Reason.TEXT_OUTSIDE, "", ""),
]


@pytest.mark.parametrize(("text", "reason", "think", "answer"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_parse_completion(text: str, reason: Reason | None, think: str, answer: str) -> None:
    seg = parse_completion(text)
    assert seg.reason == reason
    assert seg.ok is (reason is None)
    if seg.ok:
        assert (seg.think, seg.answer) == (think, answer)
        assert text[seg.think_span[0] : seg.think_span[1]].startswith("<think>")
        assert text[seg.answer_span[0] : seg.answer_span[1]].endswith("</answer>")


def test_case_table_covers_every_structural_reason() -> None:
    covered = {c[2] for c in CASES}
    assert set(Reason) - covered == {Reason.THINK_TOO_LONG, Reason.ANSWER_TOO_LONG}
    assert len(CASES) >= 30


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [({"max_think_chars": 3}, Reason.THINK_TOO_LONG), ({"max_answer_chars": 1}, Reason.ANSWER_TOO_LONG),
     ({"max_think_chars": 4, "max_answer_chars": 2}, None)],
    ids=["think_too_long", "answer_too_long", "within_limits"],
)
def test_length_limits(kwargs: dict, reason: Reason | None) -> None:
    assert parse_completion("<think>abcd</think><answer>12</answer>", **kwargs).reason == reason


def test_format_then_parse_round_trip() -> None:
    seg = parse_completion(format_completion("row 1: red = 1.", "1"))
    assert (seg.ok, seg.think, seg.answer) == (True, "row 1: red = 1.", "1")


def test_non_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="expects str"):
        parse_completion(None)  # type: ignore[arg-type]


# Token labels from character offsets ------------------------------------------------------------------------


def _tokenizer(single_token_tags: bool) -> Tokenizer:
    """A word-level tokenizer; with `single_token_tags` the 4 tags are added tokens, else they split in pieces."""
    tok = Tokenizer(models.BPE(unk_token="?"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern=Regex(r"[<>/]"), behavior="isolated")
    corpus = ["<think>row one red</think><answer>12</answer>", "think answer row red blue 1 2 3"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=60, show_progress=False, special_tokens=["?"]))
    if single_token_tags:
        tok.add_tokens([AddedToken(t, special=False, normalized=False)
                        for t in ("<think>", "</think>", "<answer>", "</answer>")])
    return tok


@pytest.mark.parametrize("single", [True, False], ids=["single_token_tags", "split_tags"])
def test_token_labels_from_tokenizer_offsets(single: bool) -> None:
    tok = _tokenizer(single)
    prompt = "question>"
    completion = "<think>row one red</think><answer>12</answer>"
    text = prompt + completion
    enc = tok.encode(text)
    tags = [t for t in enc.tokens if t in ("<think>", "</think>")]
    assert (len(tags) == 2) is single  # split tokenizers never see a tag as one token
    labels = token_segment_labels(enc.offsets, len(prompt) + think_end_char(completion), (len(prompt), len(text)))
    by_label = {lab: "".join(text[s:e] for (s, e), x in zip(enc.offsets, labels) if x == lab)
                for lab in (IGNORE, THINK, ANSWER)}
    assert by_label[IGNORE] == prompt
    assert by_label[THINK] == "<think>row one red</think>"
    assert by_label[ANSWER] == "<answer>12</answer>"


def test_token_labels_from_decoded_pieces_with_end_of_turn() -> None:
    pieces = ["<thi", "nk>", "a b", "</", "think", "><ans", "wer>7</answer>", "<|im_end|>", ""]
    text = "".join(pieces)
    labels = token_segment_labels(decode_offsets(pieces), think_end_char(text), (0, len(text)))
    # '><ans' starts inside the think segment ('>' closes </think>), so it is think; end-of-turn is answer.
    assert labels == [THINK, THINK, THINK, THINK, THINK, THINK, ANSWER, ANSWER, ANSWER]


def test_token_labels_without_think_close_are_all_think() -> None:
    pieces = ["<think>", "still thinking"]
    text = "".join(pieces)
    assert think_end_char(text) == -1
    assert token_segment_labels(decode_offsets(pieces), -1, (0, len(text))) == [THINK, THINK]
