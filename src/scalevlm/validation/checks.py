"""Per-sample checks of curated records: pure functions from a record to its named failures.

A record keeps *all* its failures (never only the first), each a `Failure(reason, detail)`. Segment structure
goes through the one segment rule, `parse_completion(record.completion)`, so `<think>`/`<answer>` tags inside the
curated reasoning or answer text make the composed completion fail (repeated or nested tag, text outside, …).
Reason names reuse `core.segments.Reason` values and add the data-level ones below.

Each reason belongs to one GX column (`COLUMN_REASONS`): the suite in `suite.py` expresses the same rules over
per-sample derived columns, and the stage checks that GX's unexpected counts equal the counts here.

Answers are judged by the one answer grammar (`scalevlm.core.answers.gold_answer_problem`), the same the source
adapters type answers with and the rewards score with. Ids are compared by `records.id_key` (case and surrounding
whitespace ignored): every record of a colliding group is rejected as `duplicate_id`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from scalevlm.core.answers import ANSWER_TYPES, gold_answer_problem
from scalevlm.core.segments import TAGS, Reason, parse_completion
from scalevlm.core.splits import SPLITS
from scalevlm.records import Record, id_key, lone_surrogate
from scalevlm.sources.adapters import image_slots

# Reason names beyond the segment rule ---------------------------------------------------------------------------
THINK_TOO_LONG = Reason.THINK_TOO_LONG.value
ANSWER_TOO_LONG = Reason.ANSWER_TOO_LONG.value
THINK_TOO_SHORT = "think_too_short"
UNKNOWN_ANSWER_TYPE = "unknown_answer_type"
EMPTY_CHOICES = "empty_choices"
ANSWER_TYPE_MISMATCH = "answer_type_mismatch"
NO_IMAGES = "no_images"
IMAGE_PATH_ESCAPES = "image_path_escapes"
IMAGE_MISSING = "image_missing"
IMAGE_BAD_PATH = "image_bad_path"
IMAGE_COUNT_MISMATCH = "image_count_mismatch"
IMAGE_CORRUPT = "image_corrupt"
IMAGE_TRUNCATED = "image_truncated"
IMAGE_TOO_SMALL = "image_too_small"
IMAGE_TOO_LARGE = "image_too_large"
CONTROL_CHARS = "control_chars"
INVALID_UTF8 = "invalid_utf8"
TAG_LOOKALIKE = "tag_lookalike"
DUPLICATE_ID = "duplicate_id"
BAD_SPLIT = "bad_split"
BAD_SCHEMA = "bad_schema"

SEGMENT_REASONS = tuple(r.value for r in Reason if r not in (Reason.THINK_TOO_LONG, Reason.ANSWER_TOO_LONG))
IMAGE_REASONS = (NO_IMAGES, IMAGE_COUNT_MISMATCH, IMAGE_BAD_PATH, IMAGE_PATH_ESCAPES, IMAGE_MISSING, IMAGE_CORRUPT,
                 IMAGE_TRUNCATED, IMAGE_TOO_SMALL, IMAGE_TOO_LARGE)

# Derived column -> the reasons that make a record fail it (string status columns hold "ok" or the reasons).
COLUMN_REASONS: dict[str, tuple[str, ...]] = {
    "schema_check": (BAD_SCHEMA,),
    "segment_check": SEGMENT_REASONS,
    "answer_check": (UNKNOWN_ANSWER_TYPE, EMPTY_CHOICES, ANSWER_TYPE_MISMATCH),
    "image_check": IMAGE_REASONS,
    "text_check": (CONTROL_CHARS, INVALID_UTF8, TAG_LOOKALIKE),
    "think_len": (THINK_TOO_SHORT, THINK_TOO_LONG),
    "answer_len": (ANSWER_TOO_LONG,),
    "id_key": (DUPLICATE_ID,),
    "split": (BAD_SPLIT,),
}
STATUS_COLUMNS = ("schema_check", "segment_check", "answer_check", "image_check", "text_check")
ALL_REASONS = tuple(r for reasons in COLUMN_REASONS.values() for r in reasons)
OK = "ok"

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # Unicode category Cc, minus \t and \n
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # lone surrogates: a str that cannot be encoded as UTF-8


class Failure(NamedTuple):
    reason: str
    detail: str


@dataclass(frozen=True)
class LengthLimits:
    """Limits on the stripped think/answer contents, in the unit of the length counter (tokens or chars)."""

    think_min: int
    think_max: int
    answer_max: int
    unit: str


LengthCounter = Callable[[list[str]], list[int]]


@dataclass
class SampleCheck:
    """One input line after all checks; `record` is None when the line does not match the curated schema."""

    line: int
    raw: Any
    record: Record | None
    failures: list[Failure]
    think_len: int | None = None
    answer_len: int | None = None

    @property
    def id(self) -> str | None:
        if self.record is not None:
            return self.record.id
        raw_id = self.raw.get("id") if isinstance(self.raw, dict) else None
        return raw_id if isinstance(raw_id, str) else None

    @property
    def reasons(self) -> list[str]:
        """Distinct reasons in the fixed order of `ALL_REASONS` (deterministic output)."""
        present = {f.reason for f in self.failures}
        return [r for r in ALL_REASONS if r in present]

    @property
    def accepted(self) -> bool:
        return not self.failures


# Pure per-record checks -----------------------------------------------------------------------------------------


def completion_failures(completion: str) -> list[Failure]:
    """The segment rule on one completion, as failures (empty when well-formed)."""
    seg = parse_completion(completion)
    if seg.ok or seg.reason is None:
        return []
    return [Failure(seg.reason.value, "completion <think>reasoning</think><answer>answer</answer> is not well-formed")]


def segment_failures(record: Record) -> list[Failure]:
    """The segment rule on the record's composed completion: a tag inside reasoning or answer repeats a tag."""
    return completion_failures(record.completion)


def segment_texts(record: Record) -> tuple[str, str]:
    """Think and answer contents whose lengths are limited: the parsed blocks, or the raw fields when unparsable."""
    seg = parse_completion(record.completion)
    if seg.ok:
        return seg.think, seg.answer
    return record.reasoning.strip(), record.answer.strip()


def answer_failures(answer: str, answer_type: str, choices: Sequence[str] | None) -> list[Failure]:
    """Answer readable under its type by the one answer grammar (`core.answers`): integer ("12", "1,234", "-3";
    ASCII digits), number (also "2.5", "1e-3", "1/2", "50%"), choice (an option letter or text, with non-empty
    choices), text (a non-empty normalised text)."""
    if answer_type not in ANSWER_TYPES:
        return [Failure(UNKNOWN_ANSWER_TYPE, f"answer_type {answer_type!r} not in {list(ANSWER_TYPES)}")]
    if answer_type == "choice" and not choices:
        return [Failure(EMPTY_CHOICES, "answer_type 'choice' needs a non-empty choices list")]
    problem = gold_answer_problem(answer.strip(), answer_type, choices)
    return [] if problem is None else [Failure(ANSWER_TYPE_MISMATCH, problem)]


def lookalike_tag(text: str) -> str | None:
    """A segment tag that appears only after NFKC normalisation (`＜/think＞`, `﹤answer﹥`), or None.

    Such text passes the segment rule as written but turns into a real tag under the NFKC normalisation that
    tokenizers and the answer grammar apply, so a look-alike is refused rather than trusted."""
    if text.isascii():
        return None
    folded = unicodedata.normalize("NFKC", text)
    return next((tag for tag in TAGS if folded.count(tag) > text.count(tag)), None)


def text_failures(fields: dict[str, str]) -> list[Failure]:
    """Each text field must encode as UTF-8, hold no control characters other than \\n and \\t, and no
    look-alike of a segment tag.

    Reported once per field and reason; a lone surrogate comes from a `\\udXXX` JSON escape or from invalid
    UTF-8 bytes in the file (decoded with surrogateescape, see `dataset.read_lines`)."""
    failures = []
    for name, value in fields.items():
        if _SURROGATE.search(value):
            failures.append(Failure(INVALID_UTF8, f"{name} holds a lone surrogate (not encodable as UTF-8)"))
        match = _CONTROL.search(value)
        if match:
            failures.append(Failure(CONTROL_CHARS, f"{name} holds control character U+{ord(match.group()):04X}"))
        tag = lookalike_tag(value)
        if tag is not None:
            failures.append(Failure(TAG_LOOKALIKE, f"{name} holds a look-alike of {tag} (becomes the tag under NFKC)"))
    return failures


def other_text_failures(record: Record) -> list[Failure]:
    """Lone surrogates in the fields `text_failures` does not read (images, provenance, …): the split writer could
    not encode them."""
    fields = {"images": record.images, "provenance": record.provenance, "answer_type": record.answer_type,
              "split": record.split}
    bad = [where for name, value in fields.items() if (where := lone_surrogate(value, name)) is not None]
    return [Failure(INVALID_UTF8, f"{where} holds a lone surrogate (not encodable as UTF-8)") for where in bad]


def image_count_failures(record: Record) -> list[Failure]:
    """`<image>` placeholders left in the question (when there are any) must match the images one for one."""
    slots = image_slots(record.question)
    if slots and slots != len(record.images):
        return [Failure(IMAGE_COUNT_MISMATCH, f"question has {slots} <image> placeholder(s) for {len(record.images)} "
                                              "image(s)")]
    return []


def record_text_fields(record: Record) -> dict[str, str]:
    """The free-text fields checked by `text_failures`, keyed by name (choices as `choices[i]`)."""
    fields = {"id": record.id, "question": record.question, "reasoning": record.reasoning, "answer": record.answer,
              "source": record.source}
    fields.update({f"choices[{i}]": c for i, c in enumerate(record.choices or ())})
    return fields


def split_failures(split: str) -> list[Failure]:
    """The split must be one of train/val/test."""
    return [] if split in SPLITS else [Failure(BAD_SPLIT, f"split {split!r} not in {list(SPLITS)}")]


def length_failures(think_len: int, answer_len: int, limits: LengthLimits) -> list[Failure]:
    """Think length within [think_min, think_max], answer length at most answer_max (all inclusive)."""
    unit = limits.unit
    failures = []
    if think_len < limits.think_min:
        failures.append(Failure(THINK_TOO_SHORT, f"think has {think_len} {unit} < min {limits.think_min}"))
    if think_len > limits.think_max:
        failures.append(Failure(THINK_TOO_LONG, f"think has {think_len} {unit} > max {limits.think_max}"))
    if answer_len > limits.answer_max:
        failures.append(Failure(ANSWER_TOO_LONG, f"answer has {answer_len} {unit} > max {limits.answer_max}"))
    return failures


def record_failures(record: Record) -> list[Failure]:
    """All pure (no I/O, no length) checks of one record."""
    return [
        *segment_failures(record),
        *answer_failures(record.answer, record.answer_type, record.choices),
        *text_failures(record_text_fields(record)),
        *other_text_failures(record),
        *image_count_failures(record),
        *split_failures(record.split),
    ]


def duplicate_failures(checks: Sequence[SampleCheck]) -> None:
    """Mark every record whose id key (`records.id_key`: case and surrounding whitespace ignored) occurs more than
    once: no copy is preferred, all go to quarantine."""
    counts: dict[str, int] = {}
    for c in checks:
        if c.id is not None:
            counts[id_key(c.id)] = counts.get(id_key(c.id), 0) + 1
    for c in checks:
        if c.id is not None and counts[id_key(c.id)] > 1:
            c.failures.append(Failure(DUPLICATE_ID, f"id {c.id!r} occurs {counts[id_key(c.id)]} times "
                                                    "(ids are compared ignoring case and surrounding whitespace)"))


# Length counters --------------------------------------------------------------------------------------------------


def char_counter(texts: list[str]) -> list[int]:
    """Lengths in Unicode code points (when no tokenizer is configured)."""
    return [len(t) for t in texts]


def token_counter(tokenizer_dir: Path) -> LengthCounter:
    """Count tokens with the base model's tokenizer (a local `from_pretrained` folder), no special tokens."""
    if not tokenizer_dir.is_dir():
        raise FileNotFoundError(
            f"validate_segments.tokenizer: {tokenizer_dir} is not a folder; give a local tokenizer folder "
            "(loadable with AutoTokenizer.from_pretrained) or null to count characters"
        )
    from transformers import AutoTokenizer  # slow import, only when token lengths are asked for

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))

    def count(texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    return count


def add_lengths(checks: Sequence[SampleCheck], count: LengthCounter, limits: LengthLimits) -> None:
    """Measure think/answer lengths in one batch per segment (tokenizers are fast on batches) and check them."""
    valid = [c for c in checks if c.record is not None]
    texts = [segment_texts(c.record) for c in valid if c.record is not None]
    think_lens = count([t for t, _ in texts])
    answer_lens = count([a for _, a in texts])
    for c, think_len, answer_len in zip(valid, think_lens, answer_lens, strict=True):
        c.think_len, c.answer_len = think_len, answer_len
        c.failures.extend(length_failures(think_len, answer_len, limits))


def status(check: SampleCheck, column: str) -> str | None:
    """A status column's value: "ok", the failing reasons joined by "+", or None when not checked (bad schema)."""
    if check.record is None and column != "schema_check":
        return None
    failed = [r for r in check.reasons if r in COLUMN_REASONS[column]]
    return "+".join(failed) if failed else OK
