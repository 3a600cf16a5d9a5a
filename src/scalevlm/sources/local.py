"""Local JSONL files in the common public formats (being written: see the sources helper)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from scalevlm.sources.base import Candidate, Dropped, SourceContext


@dataclass(frozen=True)
class LocalFile:
    path: str  # relative to the project root; must lie under data/local/
    format: Literal["auto", "trl", "messages", "sharegpt", "plain"]
    limit: int | None


@dataclass(frozen=True)
class LocalConfig:
    enabled: bool
    files: tuple[LocalFile, ...]


def local_source(cfg: LocalConfig, ctx: SourceContext) -> Iterator[Candidate | Dropped]:
    raise NotImplementedError
