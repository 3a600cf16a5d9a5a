"""The curated-record schema, JSONL files and the content-addressed image store.

A curated record is one JSON object per line:

    id, images (paths relative to the dataset folder), question, reasoning, answer,
    answer_type ("integer" | "number" | "choice" | "text"), choices (list or null), source, split,
    provenance (dict: where the record came from)

Its training target is `format_completion(reasoning, answer)`.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from scalevlm.core.segments import format_completion

ANSWER_TYPES = ("integer", "number", "choice", "text")
FIELDS = ("id", "images", "question", "reasoning", "answer", "answer_type", "choices", "source", "split", "provenance")


class RecordError(ValueError):
    """A record does not match the curated schema."""


@dataclass(frozen=True)
class Record:
    id: str
    images: tuple[str, ...]
    question: str
    reasoning: str
    answer: str
    answer_type: str
    choices: tuple[str, ...] | None
    source: str
    split: str
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def completion(self) -> str:
        return format_completion(self.reasoning, self.answer)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["images"] = list(self.images)
        d["choices"] = list(self.choices) if self.choices is not None else None
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], where: str = "record") -> Record:
        if not isinstance(d, dict):
            raise RecordError(f"{where}: expected a JSON object, got {type(d).__name__}")
        missing = [k for k in FIELDS if k not in d and k != "provenance"]
        unknown = [k for k in d if k not in FIELDS]
        if missing or unknown:
            raise RecordError(
                f"{where} (id={d.get('id')!r}): missing fields {missing}, unknown fields {unknown}; "
                f"a curated record has exactly {list(FIELDS)}"
            )
        for k in ("id", "question", "reasoning", "answer", "answer_type", "source", "split"):
            if not isinstance(d[k], str):
                raise RecordError(f"{where} (id={d.get('id')!r}): field '{k}' must be a string, got {d[k]!r}")
        if not isinstance(d["images"], list) or not all(isinstance(p, str) for p in d["images"]):
            raise RecordError(f"{where} (id={d['id']!r}): field 'images' must be a list of paths, got {d['images']!r}")
        choices = d["choices"]
        if choices is not None and (not isinstance(choices, list) or not all(isinstance(c, str) for c in choices)):
            raise RecordError(f"{where} (id={d['id']!r}): field 'choices' must be null or a list of strings")
        return cls(
            id=d["id"],
            images=tuple(d["images"]),
            question=d["question"],
            reasoning=d["reasoning"],
            answer=d["answer"],
            answer_type=d["answer_type"],
            choices=tuple(choices) if choices is not None else None,
            source=d["source"],
            split=d["split"],
            provenance=dict(d.get("provenance") or {}),
        )


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows as canonical JSON lines (sorted keys, UTF-8, '\\n'), so equal data gives equal bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
            n += 1
    return n


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed object); a bad line raises naming the file and line."""
    with Path(path).open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise RecordError(f"{path}:{lineno}: not valid JSON ({e.msg}); each line must be one JSON object") from e


def write_records(path: Path, records: Iterable[Record]) -> int:
    return write_jsonl(path, (r.to_json() for r in sorted(records, key=lambda r: r.id)))


def read_records(path: Path) -> list[Record]:
    return [Record.from_json(obj, where=f"{path}:{n}") for n, obj in read_jsonl(path)]


# Images ---------------------------------------------------------------------------------------------------------


def png_bytes(image: Image.Image) -> bytes:
    """Deterministic PNG encoding (RGB, no metadata), so the same pixels always give the same bytes and hash."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


class ImageStore:
    """Content-addressed image folder: `images/<sha256[:2]>/<sha256>.png`, paths stored relative to `root`."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def put(self, image: Image.Image) -> str:
        data = png_bytes(image)
        digest = hashlib.sha256(data).hexdigest()
        rel = f"images/{digest[:2]}/{digest}.png"
        path = self.root / rel
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return rel

    def open(self, rel: str) -> Image.Image:
        return Image.open(self.root / rel)


def perceptual_hash(image: Image.Image, size: int = 16) -> str:
    """Colour-aware coarse hash for near-duplicate detection.

    Downscale to `size`×`size` RGB (box filter) and keep the top 2 bits of each channel: re-encodings and small
    noise map to the same key, while images differing in a visible region (a cell's colour) do not. A grey
    average hash would merge red and blue cells, which is why colour is kept.
    """
    small = image.convert("RGB").resize((size, size), Image.Resampling.BOX)
    return hashlib.sha256(bytes(v >> 6 for v in small.tobytes())).hexdigest()[:32]

