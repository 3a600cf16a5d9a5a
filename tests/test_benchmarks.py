"""The paper's benchmarks (ScienceQA image subset, IconQA): published layouts, lmms-eval prompts and scoring, the
evaluate stage's per-benchmark reports, and compare's per-(arm, benchmark) rows. Fixtures:
tests/benchmark_fixtures.py."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from benchmark_fixtures import iconqa_lmms_lab, scienceqa_derek_thomas, scienceqa_lmms_lab
from tiny_project import grid, grid_project

from scalevlm.config import ConfigError, load_config, load_params
from scalevlm.core import mcq
from scalevlm.evaluation.benchmarks.sources import Benchmark, BenchmarkError, Item, Skipped, read
from scalevlm.evaluation.generation import Generation
from scalevlm.facts import ARMS
from scalevlm.records import read_jsonl
from scalevlm.runtime import write_json

ROOT = Path(__file__).resolve().parents[1]
SQA_POST = "\nAnswer with the option's letter from the given choices directly."
ICON_HEAD = "Given a set of images and a question, please provide the answer to the question.\n"


@pytest.fixture(autouse=True)
def _private_datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def bench(name: str, adapter: str, path: str, config: str | None = None, split: str = "test",
          **over: object) -> Benchmark:
    return Benchmark(**{"name": name, "adapter": adapter, "path_or_hub_id": path, "config": config, "split": split,
                        "revision": None, "limit": None, **over})


# Scoring and prompts (pure) -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("pred", "target", "ok"), [
    ("B", "B", True), (" b \n", "B", True), ("B. blue", "B", True), ("C. blue", "B", False),
    ("(B)", "B", False), ("The answer is B", "B", False), ("blue", "B", False), ("b. blue", "B", False),
    ("", "B", False), (None, "B", False),
])
def test_letter_match_is_lmms_evals_exact_match(pred: str | None, target: str, ok: bool) -> None:
    assert mcq.letter_match(pred, target) is ok


def test_parse_rate_reads_the_letters_letter_match_reads() -> None:
    assert [mcq.letter_of(p, 3) for p in ("c", "B. x", "D", "(A)", None, "AB")] == ["C", "B", None, None, None, None]
    assert mcq.text_match(" Seven. ", "seven") and not mcq.text_match("", "") and not mcq.text_match("7 dots", "7")


def test_prompts_are_lmms_evals() -> None:
    assert mcq.scienceqa_prompt("Which?", ["x", "y"],
                                "It is hot.") == f"Context: It is hot.\nWhich?\nA. x\nB. y{SQA_POST}"
    assert mcq.scienceqa_prompt("Which?", ["x"], None) == f"Which?\nA. x{SQA_POST}"
    assert mcq.iconqa_prompt("How many", None) == (
        f"{ICON_HEAD}Question: How many.\nPlease answer the question using a single word or phrase.")
    assert mcq.iconqa_prompt("Pick", mcq.image_options(2)) == (
        f"{ICON_HEAD}Question: Pick.\nOptions:\nA. The first image.\nB. The second image.\n"
        "Please answer with the option letter from the given choices directly.")


def test_a_row_is_scored_on_its_answer_block_and_on_the_raw_completion() -> None:
    from scalevlm.evaluation.benchmarks.evaluation import score

    item = Item(id="b/1", images=(), prompt="p", target="B", choices=("x", "y"), group="g")
    tagged = score(item, Generation("<think>it is y</think><answer>B</answer>", 9, 6, 3))
    assert (tagged["correct"], tagged["correct_raw"], tagged["parsed"], tagged["format_ok"]) == (1, 0, 1, 1)
    bare = score(item, Generation("B", 1, 1, 0))  # an untagged answer: wrong here, right for lmms-eval's raw score
    assert (bare["pred"], bare["correct"], bare["correct_raw"], bare["parsed"]) == (None, 0, 1, 0)
    text = score(Item(id="b/2", images=(), prompt="p", target="7", choices=None, group="g"),
                 Generation("<think>count</think><answer>7.</answer>", 5, 3, 2))
    assert text["correct"] == 1 and text["parsed"] == 1


# Published layouts ------------------------------------------------------------------------------------------------


def _items(entries: list[Item | Skipped]) -> tuple[list[Item], dict[str, str]]:
    return [e for e in entries if isinstance(e, Item)], {e.id: e.reason for e in entries if isinstance(e, Skipped)}


def test_scienceqa_img_in_lmms_labs_layout(tmp_path: Path) -> None:
    scienceqa_lmms_lab(tmp_path / "data/local/sqa")
    items, skipped = _items(list(read(bench("sqa", "scienceqa", "data/local/sqa", "ScienceQA-IMG"), tmp_path)))
    assert skipped == {} and [i.id for i in items] == ["sqa/test-0", "sqa/test-1", "sqa/test-2"]
    assert [i.target for i in items] == ["A", "C", "C"] and [len(i.images) for i in items] == [1, 1, 1]
    assert items[1].prompt == ("Context: The picture shows one square.\nWhich colour is the square?\nA. red\n"
                               f"B. green\nC. blue{SQA_POST}")
    assert items[0].images[0].getpixel((0, 0)) == (200, 30, 30) and items[2].group == "language science"
    assert items[1].doc["answer"] == 2 and "image" not in items[1].doc
    # the FULL config holds a text-only question: the image subset skips it, by name
    _, full_skipped = _items(list(read(bench("full", "scienceqa", "data/local/sqa", "ScienceQA-FULL"), tmp_path)))
    assert full_skipped == {"full/test-3": "no_image"}


def test_scienceqa_one_parquet_file_in_derek_thomas_layout_with_a_limit(tmp_path: Path) -> None:
    scienceqa_derek_thomas(tmp_path / "data/local/dt/test.parquet")
    entries = list(read(bench("dt", "scienceqa", "data/local/dt/test.parquet", limit=3), tmp_path))
    items, skipped = _items(entries)
    assert len(entries) == 3 and skipped == {"dt/test-0": "no_image"} and [i.target for i in items] == ["A", "C"]


def test_iconqa_in_lmms_labs_layout(tmp_path: Path) -> None:
    iconqa_lmms_lab(tmp_path / "data/local/icon")
    items, skipped = _items(list(read(bench("icon", "iconqa", "data/local/icon", split="val"), tmp_path)))
    assert skipped == {"icon/1004": "answer_not_in_choices", "icon/1005": "answer_image_missing"}
    by_id = {i.id: i for i in items}
    txt, img, fill = by_id["icon/1001"], by_id["icon/1002"], by_id["icon/1003"]
    assert (txt.target, txt.choices, len(txt.images)) == ("B", ("turn", "flip", "slide"), 1)
    assert (img.target, img.choices, len(img.images)) == ("B", ("The first image.", "The second image."), 3)
    assert img.images[2].getpixel((0, 0)) == (30, 30, 200)  # query, choice 0, choice 1, in that order
    assert (fill.target, fill.choices, fill.group) == ("7", None, "fill_in_blank")
    assert txt.prompt.startswith(ICON_HEAD
                                 + "Question: What has been done to this letter?.\nOptions:\nA. turn\nB. flip")


def test_misconfigured_benchmarks_stop_with_the_fix(tmp_path: Path) -> None:
    scienceqa_lmms_lab(tmp_path / "data/local/sqa")
    with pytest.raises(BenchmarkError, match=r"lacks \['query_image', 'ques_type'\]"):
        list(read(bench("x", "iconqa", "data/local/sqa", "ScienceQA-IMG"), tmp_path))
    with pytest.raises(BenchmarkError, match="not found"):
        list(read(bench("x", "scienceqa", "data/local/missing/"), tmp_path))
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    scienceqa_derek_thomas(outside / "test.parquet")
    with pytest.raises(BenchmarkError, match="outside the project"):
        list(read(bench("x", "scienceqa", str(outside / "test.parquet")), tmp_path))
    with pytest.raises(BenchmarkError, match="SCALEVLM_ONLINE=1"):  # the project is offline by default
        list(read(bench("x", "scienceqa", "lmms-lab/ScienceQA", "ScienceQA-IMG"), tmp_path))


def test_benchmark_params_are_checked() -> None:
    from stages.evaluate import Config

    base = {k: v for k, v in load_params(ROOT / "params.yaml")["evaluate"].items() if k != "benchmarks"}
    one = {"name": "sqa", "adapter": "scienceqa", "path_or_hub_id": "lmms-lab/ScienceQA", "config": "ScienceQA-IMG",
           "split": "test", "revision": None, "limit": None}
    assert load_config(Config, {"evaluate": base}, "evaluate").benchmarks == ()  # absent = none: repro unchanged
    with pytest.raises(ConfigError, match=r"evaluate\.benchmarks: names must be unique"):
        load_config(Config, {"evaluate": {**base, "benchmarks": [one, one]}}, "evaluate")
    with pytest.raises(ConfigError, match=r"evaluate\.benchmarks\[0\]\.adapter: 'mmbench' is not one of"):
        load_config(Config, {"evaluate": {**base, "benchmarks": [{**one, "adapter": "mmbench"}]}}, "evaluate")


# The stage: evaluate every arm on both benchmarks, then compare --------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Validated train/test splits, one untrained tiny model as all four arms, both benchmarks under data/local/."""
    root = tmp_path_factory.mktemp("project")
    arms = [(stage, method) for stage in ("train_sft", "train_grpo") for method in ("vanilla", "scale")]
    grid_project(root, 8, lambda i: "test" if i % 2 else "train", (grid(2, jitter=False, p_red=0.5, p_blue=0.2),),
                 arms=arms, tokenizer_extra="A. B. C.")
    for stage, method in arms:
        write_json(root / "reports" / stage / method / "metrics.json", {"wall_time_s": 1.0})
    scienceqa_lmms_lab(root / "data/local/benchmarks/scienceqa")
    iconqa_lmms_lab(root / "data/local/benchmarks/iconqa")
    return root


def eval_cfg(benchmarks: tuple[Benchmark, ...]) -> object:
    """The project's evaluate params, small, with these benchmarks."""
    import dataclasses

    from stages.evaluate import Config

    cfg = load_config(Config, ROOT / "params.yaml", "evaluate")
    return dataclasses.replace(cfg, batch_size=2, max_new_tokens=6, max_samples=2, dtype="float32", device="cpu",
                               torch_threads=1, benchmarks=benchmarks)


BENCHMARKS = (bench("scienceqa", "scienceqa", "data/local/benchmarks/scienceqa", "ScienceQA-IMG"),
              bench("iconqa", "iconqa", "data/local/benchmarks/iconqa", split="val"))


@pytest.mark.slow
def test_evaluate_runs_the_benchmarks_and_compare_shows_a_row_per_arm_and_benchmark(project: Path) -> None:
    from stages.compare import Config as CompareConfig
    from stages.compare import run as compare
    from stages.evaluate import run as evaluate

    for arm in ARMS:
        evaluate(eval_cfg(BENCHMARKS), project, arm)
    folder = project / "reports/evaluate/sft-scale"
    index = json.loads((folder / "benchmarks/index.json").read_text())
    assert sorted(index) == ["iconqa", "scienceqa"] and index["scienceqa"]["n"] == 3 and index["iconqa"]["n"] == 3
    assert json.loads((folder / "metrics.json").read_text())["benchmarks"]["iconqa"]["n"] == 3
    icon = json.loads((folder / "benchmarks/iconqa/metrics.json").read_text())
    assert icon["skipped"] == {"answer_image_missing": 1, "answer_not_in_choices": 1} and icon["rows_read"] == 5
    assert sorted(icon["by_group"]) == ["choose_img", "choose_txt", "fill_in_blank"]
    rows = [r for _, r in read_jsonl(folder / "benchmarks/scienceqa/predictions.jsonl")]
    assert [r["target"] for r in rows] == ["A", "C", "C"] and all(r["completion_tokens"] <= 6 for r in rows)
    samples = [s for _, s in read_jsonl(folder / "benchmarks/scienceqa/samples_scienceqa_img.jsonl")]
    assert [s["doc_id"] for s in samples] == [0, 1, 2] and samples[1]["target"] == "C"
    assert samples[0]["input"].endswith(SQA_POST) and samples[0]["resps"] == [[rows[0]["completion"]]]
    assert samples[0]["exact_match"] == float(rows[0]["correct"]) and samples[0]["doc"]["choices"] == ["red", "blue"]
    assert (folder / "benchmarks/iconqa/samples_iconqa_val.jsonl").is_file()

    compare(CompareConfig(n_resamples=100, seed=0, alpha=0.05), project)
    out = project / "reports/compare"
    result = json.loads((out / "metrics.json").read_text())["benchmarks"]
    assert sorted(result["benchmarks"]) == ["iconqa", "scienceqa"] and result["left_out"] == {}
    for name, n in (("scienceqa", 3), ("iconqa", 3)):
        assert sorted(result["benchmarks"][name]["arms"]) == sorted(ARMS)
        assert all(r["n"] == n for r in result["benchmarks"][name]["arms"].values())
    table = (out / "table.md").read_text()
    for name in ("scienceqa", "iconqa"):
        for arm in ARMS:
            assert sum(line.startswith(f"| {name} | {arm} | 3 |") for line in table.splitlines()) == 1
    assert "## Benchmarks" in (out / "README.md").read_text()


@pytest.mark.slow
def test_a_benchmark_evaluated_by_some_arms_only_is_left_out_by_name(project: Path, tmp_path: Path) -> None:
    import shutil

    from scalevlm.evaluation.benchmarks.report import compare_benchmarks, markdown
    from stages.evaluate import run as evaluate

    root = tmp_path / "p"
    shutil.copytree(project, root)
    for arm in ARMS:
        evaluate(eval_cfg(BENCHMARKS if arm != "grpo-scale" else BENCHMARKS[:1]), root, arm)
    result = compare_benchmarks(root, seed=0, n_resamples=50)
    assert sorted(result["benchmarks"]) == ["scienceqa"]
    assert result["left_out"] == {"iconqa": "not evaluated by ['grpo-scale']"}
    assert "- left out: **iconqa**, not evaluated by ['grpo-scale']" in markdown(result)


def test_benchmark_rows_pair_the_arms_on_shared_questions(tmp_path: Path) -> None:
    """Constructed predictions: the per-arm accuracy, its CI and the paired McNemar test of each benchmark."""
    from scalevlm.evaluation.benchmarks.report import compare_benchmarks, markdown

    base, better = [1] * 10 + [0] * 10, [1] * 20  # sft-scale right on 10 more questions than sft-vanilla
    for arm, correct in zip(ARMS, (base, better, base, base), strict=True):
        folder = tmp_path / "reports/evaluate" / arm / "benchmarks"
        rows = [{"id": f"sqa/test-{i:02d}", "correct": c, "correct_raw": 0, "format_ok": 1, "parsed": 1}
                for i, c in enumerate(correct)]
        rows.append({"id": f"sqa/only-{arm}", "correct": 1, "correct_raw": 1, "format_ok": 1, "parsed": 1})  # unpaired
        (folder / "sqa").mkdir(parents=True)
        (folder / "sqa/predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        write_json(folder / "index.json", {"sqa": {"adapter": "scienceqa", "path_or_hub_id": "lmms-lab/ScienceQA",
                                                   "config": "ScienceQA-IMG", "split": "test", "n": 21}})
    result = compare_benchmarks(tmp_path, seed=0, n_resamples=200)
    sqa = result["benchmarks"]["sqa"]
    assert (sqa["n"] == 20 and sqa["arms"]["sft-scale"]["accuracy"] == 1.0
            and sqa["arms"]["sft-vanilla"]["accuracy"] == 0.5)
    low, high = sqa["arms"]["sft-vanilla"]["accuracy_low"], sqa["arms"]["sft-vanilla"]["accuracy_high"]
    assert low < 0.5 < high
    test = next(t for t in sqa["tests"] if (t["a"], t["b"]) == ("sft-scale", "sft-vanilla"))
    assert test["diff"] == pytest.approx(0.5) and test["p_mcnemar"] == pytest.approx(2 / 2**10)
    assert "| sqa | sft-scale | 20 | 1.000 [1.000, 1.000] | 0.000 | 1.000 | 1.000 |" in markdown(result)
