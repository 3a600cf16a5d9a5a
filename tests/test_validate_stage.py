"""The validate_segments stage and CLI on small datasets written to tmp_path (tiny PNGs via PIL)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from scalevlm.config import load_config, to_dict
from scalevlm.records import read_records
from scalevlm.validation import load_split, resolve_image
from scalevlm.validation.checks import ALL_REASONS, SEGMENT_REASONS
from stages import validate_segments as stage

ROOT = Path(__file__).resolve().parents[1]
CFG = load_config(stage.Config, ROOT / "params.yaml", stage.NAME)
SPLITS = {"train": 4, "val": 2, "test": 2}


def good(key: str, split: str = "train", **overrides: Any) -> dict[str, Any]:
    rec = {"id": f"ok/{key}", "images": ["images/ok.png"], "question": "How many red cells?",
           "reasoning": "row one has two red cells, row two has one, so three.", "answer": "3",
           "answer_type": "integer", "choices": None, "source": "ok", "split": split, "provenance": {}}
    rec.update(overrides)
    return rec


def good_records() -> list[dict[str, Any]]:
    return [good(f"{split}{i}", split) for split, n in SPLITS.items() for i in range(n)]


def save_png(path: Path, size: tuple[int, int] = (16, 16)) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (30, 30, 200)).save(path, format="PNG")
    return path.read_bytes()


def write_dataset(folder: Path, lines: list[dict[str, Any] | str]) -> Path:
    """records.jsonl plus images: ok, corrupt, truncated, tiny, huge (dimensions)."""
    images = folder / "images"
    save_png(images / "ok.png")
    full = save_png(images / "full.png", (48, 48))
    flipped = bytearray(full)
    flipped[len(full) // 2] ^= 0xFF  # a bit flip inside IDAT: only verify()'s checksum catches it
    (images / "corrupt.png").write_bytes(bytes(flipped))
    (images / "truncated.png").write_bytes(full[: len(full) // 2])
    save_png(images / "tiny.png", (4, 4))
    save_png(images / "huge.png", (CFG.max_image_px + 1, 8))
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    (folder / "records.jsonl").write_text(text, encoding="utf-8")
    return folder / "records.jsonl"


def curated(root: Path, lines: list[dict[str, Any] | str]) -> Path:
    return write_dataset(root / "data" / "curate_dataset", lines)


def bad(key: str, **overrides: Any) -> dict[str, Any]:
    return good(key, **{"id": f"bad/{key}", **overrides})


# One bad record per reason: (record or raw line, reason it must carry).
REASON_CASES: dict[str, tuple[dict[str, Any] | str, str]] = {
    "repeated_tag": (bad("repeated_tag", reasoning="first <think> again, three."), "repeated_tag"),
    "nested_answer_tag": (bad("nested_answer_tag", reasoning="so <answer>3</answer> it is."), "repeated_tag"),
    "empty_think": (bad("empty_think", reasoning="   "), "empty_think"),
    "empty_answer": (bad("empty_answer", answer=" "), "empty_answer"),
    "answer_type_mismatch": (bad("answer_type_mismatch", answer="three"), "answer_type_mismatch"),
    "empty_choices": (bad("empty_choices", answer_type="choice", answer="A", choices=[]), "empty_choices"),
    "unknown_answer_type": (bad("unknown_answer_type", answer_type="count"), "unknown_answer_type"),
    "no_images": (bad("no_images", images=[]), "no_images"),
    "image_missing": (bad("image_missing", images=["images/absent.png"]), "image_missing"),
    "image_corrupt": (bad("image_corrupt", images=["images/corrupt.png"]), "image_corrupt"),
    "image_truncated": (bad("image_truncated", images=["images/truncated.png"]), "image_truncated"),
    "image_too_small": (bad("image_too_small", images=["images/ok.png", "images/tiny.png"]), "image_too_small"),
    "image_too_large": (bad("image_too_large", images=["images/huge.png"]), "image_too_large"),
    "image_path_escapes": (bad("image_path_escapes", images=["images/../../outside.png"]), "image_path_escapes"),
    "image_bad_path": (bad("image_bad_path", images=["images/ok.png\x00.txt"]), "image_bad_path"),
    "image_count_mismatch": (bad("image_count_mismatch", question="<image><image>How many red cells?"),
                             "image_count_mismatch"),
    "tag_lookalike": (bad("tag_lookalike", reasoning="row one has two red cells \uff1c/think\uff1e so three."),
                      "tag_lookalike"),
    "control_chars": (bad("control_chars", question="How many\x07 cells?"), "control_chars"),
    "invalid_utf8": (bad("invalid_utf8", question="How many \ud800 cells?"), "invalid_utf8"),
    "think_too_short": (bad("think_too_short", reasoning="three."), "think_too_short"),
    "think_too_long": (bad("think_too_long", reasoning="a" * (CFG.max_think_chars + 1)), "think_too_long"),
    "answer_too_long": (bad("answer_too_long", answer_type="text", answer="b" * (CFG.max_answer_chars + 1)),
                        "answer_too_long"),
    "duplicate_id": (good("val0", "val", question="Same id, other question?"), "duplicate_id"),
    "bad_split": (bad("bad_split", split="dev"), "bad_split"),
    "bad_schema": ('{"id": "bad/bad_schema", "question": "fields missing"}', "bad_schema"),
}
UNREACHABLE_FROM_RECORDS = set(SEGMENT_REASONS) - {"repeated_tag", "empty_think", "empty_answer"}  # tags are composed


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Good records plus one bad record per reason, validated once with a permissive gate."""
    root = tmp_path_factory.mktemp("mixed")
    curated(root, [*good_records(), *(line for line, _ in REASON_CASES.values())])
    return root, stage.run(dataclasses.replace(CFG, max_reject_rate=1.0), root)


def rejected_by_id(root: Path) -> dict[str, dict[str, Any]]:
    rows = [json.loads(line) for line in (root / "data/validate_segments/rejected.jsonl").read_text().splitlines()]
    return {(row["id"] or "") + ("" if row["id"] != "ok/val0" else f"@{row['line']}"): row for row in rows}


@pytest.mark.parametrize(("line", "reason"), REASON_CASES.values(), ids=REASON_CASES.keys())
def test_each_failure_reason_is_quarantined_by_name(mixed: tuple[Path, dict], line: Any, reason: str) -> None:
    root, _ = mixed
    carriers = [row for row in rejected_by_id(root).values() if reason in row["reasons"]]
    assert carriers, f"no rejected record carries {reason}"
    assert all(row["failures"] and row["record"] is not None for row in carriers)


def test_reason_cases_cover_every_reachable_reason() -> None:
    assert {reason for _, reason in REASON_CASES.values()} == set(ALL_REASONS) - UNREACHABLE_FROM_RECORDS


def test_counts_are_conserved_and_recorded(mixed: tuple[Path, dict]) -> None:
    root, summary = mixed
    n_lines = len(good_records()) + len(REASON_CASES)
    accepted = sum(len(read_records(root / f"data/validate_segments/{s}.jsonl")) for s in SPLITS)
    rejected = len(rejected_by_id(root))
    assert (accepted, rejected) == (len(good_records()) - 1, len(REASON_CASES) + 1)  # both copies of ok/val0
    assert summary["accepted"] + summary["rejected"] == summary["input"] == n_lines
    metrics = json.loads((root / "reports/validate_segments/metrics.json").read_text())
    assert metrics["rejected_by_reason"]["duplicate_id"] == 2 and metrics["gate_passed"] is True
    assert metrics["accepted_by_split"] == {"test": 2, "train": 4, "val": 1}


def test_split_files_are_sorted_and_images_resolve_from_the_root(mixed: tuple[Path, dict]) -> None:
    root, _ = mixed
    for split in SPLITS:
        records = load_split(root, split)
        assert [r.id for r in records] == sorted(r.id for r in records)
        for r in records:
            assert r.images == ("data/curate_dataset/images/ok.png",)
            assert resolve_image(root, r.images[0]).is_file()


def test_gx_results_and_data_docs_name_the_failing_expectations(mixed: tuple[Path, dict]) -> None:
    root, _ = mixed
    results = json.loads((root / "reports/validate_segments/gx_results.json").read_text())
    assert results["samples"]["success"] is False and results["dataset"]["success"] is True
    docs = root / "reports/validate_segments/data_docs"
    assert (docs / "index.html").is_file()
    [page] = [p for p in docs.glob("validations/**/*.html") if "samples" in p.parts]
    html = page.read_text()
    for name in ("segment_check", "image_check", "think_len", "repeated_tag", "image_corrupt", "ids are unique"):
        assert name in html, name


def _only(split: str) -> list[dict[str, Any]]:
    return [good(f"{split}{i}", split) for i in range(3)]


GATE_FAILURES: dict[str, tuple[Callable[[], list[Any]], dict[str, Any], list[str]]] = {
    "reject_rate_above_max": (
        lambda: [*good_records(), bad("c1", images=["images/corrupt.png"]), bad("c2", images=["images/corrupt.png"]),
                 bad("t1", answer="x")],
        {}, ["reject rate at most max_reject_rate 0.05", "image_corrupt: 2 (e.g. bad/c1, bad/c2)",
             "answer_type_mismatch: 1 (e.g. bad/t1)"]),
    "empty_val_split": (lambda: [*_only("train"), *_only("test")], {},
                        ["split 'val' has at least 1 accepted records: observed 0"]),
    "undeclared_answer_type": (
        lambda: [*good_records(), good("txt", answer_type="text", answer="three")],
        {"answer_types": ("integer",)}, ["accepted answer types in the declared set ['integer']"]),
    "think_median_out_of_range": (good_records, {"think_quantile_ranges": ((10, 20), (10, 20), (10, 8192))},
                                  ["think_len quantiles"]),
}


@pytest.mark.parametrize(("lines", "overrides", "expected"), GATE_FAILURES.values(), ids=GATE_FAILURES.keys())
def test_the_gate_fails_with_a_clear_message(tmp_path: Path, lines: Callable, overrides: dict,
                                             expected: list[str]) -> None:
    curated(tmp_path, lines())
    with pytest.raises(stage.ValidationFailed) as info:
        stage.run(dataclasses.replace(CFG, **overrides), tmp_path)
    for text in expected:
        assert text in str(info.value)
    assert (tmp_path / "data/validate_segments/rejected.jsonl").is_file()  # reports are written before failing
    [page] = [p for p in (tmp_path / "reports/validate_segments/data_docs").glob("validations/**/*.html")
              if "dataset" in p.parts]
    assert expected[0].split(":")[0].split(" (e.g.")[0] in page.read_text()


def write_params(path: Path, **overrides: Any) -> Path:
    path.write_text(yaml.safe_dump({stage.NAME: to_dict(dataclasses.replace(CFG, **overrides))}))
    return path


def test_main_exits_non_zero_with_the_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    curated(tmp_path, [*good_records(), bad("c1", images=["images/absent.png"])])
    params = write_params(tmp_path / "params.yaml")
    assert stage.main(["--root", str(tmp_path), "--params", str(params)]) == 1
    err = capsys.readouterr().err
    assert "error: validate_segments failed" in err and "image_missing: 1 (e.g. bad/c1)" in err


def test_bad_params_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = write_params(tmp_path / "params.yaml")
    data = yaml.safe_load(params.read_text())
    data[stage.NAME]["think_quantile_ranges"] = [[1, 2]]
    params.write_text(yaml.safe_dump(data))
    assert stage.main(["--root", str(tmp_path), "--params", str(params)]) == 2
    assert "validate_segments.think_quantile_ranges: needs one [min, max]" in capsys.readouterr().err


def test_cli_validates_a_file_and_writes_nothing_without_out(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = write_dataset(tmp_path / "elsewhere", [*good_records(), bad("m", images=["images/absent.png"]),
                                                  bad("s", reasoning="short")])
    params = write_params(tmp_path / "params.yaml", max_reject_rate=0.5)
    before = sorted(tmp_path.rglob("*"))
    assert stage.main(["--input", str(path), "--params", str(params)]) == 0
    out = capsys.readouterr().out
    assert "image_missing" in out and "bad/m" in out and "think_too_short" in out and "bad/s" in out
    assert "input 10  accepted 8  rejected 2" in out and "gate: passed" in out
    assert sorted(tmp_path.rglob("*")) == before


def test_cli_out_writes_outputs_with_root_relative_images(tmp_path: Path) -> None:
    path = write_dataset(tmp_path / "elsewhere", [*good_records(), bad("m", images=["images/absent.png"])])
    params = write_params(tmp_path / "params.yaml", max_reject_rate=0.5)
    out = tmp_path / "out"
    assert stage.main(["--input", str(path), "--params", str(params), "--out", str(out), "--root", str(tmp_path)]) == 0
    assert {p.name for p in out.iterdir()} == {"train.jsonl", "val.jsonl", "test.jsonl", "rejected.jsonl",
                                               "metrics.json", "gx_results.json", "data_docs"}
    [record] = read_records(out / "val.jsonl")[:1]
    assert record.images == ("elsewhere/images/ok.png",) and resolve_image(tmp_path, record.images[0]).is_file()


def test_cli_rechecks_a_validated_split_with_the_root_as_images_root(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    curated(tmp_path, good_records())
    stage.run(CFG, tmp_path)
    params = write_params(tmp_path / "params.yaml", min_split_size=stage.SplitSizes(train=0, val=1, test=0))
    val = str(tmp_path / "data/validate_segments/val.jsonl")
    assert stage.main(["--input", val, "--params", str(params), "--images-root", str(tmp_path)]) == 0
    assert "accepted 2  rejected 0" in capsys.readouterr().out
    assert stage.main(["--input", val, "--params", str(params)]) == 1  # relative to the file's folder: not found
    assert "image_missing: 2" in capsys.readouterr().err


def test_a_mistyped_input_exits_2_and_leaves_earlier_outputs_alone(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.jsonl").write_text("{}\n")  # what an earlier run wrote
    assert stage.main(["--input", str(tmp_path / "typo.jsonl"), "--out", str(out)]) == 2
    assert "typo.jsonl is not a file" in capsys.readouterr().err
    assert (out / "train.jsonl").read_text() == "{}\n"
