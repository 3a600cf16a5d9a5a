"""The r1grid testbed: its traces, its think facts, perception pre-training, and the paper's metrics in evaluate."""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path

import pytest
from tiny_project import NO_PERCEPTION, TINY_SPEC

from scalevlm.core.segments import format_completion, parse_completion
from scalevlm.core.think_facts import judge_think
from scalevlm.sources.reasoning_grid import (
    ReasoningGridConfig,
    caption_sample,
    grid_caption,
    reasoning_grid_sample,
    reasoning_grid_source,
)

CFG = ReasoningGridConfig(enabled=True, n=40, seed=0, rows=4, cols=4, cell_px=16, p_red=0.45, p_blue=0.25, jitter=True,
                          min_checks=2, max_checks=10)


def test_traces_have_the_papers_shape_and_the_answer_does_the_subtraction() -> None:
    for i in range(40):
        image, question, think, answer, extra = reasoning_grid_sample(random.Random(i), CFG)
        cells = extra["cells"]
        reds = sum(row.count("red") for row in cells)
        assert image.size == (64, 64) and question == "How many cells are not red?"
        assert think.startswith(grid_caption(cells)) and f"So the total is {reds}." in think
        assert think.endswith(f"So {reds} of the 16 cells are red.")
        assert answer == str(16 - reds) and answer not in re.findall(r"\d+",
                                                                     think.split("So the total "
                                                                                 "is")[1]) or answer == str(reds)
        assert parse_completion(format_completion(think, answer)).ok
        # every self-check carries the count; they name rows by ordinal, so the only numbers are the count's
        checks = think.count("So the total is still")
        assert 2 <= checks <= 10 and set(re.findall(r"\d+", think.split(f"So the total is {reds}.")[1])) <= {str(reds),
                                                                                                             "16"}
        assert extra["think_fact"]["value"] == str(reds) and extra["think_fact"]["answer_map"][str(reds)] == answer


def test_think_lengths_vary_and_dwarf_the_answer() -> None:
    lengths = [len(reasoning_grid_sample(random.Random(i), CFG)[2]) for i in range(200)]
    assert min(lengths) < 0.6 * max(lengths)  # variable length, as R1 traces are
    assert sum(lengths) / len(lengths) > 100 * 2  # characters: the answer is 1-2 characters


def test_the_source_is_deterministic_per_index() -> None:
    from scalevlm.sources.base import SourceContext

    ctx = SourceContext(split_of=lambda k: "train", root=Path("."))
    a = list(reasoning_grid_source(CFG, ctx))
    b = list(reasoning_grid_source(dataclasses.replace(CFG, n=60), ctx))[:40]
    assert [c.key for c in a] == [c.key for c in b] and [c.reasoning for c in a] == [c.reasoning for c in b]
    assert a[0].key.startswith("r1grid-0-") and a[0].provenance["drawing"]["cell_px"] == 16


@pytest.mark.parametrize(("completion", "pred", "correct", "consistent"), [
    ("<think>… So 5 of the 16 cells are red.</think><answer>11</answer>", "11", True, True),
    # wrong think, lucky answer
    ("<think>… So 6 of the 16 cells are red.</think><answer>11</answer>", "11", False, False),
    # right think, wrong answer
    ("<think>… So 5 of the 16 cells are red.</think><answer>12</answer>", "12", True, False),
    ("<think>So 4 of the 16 cells are red. So 5 of the 16 cells are red.</think><answer>11</answer>", "11", True, True),
    ("<think>So the total is 5. Wait, let me re-check", None, False, False),  # cut off: no conclusion, no answer
])
def test_judge_think_reads_the_last_conclusion(completion: str, pred: str | None, correct: bool,
                                               consistent: bool) -> None:
    fact = reasoning_grid_sample(random.Random(3), CFG)[4]["think_fact"]
    fact = {**fact, "value": "5"}
    judged = judge_think(completion, pred, fact)
    assert judged is not None and judged.correct is correct and judged.consistent is consistent
    assert judge_think(completion, pred, None) is None


def test_caption_scores() -> None:
    from scalevlm.modeling.perception import score_caption

    _, caption, cells = caption_sample(random.Random(0), CFG)
    assert score_caption(caption, cells) == {"exact": 1.0, "cell_accuracy": 1.0, "count_correct": 1.0}
    first = caption.split(". row 2")[0] + "."
    partial = score_caption(first, cells)
    assert partial["exact"] == 0.0 and partial["cell_accuracy"] == 0.25 and partial["count_correct"] == float(
        sum(r.count("red") for r in cells) == cells[0].count("red"))


@pytest.mark.slow
def test_perception_pretraining_learns_and_leaves_curated_images_out(tmp_path: Path) -> None:
    """A few steps lower the caption loss; an image whose PNG is in `excluded` is never drawn (counted instead)."""
    from scalevlm.modeling import build_tiny
    from scalevlm.modeling.perception import pretrain_perception
    from scalevlm.records import ImageStore, png_bytes
    from scalevlm.sources.reasoning_grid import CAPTION_QUESTION

    texts = [grid_caption(caption_sample(random.Random(i), CFG)[2]) + " " + CAPTION_QUESTION for i in range(50)]
    model, processor = build_tiny(texts, TINY_SPEC)
    first = caption_sample(random.Random("perception:0"), CFG)  # the first image the training stream would draw
    excluded = {ImageStore.address(png_bytes(first[0]))}
    cfg = dataclasses.replace(NO_PERCEPTION, enabled=True, max_steps=12, batch_size=4, eval_every=6, eval_images=2,
                              stop_exact=1.0, max_new_tokens=8)
    report = pretrain_perception(model, processor, cfg, lambda rng: caption_sample(rng, CFG), CAPTION_QUESTION,
                                 excluded)
    assert report["steps"] == 12 and report["curated_images_skipped"] >= 1
    losses = [h["loss"] for h in report["history"]]
    assert losses[-1] < losses[0]
    assert set(report["held_out"]) == {"images", "exact", "cell_accuracy", "count_correct"}


def test_perception_needs_r1grid_records_and_names_the_fix(tmp_path: Path) -> None:
    from tiny_project import grid, grid_project

    from scalevlm.errors import PipelineError
    from stages import prepare_model

    grid_project(tmp_path, 6, lambda i: "train", (grid(2),))
    cfg = prepare_model.Config(name_or_path="tiny", trust_remote_code=False, dtype="auto", tiny=TINY_SPEC,
                               min_pixels=None,
                               max_pixels=None, perception=dataclasses.replace(NO_PERCEPTION, enabled=True))
    with pytest.raises(PipelineError,
                       match="enable curate_dataset.sources.r1grid, or set prepare_model.perception.enabled: false"):
        prepare_model.run(cfg, tmp_path)


def test_a_pretrained_model_skips_perception_pretraining() -> None:
    """Only the model changes for a real run: perception.enabled stays true and is skipped for a hub id."""
    from scalevlm.config import from_dict
    from stages import prepare_model

    section = {"name_or_path": "Qwen/Qwen2.5-VL-3B-Instruct", "trust_remote_code": False, "dtype": "auto",
               "tiny": dataclasses.asdict(TINY_SPEC), "min_pixels": None, "max_pixels": None,
               "perception": {**dataclasses.asdict(NO_PERCEPTION), "enabled": True}}
    assert from_dict(prepare_model.Config, section, "prepare_model").perception.enabled
