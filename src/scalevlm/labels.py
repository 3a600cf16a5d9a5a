"""Per-token segment labels of a collated batch, from its label ids, for any tokenizer.

The collator gives `labels` [B, T] (token ids on completion tokens, -100 elsewhere) but no character offsets.
Each supervised token is decoded on its own (cached per id); the concatenated pieces rebuild the completion
closely enough to find the ASCII tag `</think>`, whether the tokenizer keeps it as one token or splits it into
several. The boundary rule itself is `core.segments.token_segment_labels`, shared with every other stage.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from scalevlm.core.scale_loss import IGNORE_INDEX
from scalevlm.core.segments import (
    IGNORE,
    TAG,
    THINK,
    decode_offsets,
    structural_token_mask,
    think_end_char,
    token_segment_labels,
)


class PieceDecoder:
    """`id -> text` of a single token, memoised (the vocabulary is finite, batches repeat ids).

    `tokenizer` is anything with `decode(list[int], skip_special_tokens=..., ...)`; special tokens are kept so
    that an end-of-turn token is a (non-empty) answer token.
    """

    def __init__(self, tokenizer: object) -> None:
        self._decode = tokenizer.decode  # type: ignore[attr-defined]
        self._cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        piece = self._cache.get(token_id)
        if piece is None:
            piece = self._decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            self._cache[token_id] = piece
        return piece


def sequence_segment_labels(
    ids: list[int], decode_piece: Callable[[int], str], close_tag: str = "think", tags: str = "segment"
) -> list[int]:
    """Segment labels (THINK=1 / ANSWER=2 / TAG=3) of one completion's token ids, in order (`close_tag`: which
    segment `</think>` belongs to, `core.segments.think_end_char`; `tags`: "segment" keeps the tags and
    end-of-turn in their segments, "token_mean" labels them TAG, `core.segments.structural_token_mask`).

    Every token is think or answer: tokens the offset rule cannot place (zero-width pieces in an empty text)
    fall back to think, so no supervised token is ever dropped from the loss.
    """
    pieces = [decode_piece(i) for i in ids]
    text = "".join(pieces)
    offsets = decode_offsets(pieces)
    labels = [THINK if lab == IGNORE else lab
              for lab in token_segment_labels(offsets, think_end_char(text, close_tag), (0, len(text)))]
    if tags == "token_mean":
        labels = [TAG if structural else lab
                  for lab, structural in zip(labels, structural_token_mask(offsets, text), strict=True)]
    return labels


def batch_segment_labels(
    labels: torch.Tensor,
    decode_piece: Callable[[int], str],
    ignore_index: int = IGNORE_INDEX,
    close_tag: str = "think",
    tags: str = "segment",
) -> torch.Tensor:
    """Segment labels of a batch.

    Args:
        labels: [B, T] token ids on supervised (completion) positions, `ignore_index` elsewhere.
        decode_piece: `id -> text` of one token (see `PieceDecoder`).
    Returns:
        [B, T] int64 on `labels.device`: 0 ignore, 1 think, 2 answer, 3 structural (`tags`), aligned with `labels`
        (shift it the same way as the labels, e.g. `[:, 1:]`, to align with next-token losses).
    """
    out = torch.zeros(labels.shape, dtype=torch.long)
    cpu = labels.detach().cpu()
    mask = cpu != ignore_index
    for row in range(cpu.shape[0]):
        pos = mask[row].nonzero(as_tuple=True)[0]
        if len(pos):
            seg = sequence_segment_labels(cpu[row, pos].tolist(), decode_piece, close_tag, tags)
            out[row, pos] = torch.tensor(seg, dtype=torch.long)
    return out.to(labels.device)
