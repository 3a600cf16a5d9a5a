"""Segment labels at token boundaries with a real-style vocabulary that merges across the think/answer boundary.

Qwen2's byte-level BPE keeps punctuation runs together, so `</think><answer>` tokenises as `</`, `think`, `><`,
`answer`, `>`: the `><` token holds the end of `</think>` and the start of `<answer>`. The rule (one place:
`scalevlm.core.segments.token_segment_labels`): a token belongs to the segment of its FIRST character, so `><` is
think. Training (offsets of label ids rebuilt from per-token decodes) and generation statistics use the same rule.
"""

from __future__ import annotations

import torch
from families import _bpe
from transformers import PreTrainedTokenizerFast

from scalevlm.core.segments import ANSWER, IGNORE, THINK, think_end_char, token_segment_labels
from scalevlm.labels import PieceDecoder, batch_segment_labels

COMPLETION = "<think>row 1: red blue. 1 red</think><answer>3</answer>"


def _tokenizer() -> PreTrainedTokenizerFast:
    texts = ["How many red cells? " + COMPLETION] * 20
    return PreTrainedTokenizerFast(tokenizer_object=_bpe(texts, ["<|endoftext|>", "<|im_end|>"], 300,
                                                         sentencepiece=False),
                                   eos_token="<|im_end|>", pad_token="<|endoftext|>")


def test_tokenizer_merges_across_the_boundary() -> None:
    tokens = _tokenizer().tokenize("</think><answer>")
    assert "><" in tokens and "</think>" not in tokens and "<answer>" not in tokens


def test_straddling_token_is_think_from_offsets_and_from_label_ids() -> None:
    tok = _tokenizer()
    text = COMPLETION
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    boundary = think_end_char(text)
    from_offsets = token_segment_labels(enc["offset_mapping"], boundary, (0, len(text)))
    pieces = [text[s:e] for s, e in enc["offset_mapping"]]
    straddle = pieces.index("><")
    s, e = enc["offset_mapping"][straddle]
    assert s < boundary < e  # the token really holds characters of both segments
    assert from_offsets[straddle] == THINK
    think = "".join(p for p, lab in zip(pieces, from_offsets, strict=True) if lab == THINK)
    answer = "".join(p for p, lab in zip(pieces, from_offsets, strict=True) if lab == ANSWER)
    assert think == "<think>row 1: red blue. 1 red</think><" and answer == "answer>3</answer>"

    # inside the trainer only label ids exist: the same labels from per-token decodes, end-of-turn is answer
    ids = enc["input_ids"] + [tok.eos_token_id]
    labels = torch.tensor([[-100, -100, *ids]])
    seg = batch_segment_labels(labels, PieceDecoder(tok))[0].tolist()
    assert seg[:2] == [IGNORE, IGNORE]
    assert seg[2:-1] == from_offsets
    assert seg[-1] == ANSWER
