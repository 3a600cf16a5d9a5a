"""curate_dataset on the embedded sources: schema, determinism, stable splits, dedup, counts."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from scalevlm.config import from_dict, load_params
from scalevlm.core.segments import parse_completion
from scalevlm.records import read_records
from scalevlm.sources.base import Candidate, SourceContext
from scalevlm.sources.synthetic import GridConfig, grid_sample
from stages import curate_dataset as stage


def make_cfg(project_root: Path, **sources: dict) -> stage.Config:
    section = load_params(project_root / "params.yaml")["curate_dataset"]
    section = json.loads(json.dumps(section))
    for name, change in sources.items():
        section["sources"][name].update(change)
    return from_dict(stage.Config, section, "curate_dataset")


def tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def small_cfg(project_root: Path) -> stage.Config:
    return make_cfg(project_root, synthetic={"n": 120, "enabled": True}, r1grid={"enabled": False},
                    digits={"n": 60, "enabled": True})


def test_records_follow_the_schema_and_the_segment_rule(small_cfg: stage.Config, tmp_path: Path) -> None:
    summary = stage.run(small_cfg, tmp_path)
    path = tmp_path / "data/curate_dataset/records.jsonl"
    records = read_records(path)
    assert summary["curated"] == len(records) == 180 - summary["dropped"]
    assert [r.id for r in records] == sorted(r.id for r in records)
    for r in records:
        assert parse_completion(r.completion).ok, r.id
        assert r.answer_type == "integer" and int(r.answer) >= 0
        (rel,) = r.images  # curated image paths are relative to the dataset folder
        img = path.parent / rel
        assert Image.open(img).size in ((64, 64), (32, 16))
    assert json.loads((tmp_path / "reports/curate_dataset/metrics.json").read_text()) == summary


def test_grid_answer_is_the_red_count_and_think_is_long() -> None:
    cfg = GridConfig(True, 1, 0, 4, 4, 16, 0.45, 0.25, False, "sum")
    image, _, think, answer, extra = grid_sample(random.Random(1), cfg)
    reds = sum(row.count("red") for row in extra["cells"])
    assert answer == str(reds) and "total" not in think  # the answer does the final step
    assert len(think.split()) > 20 * len(answer.split())
    # cell (r, c) centre pixel is red iff the cell is red: objects are aligned to 16 px tokens
    for r, row in enumerate(extra["cells"]):
        for c, colour in enumerate(row):
            px = image.getpixel((c * 16 + 8, r * 16 + 8))
            assert (px == (220, 30, 30)) is (colour == "red")


def test_copy_variant_states_the_total_in_the_think() -> None:
    cfg = GridConfig(True, 1, 0, 4, 4, 16, 0.45, 0.25, True, "copy")
    _, _, think, answer, _ = grid_sample(random.Random(1), cfg)
    assert think.endswith(f"total {answer}.")


def test_rerun_is_byte_identical(small_cfg: stage.Config, tmp_path: Path) -> None:
    stage.run(small_cfg, tmp_path / "a")
    stage.run(small_cfg, tmp_path / "b")
    stage.run(small_cfg, tmp_path / "b")  # over its own previous outputs
    assert tree_digest(tmp_path / "a/data") == tree_digest(tmp_path / "b/data")


def test_adding_data_never_moves_existing_samples(project_root: Path, tmp_path: Path) -> None:
    small = make_cfg(project_root, synthetic={"n": 80, "enabled": True}, r1grid={"enabled": False},
                     digits={"n": 40, "enabled": True})
    large = make_cfg(project_root, synthetic={"n": 160, "enabled": True}, r1grid={"enabled": False},
                     digits={"n": 80, "enabled": True})
    stage.run(small, tmp_path / "s")
    stage.run(large, tmp_path / "l")
    before = {r.id: r for r in read_records(tmp_path / "s/data/curate_dataset/records.jsonl")}
    after = {r.id: r for r in read_records(tmp_path / "l/data/curate_dataset/records.jsonl")}
    assert before.items() <= after.items()


def test_digit_test_images_come_from_held_out_handwriting(small_cfg: stage.Config, tmp_path: Path) -> None:
    stage.run(small_cfg, tmp_path)
    records = [r for r in read_records(tmp_path / "data/curate_dataset/records.jsonl") if r.source == "digits"]
    train = {i for r in records if r.split == "train" for i in r.provenance["digit_index"]}
    held = {i for r in records if r.split != "train" for i in r.provenance["digit_index"]}
    assert train and held and not train & held


def test_duplicates_are_dropped_with_reasons_and_counted(small_cfg: stage.Config, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A source that repeats samples exactly, re-encodes one (near duplicate) and yields a blank answer."""
    base = list(stage.synthetic_source(small_cfg.sources.synthetic,
                                       SourceContext(split_of=lambda k: "train", root=tmp_path)))[:5]

    def noisy(cfg: object, ctx: SourceContext):
        yield from base
        yield Candidate(**{**base[0].__dict__, "key": "copy-0"})  # exact duplicate under another key
        jpeg = base[1].images[0].convert("RGB").copy()
        jpeg.putpixel((0, 0), (250, 250, 250))  # one changed pixel: not exact, still near
        yield Candidate(**{**base[1].__dict__, "key": "near-1", "images": (jpeg,),
                           "reasoning": base[1].reasoning + " "})
        yield Candidate(**{**base[2].__dict__, "key": "blank", "answer": "   "})

    monkeypatch.setitem(stage.SOURCES, "synthetic", noisy)
    cfg = make_cfg(Path(__file__).resolve().parents[1], synthetic={"n": 5, "enabled": True}, r1grid={"enabled": False},
                   digits={"enabled": False})
    summary = stage.run(cfg, tmp_path)
    assert summary["input"] == 8 and summary["curated"] == 5
    assert summary["dropped_by_reason"] == {"duplicate_exact": 1, "duplicate_near": 1, "missing_field": 1}
    dropped = [json.loads(line) for line in (tmp_path / "data/curate_dataset/dropped.jsonl").read_text().splitlines()]
    assert Counter(d["reason"] for d in dropped) == Counter(summary["dropped_by_reason"])
    assert all(d["detail"] and d["raw"] for d in dropped)
