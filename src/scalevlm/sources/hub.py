"""Hugging Face datasets by id (or local path) with adapters (being written: see the sources helper)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from scalevlm.sources.base import Candidate, Dropped, SourceContext


@dataclass(frozen=True)
class HubDataset:
    name: str  # hub id, or a local folder / data file in the dataset's published format
    split: str
    revision: str | None
    adapter: Literal["mapped", "vision_r1", "llava_cot", "r1_onevision"]
    field_map: dict[str, str]
    limit: int | None


@dataclass(frozen=True)
class HubConfig:
    enabled: bool
    datasets: tuple[HubDataset, ...]


def hub_source(cfg: HubConfig, ctx: SourceContext) -> Iterator[Candidate | Dropped]:
    raise NotImplementedError
