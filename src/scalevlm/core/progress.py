"""Progress lines for long work: `step 120/600 (20%) | 1:40 elapsed | ETA 6:40 | loss 0.512 | ...`.

Pure: the caller passes the clock. Training stages print one such line per logging step (a log file or DVC's
output reads the same as a terminal); the ETA is the mean time per step of this process's steps so far times the
steps left, so a resumed run does not count the steps it did not train.
"""

from __future__ import annotations

from collections.abc import Mapping


def clock(seconds: float) -> str:
    """`m:ss` under an hour, `h:mm:ss` from an hour."""
    whole = max(0, int(round(seconds)))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def eta_s(step: int, total: int, first_step: int, elapsed_s: float) -> float | None:
    """Seconds left at `step` of `total`, from the pace of the steps done since `first_step` (None before any)."""
    done = step - first_step
    if done <= 0 or elapsed_s <= 0:
        return None
    return max(0, total - step) * elapsed_s / done


def progress_line(step: int, total: int, first_step: int, elapsed_s: float,
                  values: Mapping[str, float] | None = None, keys: tuple[str, ...] = ()) -> str:
    """One line of progress; `values` listed by `keys` (those present and numeric), each to 4 significant digits."""
    share = f" ({100 * step / total:.0f}%)" if total > 0 else ""
    left = eta_s(step, total, first_step, elapsed_s)
    parts = [f"step {step}/{total}{share}", f"{clock(elapsed_s)} elapsed",
             f"ETA {clock(left) if left is not None else '?'}"]
    for key in keys:
        value = (values or {}).get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            parts.append(f"{key} {value:.4g}")
    return " | ".join(parts)
