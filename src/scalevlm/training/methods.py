"""The SFT methods, one registration each: how a method weighs a sample's segments.

The trainer asks a method only for a `SegmentWeighting` (the loss normalisation, where `</think>` and the tags
count, and the think/answer weights at a step); it never tests a method's name. A new method is one function
here, registered under its name in `scalevlm.facts.Method`, plus that name in the Literal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scalevlm.core.scale_loss import progress, schedule_weights
from scalevlm.facts import SCALE, VANILLA
from scalevlm.training.config import ScaleSettings


@dataclass(frozen=True)
class SegmentWeighting:
    normalisation: str  # core.scale_loss.NORMALISATIONS
    close_tag: str  # the segment `</think>` is weighted with
    tags: str  # core.segments.TAG_RULES
    schedule: tuple[str, float, float] | None  # (schedule, w_start, w_end); None: fixed weights, not logged

    def weights(self, step: int, max_steps: int) -> tuple[float, float]:
        """(w_think, w_ans) at p = step / max_steps; (1, 1) for a method without a schedule (the weights unused)."""
        if self.schedule is None:
            return 1.0, 1.0
        name, w_start, w_end = self.schedule
        return schedule_weights(name, progress(step, max_steps), w_start, w_end)


def vanilla(_: ScaleSettings | None) -> SegmentWeighting:
    """TRL's token mean over every completion token."""
    return SegmentWeighting("vanilla", "think", "segment", None)


def scale(settings: ScaleSettings | None) -> SegmentWeighting:
    """SCALe: per-sample think and answer means, weighted by the scheduled w_think / w_ans."""
    if settings is None:
        raise ValueError(f"method {SCALE!r} needs ScaleSettings (params.yaml train_sft.scale)")
    return SegmentWeighting(settings.normalisation, settings.close_tag, settings.tags,
                            (settings.schedule, settings.w_start, settings.w_end))


REGISTRY: dict[str, Callable[[ScaleSettings | None], SegmentWeighting]] = {VANILLA: vanilla, SCALE: scale}


def segment_weighting(method: str, settings: ScaleSettings | None) -> SegmentWeighting:
    if method not in REGISTRY:
        raise ValueError(f"unknown method {method!r}; methods are {list(REGISTRY)}")
    return REGISTRY[method](settings)
