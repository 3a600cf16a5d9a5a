"""`reasoning_grid`: the embedded testbed with the paper's premise (issue 10).

The paper fine-tunes pretrained VLMs, which already perceive, on long R1-style traces whose short answer does
task-critical work. This source is that setting at the tiny model's scale:

- **Image**: the `synthetic` source's red / blue / empty grid (one 16 px cell = one merged visual token).
- **Think** (~150–450 tokens, R1-style): it opens with the dense caption the base model was pre-trained to write
  (`grid_caption`: cells, red count and running total per row; `prepare_model.perception`), concludes
  "So the total is N.", then re-checks itself a variable number of times ("Wait, let me re-check the third row.
  Yes, that is right. So the total is still N.") and restates its count at the end: "So N of the 16 cells are red."
- **Answer**: the number of cells that are *not* red, `rows × cols − N` — the subtraction is the answer's own work;
  the think never states its result. Chance (always the most frequent answer) is reported by `evaluate`.

Why this shape (measured in `research/testbed/`): a 1.3 M-parameter model reads the image reliably only where
pre-training taught it (right after the prompt), so every image-dependent token sits in the caption block that
opens the think and the long, variable middle is image-independent; the count is carried through it by a short
copy after every self-check (one restatement at the end, ~300 tokens after the conclusion, was right on only ~20%
of test samples; carried, ~76%), and the self-checks hold no digits. The earlier multiple-choice variant (the answer is
the letter of the total among shuffled options) was not learned by either arm in 300 steps (letter CE = ln 4).

Every record says what a right think concludes (`provenance.think_fact`: a pattern, its true value and the answer
each value implies), so `evaluate` can report P(answer correct | think correct) and answer–think consistency.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import asdict
from typing import Annotated, Any

from PIL import Image

from scalevlm.config import Checked, NonNegativeInt, PositiveInt, Probability, Problems, Range, config_dataclass
from scalevlm.sources.base import Candidate, SourceContext
from scalevlm.sources.synthetic import GridDrawing, draw_grid, sample_key

QUESTION = "How many cells are not red?"
CAPTION_QUESTION = "Describe the grid."  # perception pre-training prompt (prepare_model.perception)
CONCLUSION = "So the total is {n}."
CARRY = "So the total is still {n}."  # after every self-check: the count is carried forward, a short copy each time
RESTATEMENT = "So {n} of the {cells} cells are red."
THINK_FACT_PATTERN = r"So (\d+) of the \d+ cells are red"  # the think's final count (the last match)

OPENERS = (
    "But let me not rush. I will check my reading before I answer.",
    "Before I answer, let me make sure this is right.",
    "Now let me think again about whether I missed anything.",
)
# Self-checks hold no digits (rows are named by ordinal words): the only numbers in a think are the caption's, the
# conclusion and its carried copies, so copying the count is not confused by row numbers. {r} is an ordinal.
# Every opener, self-check and closer starts with its own word, so which sentence comes is decided by one token and the
# rest is a fixed phrase: with shared openings ("Hmm, let me …" / "Hmm, red and …") vanilla SFT blended sentences
# ("Hmm, I have r, I need.") and then lost the carried count (seed 0: final count right on 0.757, first on 0.981).
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
SELF_CHECKS = (
    "Wait, let me re-check the {r} row. Yes, that is right.",
    "Hmm, red and blue can look similar, so let me look at the {r} row once more. It looks fine.",
    "Careful: the blue cells and the empty cells do not count. I only count the red ones.",
    "Did I skip a row? No, I went through the rows in order, from the top to the bottom.",
    "Step by step, I have read every row, so the count is done.",
    "Let me double check the count for the {r} row. Good.",
    "Remember, the question is about the whole grid and not about one row, and I have read all of the rows.",
)
CLOSERS = ("Okay, I am confident in my count now.", "Good, everything checks out.",
           "Alright, I have checked it carefully.")


@config_dataclass
class ReasoningGridConfig(Checked):
    enabled: bool
    n: NonNegativeInt  # samples drawn
    seed: NonNegativeInt
    # the image: as the `synthetic` source's (rows are named by ordinals)
    rows: Annotated[int, Range(ge=1, le=len(ORDINALS))]
    cols: PositiveInt
    cell_px: Annotated[int, Range(ge=7)]
    p_red: Probability
    p_blue: Probability
    jitter: bool
    min_checks: NonNegativeInt  # self-check sentences per think, drawn uniformly in [min_checks, max_checks]
    max_checks: NonNegativeInt

    def check(self) -> Problems:
        if self.p_red + self.p_blue > 1:
            yield "p_red", (f"p_red + p_blue must be <= 1 (the rest of the cells is empty), got {self.p_red} + "
                            f"{self.p_blue}")
        if self.min_checks > self.max_checks:
            yield "min_checks", f"{self.min_checks} is above max_checks {self.max_checks}"


def grid_caption(cells: list[list[str]]) -> str:
    """The dense caption of a grid: per row its cells, its red count and the running red total. The base model is
    pre-trained to write it (perception), and every think opens with it."""
    out, running = [], 0
    for r, row in enumerate(cells):
        running += row.count("red")
        out.append(f"row {r + 1}: {' '.join(row)} ({row.count('red')} red, {running} so far).")
    return " ".join(out)


def caption_sample(rng: random.Random, grid: GridDrawing) -> tuple[Image.Image, str, list[list[str]]]:
    """(image, caption, cells): one perception pre-training sample."""
    image, cells = draw_grid(rng, grid)
    return image, grid_caption(cells), cells


def r1_think(rng: random.Random, cells: list[list[str]], min_checks: int, max_checks: int) -> str:
    reds = sum(row.count("red") for row in cells)
    parts = [grid_caption(cells), CONCLUSION.format(n=reds), rng.choice(OPENERS)]
    rows = len(cells)
    for _ in range(rng.randint(min_checks, max_checks)):
        parts += [rng.choice(SELF_CHECKS).format(r=ORDINALS[rng.randrange(rows)]), CARRY.format(n=reds)]
    parts += [rng.choice(CLOSERS), RESTATEMENT.format(n=reds, cells=rows * len(cells[0]))]
    return " ".join(parts)


def drawing(cfg: ReasoningGridConfig) -> dict[str, Any]:
    """The record's provenance `drawing`: how its image was drawn."""
    return asdict(GridDrawing.of(cfg))


def think_fact(reds: int, cells: int) -> dict[str, Any]:
    """What a right think concludes, and the answer each conclusion implies (for consistency)."""
    return {"pattern": THINK_FACT_PATTERN, "occurrence": "last", "value": str(reds),
            "answer_map": {str(v): str(cells - v) for v in range(cells + 1)}}


def reasoning_grid_sample(rng: random.Random, cfg: ReasoningGridConfig) -> tuple[Image.Image, str, str, str, dict]:
    image, cells = draw_grid(rng, GridDrawing.of(cfg))
    reds = sum(row.count("red") for row in cells)
    n_cells = cfg.rows * cfg.cols
    think = r1_think(rng, cells, cfg.min_checks, cfg.max_checks)
    return image, QUESTION, think, str(n_cells - reds), {"cells": cells, "drawing": drawing(cfg),
                                                          "think_fact": think_fact(reds, n_cells)}


def reasoning_grid_source(cfg: ReasoningGridConfig, ctx: SourceContext) -> Iterator[Candidate]:
    for i in range(cfg.n):
        image, question, think, answer, extra = reasoning_grid_sample(random.Random(f"r1grid:{cfg.seed}:{i}"), cfg)
        yield Candidate(key=sample_key("r1grid", cfg.seed, i), images=(image,), question=question, reasoning=think,
                        answer=answer, answer_type="integer",
                        provenance={"generator": "r1grid", "seed": cfg.seed, "index": i, **extra})
