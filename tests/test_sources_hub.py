"""The hub source through the real `datasets.load_dataset`, on local copies written in each published layout.

The fixtures are built in `tmp_path` by the builders below, a few rows each, in the layout the dataset publishes:
Vision-R1-cold (LLaMA-Factory JSON arrays, images in sub-folders beside them), LLaVA-CoT-100k (`train.jsonl`
+ image folders), R1-Onevision (parquet shards in a sub-folder, base64 images), and a `mapped` parquet set
written by `datasets` with an Image feature.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from scalevlm.sources.base import AdapterError, Candidate, Dropped, SourceContext, SourceError
from scalevlm.sources.hub import HubConfig, HubDataset, hub_source, image_from_value

RED, BLUE = (200, 30, 30), (30, 30, 200)
MC_QUESTION = "<image>\nWhich colour is the square?\nChoices:\nA: red\nB: blue"


@pytest.fixture(autouse=True)
def _private_datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def png_bytes(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return buf.getvalue()


def png(path: Path, colour: tuple[int, int, int] = RED) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(colour))
    return path.name


def turns(question: str, answer: str, user: str = "human", bot: str = "gpt") -> list[dict[str, str]]:
    return [{"from": user, "value": question}, {"from": bot, "value": answer}]


def vision_r1_cold(root: Path) -> Path:
    """`vision_r1_llava_cot_full.json` ({id, image, conversations}) with `llava_cot_images/` beside it."""
    folder = root / "vision_r1_cold"
    png(folder / "llava_cot_images" / "sqa" / "1.png")
    png(folder / "llava_cot_images" / "geo" / "2.png", BLUE)
    png(root / "outside.png")
    rows = [
        {"id": "sqa-1", "image": "llava_cot_images/sqa/1.png", "conversations": turns(
            MC_QUESTION, "<think>\nThe square is filled red.\n</think>\n\nIt is red.\n\n**Final Answer:** \\boxed{A}")},
        {"id": "geo-2", "image": "llava_cot_images/geo/2.png", "conversations": turns(
            "<image>\nWhat is the area?", "<think>2 by 3</think>\nThe area is 2 × 3 = 6.\nFinal Answer: 6")},
        {"id": "bad-3", "image": "llava_cot_images/geo/2.png", "conversations": turns("<image>q", "no think at all")},
        {"id": "esc-4", "image": "../outside.png", "conversations": turns("<image>q", "<think>r</think> 1")},
        {"id": "miss-5", "image": "llava_cot_images/none.png",
         "conversations": turns("<image>q", "<think>r</think> 1")},
    ]
    (folder / "vision_r1_llava_cot_full.json").write_text(json.dumps(rows), encoding="utf-8")
    return folder


def vision_r1_mulberry(root: Path) -> Path:
    """`vision_r1_mulberry_sft_full.json` ({images, conversations} with user/assistant roles), alone in a folder."""
    folder = root / "vision_r1_mulberry"
    for i in range(3):
        png(folder / "mulberry_images" / "AI2D" / f"{i}.png", (40 * i, 90, 90))
    rows = [{"images": [f"mulberry_images/AI2D/{i}.png"], "conversations": turns(
        f"<image>How many arrows are there in diagram {i}?", f"<think>count them: {i}</think>\nThe answer is {i}.",
        "user", "assistant")} for i in range(3)]
    (folder / "vision_r1_mulberry_sft_full.json").write_text(json.dumps(rows), encoding="utf-8")
    return folder


def llava_cot(root: Path) -> Path:
    """`train.jsonl` ({id, image, conversations}) with the unzipped image folders beside it."""
    folder = root / "llava_cot_100k"
    png(folder / "sqa" / "train" / "1" / "image.png")
    png(folder / "chartqa" / "train" / "png" / "2.png", BLUE)
    (folder / "ai2d" / "3.png").parent.mkdir(parents=True)
    (folder / "ai2d" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    cot = "<SUMMARY>I will look.</SUMMARY>\n\n<CAPTION>A {c} square.</CAPTION>\n\n" \
          "<REASONING>It is {c}.</REASONING>\n\n<CONCLUSION>{a}</CONCLUSION>"
    rows = [
        {"id": "1", "image": "sqa/train/1/image.png", "conversations": turns(MC_QUESTION, cot.format(c="red", a="A"))},
        {"id": "2", "image": "chartqa/train/png/2.png", "conversations": turns(
            "<image>\nHow many sides?", cot.format(c="blue", a="The answer is 4.")) + turns(
            "And colour?", cot.format(c="blue", a="blue"))},
        {"id": "3", "image": "sqa/train/1/image.png", "conversations": turns("<image>q", "<REASONING>r</REASONING>")},
        {"id": "4", "image": "ai2d/3.png", "conversations": turns("<image>q", cot.format(c="x", a="1"))},
    ]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


def r1_onevision(root: Path) -> Path:
    """Parquet shard `ai2d/train-00000-of-00001.parquet`: {id, image (base64), conversations}."""
    folder = root / "r1_onevision"
    b64 = base64.b64encode(png_bytes(RED)).decode()
    rows = [
        {"id": "a-1", "image": b64, "conversations": turns(
            "<image>Which colour?\n(A) red\n(B) blue", "<think>It is red.</think>\n\n<answer>A</answer>")},
        {"id": "a-2", "image": "data:image/png;base64," + base64.b64encode(png_bytes(BLUE)).decode(),
         "conversations": turns("<image>How many squares?", "<think>one square</think>\n\n1")},
        {"id": "a-3", "image": base64.b64encode(b"not an image at all, only text" * 40).decode(),
         "conversations": turns("<image>q", "<think>r</think>\n1")},
        {"id": "a-4", "image": None, "conversations": turns("<image>q", "<think>r</think>\n1")},
    ]
    (folder / "ai2d").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "ai2d" / "train-00000-of-00001.parquet")
    return folder


def mapped_set(root: Path) -> Path:
    """A parquet set written by `datasets` with an Image feature (bytes embedded) and custom column names."""
    folder = root / "mapped_set"
    image = {"bytes": png_bytes(RED), "path": None}
    data = {
        "picture": [image, {"bytes": b"garbage", "path": None}, None, image],
        "prompt": ["Which colour?", "q", "q", "Pick one"],
        "rationale": ["it is red", "r", "r", "the first"],
        "final": ["red", "1", "1", "yes"],
        "kind": ["choice", None, None, None],
        "options": [["red", "blue"], None, None, ["yes", "no"]],
        "solution": ["<think>it is red</think><answer>red</answer>", "<think>r</think> 1", "<think>r</think> 1",
                     "<think>a</think>\n\\boxed{yes}"],
    }
    features = datasets.Features({
        "picture": datasets.Image(), "prompt": datasets.Value("string"), "rationale": datasets.Value("string"),
        "final": datasets.Value("string"), "kind": datasets.Value("string"),
        "options": datasets.List(datasets.Value("string")), "solution": datasets.Value("string"),
    })
    (folder / "data").mkdir(parents=True)
    datasets.Dataset.from_dict(data, features=features).to_parquet(folder / "data" / "train-00000-of-00001.parquet")
    return folder


def spec(name: str, adapter: str, field_map: dict[str, str] | None = None, limit: int | None = None,
         split: str = "train", revision: str | None = None) -> HubDataset:
    return HubDataset(name, split, revision, adapter, field_map or {}, limit)  # type: ignore[arg-type]


def run(root: Path, *specs: HubDataset) -> list[Candidate | Dropped]:
    ctx = SourceContext(split_of=lambda key: "train", root=root)
    return list(hub_source(HubConfig(enabled=True, datasets=specs), ctx))


def summary(items: list[Candidate | Dropped]) -> list[tuple[str, ...]]:
    return [("ok", i.answer, i.answer_type) if isinstance(i, Candidate) else ("drop", i.reason) for i in items]


def test_vision_r1_cold_json_file(tmp_path: Path) -> None:
    vision_r1_cold(tmp_path)
    items = run(tmp_path, spec("vision_r1_cold/vision_r1_llava_cot_full.json", "vision_r1"))
    assert summary(items) == [("ok", "A", "choice"), ("ok", "6", "integer"), ("drop", "bad_think_block"),
                              ("drop", "path_escape"), ("drop", "missing_image")]
    first = items[0]
    assert isinstance(first, Candidate)
    assert (first.question, first.reasoning, first.choices) == (MC_QUESTION[8:], "The square is filled red.",
                                                                ("red", "blue"))
    assert first.images[0].getpixel((0, 0)) == RED
    assert first.key == "vision-r1-cold-vision-r1-llava-cot-full-json-train-0"
    assert first.provenance == {"dataset": "vision_r1_cold/vision_r1_llava_cot_full.json", "revision": None,
                                "split": "train", "row": 0, "adapter": "vision_r1", "turns": 2, "id": "sqa-1"}
    assert all("row" in i.detail and i.raw["id"] for i in items if isinstance(i, Dropped))


def test_vision_r1_mulberry_folder_with_images_beside(tmp_path: Path) -> None:
    vision_r1_mulberry(tmp_path)
    items = run(tmp_path, spec("vision_r1_mulberry", "vision_r1"))
    assert summary(items) == [("ok", str(i), "integer") for i in range(3)]
    assert [i.images[0].getpixel((0, 0)) for i in items] == [(40 * i, 90, 90) for i in range(3)]  # type: ignore[union-attr]


def test_llava_cot_folder(tmp_path: Path) -> None:
    llava_cot(tmp_path)
    items = run(tmp_path, spec(str(tmp_path / "llava_cot_100k"), "llava_cot"))  # an absolute path works too
    assert summary(items) == [("ok", "A", "choice"), ("ok", "4", "integer"), ("drop", "missing_answer"),
                              ("drop", "image_unreadable")]
    second = items[1]
    assert isinstance(second, Candidate)
    assert second.reasoning == "I will look.\n\nA blue square.\n\nIt is blue."
    assert (second.question, second.provenance["turns"]) == ("How many sides?", 4)  # first turn pair only


def test_r1_onevision_parquet_with_base64_images(tmp_path: Path) -> None:
    r1_onevision(tmp_path)
    items = run(tmp_path, spec("r1_onevision", "r1_onevision"))
    assert summary(items) == [("ok", "A", "choice"), ("ok", "1", "integer"), ("drop", "image_unreadable"),
                              ("drop", "missing_image")]
    assert [i.images[0].getpixel((0, 0)) for i in items[:2]] == [RED, BLUE]  # type: ignore[union-attr]
    drop = items[2]
    assert isinstance(drop, Dropped) and drop.raw["image"].startswith("<base64 image")
    json.dumps([i.raw for i in items if isinstance(i, Dropped)])  # the drop file can hold them


def test_mapped_with_field_map(tmp_path: Path) -> None:
    mapped_set(tmp_path)
    field_map = {"image": "picture", "question": "prompt", "reasoning": "rationale", "answer": "final",
                 "answer_type": "kind", "choices": "options"}
    items = run(tmp_path, spec("mapped_set", "mapped", field_map))
    assert summary(items) == [("ok", "red", "choice"), ("drop", "image_unreadable"), ("drop", "missing_image"),
                              ("ok", "yes", "choice")]
    assert (items[0].choices, items[0].images[0].getpixel((0, 0))) == (("red", "blue"), RED)  # type: ignore[union-attr]
    assert items[1].raw["picture"] == {"bytes": "<7 bytes>", "path": None}  # type: ignore[union-attr]


def test_mapped_answer_column_as_completion(tmp_path: Path) -> None:
    mapped_set(tmp_path)
    field_map = {"image": "picture", "question": "prompt", "answer": "solution"}
    items = run(tmp_path, spec("mapped_set", "mapped", field_map))
    assert summary(items) == [("ok", "red", "text"), ("drop", "image_unreadable"), ("drop", "missing_image"),
                              ("ok", "yes", "text")]
    assert items[0].reasoning == "it is red"  # type: ignore[union-attr]


@pytest.mark.parametrize(("limit", "n"), [(0, 0), (2, 2), (None, 5), (50, 5)])
def test_limit_caps_rows(tmp_path: Path, limit: int | None, n: int) -> None:
    vision_r1_cold(tmp_path)
    assert len(run(tmp_path, spec("vision_r1_cold/vision_r1_llava_cot_full.json", "vision_r1", limit=limit))) == n


def test_split_slice_gives_distinct_keys(tmp_path: Path) -> None:
    vision_r1_cold(tmp_path)
    name = "vision_r1_cold/vision_r1_llava_cot_full.json"
    keys = [i.key for i in run(tmp_path, spec(name, "vision_r1", split="train[:2]"),
                               spec(name, "vision_r1", split="train[2:4]"))]
    assert len(keys) == len(set(keys)) == 4


CONFIG_ERRORS = [
    # (id, dataset builder, spec, message)
    ("unknown_field_map_key", mapped_set,
     spec("mapped_set", "mapped", {"image": "picture", "question": "prompt", "answer": "final", "rationale": "x"}),
     r"unknown keys \['rationale'\]"),
    ("field_map_missing_answer", mapped_set, spec("mapped_set", "mapped", {"image": "picture", "question": "prompt"}),
     r"missing keys \['answer'\]"),
    ("field_map_two_image_keys", mapped_set, spec("mapped_set", "mapped", {
        "image": "picture", "images": "picture", "question": "prompt", "answer": "final"}), "image keys"),
    ("field_map_absent_column", mapped_set, spec("mapped_set", "mapped", {
        "image": "pic", "question": "prompt", "answer": "final"}), r"columns \['pic'\]"),
    ("field_map_with_other_adapter", llava_cot, spec("llava_cot_100k", "llava_cot", {"question": "q"}),
     "read only by adapter 'mapped'"),
    ("adapter_columns_absent", mapped_set, spec("mapped_set", "vision_r1"), "use adapter 'mapped'"),
    ("missing_local_path", llava_cot, spec("./nowhere", "llava_cot"), "not found"),
    ("missing_local_file", llava_cot, spec("llava_cot_100k/test.jsonl", "llava_cot"), "not found"),
    ("revision_on_local_path", llava_cot, spec("llava_cot_100k", "llava_cot", revision="main"), "hub ids only"),
    ("unknown_split", llava_cot, spec("llava_cot_100k", "llava_cot", split="test"), r"splits found: \['train'\]"),
    ("hub_id_offline", llava_cot, spec("nobody/not-cached", "llava_cot"), "could not be loaded"),
]


@pytest.mark.parametrize(("build", "bad", "message"), [c[1:] for c in CONFIG_ERRORS], ids=[c[0] for c in CONFIG_ERRORS])
def test_misconfiguration_raises_source_error(tmp_path: Path, build: Any, bad: HubDataset, message: str) -> None:
    build(tmp_path)
    with pytest.raises(SourceError, match=message):
        run(tmp_path, bad)


def test_field_map_checked_before_any_dataset_is_read(tmp_path: Path) -> None:
    vision_r1_cold(tmp_path)
    good = spec("vision_r1_cold/vision_r1_llava_cot_full.json", "vision_r1")
    items = hub_source(HubConfig(True, (good, spec("x", "mapped", {"colour": "c"}))),
                       SourceContext(lambda key: "train", tmp_path))
    with pytest.raises(SourceError, match="unknown keys"):
        next(items)


def test_folder_with_two_schemas_asks_for_one_file(tmp_path: Path) -> None:
    folder = vision_r1_cold(tmp_path)
    (folder / "vision_r1_mulberry_sft_full.json").write_text(json.dumps(
        [{"images": ["x.png"], "conversations": turns("q", "<think>r</think> 1", "user", "assistant")}]))
    with pytest.raises(SourceError, match="could not be loaded"):
        run(tmp_path, spec("vision_r1_cold", "vision_r1"))


def test_folder_readme_configs_are_respected(tmp_path: Path) -> None:
    folder = llava_cot(tmp_path)
    (folder / "train.jsonl").rename(folder / "annotations.jsonl")  # not split-named: only the README says so
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n"
                                      "    path: annotations.jsonl\n---\n# LLaVA-CoT copy\n", encoding="utf-8")
    assert len(run(tmp_path, spec("llava_cot_100k", "llava_cot"))) == 4


def test_unsupported_data_file_raises(tmp_path: Path) -> None:
    (tmp_path / "set.txt").write_text("hello\n")
    with pytest.raises(SourceError, match="one builder"):
        run(tmp_path, spec("set.txt", "mapped", {"image": "i", "question": "q", "answer": "a"}))


IMAGE_VALUES = [
    # (id, value, expected pixel or AdapterError reason); `base` is a folder holding red.png
    ("pil_image", Image.new("RGB", (2, 2), BLUE), BLUE),
    ("bytes_dict", {"bytes": png_bytes(BLUE), "path": "ignored.png"}, BLUE),
    ("path_dict", {"bytes": None, "path": "red.png"}, RED),
    ("raw_bytes", png_bytes(BLUE), BLUE),
    ("base64", base64.b64encode(png_bytes(BLUE)).decode(), BLUE),
    ("data_url", "data:image/png;base64," + base64.b64encode(png_bytes(BLUE)).decode(), BLUE),
    ("relative_path", "red.png", RED),
    ("escaping_path", "../red.png", "path_escape"),
    ("absolute_path", "/red.png", "path_escape"),
    ("garbage_bytes", b"nope", "image_unreadable"),
    ("number", 7, "bad_image_ref"),
]


@pytest.mark.parametrize(("value", "expected"), [v[1:] for v in IMAGE_VALUES], ids=[v[0] for v in IMAGE_VALUES])
def test_image_from_value(tmp_path: Path, value: Any, expected: tuple[int, int, int] | str) -> None:
    png(tmp_path / "base" / "red.png")
    png(tmp_path / "red.png")
    if isinstance(expected, str):
        with pytest.raises(AdapterError) as err:
            image_from_value(value, tmp_path / "base", "image[0]")
        assert err.value.reason == expected
    else:
        assert image_from_value(value, tmp_path / "base", "image[0]").getpixel((0, 0)) == expected


def test_relative_path_needs_a_local_copy_for_a_hub_id(tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match="point `name` at that folder") as err:
        image_from_value("coco/1.jpg", None, "image[0]")
    assert err.value.reason == "missing_image"


def test_local_dataset_outside_the_project_is_refused_unless_allowed(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    outside = llava_cot(tmp_path)  # beside the project, not in it
    (project / "link").symlink_to(outside)
    for name in (str(outside), "../llava_cot_100k", "link"):  # absolute, `..`, a symlink out
        with pytest.raises(SourceError, match=r"datasets\[0\]\.name = .* outside the project .*"
                                              r"datasets\[0\]\.allow_outside_project: true"):
            run(project, spec(name, "llava_cot"))
    allowed = dataclasses.replace(spec(str(outside), "llava_cot"), allow_outside_project=True)
    assert summary(run(project, allowed))[:2] == [("ok", "A", "choice"), ("ok", "4", "integer")]


def test_mapped_columns_must_hold_text_not_coerced_values(tmp_path: Path) -> None:
    image = {"bytes": png_bytes(RED), "path": None}
    data = {"picture": [image] * 3, "prompt": ["How many?"] * 3, "rationale": ["counted"] * 3,
            "count": [7, 8, 9], "flag": [True, False, True]}
    features = datasets.Features({"picture": datasets.Image(), "prompt": datasets.Value("string"),
                                  "rationale": datasets.Value("string"), "count": datasets.Value("int64"),
                                  "flag": datasets.Value("bool")})
    (tmp_path / "typed" / "data").mkdir(parents=True)
    datasets.Dataset.from_dict(data, features=features).to_parquet(tmp_path / "typed/data/train-00000-of-00001.parquet")
    field_map = {"image": "picture", "question": "prompt", "reasoning": "rationale"}
    assert summary(run(tmp_path, spec("typed", "mapped", {**field_map, "answer": "count"}))) == [
        ("ok", "7", "integer"), ("ok", "8", "integer"), ("ok", "9", "integer")]  # integers are read as decimals
    assert summary(run(tmp_path, spec("typed", "mapped", {**field_map, "answer": "flag"}))) == [
        ("drop", "bad_field_type")] * 3  # never "True"
