"""The one segment rule: a completion is `<think>…</think><answer>…</answer>` and nothing else.

Used by data checks, SFT segment masks, the GRPO format reward, answer extraction and reports, so every
place agrees on what "well-formed" means. Full-match semantics: the whole completion (ignoring surrounding
whitespace) must be exactly one think block followed by exactly one answer block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
_TAG_RE = re.compile(r"</?(?:think|answer)>")


class Reason(str, Enum):
    """Why a completion is not well-formed; the value is the name used in counts and quarantine files."""

    EMPTY = "empty_completion"
    MISSING_THINK = "missing_think"
    MISSING_ANSWER = "missing_answer"
    UNCLOSED_THINK = "unclosed_think"
    UNCLOSED_ANSWER = "unclosed_answer"
    UNOPENED_THINK = "unopened_think"
    UNOPENED_ANSWER = "unopened_answer"
    WRONG_ORDER = "wrong_order"
    REPEATED_TAG = "repeated_tag"
    NESTED_TAG = "nested_tag"
    EMPTY_THINK = "empty_think"
    EMPTY_ANSWER = "empty_answer"
    TEXT_OUTSIDE = "text_outside"
    THINK_TOO_LONG = "think_too_long"
    ANSWER_TOO_LONG = "answer_too_long"


@dataclass(frozen=True)
class Segments:
    """Result of `parse_completion`.

    `ok` is True iff the completion is well-formed; then `think`/`answer` hold the stripped block contents and
    `think_span`/`answer_span` the character spans of the *whole* blocks (tags included) in the input string.
    On failure `reason` names the first rule broken (checked in a fixed order, so the reason is deterministic).
    """

    ok: bool
    reason: Reason | None = None
    think: str = ""
    answer: str = ""
    think_span: tuple[int, int] = (0, 0)
    answer_span: tuple[int, int] = (0, 0)


def _fail(reason: Reason) -> Segments:
    return Segments(ok=False, reason=reason)


def _tag_failure(tags: list[str]) -> Reason | None:
    """Structural check of the tag sequence alone; None when it is exactly think-open/close, answer-open/close."""
    if tags == list(TAGS):
        return None
    counts = {t: tags.count(t) for t in TAGS}
    if any(c > 1 for c in counts.values()):
        return Reason.REPEATED_TAG
    has = {t: counts[t] == 1 for t in TAGS}
    if not has[THINK_OPEN] and not has[THINK_CLOSE]:
        return Reason.MISSING_THINK
    if not has[ANSWER_OPEN] and not has[ANSWER_CLOSE]:
        return Reason.MISSING_ANSWER
    if not has[THINK_CLOSE]:
        return Reason.UNCLOSED_THINK
    if not has[THINK_OPEN]:
        return Reason.UNOPENED_THINK
    if not has[ANSWER_CLOSE]:
        return Reason.UNCLOSED_ANSWER
    if not has[ANSWER_OPEN]:
        return Reason.UNOPENED_ANSWER
    pos = {t: tags.index(t) for t in TAGS}
    if pos[THINK_OPEN] > pos[THINK_CLOSE] or pos[ANSWER_OPEN] > pos[ANSWER_CLOSE]:
        return Reason.WRONG_ORDER
    # Each pair is in order; if the blocks interleave, one is inside the other.
    if pos[THINK_OPEN] < pos[ANSWER_OPEN] < pos[THINK_CLOSE] or pos[ANSWER_OPEN] < pos[THINK_OPEN] < pos[ANSWER_CLOSE]:
        return Reason.NESTED_TAG
    return Reason.WRONG_ORDER  # answer block entirely before the think block


def parse_completion(text: str, max_think_chars: int | None = None, max_answer_chars: int | None = None) -> Segments:
    """Parse `text` under the segment rule; never raises for any string input.

    Args:
        text: the completion (model output or curated target), without chat-template tokens.
        max_think_chars / max_answer_chars: optional length limits on the stripped block contents.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_completion expects str, got {type(text).__name__}")
    if not text.strip():
        return _fail(Reason.EMPTY)
    matches = list(_TAG_RE.finditer(text))
    reason = _tag_failure([m.group(0) for m in matches])
    if reason is not None:
        return _fail(reason)
    t_open, t_close, a_open, a_close = matches
    outside = text[: t_open.start()] + text[t_close.end() : a_open.start()] + text[a_close.end() :]
    if outside.strip():
        return _fail(Reason.TEXT_OUTSIDE)
    think = text[t_open.end() : t_close.start()].strip()
    answer = text[a_open.end() : a_close.start()].strip()
    if not think:
        return _fail(Reason.EMPTY_THINK)
    if not answer:
        return _fail(Reason.EMPTY_ANSWER)
    if max_think_chars is not None and len(think) > max_think_chars:
        return _fail(Reason.THINK_TOO_LONG)
    if max_answer_chars is not None and len(answer) > max_answer_chars:
        return _fail(Reason.ANSWER_TOO_LONG)
    return Segments(
        ok=True,
        think=think,
        answer=answer,
        think_span=(t_open.start(), t_close.end()),
        answer_span=(a_open.start(), a_close.end()),
    )


def format_completion(reasoning: str, answer: str) -> str:
    """The canonical target text for a curated record (inverse of `parse_completion` on valid input)."""
    return f"{THINK_OPEN}{reasoning}{THINK_CLOSE}{ANSWER_OPEN}{answer}{ANSWER_CLOSE}"


# Per-token segment labels -----------------------------------------------------------------------------------

IGNORE, THINK, ANSWER, TAG = 0, 1, 2, 3
TAG_RULES: tuple[str, ...] = ("segment", "token_mean")  # where the structural tokens are weighted (`scale.tags`)


def think_end_char(completion: str, close_tag: str = "think") -> int:
    """Character index where the think segment ends: just past the first `</think>` (the project's rule), or at its
    start with `close_tag="answer"` (the ablation that counts `</think>` as the first answer token).

    Returns -1 when there is no `</think>` (then every token is think: the model has not closed its reasoning).
    """
    i = completion.find(THINK_CLOSE)
    if i < 0:
        return -1
    return i if close_tag == "answer" else i + len(THINK_CLOSE)


def token_segment_labels(offsets: list[tuple[int, int]], boundary: int, span: tuple[int, int]) -> list[int]:
    """Label each token THINK, ANSWER or IGNORE from character offsets, for any tokenizer.

    Args:
        offsets: (start, end) character offsets of each token in the text, e.g. from a fast tokenizer with
            `return_offsets_mapping=True`, or cumulative lengths of per-token decodes (see `decode_offsets`).
        boundary: character index where the think segment ends (just past `</think>`, see `think_end_char`),
            or -1 when the completion has no `</think>` (then every completion token is think).
        span: (start, end) character range of the completion in the text; tokens outside it are IGNORE.

    A token is think iff it starts before `boundary`: a `</think>` split over several tokens is wholly think,
    and a token straddling the boundary goes to the segment holding its FIRST character, i.e. think. Real
    vocabularies merge across it (Qwen2's byte-level BPE has `><`, so `</think><answer>` is `</` `think` `><`
    `answer` `>`): the straddling token is the one that closes the reasoning, so it is weighted as think, and
    the answer starts at the first token wholly after `</think>`. This function is the only place the rule
    lives (SFT labels, generation statistics); tests/test_boundary_tokens.py checks it on such a vocabulary.
    Zero-width tokens (specials some tokenizers report with empty offsets) inside the span follow
    their position; a zero-width token exactly at the span end (end-of-turn) is answer.
    """
    start, end = span
    labels: list[int] = []
    for s, e in offsets:
        inside = start <= s < end or (s == e == end and end > start)
        if not inside:
            labels.append(IGNORE)
        elif boundary < 0 or s < boundary:
            labels.append(THINK)
        else:
            labels.append(ANSWER)
    return labels


def structural_token_mask(offsets: list[tuple[int, int]], text: str) -> list[bool]:
    """Which tokens are structural: they overlap one of the four tags, or lie wholly after the last `</answer>`
    (end-of-turn and what follows it). The content of both segments is everything else.

    Args:
        offsets: (start, end) character offsets of each token in `text` (see `decode_offsets`).
        text: the completion the offsets index into.
    A tag split over several tokens marks each of them; a token that merges a tag with a neighbour (`><`) is
    structural. With `scale.tags: token_mean` these tokens leave the segment means and are trained at the
    plain token-mean weight (`core.scale_loss`), so a 4-token answer segment no longer makes `</answer>` and
    end-of-turn some of the most heavily weighted tokens of a sequence.
    """
    spans = [(m, m + len(tag)) for tag in TAGS for m in _occurrences(text, tag)]
    last_close = text.rfind(ANSWER_CLOSE)
    tail = last_close + len(ANSWER_CLOSE) if last_close >= 0 else len(text) + 1
    return [s >= tail or any(s < b and a < max(e, s + 1) for a, b in spans) for s, e in offsets]


def _occurrences(text: str, tag: str) -> list[int]:
    out, i = [], text.find(tag)
    while i >= 0:
        out.append(i)
        i = text.find(tag, i + 1)
    return out


def decode_offsets(pieces: list[str]) -> list[tuple[int, int]]:
    """Character offsets of tokens from their individual decodes (pieces), concatenated in order.

    Used where a batch holds token ids but no offsets (inside a trainer): the concatenation of the pieces
    reproduces the text closely enough to find ASCII tags, whatever the tokenizer splits them into.
    """
    offsets, pos = [], 0
    for piece in pieces:
        offsets.append((pos, pos + len(piece)))
        pos += len(piece)
    return offsets
