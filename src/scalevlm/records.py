"""The curated-record schema, JSONL files and the content-addressed image store.

A curated record is one JSON object per line:

    id, images (paths relative to the dataset folder), question, reasoning, answer,
    answer_type ("integer" | "number" | "choice" | "text"), choices (list or null), source, split,
    provenance (dict: where the record came from)

Its training target is `format_completion(reasoning, answer)`. Ids are compared by `id_key` (case and surrounding
whitespace ignored), so two ids differing only in those are duplicates.

Reading untrusted JSON lines goes through `parse_json_line`, which turns every parser failure (bad syntax, nesting
deeper than `MAX_JSON_DEPTH`, integers past Python's digit limit, NaN/Infinity, duplicate keys) into one
`JSONLineError` with a message; `lone_surrogate` finds text that cannot be written as UTF-8.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from scalevlm.core.answers import ANSWER_TYPES as ANSWER_TYPES  # the schema's types are the answer grammar's
from scalevlm.core.segments import format_completion

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
            provenance=_provenance(d.get("provenance"), f"{where} (id={d['id']!r})"),
        )


def _provenance(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecordError(f"{where}: field 'provenance' must be an object (or null), got {type(value).__name__}")
    return dict(value)


def id_key(record_id: str) -> str:
    """The key ids are compared by: NFKC, surrounding whitespace stripped, case-folded ("A/1 " is "a/1")."""
    return unicodedata.normalize("NFKC", record_id).strip().casefold()


def json_line(row: Any) -> str:
    """One canonical JSON line (sorted keys, UTF-8 text); a row holding a lone surrogate is written ASCII-escaped,
    so a writer never fails half-way through a file on text it could not encode."""
    line = json.dumps(row, sort_keys=True, ensure_ascii=False)
    if _SURROGATE.search(line):
        line = json.dumps(row, sort_keys=True, ensure_ascii=True)
    return line


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows as canonical JSON lines (sorted keys, UTF-8, '\\n'), so equal data gives equal bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json_line(row) + "\n")
            n += 1
    return n


# Untrusted JSON lines -----------------------------------------------------------------------------------------

MAX_JSON_DEPTH = 64  # far above any record format (chat parts are ~5 deep); keeps every later walk shallow
BLANK_BYTES = b" \t\r\n\f\v"  # a line of only these is blank; any other character makes it a record line
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class JSONLineError(ValueError):
    """A line that is not one acceptable JSON value; the message says why."""


def _no_constants(name: str) -> Any:
    raise JSONLineError(f"{name} is not JSON (write numbers as finite values, or as strings)")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise JSONLineError(f"number {text[:20]}… overflows a float")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JSONLineError(f"duplicate key {key[:40]!r} in one object (one value would be lost)")
        out[key] = value
    return out


def json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), computed without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth + 1)
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_json_line(text: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """One JSON value, or JSONLineError for anything the parser refuses or that later code could not handle."""
    try:
        value = json.loads(text, parse_constant=_no_constants, parse_float=_finite_float,
                           object_pairs_hook=_unique_keys)
    except JSONLineError:
        raise
    except json.JSONDecodeError as e:
        raise JSONLineError(f"not valid JSON ({e.msg}, column {e.colno})") from e
    except RecursionError as e:
        raise JSONLineError(f"nested deeper than {max_depth} levels") from e
    except ValueError as e:  # e.g. an integer longer than Python's 4300-digit conversion limit
        raise JSONLineError(f"unreadable value ({e})") from e
    if json_depth(value) > max_depth:
        raise JSONLineError(f"nested deeper than {max_depth} levels")
    return value


def lone_surrogate(value: Any, path: str = "$") -> str | None:
    """The JSON path of the first string (key or value) holding a lone surrogate, or None.

    Such text comes from a `\\udXXX` JSON escape or undecodable bytes; it cannot be written as UTF-8."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return where
        elif isinstance(item, dict):
            for k, v in item.items():
                if isinstance(k, str) and _SURROGATE.search(k):
                    return f"{where} (a key)"
                stack.append((v, f"{where}.{k}"))
        elif isinstance(item, list | tuple):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
    return None


MAX_IMAGE_PATH_CHARS = 1024  # Linux allows 4096 bytes (255 per name); an image path this long is a mistake
_NOT_A_PATH = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def image_path_problem(rel: str) -> str | None:
    """Why `rel` cannot name an image file at all (control characters, NUL included, lone surrogates, or over
    `MAX_IMAGE_PATH_CHARS`), or None; checked before the filesystem sees it (`os` raises on a NUL byte)."""
    bad = _NOT_A_PATH.search(rel)
    if bad:
        return f"path holds U+{ord(bad.group()):04X}; give a plain relative path"
    if len(rel) > MAX_IMAGE_PATH_CHARS:
        return f"path is {len(rel)} characters long (max {MAX_IMAGE_PATH_CHARS})"
    return None


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed object); a bad line raises naming the file and line.

    For the project's own outputs, which wrap accepted input (itself at most `MAX_JSON_DEPTH` deep) in a few levels
    (a drop row's `raw`, a quarantine row's `record`), so the depth limit here leaves room for those."""
    with Path(path).open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield lineno, parse_json_line(line, max_depth=2 * MAX_JSON_DEPTH)
            except JSONLineError as e:
                raise RecordError(f"{path}:{lineno}: {e}; each line must be one JSON object") from e


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
    """Content-addressed image folder: `images/<sha256[:2]>/<sha256>.png`, paths stored relative to `root`.

    The one definition of the layout: curation writes through it, records store its relative paths."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @staticmethod
    def address(data: bytes) -> str:
        """Where the PNG `data` is stored, relative to the store's root (a function of its bytes)."""
        digest = hashlib.sha256(data).hexdigest()
        return f"images/{digest[:2]}/{digest}.png"

    def write(self, rel: str, data: bytes) -> None:
        """Store `data` at `rel` (= `address(data)`) unless that file exists (same address, same bytes)."""
        path = self.root / rel
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def put(self, image: Image.Image) -> str:
        """Store `image` as deterministic PNG; returns its relative path."""
        data = png_bytes(image)
        rel = self.address(data)
        self.write(rel, data)
        return rel


def perceptual_hash(image: Image.Image, size: int = 16) -> str:
    """Colour-aware coarse hash for near-duplicate detection.

    Downscale to `size`×`size` RGB (box filter) and keep the top 2 bits of each channel: re-encodings and small
    noise map to the same key, while images differing in a visible region (a cell's colour) do not. A grey
    average hash would merge red and blue cells, which is why colour is kept.
    """
    small = image.convert("RGB").resize((size, size), Image.Resampling.BOX)
    return hashlib.sha256(bytes(v >> 6 for v in small.tobytes())).hexdigest()[:32]

