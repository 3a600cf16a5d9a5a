"""What a data source yields: candidates for curation, or drops with a named reason.

A source is a function `(config, context) -> Iterator[Candidate | Dropped | Blank]`. It never silently skips an
input record: anything it cannot turn into a Candidate comes out as a Dropped with a reason and the raw input, and
a line that holds no record at all (empty or ASCII whitespace) comes out as a Blank, so it is counted too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from scalevlm.errors import PipelineError


class SourceError(PipelineError, ValueError):
    """A source is misconfigured (a missing file, an unknown format): the whole source cannot be read.

    A `PipelineError`: the stage prints the message and exits 2, without a traceback."""


class AdapterError(ValueError):
    """One input record cannot be normalised; `reason` is the name counted in the curation metrics."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Candidate:
    key: str  # unique and stable within its source; the curated id is f"{source}/{key}"
    images: tuple[Image.Image, ...]
    question: str
    reasoning: str
    answer: str
    answer_type: str
    choices: tuple[str, ...] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Dropped:
    key: str
    reason: str
    detail: str
    raw: Any = None  # the input as read (JSON-able), kept in the drop file so nothing is lost


@dataclass(frozen=True)
class Blank:
    """A line of a line-based file that holds nothing (empty or only ASCII whitespace): counted, not a record."""

    key: str


@dataclass(frozen=True)
class SourceContext:
    """What curation tells a source.

    `split_of(key)` is the split the key will land in (a source may keep train and test pools disjoint);
    `root` is the project root that relative paths in the source's config are resolved against.
    """

    split_of: Callable[[str], str]
    root: Path
