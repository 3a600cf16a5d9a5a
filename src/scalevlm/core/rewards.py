"""GRPO reward functions with TRL's signature, built on the one segment rule (pure).

TRL calls each reward as ``f(prompts=…, completions=…, completion_ids=…, **columns)`` where every extra dataset
column arrives as a keyword list aligned with `completions`. ``completions[i]`` is either a string (standard
prompts) or ``[{"role": "assistant", "content": str | list[part]}]`` (conversational prompts). A reward returns one
float per completion (``None`` makes TRL skip that sample for that reward). Weights are not applied here: they
come from params through ``GRPOConfig(reward_weights=…)`` in the order of `reward_functions`.

Anti-hacking: format and accuracy both go through `parse_completion`, which is a full match, so repeated or
nested tags, text outside the blocks, an empty answer or an answer only inside the think all score 0; the
accuracy reward never searches for an answer anywhere but the single well-formed answer block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from scalevlm.core.answers import DEFAULT_ABS_TOL, DEFAULT_REL_TOL, is_correct
from scalevlm.core.segments import parse_completion

RewardFunc = Callable[..., list[float | None]]
Completion = str | Sequence[dict[str, Any]]


def completion_text(completion: Completion) -> str:
    """The text of one completion: a string as is, or the content of the last message of a conversation.

    Message content may be a string or a list of parts (``{"type": "text", "text": …}``); text parts are joined.
    """
    if isinstance(completion, str):
        return completion
    if not completion:
        return ""
    content = completion[-1].get("content", "")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text")


def extract_answer(completion: Completion) -> str | None:
    """The answer of a well-formed completion (segment rule), else None: malformed output has no answer."""
    seg = parse_completion(completion_text(completion))
    return seg.answer if seg.ok else None


def format_reward(
    prompts: Sequence[Any] | None, completions: Sequence[Completion], completion_ids: Sequence[Any] | None = None,
    **kwargs: Any
) -> list[float | None]:
    """1.0 iff the completion is well-formed under the segment rule, else 0.0 (no partial credit to exploit)."""
    return [1.0 if parse_completion(completion_text(c)).ok else 0.0 for c in completions]


def _column(kwargs: dict[str, Any], name: str, n: int, required: bool) -> list[Any]:
    values = kwargs.get(name)
    if values is None:
        if required:
            raise KeyError(
                f"accuracy_reward needs the dataset column '{name}' (got columns {sorted(kwargs)}); "
                "keep 'answer', 'answer_type' and 'choices' in the GRPO train dataset"
            )
        return [None] * n
    if len(values) != n:
        raise ValueError(f"column '{name}' has {len(values)} values for {n} completions")
    return list(values)


def accuracy_reward(
    prompts: Sequence[Any] | None,
    completions: Sequence[Completion],
    completion_ids: Sequence[Any] | None = None,
    **kwargs: Any,
) -> list[float | None]:
    """1.0 iff the well-formed answer block matches the gold answer (`is_correct`), else 0.0.

    Dataset columns as kwargs: ``answer`` (gold text, required), ``answer_type`` (default ``"text"``) and
    ``choices`` (list or None). A sample whose gold answer is None gets ``None`` (TRL skips it). Optional
    ``rel_tol``/``abs_tol`` floats (not lists) override the numeric tolerances.
    """
    n = len(completions)
    golds = _column(kwargs, "answer", n, required=True)
    types = _column(kwargs, "answer_type", n, required=False)
    choices = _column(kwargs, "choices", n, required=False)
    rel_tol = float(kwargs.get("rel_tol", DEFAULT_REL_TOL))
    abs_tol = float(kwargs.get("abs_tol", DEFAULT_ABS_TOL))
    rewards: list[float | None] = []
    for completion, gold, answer_type, options in zip(completions, golds, types, choices, strict=True):
        if gold is None:
            rewards.append(None)
            continue
        pred = extract_answer(completion)
        ok = pred is not None and is_correct(pred, str(gold), answer_type or "text", options, rel_tol, abs_tol)
        rewards.append(1.0 if ok else 0.0)
    return rewards


def make_length_reward(max_think_chars: int) -> RewardFunc:
    """Optional shaping against rambling: a bounded think-length bonus for well-formed completions.

    reward = 1.0 if ``len(think) <= max_think_chars``, decaying linearly to 0.0 at ``2 * max_think_chars``;
    malformed completions get 0.0, so the bonus can never be earned without the format. It is measured in
    characters of the stripped think block (tokenizer-independent). Use a small weight (it must not outweigh
    accuracy) or leave it off (weight 0 in params removes it from the reward list).
    """
    if max_think_chars <= 0:
        raise ValueError(f"max_think_chars must be > 0, got {max_think_chars}")

    def length_reward(
        prompts: Sequence[Any] | None, completions: Sequence[Completion], completion_ids: Sequence[Any] | None = None,
        **kwargs: Any
    ) -> list[float | None]:
        out: list[float | None] = []
        for c in completions:
            seg = parse_completion(completion_text(c))
            if not seg.ok:
                out.append(0.0)
                continue
            excess = max(0, len(seg.think) - max_think_chars) / max_think_chars
            out.append(max(0.0, 1.0 - excess))
        return out

    return length_reward


def reward_functions(weights: dict[str, float], max_think_chars: int) -> tuple[list[RewardFunc], list[float]]:
    """Reward functions and their weights, in matching order, for `GRPOTrainer`/`GRPOConfig(reward_weights=…)`.

    `weights` maps ``format``, ``accuracy`` and ``length`` to floats; a reward with weight 0 is left out
    (it would cost compute and only add a logged column). Raises on unknown names or when all weights are 0.
    """
    known: dict[str, RewardFunc] = {"format": format_reward, "accuracy": accuracy_reward}
    unknown = sorted(set(weights) - {*known, "length"})
    if unknown:
        raise ValueError(f"unknown reward names {unknown}; expected a subset of ['accuracy', 'format', 'length']")
    funcs: list[RewardFunc] = []
    kept: list[float] = []
    for name in ("format", "accuracy", "length"):
        w = float(weights.get(name, 0.0))
        if w == 0.0:
            continue
        funcs.append(make_length_reward(max_think_chars) if name == "length" else known[name])
        kept.append(w)
    if not funcs:
        raise ValueError(f"every reward weight is 0 ({weights}); GRPO needs at least one reward")
    return funcs, kept
