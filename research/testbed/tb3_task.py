"""Testbed 3 task: 4x4 red/blue/white grid (one 16 px cell = one merged Qwen2-VL token), question "how many red
cells?" with four shuffled numeric options A-D. Research prototype (issue 10), not project code.

Design (why): the earlier prototype (shared/reference/testbed2) failed because the tiny model could only read the
image at the fixed position where captioning taught it. Here perception happens ONCE, at a fixed place: the think
opens with exactly the pre-training caption (cells + red count per row). The long, variable, self-checking rest of
the think only restates counts already written (copying keyed by the row number) and adds them up, ending with
"So the total is N." The answer is the LETTER of the option holding N: a lookup into the shuffled options of the
prompt that the think never states.
"""
from __future__ import annotations

import random

from PIL import Image, ImageDraw

COLORS = {"red": (220, 30, 30), "blue": (30, 60, 220), "white": (255, 255, 255)}
LETTERS = "ABCD"
CAPTION_Q = "Describe the grid."
RUNNING = True  # v2 caption with running totals (set False to reproduce v1)
V4 = True  # v4 self-check pool (False = v3 pool)
ANSWER = "letter"  # "letter" (v4) | "notred" (v5: answer = 16 - red count, the think restates the count at its end)
TRACE = "early"  # v3: conclusion right after the caption, then image-independent self-checks; "copy" = v1/v2 traces

# v4: self-checks built from sentences of the v2 traces (the tokenizer's own text), so their words are whole tokens;
# v3's novel sentences were split into byte pieces and generated garbled (missing <answer> 0.63)
FLUFF4 = [
    "Wait, let me re-check row {r}. Yes, that is right.",
    "Hmm, red and blue can look similar, so let me look at row {r} once more. Yes, that is right.",
    "Wait, I should be careful not to count the blue cells or the empty cells. I only count the red ones.",
    "Hmm, let me make sure I have not skipped a row. I went through rows 1, 2, 3 and 4 in order, so that is fine.",
    "Let me think about this step by step. I have read every row, so the count is done.",
    "Let me double check the count for row {r}. Good.",
    "Alright, I need the number of red cells in the whole grid, and I have gone through the rows in order.",
]
# v6: self-checks with no digits (rows named by ordinal words): the only numbers are the caption's and the conclusion
V6 = False
CHAIN = False  # v6b: each self-check is followed by "So the total is still N." (short-range copies)
ORD = ["first", "second", "third", "fourth"]
# v6's self-checks: v4's with ordinal words for rows (the pipeline source, scalevlm.sources.reasoning_grid, grew out of
# this prototype with this pool and later gave each sentence its own first word)
FLUFF6 = [s.replace("row {r}", "the {r} row").replace("rows 1, 2, 3 and 4", "the rows") for s in FLUFF4]
FLUFF = [
    "Wait, I should be careful not to count the blue cells or the empty cells. I only count the red ones.",
    "Hmm, red and blue can look similar in a small picture, but the colours in this grid are clear enough.",
    "Let me make sure I have not skipped a row. I went through rows 1, 2, 3 and 4 in order, so that is fine.",
    "Wait, let me re-check row {r}. I read it carefully above, and I do not see a reason to change it.",
    "Hmm, could an empty cell be a faint red one? No, the empty cells are plain white, so they do not count.",
    "Let me also think about whether the question asks for rows or for cells. It asks for cells, which is what I "
    "counted.",
    "Wait, did I add the running total correctly after row {r}? Yes, I added the count of that row to the total before "
    "it.",
    "I should double check that every row has four cells. Each row I wrote has four colours, so nothing is missing.",
    "Hmm, maybe I should look at the options before I answer. I will pick the option that matches my total.",
    "Let me reconsider row {r} once more, slowly, from left to right. Yes, my reading of that row stands.",
    "Okay, one more check on the colours: red cells are the warm ones, blue cells are the cool ones. Fine.",
    "Wait, the total is the sum over all rows, not the largest row. I used the running total, so that is right.",
]


def draw_grid(rng: random.Random, rows: int = 4, cols: int = 4, cell: int = 16) -> tuple[Image.Image, list[list[str]]]:
    im = Image.new("RGB", (cols * cell, rows * cell), "white")
    d = ImageDraw.Draw(im)
    grid = []
    for r in range(rows):
        row = []
        for c in range(cols):
            u = rng.random()
            col = "red" if u < 0.45 else ("blue" if u < 0.70 else "white")
            row.append(col)
            if col != "white":
                m = rng.randint(1, 3)
                rgb = tuple(max(0, min(255, v + rng.randint(-25, 25))) for v in COLORS[col])
                d.rectangle([c * cell + m, r * cell + m, (c + 1) * cell - 1 - m, (r + 1) * cell - 1 - m], fill=rgb)
        grid.append(row)
    return im, grid


def caption(grid: list[list[str]]) -> str:
    """Dense caption: cells, red count and running red total per row (the perception the base model is
    pre-trained on). v1 had no running total ("(2 red)."); v2 adds it so the think's conclusion is a copy."""
    out, run = [], 0
    for r, row in enumerate(grid):
        run += row.count("red")
        out.append(f"row {r + 1}: {' '.join(row)} ({row.count('red')} red" + (f", {run} so far)." if RUNNING else ")."))
    return " ".join(out)


def _s(k: int) -> str:
    return "cell" if k == 1 else "cells"


def r1_think(rng: random.Random, grid: list[list[str]], min_refl: int, max_refl: int) -> str:
    """Caption first (fixed-position perception), then a verbose R1-style trace of variable length: opening,
    per-row restatement, running sum, self-checks ("Wait, let me re-check ..."), a second addition, conclusion."""
    n = [row.count("red") for row in grid]
    if TRACE == "early":
        parts = [caption(grid), f"So the total is {sum(n)}.", rng.choice([
            "But let me not rush. I will check my reading before I answer.",
            "Before I answer, let me make sure this is right.",
            "Hmm, let me think again about whether I missed anything."])]
        if V6:
            for _ in range(rng.randint(min_refl, max_refl + 1)):
                parts.append(rng.choice(FLUFF6).format(r=rng.choice(ORD)))
                if CHAIN:
                    parts.append(f"So the total is still {sum(n)}.")
        else:
            parts += [rng.choice(FLUFF4 if V4 else FLUFF).format(r=rng.randint(1, 4))
                      for _ in range(rng.randint(min_refl, max_refl + 1))]
        parts.append(rng.choice(["Okay, I am confident in my count now.", "Good, everything checks out.",
                                 "Alright, I have checked it carefully."]))
        if ANSWER == "notred":
            parts.append(f"So {sum(n)} of the 16 cells are red.")
        return " ".join(parts)
    parts = [caption(grid)]
    parts.append(rng.choice([
        "Okay, so the question asks how many red cells there are. Let me go through the rows one at a time.",
        "Alright, I need the number of red cells in the whole grid. I will take the rows in order and add them up.",
        "Let me think about this step by step. I have read every row, now I count the red cells row by row."]))

    def restate(r: int) -> str:
        return rng.choice([
            f"Row {r + 1} has {n[r]} red {_s(n[r])}.",
            f"Looking at row {r + 1} again, I see {n[r]} red {_s(n[r])}.",
            f"In row {r + 1} there are {n[r]} red {_s(n[r])}."])

    def reflect() -> str:
        r = rng.randrange(4)
        return rng.choice([
            f"Wait, let me re-check row {r + 1}. It has {n[r]} red {_s(n[r])}, yes, that is right.",
            f"Hmm, red and blue can look similar, so let me look at row {r + 1} once more. Still {n[r]} red "
            f"{_s(n[r])}.",
            "Wait, I should be careful not to count the blue cells or the empty cells. I only count the red ones.",
            "Hmm, let me make sure I have not skipped a row. I went through rows 1, 2, 3 and 4 in order, so that is "
            "fine.",
            f"Let me double check the count for row {r + 1}: it is {n[r]}. Good."])

    k = rng.randint(min_refl, max_refl)
    slots = [rng.randint(0, 4) for _ in range(k)]  # reflections after row restatement j (0 = before the first)
    parts += [reflect() for s in slots if s == 0]
    for r in range(4):
        parts.append(restate(r))
        parts += [reflect() for s in slots if s == r + 1]
    run, steps = 0, []
    for r in range(4):
        steps.append(f"{run} plus {n[r]} is {run + n[r]}")
        run += n[r]
    parts.append("Now I add them up, starting from 0: " + ", ".join(steps) + ".")
    if rng.random() < 0.6:
        parts.append(rng.choice(["Wait, let me add them again to be sure: ", "Hmm, let me verify the sum once more: "])
                     + ", ".join(steps[1:]) + f". Yes, I get {run} again.")
    parts.append(f"So the total is {run}.")
    return " ".join(parts)


def mc_options(rng: random.Random, total: int) -> tuple[list[int], str]:
    opts = {total}
    while len(opts) < 4:
        opts.add(max(0, min(16, total + rng.choice([-3, -2, -1, 1, 2, 3]))))
    ol = list(opts)
    rng.shuffle(ol)
    return ol, LETTERS[ol.index(total)]


def make_sample(rng: random.Random, kind: str, min_refl: int = 2, max_refl: int = 9) -> dict:
    im, grid = draw_grid(rng)
    total = sum(row.count("red") for row in grid)
    if kind == "caption":
        return {"image": im, "q": CAPTION_Q, "comp": caption(grid), "grid": grid, "total": total}
    if ANSWER == "notred":
        think = r1_think(rng, grid, min_refl, max_refl)
        return {"image": im, "q": "How many cells are not red?",
                "comp": f"<think>{think}</think><answer>{16 - total}</answer>",
                "grid": grid, "total": total, "answer": str(16 - total)}
    opts, letter = mc_options(rng, total)
    q = "How many red cells? Options: " + " ".join(f"{L}. {o}" for L, o in zip(LETTERS, opts))
    think = r1_think(rng, grid, min_refl, max_refl)
    return {"image": im, "q": q, "comp": f"<think>{think}</think><answer>{letter}</answer>", "grid": grid,
            "total": total, "options": opts, "answer": letter}


def make_rows(kind: str, n: int, seed: int, **kw: int) -> list[dict]:
    rng = random.Random(seed)
    return [make_sample(rng, kind, **kw) for _ in range(n)]


def tokenizer_texts() -> list[str]:
    """The v2 vocabulary (caption with running totals + "copy" traces), whatever TRACE is, so every variant
    loads the v2 perception checkpoint (pre2_s0). v3's self-check sentences are split into smaller pieces."""
    global TRACE, ANSWER
    saved, TRACE = TRACE, "copy"
    saved_a, ANSWER = ANSWER, "letter"
    try:
        rows = make_rows("caption", 500, 12345) + make_rows("reason", 1500, 12346)
    finally:
        TRACE, ANSWER = saved, saved_a
    return [r["q"] + " " + r["comp"].replace("<think>", " ").replace("</think>", " ").replace("<answer>", " ")
            .replace("</answer>", " ") for r in rows]
