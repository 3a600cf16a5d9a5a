"""Where validated data lives and how later stages read it (the image-path convention).

`data/validate_segments/{train,val,test}.jsonl` hold accepted records in the curated schema, sorted by id, with
one change: their `images` are POSIX paths relative to the **project root** (for example
`data/curate_dataset/images/ab/ab12….png`). Images are not copied; they stay in the curated dataset folder,
which later stages therefore also list as a DVC dependency. Read them with

    records = load_split(root, "train")
    paths = image_paths(root, record)      # or resolve_image(root, record.images[0])

and never join image paths with the JSONL file's folder (that is the rule for *curated* files only, where paths
are relative to the dataset folder). `rejected.jsonl` keeps records exactly as read, with their reasons.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
from pathlib import Path
from typing import Any

from scalevlm.core.splits import SPLITS
from scalevlm.errors import MissingInputError
from scalevlm.facts import REJECTED, VALIDATED, split_file
from scalevlm.records import FIELDS, Record, read_records, write_jsonl

OUT_DIR = VALIDATED
REJECTED_FILE = REJECTED.name


def split_path(root: Path, split: str) -> Path:
    """`root / facts.split_file(split)`, for a known split name only."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    return Path(root) / split_file(split)


def load_split(root: Path, split: str) -> list[Record]:
    """Accepted records of one split (sorted by id); image paths are relative to `root`."""
    path = split_path(root, split)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `dvc repro validate_segments` first")
    return read_records(path)


def read_split(root: Path, split: str, limit: int | None = None) -> list[Record]:
    """Validated records of `split`, sorted by id, at most `limit` (the first by id)."""
    records = sorted(load_split(Path(root), split), key=lambda r: r.id)
    if not records:
        raise MissingInputError(f"{split_path(root, split)} holds no records: run `dvc repro validate_segments`")
    return records[:limit] if limit is not None else records


def resolve_image(root: Path, image: str) -> Path:
    """The file of one image path of a validated record (paths are relative to the project root)."""
    if Path(image).is_absolute():
        raise ValueError(f"validated image paths are relative to the project root, got absolute {image!r}")
    return Path(root) / image


def image_paths(root: Path, record: Record) -> list[Path]:
    """The image files of a validated record, in order."""
    return [resolve_image(root, image) for image in record.images]


def _root_prefix(dataset_dir: Path, root: Path) -> str:
    return Path(os.path.relpath(os.path.abspath(dataset_dir), os.path.abspath(root))).as_posix()


def rebase_images(record: Record, dataset_dir: Path, root: Path) -> Record:
    """The record with `images` relative to `root` (validated images were checked to stay in `dataset_dir`)."""
    prefix = _root_prefix(dataset_dir, root)
    images = tuple(posixpath.normpath(posixpath.join(prefix, p)) for p in record.images)
    return dataclasses.replace(record, images=images)


def record_json(record: Record) -> dict[str, Any]:
    """`Record.to_json` without `dataclasses.asdict`'s deep copy (5x faster on 10k records; same output)."""
    out = {name: getattr(record, name) for name in FIELDS}
    out["images"] = list(record.images)
    out["choices"] = list(record.choices) if record.choices is not None else None
    return out


def write_split(path: Path, records: list[Record]) -> int:
    """Canonical JSON lines sorted by id, byte-identical to `records.write_records`."""
    return write_jsonl(path, (record_json(r) for r in sorted(records, key=lambda r: r.id)))
