"""Perception pre-training of the tiny model: a stand-in for the pretrained VLM the paper starts from.

The paper fine-tunes VLMs that already see; the tiny model is randomly initialised. Before any SFT it is trained
to write the dense caption of a grid (`sources.reasoning_grid.grid_caption`: cells, red count and running total
per row) for the prompt "Describe the grid.", on images drawn from their own RNG stream with the curated source's
drawing settings, and any image whose PNG equals a curated image (train, val or test) is left out, so the
pre-training images are disjoint from the SFT, GRPO and test images. Training stops at `max_steps` or once the
held-out caption exact-match reaches `stop_exact` (checked every `eval_every` steps on `eval_images` fresh images);
the base's perception on held-out images is reported: caption exact match, cell accuracy and total-count accuracy.

A plain PyTorch loop (AdamW, linear warm-up then cosine), not a TRL trainer: this builds the *base* model, it is not
one of the methods under test, and both SFT arms start from its output.
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from scalevlm.config import Checked, NonNegativeInt, PositiveFloat, PositiveInt, Probability, Problems, config_dataclass
from scalevlm.core.progress import progress_line

log = logging.getLogger(__name__)
_ROW = re.compile(r"row (\d+): ([a-z ]+?) \((\d+) red, (\d+) so far\)")


@config_dataclass
class PerceptionConfig(Checked):
    enabled: bool  # tiny model only (a pretrained model already perceives)
    seed: NonNegativeInt  # image stream and torch seed of the pre-training
    max_steps: PositiveInt
    batch_size: PositiveInt
    learning_rate: PositiveFloat
    warmup_ratio: Probability
    eval_every: PositiveInt  # steps between held-out checks of the stop rule
    eval_images: PositiveInt  # held-out images per check and for the final report
    stop_exact: Probability  # stop once the held-out caption exact-match reaches this (1 = never stop early)
    max_new_tokens: PositiveInt  # generation budget of a caption at evaluation
    torch_threads: NonNegativeInt  # CPU intra-op threads (0 = torch default)

    def check(self) -> Problems:
        if self.eval_every > self.max_steps:
            yield "eval_every", (f"{self.eval_every} is above max_steps {self.max_steps}: the stop rule would never be "
                                 "checked")


def score_caption(text: str, cells: Sequence[Sequence[str]]) -> dict[str, float]:
    """Exact match, cell accuracy and final-count correctness of one generated caption against the true cells."""
    rows = {int(m[1]): m[2].split() for m in _ROW.finditer(text)}
    totals = [int(m[4]) for m in _ROW.finditer(text)]
    n_cells = sum(len(r) for r in cells)
    right = sum(a == b for i, row in enumerate(cells) for a, b in zip(rows.get(i + 1, []), row))
    exact = all(rows.get(i + 1) == list(row) for i, row in enumerate(cells)) and len(rows) == len(cells)
    reds = sum(row.count("red") for row in cells)
    return {"exact": float(exact), "cell_accuracy": right / n_cells,
            "count_correct": float(bool(totals) and totals[-1] == reds)}


def _batch(processor: Any, images: Sequence[Any], question: str, captions: Sequence[str]) -> dict[str, Any]:
    """Prompt + caption + end of turn, with labels on the caption tokens only (the prompt is the one `inference`
    uses)."""
    import torch

    from scalevlm.evaluation.generation import PROMPT_TOKENIZE_KWARGS, prompt_text

    tok = processor.tokenizer
    prompts = [prompt_text(processor, question, 1) for _ in captions]
    texts = [p + c + tok.eos_token for p, c in zip(prompts, captions, strict=True)]
    enc = processor(text=texts, images=[[im] for im in images], padding=True, padding_side="right", return_tensors="pt",
                    **PROMPT_TOKENIZE_KWARGS)
    plen = [len(x) for x in processor(text=prompts, images=[[im] for im in images],
                                      **PROMPT_TOKENIZE_KWARGS)["input_ids"]]
    labels = torch.full_like(enc["input_ids"], -100)
    for b, n in enumerate(plen):
        keep = enc["attention_mask"][b].bool()
        keep[:n] = False
        labels[b][keep] = enc["input_ids"][b][keep]
    enc["labels"] = labels
    return enc


def evaluate_perception(model: Any, processor: Any, samples: Sequence[tuple[Any, str, list[list[str]]]], question: str,
                        max_new_tokens: int, batch_size: int = 50) -> dict[str, float]:
    """Greedy captions of held-out images, scored against their cells (means over the images)."""
    from scalevlm.evaluation.generation import GenerationOptions, generate

    model.eval()
    scores: list[dict[str, float]] = []
    for i in range(0, len(samples), batch_size):
        chunk = samples[i : i + batch_size]
        gens = generate(model, processor, [[s[0]] for s in chunk], [question] * len(chunk),
                        GenerationOptions(max_new_tokens=max_new_tokens))
        scores += [score_caption(g.text, s[2]) for g, s in zip(gens, chunk, strict=True)]
    return {k: sum(s[k] for s in scores) / len(scores)
            for k in ("exact", "cell_accuracy", "count_correct")} | {"images": len(scores)}


def pretrain_perception(model: Any, processor: Any, cfg: PerceptionConfig,
                        draw: Callable[[random.Random], tuple[Any, str, list[list[str]]]],
                        question: str, excluded: set[str]) -> dict[str, Any]:
    """Train `model` in place on captions of images from `draw`; returns the report (held-out perception, steps, time).

    `excluded`: content addresses (`records.ImageStore.address`) of curated images, never drawn for pre-training."""
    import torch

    from scalevlm.records import ImageStore, png_bytes

    skipped = 0

    def sample(rng: random.Random) -> tuple[Any, str, list[list[str]]]:
        nonlocal skipped
        while True:
            drawn = draw(rng)
            if ImageStore.address(png_bytes(drawn[0])) not in excluded:
                return drawn
            skipped += 1

    held_out_rng = random.Random(f"perception-eval:{cfg.seed}")
    held_out = [sample(held_out_rng) for _ in range(cfg.eval_images)]
    rng = random.Random(f"perception:{cfg.seed}")
    torch.manual_seed(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, betas=(0.9, 0.98), weight_decay=0.0)
    warm = max(1, int(cfg.warmup_ratio * cfg.max_steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / cfg.max_steps))))
    start, history, steps, stopped_early = time.perf_counter(), [], 0, False
    for step in range(cfg.max_steps):
        model.train()
        drawn = [sample(rng) for _ in range(cfg.batch_size)]
        loss = model(**_batch(processor, [d[0] for d in drawn], question, [d[1] for d in drawn]), use_cache=False).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        steps = step + 1
        if steps % cfg.eval_every == 0 or steps == cfg.max_steps:
            check = evaluate_perception(model, processor, held_out, question, cfg.max_new_tokens)
            history.append({"step": steps, "loss": round(loss.item(), 5), **check})
            values = {"loss": loss.item(), "held-out exact": check["exact"], "cells": check["cell_accuracy"]}
            log.info("perception: %s (stops at held-out exact >= %s)", progress_line(
                steps, cfg.max_steps, 0, time.perf_counter() - start, values, tuple(values)), cfg.stop_exact)
            if check["exact"] >= cfg.stop_exact:
                stopped_early = steps < cfg.max_steps
                break
    final = history[-1]
    return {"steps": steps, "stopped_early": stopped_early, "train_time_s": round(time.perf_counter() - start, 2),
            "held_out": {k: final[k] for k in ("images", "exact", "cell_accuracy", "count_correct")},
            "curated_images_skipped": skipped, "history": history}
