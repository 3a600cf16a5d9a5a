"""Benchmark prompts and scoring as lmms-eval does them for ScienceQA and IconQA (pure; used by
`scalevlm.evaluation.benchmarks`).

Prompts (lmms-eval's `default` format, so a score here means what an lmms-eval score means):

- ScienceQA (`tasks/scienceqa`, `sqa_doc_to_text`): ``Context: {hint}\\n`` when the hint is non-empty, the question,
  a newline, the options one per line as ``A. {choice}``, then the post-prompt
  ``\\nAnswer with the option's letter from the given choices directly.``
- IconQA (`tasks/iconqa`, `doc_to_text`): the statement ``Given a set of images and a question, please provide the
  answer to the question.\\n``, then for multiple choice ``Question: {question}.\\nOptions:\\n{A. …}\\nPlease answer
  with the option letter from the given choices directly.`` and for fill-in-the-blank ``Question: {question}.\\n
  Please answer the question using a single word or phrase.``; image options are named ``The first image.``, …

Scoring (the normalisation, written out):

- Multiple choice, `letter_match` = lmms-eval's `sqa_process_results`: the prediction and the target letter are
  compared after stripping surrounding whitespace and ignoring case (``b`` and `` B `` match ``B``); failing that,
  a prediction that starts with an upper-case letter and a period (``B. blue``) is judged by that letter alone.
  Anything else (``(B)``, ``The answer is B``, the option text) is wrong, exactly as there. lmms-eval has shipped
  two versions of that function: an older one compares exactly and has the ``B.`` rule; the current one strips and
  lower-cases both sides first, after which its ``B.`` rule can no longer fire. `letter_match` accepts what either
  accepts, so it never scores a prediction lower than lmms-eval would.
- Free text (IconQA fill-in-the-blank), `text_match`: exact match after casefolding, removing ASCII punctuation and
  trimming whitespace (the `exact_match` metric's `ignore_case` and `ignore_punctuation`, as lmms-eval's yaml sets
  them).

What is scored: the project extracts the answer with the segment rule (the text of the `<answer>` block; a
malformed completion has none and is wrong); `letter_match` is then applied to that text. Callers may also apply it
to the raw completion, which is what lmms-eval itself scores when a model answers without tags.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

SCIENCEQA_POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."
ICONQA_STATEMENT = "Given a set of images and a question, please provide the answer to the question.\n"
ICONQA_OPTIONS = ("Question: {question}.\nOptions:\n{options}\n"
                  "Please answer with the option letter from the given choices directly.")
ICONQA_FREEFORM = "Question: {question}.\nPlease answer the question using a single word or phrase."
ORDINALS = ("first", "second", "third", "fourth", "fifth")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def option_letter(index: int) -> str:
    """0 → A, 1 → B, …; ValueError past Z."""
    if not 0 <= index < 26:
        raise ValueError(f"option index {index} is outside A-Z")
    return chr(ord("A") + index)


def options_block(choices: Sequence[str]) -> str:
    """``A. first\\nB. second`` (lmms-eval's option lines)."""
    return "\n".join(f"{option_letter(i)}. {choice}" for i, choice in enumerate(choices))


def scienceqa_prompt(question: str, choices: Sequence[str], hint: str | None) -> str:
    context = f"Context: {hint}\n" if hint else ""
    return f"{context}{question}\n{options_block(choices)}{SCIENCEQA_POST_PROMPT}"


def image_options(n: int) -> tuple[str, ...]:
    """Option texts of IconQA's image choices: ``The first image.``, ``The second image.``, …"""
    if not 1 <= n <= len(ORDINALS):
        raise ValueError(f"IconQA image options: {n} choice images, expected 1 to {len(ORDINALS)}")
    return tuple(f"The {ORDINALS[i]} image." for i in range(n))


def iconqa_prompt(question: str, choices: Sequence[str] | None) -> str:
    """Multiple choice when `choices` is given, fill-in-the-blank when it is None."""
    if choices is None:
        return ICONQA_STATEMENT + ICONQA_FREEFORM.format(question=question)
    return ICONQA_STATEMENT + ICONQA_OPTIONS.format(question=question, options=options_block(choices))


def letter_match(pred: str | None, target: str) -> bool:
    """lmms-eval's multiple-choice exact match of a prediction against the target letter (rules in the module doc)."""
    if pred is None:
        return False
    p = pred.strip()
    if p.lower() == target.strip().lower():
        return True
    return len(p) >= 2 and p[0].isupper() and p[1] == "." and p[0] == target.strip().upper()


def letter_of(pred: str | None, n_choices: int) -> str | None:
    """The option letter `letter_match` reads in a prediction (one of the first `n_choices`), or None: the
    answer-parse rate of a multiple-choice benchmark."""
    if pred is None:
        return None
    p = pred.strip()
    letter = p.upper() if len(p) == 1 else p[0] if len(p) >= 2 and p[0].isupper() and p[1] == "." else None
    if letter is None or not "A" <= letter <= "Z":
        return None
    return letter if ord(letter) - ord("A") < n_choices else None


def text_key(text: str) -> str:
    """Free-text key: casefold, ASCII punctuation removed, surrounding whitespace trimmed."""
    return text.casefold().translate(_PUNCTUATION).strip()


def text_match(pred: str | None, gold: str) -> bool:
    """Exact match of a free-text answer under `text_key`; an empty prediction is wrong."""
    return pred is not None and bool(text_key(pred)) and text_key(pred) == text_key(gold)
