"""Bad input through both entry points: every line accepted, rejected with a named reason, or counted blank.

One regression test per defect class found by the adversarial set (each failed on the code before the fix), then
property-based tests (hypothesis) that feed arbitrary bytes and arbitrary JSON values to local-source curation
(`python -m stages.curate_dataset`) and to `python -m stages.validate_segments --input`, and check: no traceback,
and lines in = accepted + rejected + blank, every rejection with a reason.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from scalevlm.config import ConfigError, load_config
from scalevlm.records import read_jsonl, read_records
from scalevlm.sources.base import Candidate, SourceContext, SourceError
from scalevlm.sources.local import LocalConfig, LocalFile, local_source
from scalevlm.validation.checks import char_counter
from scalevlm.validation.dataset import check_file
from stages import curate_dataset, validate_segments

ROOT = Path(__file__).resolve().parents[1]
VCFG = load_config(validate_segments.Config, ROOT / "params.yaml", validate_segments.NAME)
RED = (200, 30, 30)
PLAIN = {"image": "a.png", "question": "How many red cells?", "reasoning": "two red cells", "answer": "2"}


def png(path: Path, size: tuple[int, int] = (16, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, RED).save(path, format="PNG")


def write_lines(path: Path, lines: list[Any]) -> None:
    """Objects as JSON, strings as they are, bytes as bytes; one per line."""
    data = b"".join((x if isinstance(x, bytes) else (x if isinstance(x, str) else json.dumps(x)).encode(
        "utf-8", "surrogatepass")) + b"\n" for x in lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# Local-source curation ------------------------------------------------------------------------------------------


def curate_params(root: Path, files: list[str]) -> Path:
    """The project's curate_dataset params with only the local source on, reading `files`."""
    section = yaml.safe_load((ROOT / "params.yaml").read_text())[curate_dataset.NAME]
    for generated in ("synthetic", "r1grid", "digits"):
        section["sources"][generated]["enabled"] = False
    section["sources"]["local"] = {"enabled": True,
                                   "files": [{"path": f, "format": "auto", "limit": None} for f in files]}
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump({curate_dataset.NAME: section}))
    return path


def curate(root: Path, lines: list[Any], name: str = "set") -> tuple[dict[str, Any], dict[str, str]]:
    """Run the curation stage on one local file; (metrics, {id: drop reason or 'ok'})."""
    rel = f"data/local/{name}.jsonl"
    png(root / "data/local/a.png")
    write_lines(root / rel, lines)
    with contextlib.redirect_stdout(io.StringIO()):
        assert curate_dataset.main(["--params", str(curate_params(root, [rel])), "--root", str(root)]) == 0
    out = root / "data/curate_dataset"
    outcome = {r.id: "ok" for r in read_records(out / "records.jsonl")}
    outcome.update({d["id"]: d["reason"] for _, d in read_jsonl(out / "dropped.jsonl")})
    return json.loads((root / "reports/curate_dataset/metrics.json").read_text()), outcome


LOCAL_CASES = {
    # id: (line, reason of local/set-1); every case also has a good line 2 that must survive
    "deep_nesting": ("[" * 100_000 + "]" * 100_000, "bad_json"),
    "huge_integer": ('{"question": "q", "reasoning": "r", "answer": ' + "9" * 5000 + ', "image": "a.png"}',
                     "bad_json"),
    "nan_answer": ('{"question": "q", "reasoning": "r", "answer": NaN, "image": "a.png"}', "bad_json"),
    "duplicate_key": ('{"question": "q", "reasoning": "r", "answer": "1", "answer": "2", "image": "a.png"}',
                      "bad_json"),
    "nul_in_image_path": ({**PLAIN, "image": "a.png\x00.txt"}, "bad_image_path"),
    "long_image_path": ({**PLAIN, "image": "a" * 5000 + ".png"}, "bad_image_path"),
    "long_image_name": ({**PLAIN, "image": "a" * 300 + ".png"}, "bad_image_path"),
    "lone_surrogate": ('{"question": "How many \\ud800 cells?", "reasoning": "r", "answer": "2", "image": "a.png"}',
                       "invalid_utf8"),
    "ideographic_space_line": ("\u3000", "bad_json"),
    "control_char_line": ("\x1c", "bad_json"),
    "bool_answer": ({**PLAIN, "answer": True}, "bad_field_type"),
    "object_answer": ({**PLAIN, "answer": {"x": 1}}, "bad_field_type"),
    "number_question": ({**PLAIN, "question": 5}, "bad_field_type"),
    "float_answer": ({**PLAIN, "answer": 0.5}, "bad_field_type"),
    "bool_text_part": ({"messages": [{"role": "user", "content": [{"type": "text", "text": True}]},
                                     {"role": "assistant", "content": "<think>r</think><answer>1</answer>"}],
                        "image": "a.png"}, "bad_field_type"),
    "placeholders_vs_images": ({**PLAIN, "question": "<image><image>How many?"}, "image_count_mismatch"),
    "image_parts_vs_images": ({"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "image"},
                                                                         {"type": "text", "text": "How many?"}]},
                                            {"role": "assistant", "content": "<think>r</think><answer>1</answer>"}],
                               "images": ["a.png"]}, "image_count_mismatch"),
    "unbalanced_boxed": ({"conversations": [{"from": "human", "value": "<image>How many?"},
                                            {"from": "gpt", "value": "<think>two</think> so \\boxed{12"}],
                          "image": "a.png"}, "unbalanced_boxed"),
    "fullwidth_close_tag": ({**PLAIN, "reasoning": "two red cells \uff1c/think\uff1e three"}, "tag_lookalike"),
    "small_form_open_tag": ({**PLAIN, "question": "How many \ufe64answer\ufe65 cells?"}, "tag_lookalike"),
    "answer_not_its_type": ({**PLAIN, "answer": "two", "answer_type": "integer"}, "answer_type_mismatch"),
    "boolean_answer_type": ({**PLAIN, "answer_type": False}, "bad_field_type"),
}


@pytest.mark.parametrize(("line", "reason"), LOCAL_CASES.values(), ids=LOCAL_CASES.keys())
def test_local_bad_record_is_dropped_with_its_reason_and_the_file_survives(tmp_path: Path, line: Any,
                                                                           reason: str) -> None:
    metrics, outcome = curate(tmp_path, [line, {**PLAIN, "question": "Which colour is it?"}])
    assert outcome == {"local/set-1": reason, "local/set-2": "ok"}
    assert metrics["input"] == metrics["curated"] + metrics["dropped"] == 2


def test_local_integer_answer_is_read_as_its_decimal_text(tmp_path: Path) -> None:
    _, outcome = curate(tmp_path, [{**PLAIN, "answer": 12}])
    assert outcome == {"local/set-1": "ok"}
    [record] = read_records(tmp_path / "data/curate_dataset/records.jsonl")
    assert (record.answer, record.answer_type) == ("12", "integer")


def test_local_blank_lines_are_counted_and_lines_add_up(tmp_path: Path) -> None:
    lines = [PLAIN, "", "  \t", "\u3000", "\x1c", {**PLAIN, "question": "Which colour?"}]
    metrics, outcome = curate(tmp_path, lines)
    assert metrics["blank_lines"] == 2 and metrics["blank_lines_by_source"] == {"local": 2}
    assert metrics["curated"] + metrics["dropped"] + metrics["blank_lines"] == len(lines)
    assert outcome == {"local/set-1": "ok", "local/set-4": "bad_json", "local/set-5": "bad_json", "local/set-6": "ok"}


def test_local_ids_differing_only_in_case_are_duplicates(tmp_path: Path) -> None:
    png(tmp_path / "data/local/a.png")
    png(tmp_path / "data/local/b.png", (8, 16))
    write_lines(tmp_path / "data/local/Set.jsonl", [PLAIN])
    write_lines(tmp_path / "data/local/set.jsonl", [{**PLAIN, "image": "b.png", "question": "Other?"}])
    params = curate_params(tmp_path, ["data/local/Set.jsonl", "data/local/set.jsonl"])
    with contextlib.redirect_stdout(io.StringIO()):
        assert curate_dataset.main(["--params", str(params), "--root", str(tmp_path)]) == 0
    dropped = [d for _, d in read_jsonl(tmp_path / "data/curate_dataset/dropped.jsonl")]
    assert [(d["id"], d["reason"], d["detail"]) for d in dropped] == [
        ("local/set-1", "duplicate_id", "duplicate of local/Set-1")]


@pytest.mark.parametrize("limit", [-1, -5])
def test_local_negative_limit_is_refused_not_read_as_nothing(tmp_path: Path, limit: int) -> None:
    png(tmp_path / "data/local/a.png")
    write_lines(tmp_path / "data/local/set.jsonl", [PLAIN])
    with pytest.raises((SourceError, ConfigError), match="limit"):  # the config (however built) or the source
        spec = LocalFile("data/local/set.jsonl", "auto", limit)
        list(local_source(LocalConfig(True, (spec,)), SourceContext(lambda key: "train", tmp_path)))


def test_hub_dataset_outside_the_project_stops_the_stage_with_the_key_and_the_param(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    write_lines(tmp_path / "elsewhere" / "train.jsonl", [PLAIN])
    params = curate_params(project, [])
    data = yaml.safe_load(params.read_text())
    data[curate_dataset.NAME]["sources"]["local"] = {"enabled": False, "files": []}
    data[curate_dataset.NAME]["sources"]["hub"] = {"enabled": True, "datasets": [{
        "name": str(tmp_path / "elsewhere"), "split": "train", "revision": None, "adapter": "mapped",
        "field_map": {"image": "image", "question": "question", "reasoning": "reasoning", "answer": "answer"},
        "limit": None}]}
    params.write_text(yaml.safe_dump(data))
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert curate_dataset.main(["--params", str(params), "--root", str(project)]) == 2
    message = err.getvalue()
    assert "Traceback" not in message
    assert "curate_dataset.sources.hub.datasets[0].name" in message and "allow_outside_project: true" in message


def test_exif_rotated_image_is_stored_upright(tmp_path: Path) -> None:
    image = Image.new("RGB", (32, 16), (30, 30, 200))
    image.paste(RED, (0, 0, 16, 16))  # left half red, as the camera saw it before rotating
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    png(tmp_path / "data/local/a.png")
    image.save(tmp_path / "data/local/photo.jpg", format="JPEG", exif=exif.tobytes(), quality=95)
    write_lines(tmp_path / "data/local/set.jsonl", [{**PLAIN, "image": "photo.jpg"}])
    spec = LocalFile("data/local/set.jsonl", "auto", None)
    [item] = local_source(LocalConfig(True, (spec,)), SourceContext(lambda key: "train", tmp_path))
    assert isinstance(item, Candidate)
    stored = item.images[0]
    assert stored.size == (16, 32)  # upright: the red half is now on top
    top, bottom = stored.getpixel((8, 4)), stored.getpixel((8, 28))
    assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0]


# validate_segments --input -------------------------------------------------------------------------------------


def curated_record(key: str, **overrides: Any) -> dict[str, Any]:
    rec = {"id": f"ok/{key}", "images": ["images/ok.png"], "question": "How many red cells?",
           "reasoning": "row one has two red cells, row two has one, so three.", "answer": "3",
           "answer_type": "integer", "choices": None, "source": "ok", "split": "train", "provenance": {}}
    rec.update(overrides)
    return rec


def validate(tmp_path: Path, lines: list[Any]) -> dict[str | int, list[str]]:
    """`check_file` on a curated file; {id or line number: reasons}."""
    png(tmp_path / "images/ok.png")
    write_lines(tmp_path / "records.jsonl", lines)
    read = check_file(tmp_path / "records.jsonl", validate_segments.length_setup(VCFG, ROOT)[0],
                      validate_segments.ImageLimits(VCFG.min_image_px, VCFG.max_image_px, VCFG.max_image_bytes),
                      char_counter)
    return {c.id if c.id is not None else c.line: c.reasons for c in read.checks}


VALIDATION_CASES = {
    # id: (line, reasons of line 1); a good record follows on line 2
    "deep_nesting": ("[" * 100_000 + "]" * 100_000, ["bad_schema"]),
    "huge_integer": (json.dumps(curated_record("x"))[:-1] + ', "n": ' + "9" * 5000 + "}", ["bad_schema"]),
    "nan_value": (json.dumps(curated_record("x", provenance={"score": float("nan")})), ["bad_schema"]),
    "provenance_string": (curated_record("x", provenance="abc"), ["bad_schema"]),
    "provenance_number": (curated_record("x", provenance=5), ["bad_schema"]),
    "provenance_list": (curated_record("x", provenance=[1]), ["bad_schema"]),
    "nul_in_image_path": (curated_record("x", images=["images/ok.png\x00.txt"]), ["image_bad_path"]),
    "long_image_name": (curated_record("x", images=["images/" + "a" * 300 + ".png"]), ["image_bad_path"]),
    "surrogate_image_path": (curated_record("x", images=["images/\ud800.png"]), ["image_bad_path", "invalid_utf8"]),
    "surrogate_in_provenance": (curated_record("x", provenance={"file": "\udcff"}), ["invalid_utf8"]),
    "ideographic_space_line": ("\u3000", ["bad_schema"]),
    "control_char_line": ("\x1c", ["bad_schema"]),
    "placeholders_vs_images": (curated_record("x", question="<image><image>How many?"), ["image_count_mismatch"]),
    "unbalanced_boxed": (curated_record("x", answer="\\boxed{12", answer_type="text"), ["answer_type_mismatch"]),
    "fullwidth_close_tag": (curated_record("x", reasoning="two red cells \uff1c/think\uff1e so three, counted."),
                            ["tag_lookalike"]),
}


@pytest.mark.parametrize(("line", "reasons"), VALIDATION_CASES.values(), ids=VALIDATION_CASES.keys())
def test_validation_rejects_bad_line_with_its_reason(tmp_path: Path, line: Any, reasons: list[str]) -> None:
    got = validate(tmp_path, [line, curated_record("good")])
    assert got.pop("ok/good") == []
    assert list(got.values()) == [reasons]


def test_validation_ids_differing_only_in_case_or_whitespace_are_all_duplicates(tmp_path: Path) -> None:
    got = validate(tmp_path, [curated_record("A"), curated_record("x", id=" ok/a "), curated_record("b")])
    assert got == {"ok/A": ["duplicate_id"], " ok/a ": ["duplicate_id"], "ok/b": []}


def test_validation_blank_lines_are_counted_and_surrogates_are_written(tmp_path: Path) -> None:
    """Through the CLI with --out: the writers meet lone surrogates (rejected) and every line is counted."""
    png(tmp_path / "data/images/ok.png")
    lines = [curated_record("a"), "", " \t ", "\u3000", curated_record("b", provenance={"f": "\ud800"}),
             curated_record("c", split="val"), curated_record("d", split="test")]
    write_lines(tmp_path / "data/records.jsonl", lines)
    params = tmp_path / "params.yaml"
    section = {**yaml.safe_load((ROOT / "params.yaml").read_text())[validate_segments.NAME], "max_reject_rate": 1.0}
    params.write_text(yaml.safe_dump({validate_segments.NAME: section}))
    out = tmp_path / "out"
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # strict UTF-8, like a terminal
    with contextlib.redirect_stdout(stdout):
        rc = validate_segments.main(["--input", str(tmp_path / "data/records.jsonl"), "--params", str(params),
                                     "--out", str(out), "--root", str(tmp_path)])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["lines"], metrics["blank_lines"], metrics["accepted"], metrics["rejected"]) == (7, 2, 3, 2)
    rejected = {row["line"]: row["reasons"] for _, row in read_jsonl(out / "rejected.jsonl")}
    assert rejected == {4: ["bad_schema"], 5: ["invalid_utf8"]}


# Properties: arbitrary bytes and JSON values through both entry points --------------------------------------------

WORDS = ["", " ", "How many red cells?", "two red cells, so two.", "2", "1,234", "50%", "1/2", "B", "red", "\\boxed{1",
         "\\boxed{2}", "<image>", "<think>", "</answer>", "\uff1c/think\uff1e", "\ud800", "\x00", "\x1c", "\u3000",
         "a.png", "images/ok.png", "../a.png", "/etc/passwd", "a\x00.png", "x" * 300, "train", "val", "integer",
         "number", "choice", "text", "user", "assistant", "human", "gpt", "image", "ok/a", "OK/A "]
KEYS = ["id", "images", "image", "question", "reasoning", "answer", "answer_type", "choices", "source", "split",
        "provenance", "prompt", "completion", "messages", "conversations", "role", "content", "from", "value", "type",
        "text", "path"]
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.sampled_from(WORDS) | st.text(max_size=8)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(KEYS) | st.text(max_size=3), inner, max_size=4), max_leaves=12)
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def lines_of(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """One line: raw bytes, any JSON value, a deep nest, or `base` with some fields replaced by any JSON value."""
    fresh = st.integers(0, 10**6).map(lambda n: {**base, "id": f"ok/{n}"} if "id" in base else base)  # distinct ids
    record = st.tuples(fresh, st.dictionaries(st.sampled_from(KEYS), JSON, max_size=3)).map(lambda t: {**t[0], **t[1]})
    text = st.one_of(JSON, record).flatmap(lambda v: st.booleans().map(lambda a: json.dumps(v, ensure_ascii=a)))
    nest = st.integers(0, 3000).map(lambda n: "[" * n + "]" * n)
    return st.one_of(st.binary(max_size=40), (text | nest | st.sampled_from(WORDS)).map(
        lambda s: s.encode("utf-8", "surrogatepass")))


def files_of(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    return st.tuples(st.lists(lines_of(base), max_size=8), st.booleans()).map(
        lambda t: b"\n".join(t[0]) + (b"\n" if t[1] and t[0] else b""))


def count_lines(data: bytes) -> int:
    """Lines as a binary file iterates them (split on b"\\n" only)."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


@PROPERTY
@given(data=files_of(PLAIN))
def test_property_local_curation_accounts_for_every_line(tmp_path: Path, data: bytes) -> None:
    png(tmp_path / "data/local/a.png")
    (tmp_path / "data/local/set.jsonl").write_bytes(data)
    params = curate_params(tmp_path, ["data/local/set.jsonl"])
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()) as err:
        rc = curate_dataset.main(["--params", str(params), "--root", str(tmp_path)])
    assert rc == 0 and "Traceback" not in err.getvalue()
    metrics = json.loads((tmp_path / "reports/curate_dataset/metrics.json").read_text())
    assert metrics["curated"] + metrics["dropped"] + metrics["blank_lines"] == count_lines(data)
    out = tmp_path / "data/curate_dataset"
    dropped = [d for _, d in read_jsonl(out / "dropped.jsonl")]
    assert len(dropped) == metrics["dropped"] and all(d["reason"] and d["detail"] for d in dropped)
    assert len(read_records(out / "records.jsonl")) == metrics["curated"]


@pytest.mark.slow  # ~10 s: in `make test`, not in the fast tier
@settings(PROPERTY, max_examples=20)  # each example runs the GX suites and builds Data Docs (~0.5-1 s)
@given(data=files_of(curated_record("p")))
def test_property_validate_cli_accounts_for_every_line(tmp_path: Path, data: bytes) -> None:
    png(tmp_path / "data/images/ok.png")
    (tmp_path / "data/records.jsonl").write_bytes(data)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({validate_segments.NAME: yaml.safe_load(
        (ROOT / "params.yaml").read_text())[validate_segments.NAME]}))
    out = tmp_path / "out"
    stdout, stderr = (io.TextIOWrapper(io.BytesIO(), encoding="utf-8") for _ in range(2))  # strict, like a terminal
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = validate_segments.main(["--input", str(tmp_path / "data/records.jsonl"), "--params", str(params),
                                     "--out", str(out), "--root", str(tmp_path)])
    assert rc in (0, 1)  # gate passed / gate failed, never a crash
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["lines"] == count_lines(data) == metrics["accepted"] + metrics["rejected"] + metrics["blank_lines"]
    rejected = [row for _, row in read_jsonl(out / "rejected.jsonl")]
    assert len(rejected) == metrics["rejected"] and all(row["reasons"] and row["failures"] for row in rejected)
    assert sum(len(read_records(out / f"{s}.jsonl")) for s in ("train", "val", "test")) == metrics["accepted"]


@pytest.mark.slow  # a stage subprocess
@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_evaluate_on_a_cuda_device_this_machine_lacks_stops_before_reading_anything(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    import yaml

    root = Path(__file__).resolve().parents[1]
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["evaluate"]["device"] = "cuda:1"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "src")])}
    done = subprocess.run([sys.executable, "-m", "stages.evaluate", "--arm", "sft-scale", "--params",
                           str(tmp_path / "params.yaml"), "--root", str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "device 'cuda:1': this machine has no CUDA device" in done.stderr
    assert not [d for d in ("data", "models", "reports") if (tmp_path / d).exists()]  # only the stage lock was made
