"""The chat turns of a sample, shared by training, evaluation, prediction and perception pre-training.

One place for what the model is shown: the user turn (one image part per image, then the question) and the
assistant turn (`<think>…</think><answer>…</answer>`, `core.segments.format_completion`). Low-level on purpose:
training, `scalevlm.evaluation` and `scalevlm.modeling` import it; it imports only the record schema.
"""

from __future__ import annotations

from typing import Any

from scalevlm.records import Record


def training_text(record: Record) -> str:
    """Text the tokenizer is trained on: question, reasoning and answer of one record."""
    return f"{record.question} {record.reasoning} {record.answer}"


def user_turn(question: str, n_images: int) -> list[dict[str, Any]]:
    """The user turn: one `{type: image}` part per image, then the question (training, evaluation and predict)."""
    parts: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": question}]}]


def prompt_messages(record: Record) -> list[dict[str, Any]]:
    """The user turn of a record (`user_turn`)."""
    return user_turn(record.question, len(record.images))


def completion_messages(record: Record) -> list[dict[str, Any]]:
    """The assistant turn: `<think>reasoning</think><answer>answer</answer>` (`format_completion`)."""
    return [{"role": "assistant", "content": [{"type": "text", "text": record.completion}]}]
