"""The local JSONL source: every format, auto-detection, path refusal, image errors, bad lines, limit, and an
end-to-end curate_dataset run that conserves every input record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from scalevlm.config import from_dict
from scalevlm.records import read_jsonl, read_records
from scalevlm.sources.base import Blank, Candidate, Dropped, SourceContext, SourceError
from scalevlm.sources.local import LocalConfig, LocalFile, local_source
from stages import curate_dataset

TAGGED = "<think>two red cells</think><answer>2</answer>"
USER_PARTS = [{"type": "image"}, {"type": "text", "text": "How many red cells?"}]

RECORDS = [
    # (id, format, record) -- each is one image `a.png`, question "How many red cells?", reasoning, answer "2"
    ("trl_strings", "trl", {"prompt": "<image>How many red cells?", "completion": TAGGED, "images": ["a.png"]}),
    ("trl_conversational", "trl", {
        "prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": USER_PARTS}],
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": TAGGED}]}],
        "images": ["a.png"]}),
    ("messages_parts", "messages", {
        "messages": [{"role": "user", "content": USER_PARTS}, {"role": "assistant", "content": TAGGED}],
        "images": ["a.png"]}),
    ("messages_inline_image_part", "messages", {
        "messages": [{"role": "user", "content": [{"type": "image", "image": "a.png"},
                                                  {"type": "text", "text": "How many red cells?"}]},
                     {"role": "assistant", "content": [{"type": "text", "text": TAGGED}]}]}),
    ("llamafactory_messages", "sharegpt", {
        "messages": [{"role": "user", "content": "<image>How many red cells?"},
                     {"role": "assistant", "content": TAGGED}], "images": ["a.png"]}),
    ("sharegpt_conversations", "sharegpt", {
        "conversations": [{"from": "human", "value": "<image>\nHow many red cells?"},
                          {"from": "gpt", "value": TAGGED}], "image": "a.png"}),
    ("sharegpt_think_free_text", "sharegpt", {
        "conversations": [{"from": "human", "value": "<image>How many red cells?"},
                          {"from": "gpt", "value": "<think>two red cells</think>\n**Final Answer:** \\boxed{2}"}],
        "images": ["a.png"]}),
    ("sharegpt_llava_cot", "sharegpt", {
        "conversations": [{"from": "human", "value": "<image>How many red cells?"},
                          {"from": "gpt", "value": "<REASONING>two red cells</REASONING><CONCLUSION>The answer is 2."
                                                   "</CONCLUSION>"}], "images": ["a.png"]}),
    ("plain", "plain", {"image": "a.png", "question": "How many red cells?", "reasoning": "two red cells",
                        "answer": "2"}),
    ("plain_images_list", "plain", {"images": ["a.png"], "question": "How many red cells?",
                                    "reasoning": "two red cells", "answer": "2", "answer_type": "integer"}),
]


def png(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def write_jsonl(root: Path, rel: str, lines: list[Any]) -> str:
    """Write `lines` (objects, or raw strings written as they are) to `root/rel`; images `a.png`, `b.png` beside."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    png(path.parent / "a.png")
    png(path.parent / "b.png", (30, 30, 200))
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return rel


def run_source(root: Path, *files: LocalFile) -> list[Candidate | Dropped]:
    ctx = SourceContext(split_of=lambda key: "train", root=root)
    return list(local_source(LocalConfig(enabled=True, files=files), ctx))


def one(root: Path, record: Any, fmt: str = "auto") -> Candidate | Dropped:
    rel = write_jsonl(root, "data/local/set.jsonl", [record])
    (item,) = run_source(root, LocalFile(rel, fmt, None))  # type: ignore[arg-type]
    return item


@pytest.mark.parametrize("auto", [True, False], ids=["auto", "explicit"])
@pytest.mark.parametrize(("fmt", "record"), [r[1:] for r in RECORDS], ids=[r[0] for r in RECORDS])
def test_every_format_becomes_a_candidate(tmp_path: Path, fmt: str, record: dict[str, Any], auto: bool) -> None:
    item = one(tmp_path, record, "auto" if auto else fmt)
    assert isinstance(item, Candidate), item
    assert (item.question, item.reasoning, item.answer, item.answer_type) == (
        "How many red cells?", "two red cells", "2", "integer")
    assert len(item.images) == 1 and item.images[0].mode == "RGB" and item.images[0].getpixel((0, 0)) == (200, 30, 30)
    assert item.key == "set-1"
    detected = "messages" if auto and "messages" in record else fmt  # a LLaMA-Factory `messages` record reads as chat
    assert item.provenance["file"] == "data/local/set.jsonl" and item.provenance["format"] == detected


def test_choices_detected_and_two_images(tmp_path: Path) -> None:
    item = one(tmp_path, {"images": ["a.png", "b.png"], "question": "<image><image>Which is blue?\nA. left\nB. right",
                          "reasoning": "the right one is blue", "answer": "(B)"})
    assert isinstance(item, Candidate)
    assert (item.answer, item.answer_type, item.choices, len(item.images)) == ("B", "choice", ("left", "right"), 2)


DROPS = [
    # (id, record or raw line, format, reason)
    ("unknown_keys", {"text": "hi", "image": "a.png"}, "auto", "unknown_format"),
    ("not_an_object", [1, 2], "auto", "not_an_object"),
    ("bad_json", '{"question": "q", ', "auto", "bad_json"),
    ("explicit_format_missing_field", {"question": "q", "answer": "2", "image": "a.png"}, "trl", "missing_field"),
    ("plain_missing_reasoning", {"question": "q", "answer": "2", "image": "a.png"}, "auto", "missing_field"),
    ("no_image_field", {"question": "q", "reasoning": "r", "answer": "2"}, "auto", "missing_image"),
    ("image_file_missing", {"question": "q", "reasoning": "r", "answer": "2", "image": "nope.png"}, "auto",
     "missing_image"),
    ("image_not_a_path", {"question": "q", "reasoning": "r", "answer": "2", "images": [3]}, "auto", "bad_image_ref"),
    ("image_url", {"question": "q", "reasoning": "r", "answer": "2", "image": "https://x/a.png"}, "auto",
     "remote_image"),
    ("dotdot_escape", {"question": "q", "reasoning": "r", "answer": "2", "image": "../outside.png"}, "auto",
     "path_escape"),
    ("absolute_path", {"question": "q", "reasoning": "r", "answer": "2", "image": "/etc/passwd"}, "auto",
     "path_escape"),
    ("segment_rule", {"prompt": "q", "completion": "<think>a</think><answer>1</answer><answer>2</answer>",
                      "image": "a.png"}, "auto", "segment_repeated_tag"),
    ("no_final_answer", {"conversations": [{"from": "human", "value": "q"},
                                           {"from": "gpt", "value": "<think>a</think>\nso\nwe see"}],
                         "image": "a.png"}, "auto", "missing_answer"),
    ("no_assistant_turn", {"messages": [{"role": "user", "content": "q"}], "image": "a.png"}, "auto", "missing_turn"),
    ("bad_choices", {"question": "q", "reasoning": "r", "answer": "2", "image": "a.png", "choices": "A,B"}, "auto",
     "bad_choices"),
]


@pytest.mark.parametrize(("record", "fmt", "reason"), [d[1:] for d in DROPS], ids=[d[0] for d in DROPS])
def test_bad_records_are_dropped_with_a_reason(tmp_path: Path, record: Any, fmt: str, reason: str) -> None:
    png(tmp_path / "data" / "outside.png")
    item = one(tmp_path, record, fmt)
    assert isinstance(item, Dropped), item
    assert (item.key, item.reason) == ("set-1", reason)
    assert item.detail.startswith("data/local/set.jsonl:1: ")
    assert item.raw == record  # kept as read, so the drop file loses nothing


def test_symlink_escaping_the_folder_is_refused(tmp_path: Path) -> None:
    secret = png(tmp_path / "elsewhere" / "secret.png")
    (tmp_path / "data" / "local").mkdir(parents=True)
    (tmp_path / "data" / "local" / "link.png").symlink_to(secret)
    item = one(tmp_path, {"question": "q", "reasoning": "r", "answer": "2", "image": "link.png"})
    assert isinstance(item, Dropped) and item.reason == "path_escape"


def test_symlink_inside_the_folder_is_fine(tmp_path: Path) -> None:
    (tmp_path / "data" / "local" / "imgs").mkdir(parents=True)
    (tmp_path / "data" / "local" / "imgs" / "alias.png").symlink_to(png(tmp_path / "data" / "local" / "real.png"))
    assert isinstance(one(tmp_path, {"question": "q", "reasoning": "r", "answer": "2", "image": "imgs/alias.png"}),
                      Candidate)


def test_unreadable_image_is_dropped(tmp_path: Path) -> None:
    (tmp_path / "data" / "local").mkdir(parents=True)
    (tmp_path / "data" / "local" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    item = one(tmp_path, {"question": "q", "reasoning": "r", "answer": "2", "image": "broken.png"})
    assert isinstance(item, Dropped) and item.reason == "image_unreadable" and "image" in item.detail


def test_bad_line_does_not_stop_the_file_and_keys_follow_line_numbers(tmp_path: Path) -> None:
    good = {"question": "q", "reasoning": "r", "answer": "2", "image": "a.png"}
    rel = write_jsonl(tmp_path, "data/local/sub/part.jsonl", [good, "{oops", "", good])
    items = run_source(tmp_path, LocalFile(rel, "auto", None))
    assert [(type(i).__name__, i.key) for i in items] == [  # the blank line is counted, not a record
        ("Candidate", "sub-part-1"), ("Dropped", "sub-part-2"), ("Blank", "sub-part-3"), ("Candidate", "sub-part-4")]
    assert items[1].raw == "{oops"  # type: ignore[union-attr]


@pytest.mark.parametrize(("limit", "n"), [(None, 5), (0, 0), (2, 2), (9, 5)])
def test_limit_caps_records_read(tmp_path: Path, limit: int | None, n: int) -> None:
    good = {"question": "q", "reasoning": "r", "answer": "2", "image": "a.png"}
    rel = write_jsonl(tmp_path, "data/local/set.jsonl", [good, "not json", good, "", good, good])
    records = [i for i in run_source(tmp_path, LocalFile(rel, "auto", limit)) if not isinstance(i, Blank)]
    assert len(records) == n


SOURCE_ERRORS = [
    ("outside_data_local", "data/other/set.jsonl", "outside data/local"),
    ("dotdot_out", "data/local/../set.jsonl", "outside data/local"),
    ("absolute", "/tmp/set.jsonl", "relative to the project root"),
    ("missing", "data/local/nope.jsonl", "not found"),
    ("not_jsonl", "data/local/set.json", "JSON Lines"),
]


@pytest.mark.parametrize(("rel", "message"), [e[1:] for e in SOURCE_ERRORS], ids=[e[0] for e in SOURCE_ERRORS])
def test_misconfigured_file_raises_source_error(tmp_path: Path, rel: str, message: str) -> None:
    for path in ("data/other/set.jsonl", "data/set.jsonl", "data/local/set.json"):
        write_jsonl(tmp_path, path, [{"question": "q"}])
    with pytest.raises(SourceError, match=message):
        run_source(tmp_path, LocalFile(rel, "auto", None))


def test_symlinked_file_out_of_data_local_raises(tmp_path: Path) -> None:
    write_jsonl(tmp_path, "data/elsewhere/set.jsonl", [{"question": "q"}])
    (tmp_path / "data" / "local").mkdir(parents=True)
    (tmp_path / "data" / "local" / "set.jsonl").symlink_to(tmp_path / "data" / "elsewhere" / "set.jsonl")
    with pytest.raises(SourceError, match="outside data/local"):
        run_source(tmp_path, LocalFile("data/local/set.jsonl", "auto", None))


def test_curate_dataset_end_to_end_conserves_records(tmp_path: Path) -> None:
    lines = [r[2] for r in RECORDS[:4]] + [
        {"image": "b.png", "question": "Which?\nA. red\nB. blue", "reasoning": "it is blue", "answer": "B"},
        "{broken",
        {"question": "q", "reasoning": "r", "answer": "2", "image": "../../escape.png"},
        {"question": "q", "reasoning": "r", "answer": "2"},
        {"prompt": "q", "completion": "no tags at all", "image": "a.png"},
    ]
    rel = write_jsonl(tmp_path, "data/local/mix.jsonl", lines)
    off = {"enabled": False, "n": 0, "seed": 0, "answer_step": "copy"}
    cfg = from_dict(curate_dataset.Config, {
        "val_fraction": 0.0, "test_fraction": 0.0, "split_salt": "",
        "sources": {
            "synthetic": {**off, "rows": 2, "cols": 2, "cell_px": 16, "p_red": 0.5, "p_blue": 0.2, "jitter": False},
            "r1grid": {**{k: v for k, v in off.items() if k != "answer_step"}, "rows": 2, "cols": 2, "cell_px": 16,
                       "p_red": 0.5, "p_blue": 0.2, "jitter": False, "min_checks": 0, "max_checks": 1},
            "digits": {**off, "digit_px": 16, "heldout_fraction": 0.2},
            "local": {"enabled": True, "files": [{"path": rel, "format": "auto", "limit": None}]},
            "hub": {"enabled": False, "datasets": []},
        },
    }, "curate_dataset")
    metrics = curate_dataset.run(cfg, tmp_path)
    out = tmp_path / "data" / "curate_dataset"
    records = read_records(out / "records.jsonl")
    dropped = [d for _, d in read_jsonl(out / "dropped.jsonl")]
    assert metrics["input"] == len(lines) == len(records) + len(dropped)
    assert metrics["input_by_source"] == {"local": len(lines)}
    reasons = sorted(d["reason"] for d in dropped)
    # the first four records are the same sample in four formats: one is kept, three are exact duplicates
    assert reasons == sorted(["duplicate_exact"] * 3 + ["bad_json", "path_escape", "missing_image",
                                                         "segment_missing_think"])
    assert {r.id for r in records} == {"local/mix-1", "local/mix-5"}
    choice = next(r for r in records if r.id == "local/mix-5")
    assert (choice.answer_type, choice.choices) == ("choice", ("red", "blue"))
    assert all((out / p).is_file() for r in records for p in r.images)


def test_badly_encoded_line_is_dropped(tmp_path: Path) -> None:
    good = {"question": "q", "reasoning": "r", "answer": "2", "image": "a.png"}
    rel = write_jsonl(tmp_path, "data/local/set.jsonl", [good])
    with (tmp_path / rel).open("ab") as f:
        f.write(b'{"question": "caf\xe9"}\n')
    items = run_source(tmp_path, LocalFile(rel, "auto", None))
    assert [(type(i).__name__, getattr(i, "reason", None)) for i in items] == [
        ("Candidate", None), ("Dropped", "bad_encoding")]
