"""The SCALe loss (Scheduled Curriculum Adaptive Loss) and its weight schedules. Pure: torch only.

A completion's supervised tokens are split into two segments (see `core.segments`): THINK (first completion
token through `</think>`) and ANSWER (everything after `</think>` through end-of-turn). The loss supervises the
two separately, with length-independent per-sample means, and weights that move from think to answer:

    per_sample:  loss = (1 / N) · Σ_i [ w_think(p)·L_think(i) + w_ans(p)·L_ans(i) ]
                 L_think(i) = mean CE over sample i's think tokens, L_ans(i) likewise over its answer tokens,
                 N = the GLOBAL number of samples in the optimizer step (all micro-batches, all processes).
    per_batch:   loss = w_think(p)·Σ_think CE / N_think + w_ans(p)·Σ_ans CE / N_ans
                 N_think / N_ans = the global think / answer token counts of the optimizer step (ablation: a
                 long trace again counts more than a short one, but the two segments keep separate weights).
    vanilla:     loss = Σ CE / (N_think + N_ans), the plain token mean (TRL's default SFT loss).

Exactness under gradient accumulation and data parallelism: every term is a *sum* over the micro-batch divided
by a *global* count, so summing the micro-batch losses of one optimizer step gives exactly the loss of one big
batch. The caller passes the global counts (the trainer counts them over all micro-batches of the step before
the first forward and all-reduces them over processes, see `training.trainer`); left as None they default to
the local counts of the batch, which is the right value for a single batch on a single process.

Structural tokens (`scale.tags: token_mean`, segment label TAG): the four tags and end-of-turn leave both segment
means and are added at the plain token-mean weight, `+ Σ_tag CE / N_tokens` with N_tokens the global count of
all supervised tokens of the step (what vanilla gives every token). Without it a 4-token answer segment gives
`</answer>` and end-of-turn ~w_ans/4 each against ~w_think/270 for a think token. Labelled only when asked
(`training.labels`); with no TAG tokens the formulas above are unchanged.

Missing-segment rule: a sample with no think tokens (or no answer tokens, e.g. an answer truncated away)
contributes only the term it has, e.g. `w_think·L_think(i)`; it is NOT renormalised (the missing term is not
redistributed to the present one) and it still counts in N, so the weights keep their meaning and a truncated
sample can never weigh more than a complete one. A sample without any supervised token is not a sample: it is
not counted in N (the default count) and contributes nothing.

Progress p = step / total_steps in [0, 1]; w_ans = 1 − w_think always. Schedules (w_s = w_start, w_e = w_end):

    cosine:    w_think(p) = w_e + (w_s − w_e)·½(1 + cos πp)
    linear:    w_think(p) = w_s + (w_e − w_s)·p
    constant:  w_think(p) = w_s
    step:      w_think(p) = w_s for p < ½, w_e for p ≥ ½ (one switch at mid-training)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from scalevlm.core.segments import ANSWER, IGNORE, TAG, THINK

IGNORE_INDEX = -100

SCHEDULES: tuple[str, ...] = ("cosine", "linear", "constant", "step")
NORMALISATIONS: tuple[str, ...] = ("per_sample", "per_batch", "vanilla")


def schedule_weights(schedule: str, progress: float, w_start: float, w_end: float) -> tuple[float, float]:
    """(w_think, w_ans) at training progress `progress` (clamped to [0, 1]); see the module docstring."""
    for name, w in (("w_start", w_start), ("w_end", w_end)):
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"{name}={w!r} must lie in [0, 1] so that w_ans = 1 - w_think is not negative")
    p = min(1.0, max(0.0, float(progress)))
    if schedule == "cosine":
        w = w_end + (w_start - w_end) * 0.5 * (1.0 + math.cos(math.pi * p))
    elif schedule == "linear":
        w = w_start + (w_end - w_start) * p
    elif schedule == "constant":
        w = w_start
    elif schedule == "step":
        w = w_start if p < 0.5 else w_end
    else:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {list(SCHEDULES)}")
    return w, 1.0 - w


def progress(step: int, total_steps: int) -> float:
    """p = step / total_steps, with `step` the number of optimizer steps already taken (0 at the first)."""
    return 0.0 if total_steps <= 0 else min(1.0, step / total_steps)


def shifted_token_ce(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Per-token next-token cross-entropy.

    Args:
        logits: [B, T, V] model outputs.
        labels: [B, T] target ids, `ignore_index` where unsupervised.
    Returns:
        [B, T-1] CE of predicting labels[:, 1:] from logits[:, :-1]; 0 at ignored positions (at least fp32).
    """
    targets = labels[:, 1:]
    shifted = logits[:, :-1]
    if shifted.dtype in (torch.float16, torch.bfloat16):
        shifted = shifted.float()
    ce = F.cross_entropy(shifted.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=ignore_index,
                         reduction="none")
    return ce.view_as(targets)


@dataclass(frozen=True)
class SegmentCounts:
    """Counts over one batch (or, summed, over one optimizer step): samples with any supervised token,
    think tokens, answer tokens, structural tokens (label TAG; 0 unless `scale.tags: token_mean`)."""

    samples: int
    think_tokens: int
    answer_tokens: int
    tag_tokens: int = 0

    def __add__(self, other: SegmentCounts) -> SegmentCounts:
        return SegmentCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def tokens(self) -> int:
        """Every supervised token."""
        return self.think_tokens + self.answer_tokens + self.tag_tokens


def segment_counts(segments: torch.Tensor) -> SegmentCounts:
    """Counts of a segment-label tensor [B, T] (values IGNORE / THINK / ANSWER)."""
    supervised = segments != IGNORE
    return SegmentCounts(
        samples=int(supervised.any(dim=1).sum()),
        think_tokens=int((segments == THINK).sum()),
        answer_tokens=int((segments == ANSWER).sum()),
        tag_tokens=int((segments == TAG).sum()),
    )


@dataclass(frozen=True)
class ScaleStats:
    """Detached statistics of one micro-batch, for logging.

    Every field is a sum or a count, so the statistics of several micro-batches and processes add up exactly
    (`+`; over processes: sum `as_list()`, then `from_list`), and a logging window's mean is over all its samples.
    think_loss_sum / answer_loss_sum: Σ L_think(i) / Σ L_ans(i) over the samples that have the segment;
    think_samples / answer_samples: how many samples have it; think_tokens / answer_tokens / samples: the counts
    of `segment_counts`. `loss_think` / `loss_answer` are the means (NaN when no sample has the segment).
    """

    think_loss_sum: float
    answer_loss_sum: float
    think_samples: int
    answer_samples: int
    think_tokens: int
    answer_tokens: int
    samples: int
    tag_loss_sum: float = 0.0  # Σ CE over structural tokens (label TAG) and their count
    tag_tokens: int = 0

    @property
    def loss_tags(self) -> float:
        return self.tag_loss_sum / self.tag_tokens if self.tag_tokens else float("nan")

    @property
    def loss_think(self) -> float:
        return self.think_loss_sum / self.think_samples if self.think_samples else float("nan")

    @property
    def loss_answer(self) -> float:
        return self.answer_loss_sum / self.answer_samples if self.answer_samples else float("nan")

    def as_list(self) -> list[float]:
        """The fields in declaration order, as floats (to sum over processes in one tensor)."""
        return [float(getattr(self, f.name)) for f in fields(self)]

    @classmethod
    def from_list(cls, values: list[float]) -> ScaleStats:
        """Inverse of `as_list` (counts back to int)."""
        return cls(*(v if f.type == "float" else round(v) for f, v in zip(fields(cls), values, strict=True)))

    def __add__(self, other: ScaleStats) -> ScaleStats:
        return ScaleStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def _denominator(value: float | int | torch.Tensor | None, local: int) -> torch.Tensor | float:
    if value is None:
        return float(max(local, 1))
    if torch.is_tensor(value):
        return value.clamp(min=1)
    return float(max(value, 1))


def scale_loss(
    token_loss: torch.Tensor,
    segments: torch.Tensor,
    w_think: float,
    w_answer: float,
    normalisation: str = "per_sample",
    num_samples: float | int | torch.Tensor | None = None,
    num_think_tokens: float | int | torch.Tensor | None = None,
    num_answer_tokens: float | int | torch.Tensor | None = None,
    num_tag_tokens: float | int | torch.Tensor | None = None,
) -> tuple[torch.Tensor, ScaleStats]:
    """The SCALe loss of one micro-batch; see the module docstring for the formulas and the rules.

    Args:
        token_loss: [B, T] per-token CE already aligned with `segments` (e.g. `shifted_token_ce`, or minus the
            log-probs of a fused LM head); values at IGNORE positions are not used.
        segments: [B, T] integer labels, 0 = ignore, 1 = think, 2 = answer, 3 = structural (token-mean weight).
        w_think, w_answer: the schedule's weights at the current progress (unused by `vanilla`).
        normalisation: "per_sample" (SCALe), "per_batch" (pooled token means per segment), "vanilla" (token mean).
        num_samples: global sample count N of the optimizer step (per_sample); default the batch's own count.
        num_think_tokens, num_answer_tokens, num_tag_tokens: global token counts of the step (per_batch, vanilla,
            and the structural term); default local. Give all three or none.
    Returns:
        (loss: scalar tensor with the gradient, stats: detached `ScaleStats`).
    """
    if token_loss.shape != segments.shape:
        raise ValueError(f"token_loss {tuple(token_loss.shape)} and segments {tuple(segments.shape)} must have the "
                         "same [B, T] shape")
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {normalisation!r}; expected one of {list(NORMALISATIONS)}")
    given = [n is None for n in (num_think_tokens, num_answer_tokens, num_tag_tokens)]
    if any(given) and not all(given):
        raise ValueError("give the global think, answer and tag token counts together, or none of them")
    think = (segments == THINK).to(token_loss.dtype)
    answer = (segments == ANSWER).to(token_loss.dtype)
    tag = segments == TAG
    # where() rather than a product: an ignored position may hold inf/NaN from a masked-out kernel output
    zero = token_loss.new_zeros(())
    think_sum = torch.where(think.bool(), token_loss, zero).sum(dim=1)  # [B]
    answer_sum = torch.where(answer.bool(), token_loss, zero).sum(dim=1)  # [B]
    tag_sum = torch.where(tag, token_loss, zero).sum()  # scalar
    n_think, n_answer = think.sum(dim=1), answer.sum(dim=1)  # [B]
    l_think = think_sum / n_think.clamp(min=1)  # [B], 0 for a sample without think tokens
    l_answer = answer_sum / n_answer.clamp(min=1)  # [B]
    counts = segment_counts(segments)
    all_tokens = None if num_think_tokens is None else num_think_tokens + num_answer_tokens + num_tag_tokens  # type: ignore[operator]
    tag_term = tag_sum / _denominator(all_tokens, counts.tokens)

    if normalisation == "per_sample":
        per_sample = w_think * l_think + w_answer * l_answer  # a missing segment contributes 0, no renormalising
        loss = per_sample.sum() / _denominator(num_samples, counts.samples) + tag_term
    elif normalisation == "per_batch":
        loss = (w_think * think_sum.sum() / _denominator(num_think_tokens, counts.think_tokens)
                + w_answer * answer_sum.sum() / _denominator(num_answer_tokens, counts.answer_tokens) + tag_term)
    else:  # the plain token mean over every supervised token, structural ones included
        loss = (think_sum.sum() + answer_sum.sum() + tag_sum) / _denominator(all_tokens, counts.tokens)

    with torch.no_grad():
        has_t, has_a = n_think > 0, n_answer > 0
        stats = ScaleStats(
            think_loss_sum=float(l_think[has_t].sum()),
            answer_loss_sum=float(l_answer[has_a].sum()),
            think_samples=int(has_t.sum()),
            answer_samples=int(has_a.sum()),
            think_tokens=counts.think_tokens,
            answer_tokens=counts.answer_tokens,
            samples=counts.samples,
            tag_loss_sum=float(tag_sum),
            tag_tokens=counts.tag_tokens,
        )
    return loss, stats
