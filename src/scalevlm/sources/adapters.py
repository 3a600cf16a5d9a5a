"""Pure normalisers from foreign reasoning formats to (question, reasoning, answer, answer_type, choices).

Every function here works on plain strings and lists, never on files, and raises `AdapterError(reason, detail)`
for a record it cannot normalise (the reason is counted in the curation metrics, the detail says what to fix).

Completion styles (the assistant's text):

- tagged:      `<think>R</think><answer>A</answer>`, checked by the one segment rule (`parse_completion`);
               a failure is reported as `segment_<reason>` (e.g. `segment_repeated_tag`).
- think + free text (Vision-R1-cold, R1-Onevision): `<think>R</think>` followed by a written solution that
               ends in the final answer: `\\boxed{X}` (the last one wins), else `Final Answer: X`, else
               `The answer is X`, else a one-line tail is the answer itself.
- LLaVA-CoT:   `<SUMMARY>…</SUMMARY><CAPTION>…</CAPTION><REASONING>…</REASONING><CONCLUSION>…</CONCLUSION>`;
               reasoning = summary, caption and reasoning joined by blank lines, answer = the conclusion.

Published layouts these adapters read (row level; the hub source picks the columns):

- Osilly/Vision-R1-cold (confirmed from the Vision-R1 README's LLaMA-Factory `dataset_info.json` entry): two
  JSON files, `vision_r1_llava_cot_full.json` with `{id, image, conversations: [{from: human|gpt, value}]}` and
  `vision_r1_mulberry_sft_full.json` with `{images, conversations: [{from: user|assistant, value}]}`; images are
  paths relative to the dataset folder (`llava_cot_images/…`, `mulberry_images/…`), downloaded separately.
  The gpt value is a DeepSeek-R1 style `<think>…</think>` then the solution ending in `Final Answer` /
  `\\boxed{}` (assumed from public descriptions of the set: not seen verbatim).
- Xkev/LLaVA-CoT-100k (confirmed from public loaders): `train.jsonl` with `{id, image, conversations}`,
  `from: human|gpt`, the image a path relative to the dataset folder (after unzipping `image.zip`); a record may
  hold several human/gpt turns.
- Fancy-MLLM/R1-Onevision (confirmed from public loaders): parquet shards with `{id, image, conversations}`
  where `image` is a base64 string (sometimes a `data:` URL); its LLaMA-Factory entry reads `messages`
  (`role`/`content`) and `images`, so both layouts are accepted. The answer text after `</think>` is assumed to be
  free text, sometimes wrapped in `<answer>` tags.

Multi-turn conversations: the first user turn and the first assistant turn after it are used; the turn count is
kept in provenance. Multiple-choice options are detected in the question ("A. …", "A: …", "(A) …", or inline
"(A) … (B) …") but left in the question text, which the model must see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from scalevlm.core import answers
from scalevlm.core.segments import parse_completion
from scalevlm.sources.base import AdapterError

Style = Literal["auto", "tagged", "think_text", "llava_cot"]

USER_ROLES = ("human", "user")
ASSISTANT_ROLES = ("gpt", "assistant")
_IMAGE_PLACEHOLDER = re.compile(r"<image(?:_?\d+)?>")
_LINE_OPTION = re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])[.:)])\s+(\S.*?)\s*$")
_INLINE_OPTION = re.compile(r"\(([A-Z])\)\s*(.*?)(?=\s*\([A-Z]\)|\n|$)")
_FINAL_ANSWER = re.compile(r"final\s+answer\s*(?:is\s*)?[:：]?", re.IGNORECASE)
_ANSWER_IS = re.compile(r"(?:the\s+(?:correct\s+)?answer\s+is|answer\s*[:：])", re.IGNORECASE)
_ANSWER_PREFIX = re.compile(
    r"^(?:the\s+)?(?:final\s+|correct\s+)?answer\s*(?:is\s*[:：]?|[:：])\s*", re.IGNORECASE
)
_LLAVA_TAGS = ("SUMMARY", "CAPTION", "REASONING", "CONCLUSION")


@dataclass(frozen=True)
class Normalised:
    """One record in the curated vocabulary (texts not yet NFC-normalised: the stage does that)."""

    question: str
    reasoning: str
    answer: str
    answer_type: str
    choices: tuple[str, ...] | None


# Questions and choices -----------------------------------------------------------------------------------------


def clean_question(text: str) -> str:
    """Drop `<image>` placeholders (the images travel separately) and surrounding whitespace."""
    return _IMAGE_PLACEHOLDER.sub("", text).strip()


def split_choices(question: str) -> tuple[str, ...] | None:
    """Options A, B, C, … found in the question (one per line, or inline as "(A) x (B) y"), else None.

    Only a run of at least two letters in order from A counts, so a stray "A: note" line is not an option list.
    """
    lines = [m for m in (_LINE_OPTION.match(line) for line in question.splitlines()) if m]
    found = [((m.group(1) or m.group(2)), m.group(3)) for m in lines]
    if not _in_order(found):
        found = [(m.group(1), m.group(2).strip()) for m in _INLINE_OPTION.finditer(question)]
    return tuple(text for _, text in found) if _in_order(found) else None


def _in_order(options: list[tuple[str, str]]) -> bool:
    letters = [letter for letter, _ in options]
    return len(letters) >= 2 and letters == [chr(ord("A") + i) for i in range(len(letters))]


def infer_answer_type(answer: str, choices: tuple[str, ...] | None) -> str:
    """`choice` for an answer naming an option, then `integer`, `number`, else `text`: the one answer grammar,
    `scalevlm.core.answers.infer_answer_type`, so validation and the rewards read the answer the same way."""
    return answers.infer_answer_type(answer, choices)


# Answers ---------------------------------------------------------------------------------------------------------


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{…}` (balanced braces), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j].strip()
    return None


def clean_answer(text: str) -> str:
    """Strip answer boilerplate: markdown bold, "The answer is"/"Answer:" prefixes, `\\boxed{}`, `$…$`, a final '.'."""
    answer = text.replace("**", "").strip()
    answer = _ANSWER_PREFIX.sub("", answer).strip()
    boxed = _boxed_or_raise(answer)
    if boxed is not None:
        answer = boxed
    for left, right in (("$", "$"), ("\\(", "\\)"), ("\\text{", "}")):
        if answer.startswith(left) and answer.endswith(right) and len(answer) > len(left) + len(right):
            answer = answer[len(left) : -len(right)].strip()
    if answer.endswith(".") and not answer.endswith(".."):
        answer = answer[:-1].rstrip()
    letter = re.fullmatch(r"\(([A-Z])\)", answer)
    return letter.group(1) if letter else answer


def _choice_letter(answer: str, choices: tuple[str, ...] | None) -> str:
    """"B. red" / "B)" / "B:" become "B" when the question has options and B is one of them."""
    m = re.fullmatch(r"\(?([A-Z])\)?(?:[.:)]\s*.*)?", answer, flags=re.DOTALL)
    if choices and m and ord(m.group(1)) - ord("A") < len(choices):
        return m.group(1)
    return answer


# Completions -----------------------------------------------------------------------------------------------------


def split_tagged(text: str) -> tuple[str, str]:
    """(reasoning, answer) of a `<think>…</think><answer>…</answer>` completion, by the segment rule."""
    seg = parse_completion(text)
    if not seg.ok:
        assert seg.reason is not None
        raise AdapterError(
            f"segment_{seg.reason.value}",
            f"completion breaks the segment rule ({seg.reason.value}); it must be exactly "
            f"<think>…</think><answer>…</answer>: {_preview(text)}",
        )
    return seg.think, seg.answer


def split_think_text(text: str) -> tuple[str, str]:
    """(reasoning, answer) of `<think>R</think>` + free text holding the final answer (Vision-R1 / R1-Onevision)."""
    if "<answer>" in text or "</answer>" in text:
        return split_tagged(text)
    head, sep, tail = text.partition("</think>")
    opened = head.strip()
    if not sep or not opened.startswith("<think>") or "<think>" in opened[7:] or "</think>" in tail:
        raise AdapterError(
            "bad_think_block",
            f"expected one leading <think>…</think> block followed by the answer text: {_preview(text)}",
        )
    reasoning = opened[len("<think>") :].strip()
    if not reasoning:
        raise AdapterError("empty_think", f"the <think> block is empty: {_preview(text)}")
    return reasoning, final_answer(tail)


def _boxed_or_raise(text: str) -> str | None:
    """`last_boxed(text)`, but an unclosed `\\boxed{` is an AdapterError: a cut-off solution, never an answer."""
    boxed = last_boxed(text)
    start = text.rfind("\\boxed{")
    if boxed is None and start >= 0:
        raise AdapterError("unbalanced_boxed", f"the last \\boxed{{ is never closed: {_preview(text[start:])}")
    return boxed


def final_answer(tail: str) -> str:
    """The final answer inside the free text after `</think>`; AdapterError(missing_answer) when none is marked."""
    tail = tail.strip()
    boxed = _boxed_or_raise(tail)
    if boxed:
        return boxed
    for marker in (_FINAL_ANSWER, _ANSWER_IS):
        hits = list(marker.finditer(tail))
        if hits:
            rest = tail[hits[-1].end() :].replace("**", "").strip()
            line = next((ln.strip() for ln in rest.splitlines() if ln.strip()), "")
            if line:
                return line
    if tail and "\n" not in tail:
        return tail
    raise AdapterError(
        "missing_answer",
        "no final answer after </think>: end the text with '\\boxed{X}', 'Final Answer: X' or 'The answer is X' "
        f"(got {_preview(tail) if tail else 'nothing'})",
    )


def split_llava_cot(text: str) -> tuple[str, str]:
    """(reasoning, answer) of a LLaVA-CoT `<SUMMARY>…<CONCLUSION>` completion."""
    parts: dict[str, str] = {}
    rest = text
    for tag in _LLAVA_TAGS:
        opens, closes = text.count(f"<{tag}>"), text.count(f"</{tag}>")
        if opens > 1 or closes > 1 or opens != closes:
            raise AdapterError("llava_cot_malformed", f"<{tag}> must appear once, opened and closed: {_preview(text)}")
        m = re.search(rf"<{tag}>(.*?)</{tag}>", text, flags=re.DOTALL)
        if m:
            parts[tag] = m.group(1).strip()
            rest = rest.replace(m.group(0), "")
    if rest.strip():
        raise AdapterError("llava_cot_malformed", f"text outside the LLaVA-CoT tags: {_preview(rest.strip())}")
    if not parts.get("CONCLUSION"):
        raise AdapterError("missing_answer", f"no non-empty <CONCLUSION> block: {_preview(text)}")
    reasoning = "\n\n".join(parts[t] for t in _LLAVA_TAGS[:3] if parts.get(t))
    if not reasoning:
        raise AdapterError("empty_think", f"no <SUMMARY>, <CAPTION> or <REASONING> text: {_preview(text)}")
    return reasoning, parts["CONCLUSION"]


def split_completion(text: str, style: Style = "auto") -> tuple[str, str]:
    """(reasoning, answer) of an assistant completion; `auto` picks the style from the tags present.

    auto: `<answer>` tags → tagged; `<CONCLUSION>` → LLaVA-CoT; `</think>` → think + free text; else tagged (which
    reports the segment-rule reason, e.g. `segment_missing_think`).
    """
    if style == "auto":
        if "<answer>" in text or "</answer>" in text:
            style = "tagged"
        elif "<CONCLUSION>" in text:
            style = "llava_cot"
        elif "</think>" in text:
            style = "think_text"
        else:
            style = "tagged"
    split = {"tagged": split_tagged, "think_text": split_think_text, "llava_cot": split_llava_cot}[style]
    return split(text)


def normalise(
    question: str,
    reasoning: str,
    answer: str,
    answer_type: str | None = None,
    choices: tuple[str, ...] | None = None,
) -> Normalised:
    """Clean the texts, detect options when none are given, and infer the answer type when none is given."""
    q = clean_question(question)
    choices = choices if choices is not None else split_choices(q)
    a = _choice_letter(clean_answer(answer), choices)
    for name, value in (("question", q), ("reasoning", reasoning.strip()), ("answer", a)):
        if not value:
            raise AdapterError("missing_field", f"'{name}' is empty after cleaning; give it a non-empty text")
    kind = answer_type or infer_answer_type(a, choices)
    if kind not in answers.ANSWER_TYPES:
        raise AdapterError("bad_answer_type", f"answer_type {kind!r} is not one of {list(answers.ANSWER_TYPES)}")
    problem = answers.gold_answer_problem(a, kind, choices)
    if problem is not None:  # what validation would reject later, refused here with the same grammar
        raise AdapterError("answer_type_mismatch", problem)
    return Normalised(q, reasoning.strip(), a, kind, choices)


def text_value(value: Any, field: str, allow_int: bool = False) -> str:
    """A text field as read: a string, or (answers only) a JSON integer written in decimal.

    Anything else is refused rather than coerced with `str()`: `true` would become "True", NaN "nan", an object
    its repr; a float loses its digits ("0.1 + 0.2"), so numbers other than integers must come as strings.
    """
    if isinstance(value, str):
        return value
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    expected = "a string or an integer" if allow_int else "a string"
    raise AdapterError("bad_field_type", f"'{field}' must be {expected}, got {type(value).__name__} {_preview(value)}")


def image_slots(content: Any) -> int:
    """Image slots of a text (`<image>` placeholders) or a message list / content list (`{type: image}` parts and
    placeholders in text parts, message contents and ShareGPT values)."""
    if isinstance(content, str):
        return len(_IMAGE_PLACEHOLDER.findall(content))
    if isinstance(content, list):
        return sum(image_slots(item) for item in content)
    if isinstance(content, dict):
        if content.get("type") == "image":
            return 1
        return sum(image_slots(content.get(k)) for k in ("text", "content", "value"))
    return 0


def check_image_slots(slots: int, n_images: int) -> None:
    """Image slots of the prompt (when it has any) must match the record's images one for one."""
    if slots and slots != n_images:
        raise AdapterError("image_count_mismatch", f"the question has {slots} <image> placeholder(s) but the record "
                                                   f"gives {n_images} image(s); give one image per placeholder")


# Conversations ---------------------------------------------------------------------------------------------------


def content_text(content: Any, field: str) -> str:
    """Text of a message content: a string, or a list of `{type: text, text}` / `{type: image}` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        texts = [text_value(p.get("text"), f"{field}[{i}].text") for i, p in enumerate(content)
                 if p.get("type") == "text"]
        return "\n".join(texts).strip()
    raise AdapterError("bad_message", f"'{field}' must be a string or a list of typed parts, got {_preview(content)}")


def conversation_pair(turns: Any, field: str) -> tuple[str, str, int]:
    """(user text, assistant text, number of turns) from ShareGPT `{from, value}` or chat `{role, content}` turns."""
    if not isinstance(turns, list) or not turns or not all(isinstance(t, dict) for t in turns):
        raise AdapterError("missing_field", f"'{field}' must be a non-empty list of messages, got {_preview(turns)}")
    user: str | None = None
    for i, turn in enumerate(turns):
        role = turn.get("from", turn.get("role"))
        text = content_text(turn.get("value", turn.get("content")), f"{field}[{i}]")
        if role in USER_ROLES and user is None:
            user = text
        elif role in ASSISTANT_ROLES and user is not None:
            return user, text, len(turns)
    raise AdapterError(
        "missing_turn",
        f"'{field}' needs a user turn (from/role in {USER_ROLES}) followed by an assistant turn "
        f"(in {ASSISTANT_ROLES}); roles found: {[t.get('from', t.get('role')) for t in turns]}",
    )


def _preview(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else repr(value)
    return repr(text if len(text) <= limit else text[:limit] + "…")
