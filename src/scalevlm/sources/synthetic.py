"""The embedded, offline tasks: a coloured-grid count (`synthetic`) and a sum of two real digits (`digits`).

Both are designed for the tiny Qwen2-VL (patch 8, spatial merge 2): every object fills exactly one 16×16 px cell,
which is one merged visual token, so the model can attend to objects one token at a time (README "Embedded
data"). Every sample is drawn from its own RNG seeded by (seed, index), so asking for more samples only adds new
ones and never changes existing ones.

`answer_step` decides how much work the answer does:
- `copy`: the think ends with the result and the answer repeats it (the answer is a verbatim copy);
- `sum`:  the think stops at the per-part facts (per-row counts, the two digits) and the answer is their sum,
  so the answer segment carries information the think does not state.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Annotated, Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from scalevlm.config import Checked, NonNegativeInt, PositiveInt, Probability, Problems, Range, config_dataclass
from scalevlm.sources.base import Candidate, SourceContext

_RGB = {"red": (220, 30, 30), "blue": (30, 60, 220)}


@config_dataclass
class GridConfig(Checked):
    enabled: bool
    n: NonNegativeInt  # samples drawn
    seed: NonNegativeInt
    rows: PositiveInt
    cols: PositiveInt
    cell_px: Annotated[int, Range(ge=7)]  # a drawn square keeps a margin of up to 3 px on each side
    p_red: Probability
    p_blue: Probability
    jitter: bool
    answer_step: Literal["copy", "sum"]

    def check(self) -> Problems:
        if self.p_red + self.p_blue > 1:
            yield "p_red", (f"p_red + p_blue must be <= 1 (the rest of the cells is empty), got {self.p_red} + "
                            f"{self.p_blue}")


@config_dataclass
class DigitsConfig(Checked):
    enabled: bool
    n: NonNegativeInt  # samples drawn
    seed: NonNegativeInt
    digit_px: PositiveInt
    heldout_fraction: Annotated[float, Range(ge=0.01, le=0.99)]  # both image pools keep some of the 1,797 digits
    answer_step: Literal["copy", "sum"]


@dataclass(frozen=True)
class GridDrawing:
    """How a grid image is drawn: the part of a source's config (`GridConfig`, `ReasoningGridConfig`) that
    `draw_grid` reads. The r1grid records keep it in their provenance, so perception pre-training draws the same
    kind."""

    rows: int
    cols: int
    cell_px: int
    p_red: float
    p_blue: float
    jitter: bool

    @classmethod
    def of(cls, cfg: Any) -> GridDrawing:
        """The drawing settings of any config that has these fields."""
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)})


def draw_grid(rng: random.Random, cfg: GridDrawing) -> tuple[Image.Image, list[list[str]]]:
    """One grid image and its cell colours ("red", "blue", "empty"), row by row."""
    cell = cfg.cell_px
    image = Image.new("RGB", (cfg.cols * cell, cfg.rows * cell), "white")
    draw = ImageDraw.Draw(image)
    cells = []
    for r in range(cfg.rows):
        row = []
        for c in range(cfg.cols):
            u = rng.random()
            colour = "red" if u < cfg.p_red else ("blue" if u < cfg.p_red + cfg.p_blue else "empty")
            row.append(colour)
            if colour != "empty":
                margin = rng.randint(1, 3) if cfg.jitter else 2
                rgb = tuple(min(255, max(0, v + rng.randint(-25, 25)))
                            for v in _RGB[colour]) if cfg.jitter else _RGB[colour]
                box = [c * cell + margin, r * cell + margin, (c + 1) * cell - 1 - margin, (r + 1) * cell - 1 - margin]
                draw.rectangle(box, fill=rgb)
        cells.append(row)
    return image, cells


def grid_sample(rng: random.Random, cfg: GridConfig) -> tuple[Image.Image, str, str, str, dict]:
    """One grid image with its question, think, answer and the drawn cell colours (for provenance)."""
    image, cells = draw_grid(rng, GridDrawing.of(cfg))
    parts, counts = [], []
    for r, row in enumerate(cells):
        counts.append(row.count("red"))
        running = f", total {sum(counts)}" if cfg.answer_step == "copy" else ""
        parts.append(f"row {r + 1}: {' '.join(row)} = {counts[-1]}{running}.")
    think = " ".join(parts)
    return image, "How many red cells are in the grid?", think, str(sum(counts)), {"cells": cells}


def synthetic_source(cfg: GridConfig, ctx: SourceContext) -> Iterator[Candidate]:
    for i in range(cfg.n):
        yield _candidate("grid", cfg.seed, i, cfg.answer_step, grid_sample(random.Random(f"grid:{cfg.seed}:{i}"), cfg))


def sample_key(generator: str, seed: int, i: int) -> str:
    return f"{generator}-{seed}-{i:06d}"


def _candidate(generator: str, seed: int, i: int, answer_step: str, sample: tuple) -> Candidate:
    """One generated sample as a curation candidate; its key and provenance say how to regenerate it."""
    image, question, think, answer, extra = sample
    return Candidate(
        key=sample_key(generator, seed, i),
        images=(image,),
        question=question,
        reasoning=think,
        answer=answer,
        answer_type="integer",
        provenance={"generator": generator, "seed": seed, "index": i, "answer_step": answer_step, **extra},
    )


@lru_cache(maxsize=1)
def _digit_pools(heldout_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 real 8×8 digits, split once into disjoint train / held-out image pools.

    Val and test samples draw only from the held-out pool, so test digits are handwriting never seen in training.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.RandomState(0).permutation(len(digits.images))
    cut = int(round(len(order) * (1 - heldout_fraction)))
    return digits.images, digits.target, order[:cut], order[cut:]


def _digit_image(pixels: np.ndarray, px: int) -> Image.Image:
    grey = (255 - pixels / 16.0 * 255).astype(np.uint8)  # sklearn digits are 0..16, ink high: black on white
    return Image.fromarray(grey, mode="L").resize((px, px), Image.Resampling.NEAREST)


def digits_sample(rng: random.Random, cfg: DigitsConfig, split: str) -> tuple[Image.Image, str, str, str, dict]:
    images, targets, train_pool, heldout_pool = _digit_pools(cfg.heldout_fraction)
    pool = train_pool if split == "train" else heldout_pool
    i, j = int(pool[rng.randrange(len(pool))]), int(pool[rng.randrange(len(pool))])
    canvas = Image.new("L", (2 * cfg.digit_px, cfg.digit_px), 255)
    canvas.paste(_digit_image(images[i], cfg.digit_px), (0, 0))
    canvas.paste(_digit_image(images[j], cfg.digit_px), (cfg.digit_px, 0))
    a, b = int(targets[i]), int(targets[j])
    parity = ["even", "odd"]
    think = f"the left digit is {a}, it is {parity[a % 2]}. the right digit is {b}, it is {parity[b % 2]}."
    if cfg.answer_step == "copy":
        steps = ", ".join(str(a + k) for k in range(1, b + 1)) if b else "nothing to add"
        think += f" start at {a} and count up {b}: {steps}. so {a} plus {b} is {a + b}."
    return canvas.convert("RGB"), "What is the sum of the two digits?", think, str(a + b), {"digit_index": [i, j]}


def digits_source(cfg: DigitsConfig, ctx: SourceContext) -> Iterator[Candidate]:
    for i in range(cfg.n):
        rng = random.Random(f"digits:{cfg.seed}:{i}")
        yield _candidate("digits", cfg.seed, i, cfg.answer_step,
                         digits_sample(rng, cfg, ctx.split_of(sample_key("digits", cfg.seed, i))))
