"""Per-sample checks (scalevlm.validation.checks, images, dataset): every failure reason has a named case."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image
from test_segments import CASES as SEGMENT_CASES

from scalevlm.core.segments import Reason
from scalevlm.records import Record
from scalevlm.validation import checks as C
from scalevlm.validation.dataset import check_file, read_lines
from scalevlm.validation.images import ImageChecker, ImageLimits
from scalevlm.validation.layout import rebase_images, record_json, resolve_image

LIMITS = C.LengthLimits(think_min=5, think_max=40, answer_max=8, unit="chars")
IMAGE_LIMITS = ImageLimits(min_px=8, max_px=64, max_bytes=5000)


def make_record(**overrides: object) -> Record:
    base = dict(id="t/1", images=("img.png",), question="How many?", reasoning="count the red cells: three",
                answer="3", answer_type="integer", choices=None, source="t", split="train", provenance={})
    base.update(overrides)
    return Record(**base)  # type: ignore[arg-type]


def reasons(failures: list[C.Failure]) -> list[str]:
    return [f.reason for f in failures]


# Segment rule ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("completion", "reason"), [c[1:3] for c in SEGMENT_CASES], ids=[c[0] for c in SEGMENT_CASES])
def test_completion_failures_report_the_segment_rule(completion: str, reason: Reason | None) -> None:
    """Validation names exactly the reason of the one segment rule (its table lives in test_segments.py)."""
    assert reasons(C.completion_failures(completion)) == ([] if reason is None else [reason.value])


RECORD_SEGMENTS = {
    "think_tag_in_reasoning": (dict(reasoning="a <think> b"), "repeated_tag"),
    "close_tag_in_reasoning": (dict(reasoning="a </think> b"), "repeated_tag"),
    "answer_tag_in_reasoning": (dict(reasoning="x <answer>3</answer>"), "repeated_tag"),
    "answer_tag_in_answer": (dict(answer="<answer>3"), "repeated_tag"),
    "whitespace_reasoning": (dict(reasoning="  \n "), "empty_think"),
    "whitespace_answer": (dict(answer=" "), "empty_answer"),
}


@pytest.mark.parametrize(("fields", "reason"), RECORD_SEGMENTS.values(), ids=RECORD_SEGMENTS.keys())
def test_tags_inside_curated_text_break_the_composed_completion(fields: dict, reason: str) -> None:
    assert reason in reasons(C.segment_failures(make_record(**fields)))


# Answers, text, split, lengths, ids ---------------------------------------------------------------------------

ANSWERS = {
    "integer_ok": ("12", "integer", None, []),
    "integer_signed": ("-3", "integer", None, []),
    "integer_float": ("1.5", "integer", None, ["answer_type_mismatch"]),
    "integer_non_ascii_digits": ("١٢", "integer", None, ["answer_type_mismatch"]),
    "number_ok": ("-2.5e3", "number", None, []),
    "number_nan": ("nan", "number", None, ["answer_type_mismatch"]),
    "number_underscore": ("1_000", "number", None, ["answer_type_mismatch"]),
    "number_word": ("five", "number", None, ["answer_type_mismatch"]),
    "choice_letter": ("B", "choice", ("red", "blue", "green"), []),
    "choice_lowercase_letter": ("c", "choice", ("red", "blue", "green"), []),
    "choice_text": ("blue", "choice", ("red", "blue"), []),
    "choice_letter_out_of_range": ("D", "choice", ("red", "blue", "green"), ["answer_type_mismatch"]),
    "choice_unknown_text": ("purple", "choice", ("red", "blue"), ["answer_type_mismatch"]),
    "choice_empty_choices": ("A", "choice", (), ["empty_choices"]),
    "choice_null_choices": ("A", "choice", None, ["empty_choices"]),
    "text_ok": ("a cat", "text", None, []),
    "text_empty": ("", "text", None, ["answer_type_mismatch"]),
    "unknown_answer_type": ("3", "count", None, ["unknown_answer_type"]),
}


@pytest.mark.parametrize(("answer", "answer_type", "choices", "expected"), ANSWERS.values(), ids=ANSWERS.keys())
def test_answer_consistent_with_type(answer: str, answer_type: str, choices: tuple | None, expected: list[str]) -> None:
    assert reasons(C.answer_failures(answer, answer_type, choices)) == expected


TEXTS = {
    "newline_and_tab_ok": ("a\nb\tc", []),
    "nul": ("a\x00b", ["control_chars"]),
    "escape": ("a\x1b[31m", ["control_chars"]),
    "carriage_return": ("a\rb", ["control_chars"]),
    "delete": ("a\x7f", ["control_chars"]),
    "c1_next_line": ("a\x85", ["control_chars"]),
    "lone_surrogate": ("a\ud800", ["invalid_utf8"]),
    "unicode_letters_ok": ("héllo 世界", []),
}


@pytest.mark.parametrize(("text", "expected"), TEXTS.values(), ids=TEXTS.keys())
def test_text_fields_utf8_without_control_chars(text: str, expected: list[str]) -> None:
    assert reasons(C.text_failures({"question": text})) == expected


@pytest.mark.parametrize(("split", "expected"), [("train", []), ("val", []), ("test", []), ("dev", ["bad_split"])],
                         ids=["train", "val", "test", "bad_split"])
def test_split_in_train_val_test(split: str, expected: list[str]) -> None:
    assert reasons(C.split_failures(split)) == expected


LENGTHS = {
    "at_limits_ok": (5, 8, []),
    "think_too_short": (4, 1, ["think_too_short"]),
    "think_too_long": (41, 1, ["think_too_long"]),
    "answer_too_long": (10, 9, ["answer_too_long"]),
    "both_too_long": (41, 9, ["think_too_long", "answer_too_long"]),
}


@pytest.mark.parametrize(("think", "answer", "expected"), LENGTHS.values(), ids=LENGTHS.keys())
def test_length_limits(think: int, answer: int, expected: list[str]) -> None:
    assert reasons(C.length_failures(think, answer, LIMITS)) == expected


def test_a_record_keeps_all_its_reasons() -> None:
    record = make_record(reasoning="x<think>\x00", answer="1.5", split="dev")
    check = C.SampleCheck(line=1, raw={}, record=record, failures=C.record_failures(record))
    C.add_lengths([check], C.char_counter, dataclasses.replace(LIMITS, think_min=20))
    assert check.reasons == ["repeated_tag", "answer_type_mismatch", "control_chars", "think_too_short", "bad_split"]


def test_every_copy_of_a_duplicate_id_is_rejected() -> None:
    cs = [C.SampleCheck(line=i, raw={}, record=make_record(id=i_d), failures=[]) for i, i_d in enumerate("abab c")]
    C.duplicate_failures(cs)
    assert [c.id for c in cs if "duplicate_id" in c.reasons] == ["a", "b", "a", "b"]


def test_token_counter_counts_with_a_local_tokenizer(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "red": 1, "cell": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path / "tok")
    assert C.token_counter(tmp_path / "tok")(["red cell red", "cell", ""]) == [3, 1, 0]
    with pytest.raises(FileNotFoundError, match="not a folder"):
        C.token_counter(tmp_path / "missing")


# Images --------------------------------------------------------------------------------------------------------


def png(path: Path, size: tuple[int, int] = (16, 16)) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 30, 30)).save(path, format="PNG")
    return path.read_bytes()


def _truncated(d: Path) -> str:
    data = png(d / "full.png", (32, 32))
    (d / "cut.png").write_bytes(data[: len(data) // 2])
    return "cut.png"


def _bit_flip(d: Path) -> str:
    data = bytearray(png(d / "full.png", (32, 32)))
    data[len(data) // 2] ^= 0xFF  # inside IDAT: decodes, but verify() sees the bad checksum
    (d / "flip.png").write_bytes(bytes(data))
    return "flip.png"


def _symlink_out(d: Path) -> str:
    png(d.parent / "outside.png")
    os.symlink(d.parent / "outside.png", d / "link.png")
    return "link.png"


IMAGES = {
    "ok": (lambda d: png(d / "a.png") and "a.png", []),
    "image_missing": (lambda d: "nope.png", ["image_missing"]),
    "image_corrupt_garbage": (lambda d: (d / "g.png").write_bytes(b"not a png" * 20) and "g.png", ["image_corrupt"]),
    "image_corrupt_bit_flip": (_bit_flip, ["image_corrupt"]),
    "image_truncated": (_truncated, ["image_truncated"]),
    "image_too_small": (lambda d: png(d / "s.png", (4, 16)) and "s.png", ["image_too_small"]),
    "image_too_large_px": (lambda d: png(d / "l.png", (65, 16)) and "l.png", ["image_too_large"]),
    "image_too_large_bytes": (lambda d: (d / "b.png").write_bytes(b"x" * 5001) and "b.png", ["image_too_large"]),
    "path_escapes_dotdot": (lambda d: png(d.parent / "up.png") and "../up.png", ["image_path_escapes"]),
    "path_escapes_absolute": (lambda d: str(d / "a.png"), ["image_path_escapes"]),
    "path_escapes_symlink": (_symlink_out, ["image_path_escapes"]),
}


@pytest.mark.parametrize(("make", "expected"), IMAGES.values(), ids=IMAGES.keys())
def test_image_checks(tmp_path: Path, make: Callable[[Path], str], expected: list[str]) -> None:
    dataset = tmp_path / "ds"
    dataset.mkdir()
    rel = make(dataset)
    assert reasons(ImageChecker(dataset, IMAGE_LIMITS).check(rel)) == expected


def test_a_record_without_images_is_rejected(tmp_path: Path) -> None:
    assert reasons(ImageChecker(tmp_path, IMAGE_LIMITS).check_record_images(())) == ["no_images"]


# Files, schema, layout ----------------------------------------------------------------------------------------


def test_bad_lines_are_rejected_not_skipped(tmp_path: Path) -> None:
    png(tmp_path / "img.png")
    good = record_json(make_record())
    lines = [json.dumps(good), "{not json", json.dumps({"id": "x"}), "", json.dumps({**good, "id": "t/2"})]
    (tmp_path / "f.jsonl").write_bytes(("\n".join(lines) + "\n").encode() + b'{"id": "\xff"}\n')
    read = check_file(tmp_path / "f.jsonl", LIMITS, IMAGE_LIMITS, C.char_counter)
    assert [(c.line, c.reasons) for c in read.checks] == [
        (1, []), (2, ["bad_schema"]), (3, ["bad_schema"]), (5, []), (6, ["bad_schema"])]
    assert read.blank_lines == 1  # line 4: counted, not a record
    assert list(read_lines(tmp_path / "f.jsonl"))[-1][1] == {"id": "\udcff"}  # invalid bytes survive as surrogates


def test_record_json_matches_the_schema_writer_and_paths_rebase_on_the_root(tmp_path: Path) -> None:
    record = make_record(choices=("a", "b"), provenance={"k": [1, 2]})
    assert record_json(record) == record.to_json()
    rebased = rebase_images(record, tmp_path / "data" / "curate_dataset", tmp_path)
    assert rebased.images == ("data/curate_dataset/img.png",)
    assert resolve_image(tmp_path, rebased.images[0]) == tmp_path / "data" / "curate_dataset" / "img.png"
    assert dataclasses.replace(rebased, images=record.images) == record
