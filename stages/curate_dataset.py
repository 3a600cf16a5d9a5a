"""curate_dataset: pull every enabled source into the one curated schema.

deps:  src/scalevlm/sources, data/local (user JSONL files), params.yaml[curate_dataset]
outs:  data/curate_dataset/{records.jsonl, dropped.jsonl, images/}, reports/curate_dataset/metrics.json
cmd:   python -m stages.curate_dataset

Per record: text normalised (NFC, CRLF→LF, stripped), images stored content-addressed, id = "<source>/<key>",
split = stable hash of the id. Exact duplicates (same image bytes and text) and near duplicates (same coarse
colour hash of the images and the same normalised question) are dropped, the lowest id kept; ids differing only in
case or surrounding whitespace are the same id (`duplicate_id`). Text that validation would reject (lone
surrogates, control characters, look-alike segment tags) and answers the answer grammar cannot read under their
type are dropped here with the same reason names. Every input record ends up in records.jsonl or in dropped.jsonl
with its reason; blank lines of line-based sources are counted (`blank_lines`): for a local file,
lines = curated + dropped + blank_lines. metrics.json counts all of them by source and reason.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Any

from scalevlm.config import Checked, Fraction, Problems, config_dataclass
from scalevlm.core.answers import ANSWER_TYPES, gold_answer_problem
from scalevlm.core.splits import assign_split
from scalevlm.facts import CURATED, report_dir
from scalevlm.guard import atomic_dir
from scalevlm.records import (
    ImageStore,
    Record,
    id_key,
    lone_surrogate,
    perceptual_hash,
    png_bytes,
    write_jsonl,
    write_records,
)
from scalevlm.runtime import stage_main, write_json
from scalevlm.sources.base import Blank, Candidate, Dropped, SourceContext, SourceError
from scalevlm.sources.hub import HubConfig, check_field_map, hub_source
from scalevlm.sources.local import LOCAL_DIR, LocalConfig, local_source
from scalevlm.sources.reasoning_grid import ReasoningGridConfig, reasoning_grid_source
from scalevlm.sources.synthetic import DigitsConfig, GridConfig, digits_source, synthetic_source
from scalevlm.validation.checks import text_failures

NAME = "curate_dataset"
OUT_DATA = CURATED
OUT_REPORT = report_dir(NAME)
log = logging.getLogger(NAME)


@config_dataclass
class SourcesConfig(Checked):
    synthetic: GridConfig
    r1grid: ReasoningGridConfig
    digits: DigitsConfig
    local: LocalConfig
    hub: HubConfig

    def check(self) -> Problems:
        if not any(getattr(self, f.name).enabled for f in fields(self)):
            yield "", f"no source is enabled: set enabled: true under one of {[f.name for f in fields(self)]}"


@config_dataclass
class Config(Checked):
    val_fraction: Fraction
    test_fraction: Fraction
    split_salt: str
    sources: SourcesConfig

    def check(self) -> Problems:
        if self.val_fraction + self.test_fraction >= 1:
            yield "val_fraction", (f"val_fraction + test_fraction must be < 1 (train keeps the rest), got "
                                   f"{self.val_fraction} + {self.test_fraction}")
        # Source specs are checked here, where the loader runs it before any source reads or draws a sample (the
        # sources check them again when they start; their tests build bad specs directly).
        for i, file in enumerate(self.sources.local.files):
            normal = PurePosixPath(posixpath.normpath(file.path))
            if PurePosixPath(file.path).is_absolute() or not normal.is_relative_to(LOCAL_DIR.as_posix()):
                yield f"sources.local.files[{i}].path", (f"{file.path!r} must be relative and lie under "
                                                         f"{LOCAL_DIR.as_posix()}/")
            elif normal.suffix != ".jsonl":
                yield f"sources.local.files[{i}].path", (f"{file.path!r}: expected JSON Lines (.jsonl), one record per "
                                                         "line")
        for i, spec in enumerate(self.sources.hub.datasets):
            try:
                check_field_map(spec)
            except SourceError as e:
                yield f"sources.hub.datasets[{i}].field_map", str(e)


SOURCES = {"synthetic": synthetic_source, "r1grid": reasoning_grid_source, "digits": digits_source,
           "local": local_source, "hub": hub_source}


@dataclass
class _Pending:
    """A candidate after normalisation, images already encoded (PIL objects released)."""

    record: Record
    pngs: tuple[bytes, ...]
    exact_key: str
    near_key: str


def normalise_text(text: str) -> str:
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n")).strip()


def normalise_question(text: str) -> str:
    """Key for near-duplicate questions: case, punctuation and whitespace runs ignored."""
    kept = "".join(ch if ch.isalnum() else " " for ch in normalise_text(text).casefold())
    return " ".join(kept.split())


def _prepare(name: str, cand: Candidate, cfg: Config, root: Path) -> _Pending | Dropped:
    sample_id = f"{name}/{cand.key}"
    texts = {k: normalise_text(getattr(cand, k)) for k in ("question", "reasoning", "answer")}
    empty = [k for k, v in texts.items() if not v]
    if empty:
        return Dropped(cand.key, "missing_field", f"{sample_id}: empty {empty} after normalisation", _raw(cand))
    if cand.answer_type not in ANSWER_TYPES:
        return Dropped(cand.key, "bad_answer_type",
                       f"{sample_id}: answer_type {cand.answer_type!r} not in {ANSWER_TYPES}", _raw(cand))
    choices = tuple(normalise_text(c) for c in cand.choices) if cand.choices is not None else None
    problem = gold_answer_problem(texts["answer"], cand.answer_type, choices)
    if problem is not None:
        return Dropped(cand.key, "answer_type_mismatch", f"{sample_id}: {problem}", _raw(cand))
    bad_text = text_failures({**texts, **{f"choices[{i}]": c for i, c in enumerate(choices or ())}})
    if bad_text:
        return Dropped(cand.key, bad_text[0].reason, f"{sample_id}: " + "; ".join(f.detail for f in bad_text),
                       _raw(cand))
    if lone_surrogate(cand.provenance) is not None:  # the JSONL writer could not encode it
        return Dropped(cand.key, "invalid_utf8", f"{sample_id}: provenance holds a lone surrogate", _raw(cand))
    if not cand.images:
        return Dropped(cand.key, "missing_image", f"{sample_id}: no image", _raw(cand))
    pngs = tuple(png_bytes(im) for im in cand.images)
    near = "|".join(perceptual_hash(im) for im in cand.images)
    record = Record(
        id=sample_id,
        images=tuple(ImageStore.address(b) for b in pngs),
        question=texts["question"],
        reasoning=texts["reasoning"],
        answer=texts["answer"],
        answer_type=cand.answer_type,
        choices=choices,
        source=name,
        split=assign_split(sample_id, cfg.val_fraction, cfg.test_fraction, cfg.split_salt),
        provenance=cand.provenance,
    )
    exact = hashlib.sha256("\x00".join([*record.images, record.question, record.reasoning,
                                        record.answer]).encode()).hexdigest()
    return _Pending(record, pngs, exact, f"{near}|{normalise_question(record.question)}")


def _raw(cand: Candidate) -> dict[str, Any]:
    return {
        "key": cand.key, "question": cand.question, "reasoning": cand.reasoning, "answer": cand.answer,
        "answer_type": cand.answer_type, "choices": list(cand.choices) if cand.choices else None,
        "n_images": len(cand.images), "provenance": cand.provenance,
    }


def _collect(cfg: Config, root: Path) -> Iterator[tuple[str, _Pending | Dropped | Blank]]:
    for name, source in SOURCES.items():
        source_cfg = getattr(cfg.sources, name)
        if not source_cfg.enabled:
            continue
        ctx = SourceContext(
            split_of=lambda key, n=name: assign_split(f"{n}/{key}", cfg.val_fraction, cfg.test_fraction,
                                                      cfg.split_salt),
            root=root,
        )
        for item in source(source_cfg, ctx):
            yield name, _prepare(name, item, cfg, root) if isinstance(item, Candidate) else item


@dataclass
class Curated:
    kept: list[_Pending]
    dropped: list[dict[str, Any]]
    seen_in: Counter  # input records per source
    blank_in: Counter  # blank lines per source (not records)
    reasons: Counter


def curate(cfg: Config, root: Path) -> Curated:
    """Collect, then de-duplicate in id order (deterministic: the lowest id of a duplicate group is kept)."""
    pending, dropped = [], []
    seen_in: Counter = Counter()
    blank_in: Counter = Counter()
    for name, item in _collect(cfg, root):
        if isinstance(item, Blank):
            blank_in[name] += 1
            continue
        seen_in[name] += 1
        if isinstance(item, Dropped):
            dropped.append({"id": f"{name}/{item.key}", "source": name, "reason": item.reason, "detail": item.detail,
                            "raw": item.raw})
        else:
            pending.append(item)
    pending.sort(key=lambda p: p.record.id)
    kept: list[_Pending] = []
    first: dict[str, str] = {}
    for p in pending:
        keys = ("id:" + id_key(p.record.id), "x:" + p.exact_key, "n:" + p.near_key)  # ids: case/space-insensitive
        for kind, key in zip(("duplicate_id", "duplicate_exact", "duplicate_near"), keys, strict=True):
            if key in first:
                dropped.append({"id": p.record.id, "source": p.record.source, "reason": kind,
                                "detail": f"duplicate of {first[key]}", "raw": p.record.to_json()})
                break
        else:
            for key in keys:
                first[key] = p.record.id
            kept.append(p)
    dropped.sort(key=lambda d: (d["id"], d["reason"]))
    return Curated(kept, dropped, seen_in, blank_in, Counter(d["reason"] for d in dropped))


def run(cfg: Config, root: Path) -> dict[str, Any]:
    cur = curate(cfg, root)
    kept, dropped, seen_in, reasons = cur.kept, cur.dropped, cur.seen_in, cur.reasons
    metrics = {
        "input": sum(seen_in.values()),
        "curated": len(kept),
        "dropped": len(dropped),
        "input_by_source": dict(sorted(seen_in.items())),
        "blank_lines": sum(cur.blank_in.values()),
        "blank_lines_by_source": dict(sorted(cur.blank_in.items())),
        "curated_by_source": dict(sorted(Counter(p.record.source for p in kept).items())),
        "curated_by_split": dict(sorted(Counter(p.record.split for p in kept).items())),
        "dropped_by_reason": dict(sorted(reasons.items())),
        "dropped_by_source": dict(sorted(Counter(d["source"] for d in dropped).items())),
    }
    if metrics["curated"] + metrics["dropped"] != metrics["input"]:
        raise RuntimeError(f"curation lost records: {metrics}")  # an invariant, not a user error
    # written completely into a staging folder that replaces the previous output only once it is whole
    with atomic_dir(root / OUT_DATA) as out:
        store = ImageStore(out)
        for p in kept:
            for rel, data in zip(p.record.images, p.pngs, strict=True):
                store.write(rel, data)
        write_records(out / "records.jsonl", [p.record for p in kept])
        write_jsonl(out / "dropped.jsonl", dropped)
    write_json(root / OUT_REPORT / "metrics.json", metrics)
    log.info("curated %d of %d records (%d dropped: %s)", len(kept), metrics["input"], len(dropped), dict(reasons))
    return metrics


def main(argv: list[str] | None = None) -> int:
    return stage_main(NAME, Config, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
