"""Inference shared by evaluation (`stages.evaluate`) and prediction (`scalevlm.predict`).

Two functions hold everything a served answer depends on besides the weights, so that `predict` reproduces the
evaluation's completions exactly:

- `prompt_text`: the generation prompt of one question with its images (the user turn of `user_turn`, through
  the processor's chat template, generation prompt appended), tokenised with `PROMPT_TOKENIZE_KWARGS`: the same
  ids TRL's SFT collator gave the prompt in training, for every model family (tests/test_families.py checks this
  for evaluation, GRPO and SFT). Per-family prompt handling belongs here.
- `generate`: batched generation, prompts left-padded so every row starts generating at the same position;
  greedy by default (`GenerationOptions()`), sampling when `do_sample` is set. The completion is cut at the
  first end-of-turn token and decoded without special tokens; think/answer token counts follow the SFT segment
  rule on the generated ids (think = first token through `</think>`, answer = the rest; no `</think>` = all think).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scalevlm.core.segments import ANSWER, ANSWER_OPEN, THINK, format_completion
from scalevlm.prompts import user_turn


@dataclass(frozen=True)
class GenerationOptions:
    """Decoding settings. The default is greedy, so a completion is a function of the weights and the prompt."""

    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.do_sample and not (self.temperature > 0 and 0 < self.top_p <= 1
                                   and (self.top_k is None or self.top_k >= 1)):
            raise ValueError(f"sampling needs temperature > 0, 0 < top_p <= 1 and top_k >= 1 (or unset), got "
                             f"temperature={self.temperature}, top_p={self.top_p}, top_k={self.top_k}")

    def generate_kwargs(self) -> dict[str, Any]:
        if not self.do_sample:
            return {"max_new_tokens": self.max_new_tokens, "do_sample": False}
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": True,
                                  "temperature": self.temperature, "top_p": self.top_p}
        if self.top_k is not None:
            kwargs["top_k"] = self.top_k
        return kwargs


GREEDY = GenerationOptions()


@dataclass(frozen=True)
class Generation:
    """One completion: its text (special tokens removed), its token counts per segment, and how many tokens it
    took to open the answer (through the token that completes the first `<answer>`; None if it never does). Under
    greedy decoding a smaller budget b gives the same first b tokens, so the completion "misses `<answer>` at
    budget b" iff `answer_open_token` is None or > b (`evaluate`'s `missing_answer_at`)."""

    text: str
    completion_tokens: int
    think_tokens: int
    answer_tokens: int
    answer_open_token: int | None = None


# How every prompt is tokenised: the rendered chat template already holds whatever special tokens the family wants
# (Gemma-3's `<bos>`), and TRL's SFT collator tokenises prompts with add_special_tokens=False. Tokenising with the
# processor's defaults instead gives Gemma-3 a doubled BOS and LLaVA-NeXT (Mistral) a BOS training never saw.
PROMPT_TOKENIZE_KWARGS: dict[str, Any] = {"add_special_tokens": False}
# GRPOConfig(chat_template_kwargs=...): GRPO tokenises prompts through `processor.apply_chat_template(tokenize=True)`,
# which adds special tokens unless the rendered text starts with BOS; this makes it tokenise like SFT.
GRPO_CHAT_TEMPLATE_KWARGS: dict[str, Any] = {"processor_kwargs": dict(PROMPT_TOKENIZE_KWARGS)}
_PROBE = format_completion("x", "y")  # any completion: only the rendered text before it matters


def prompt_text(processor: Any, question: str, n_images: int) -> str:
    """The text prompt the model generates from, exactly as SFT trained on it: TRL renders the user turn with the
    generation prompt and the user turn + completion, and keeps their common prefix as the prompt (the same as the
    generation prompt for Qwen2.5-VL, LLaVA-NeXT and Gemma-3, whose assistant turn starts with it). The one prompt
    builder of evaluation and predict; tokenise it with `PROMPT_TOKENIZE_KWARGS`."""
    messages = user_turn(question, n_images)
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    completion = [{"role": "assistant", "content": [{"type": "text", "text": _PROBE}]}]
    full = processor.apply_chat_template(messages + completion, tokenize=False)
    return os.path.commonprefix([prompt, full])


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def generate(
    model: Any, processor: Any, images: Sequence[Sequence[Any]], questions: Sequence[str],
    options: GenerationOptions = GREEDY,
) -> list[Generation]:
    """Completions of one batch.

    Args:
        images: per row, its PIL images (RGB) in prompt order; a row may have none.
        questions: per row, the question text.
        options: decoding settings (greedy by default); seed torch's RNG before calling when sampling.
    Returns:
        one `Generation` per row, in order.
    """
    import torch

    from scalevlm.labels import PieceDecoder, sequence_segment_labels

    if len(images) != len(questions):
        raise ValueError(f"generate: {len(images)} image lists for {len(questions)} questions")
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    texts = [prompt_text(processor, q, len(imgs)) for q, imgs in zip(questions, images, strict=True)]
    kwargs: dict[str, Any] = {"text": texts, "padding": True, "padding_side": "left", "return_tensors": "pt",
                              **PROMPT_TOKENIZE_KWARGS}
    if any(images):
        kwargs["images"] = [list(imgs) for imgs in images]
    inputs = processor(**kwargs).to(model.device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.no_grad():
        out = model.generate(**inputs, pad_token_id=pad, **options.generate_kwargs())
    stops = _eos_ids(model, tokenizer)
    decode_piece = PieceDecoder(tokenizer)
    results = []
    for row in out[:, inputs["input_ids"].shape[1] :].tolist():
        end = next((k for k, t in enumerate(row) if t in stops), len(row))
        ids = row[:end]
        labels = sequence_segment_labels(ids, decode_piece) if ids else []
        results.append(Generation(
            text=tokenizer.decode(ids, skip_special_tokens=True),
            completion_tokens=len(ids),
            think_tokens=sum(1 for lab in labels if lab == THINK),
            answer_tokens=sum(1 for lab in labels if lab == ANSWER),
            answer_open_token=tokens_to_open_answer([decode_piece(i) for i in ids]),
        ))
    return results


def tokens_to_open_answer(pieces: Sequence[str]) -> int | None:
    """1-based index of the token whose piece completes the first `<answer>` (a tag may span tokens); None if none."""
    text = ""
    for k, piece in enumerate(pieces, start=1):
        text += piece
        if ANSWER_OPEN in text[-(len(piece) + len(ANSWER_OPEN)) :]:
            return k
    return None


@dataclass(frozen=True)
class ReferenceLoss:
    """Teacher-forced cross-entropy of one reference completion, summed per segment (nats), with token counts."""

    think_ce: float
    think_tokens: int
    answer_ce: float
    answer_tokens: int


def reference_losses(model: Any, processor: Any, images: Sequence[Sequence[Any]], questions: Sequence[str],
                     completions: Sequence[str]) -> list[ReferenceLoss]:
    """Per row, the model's cross-entropy on `completions` (the references) after the generation prompt, split by
    the SFT segment rule: think = first completion token through `</think>`, answer = after it through end-of-turn.
    The answer-token CE the paper's premise is about (vanilla SFT leaves it high; SCALe lowers it)."""
    import torch

    from scalevlm.core.scale_loss import IGNORE_INDEX, shifted_token_ce
    from scalevlm.labels import PieceDecoder, sequence_segment_labels

    tokenizer = processor.tokenizer
    prompts = [prompt_text(processor, q, len(imgs)) for q, imgs in zip(questions, images, strict=True)]
    texts = [p + c + tokenizer.eos_token for p, c in zip(prompts, completions, strict=True)]
    kwargs: dict[str, Any] = {"padding": True, "padding_side": "right", "return_tensors": "pt",
                              **PROMPT_TOKENIZE_KWARGS}
    prompt_kwargs: dict[str, Any] = dict(PROMPT_TOKENIZE_KWARGS)
    if any(images):
        kwargs["images"] = prompt_kwargs["images"] = [list(imgs) for imgs in images]
    enc = processor(text=texts, **kwargs)
    prompt_lens = [len(ids) for ids in processor(text=prompts, **prompt_kwargs)["input_ids"]]
    labels = torch.full_like(enc["input_ids"], IGNORE_INDEX)
    for b, n in enumerate(prompt_lens):
        keep = enc["attention_mask"][b].bool().clone()
        keep[:n] = False
        labels[b][keep] = enc["input_ids"][b][keep]
    with torch.no_grad():
        logits = model(**enc.to(model.device), use_cache=False).logits
    ce = shifted_token_ce(logits, labels.to(logits.device)).cpu()
    decode_piece = PieceDecoder(tokenizer)
    out = []
    for b in range(labels.shape[0]):
        pos = (labels[b] != IGNORE_INDEX).nonzero(as_tuple=True)[0]
        seg = sequence_segment_labels(labels[b, pos].tolist(), decode_piece)
        row_ce = ce[b, pos - 1]  # CE of predicting token t sits at t - 1
        think = torch.tensor([s == THINK for s in seg])
        out.append(ReferenceLoss(think_ce=float(row_ce[think].sum()), think_tokens=int(think.sum()),
                                 answer_ce=float(row_ce[~think].sum()), answer_tokens=int((~think).sum())))
    return out
