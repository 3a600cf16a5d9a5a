"""Training data: reading the validated splits and converting Records to TRL's prompt/completion vision format.

Records are read with `scalevlm.validation.read_split`; their chat turns are `scalevlm.prompts`'.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scalevlm.errors import MissingInputError
from scalevlm.prompts import completion_messages, prompt_messages
from scalevlm.records import Record
from scalevlm.validation import image_paths


def to_sft_rows(root: Path, records: Sequence[Record]) -> dict[str, list[Any]]:
    """Column-wise rows for `datasets.Dataset.from_dict`: images (absolute paths), prompt, completion."""
    return {
        "images": [[str(p.resolve()) for p in image_paths(root, r)] for r in records],
        "prompt": [prompt_messages(r) for r in records],
        "completion": [completion_messages(r) for r in records],
    }


def longest_prompt(processor: Any, root: Path, records: Sequence[Record]) -> tuple[int, str]:
    """(tokens, record id) of the longest prompt, image tokens included, as the processor builds it for training:
    a `max_length` at or below it would cut image tokens (transformers then fails mid-run)."""
    from PIL import Image

    longest = (0, "")
    for record in records:
        images = []
        for path in image_paths(root, record):
            with Image.open(path) as im:
                images.append(im.convert("RGB"))
        text = processor.apply_chat_template(prompt_messages(record), tokenize=False, add_generation_prompt=True)
        tokens = len(processor(text=[text], images=images or None)["input_ids"][0])
        longest = max(longest, (tokens, record.id))
    return longest


def reward_columns(records: Sequence[Record]) -> dict[str, list[Any]]:
    """What GRPO's rewards need beside the prompt (TRL passes extra columns to them as keyword lists)."""
    return {
        "answer": [r.answer for r in records],
        "answer_type": [r.answer_type for r in records],
        "choices": [list(r.choices) if r.choices is not None else None for r in records],
    }


def _vision_dataset(root: Path, records: Sequence[Record], rows: dict[str, list[Any]]) -> Any:
    """`rows` as a `datasets.Dataset` whose images decode lazily from their files, which must all exist (a
    missing file would otherwise fail mid-training, at the first batch that holds it)."""
    from datasets import Dataset, Image, List

    missing = [str(p) for r in records for p in image_paths(root, r) if not p.is_file()]
    if missing:
        raise MissingInputError(f"{len(missing)} image file(s) under {root} are missing, e.g. {missing[:3]}")
    return Dataset.from_dict(rows).cast_column("images", List(Image()))


def sft_dataset(root: Path, records: Sequence[Record]) -> Any:
    """A `datasets.Dataset` in TRL's prompt/completion vision format."""
    return _vision_dataset(root, records, to_sft_rows(root, records))


def grpo_dataset(root: Path, records: Sequence[Record]) -> Any:
    """The SFT rows without the completion (GRPO generates it), plus the reward columns `answer`, `answer_type`,
    `choices`."""
    rows = to_sft_rows(root, records)
    del rows["completion"]
    return _vision_dataset(root, records, {**rows, **reward_columns(records)})
