"""Statistics across training seeds, and the expansion of a sweep spec into experiments (pure).

A single training seed says little on a tiny task (SCALe-SFT scored 0.571 to 0.974 over five seeds on the
embedded default, reports/study/study/table.md), so claims are made over seeds: per arm the mean, sample standard
deviation and a 95% Student-t interval over seeds; between two arms trained with the same seeds, the paired
per-seed differences with a paired t-test and an exact sign-flip permutation test (with n seeds there are 2^n
sign patterns, so the smallest possible p is 2/2^n).
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from scalevlm.core.stats import paired_permutation_test


@dataclass(frozen=True)
class SeedSummary:
    n: int
    mean: float
    sd: float
    low: float
    high: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PairedSeeds:
    n: int
    mean_diff: float
    sd_diff: float
    low: float
    high: float
    p_ttest: float
    p_permutation: float
    wins: int  # seeds where a > b
    losses: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise(values: list[float], confidence: float = 0.95) -> SeedSummary:
    """Mean, sample SD (ddof=1) and the t-interval mean ± t(n−1)·sd/√n; one value gives an infinite interval."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return SeedSummary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if x.size == 1:
        return SeedSummary(1, mean, math.nan, -math.inf, math.inf)
    sd = float(x.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, x.size - 1)) * sd / math.sqrt(x.size)
    return SeedSummary(int(x.size), mean, sd, mean - half, mean + half)


def paired_over_seeds(a: dict[int, float], b: dict[int, float], confidence: float = 0.95) -> PairedSeeds:
    """Compare arm a with arm b on the seeds both have (keys are seeds); differences are a − b."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError(f"no common seeds: a has {sorted(a)}, b has {sorted(b)}")
    x = np.array([a[s] for s in seeds], dtype=float)
    y = np.array([b[s] for s in seeds], dtype=float)
    d = summarise(list(x - y), confidence)
    if len(seeds) > 1 and d.sd > 0:
        p_t = float(sps.ttest_rel(x, y).pvalue)
    else:
        p_t = 1.0 if d.mean == 0 else (0.0 if len(seeds) > 1 else math.nan)
    p_perm = paired_permutation_test(x, y, np.random.default_rng(0))  # exact for <= 16 seeds: rng unused
    return PairedSeeds(len(seeds), d.mean, d.sd, d.low, d.high, p_t, p_perm,
                       int(np.sum(x > y)), int(np.sum(x < y)))


# Sweep specs ----------------------------------------------------------------------------------------------------

_PARAM = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")


@dataclass(frozen=True)
class Experiment:
    name: str
    overrides: tuple[tuple[str, Any], ...]  # (dotted params key, value), in a stable order
    seed: int
    setting: tuple[tuple[str, Any], ...]  # the grid point without the seed

    def set_args(self) -> list[str]:
        """`dvc exp run` arguments: -S key=value for every override."""
        args: list[str] = []
        for key, value in self.overrides:
            args += ["-S", f"{key}={_yaml_scalar(value)}"]
        return args


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def grid_keys(grid: dict[str, list[Any]] | list[dict[str, Any]] | None) -> list[str]:
    """The params keys a grid sets: a mapping's keys, or every key of a list of settings."""
    if isinstance(grid, list | tuple):
        return sorted({k for setting in grid for k in setting})
    return sorted(grid or {})


def expand(grid: dict[str, list[Any]] | list[dict[str, Any]], seeds: list[int], seed_params: list[str],
           prefix: str = "sweep") -> list[Experiment]:
    """The grid's settings × seeds, one experiment each, in a deterministic order.

    `grid` maps dotted params keys (`train_sft.w_end`) to the values to try (their Cartesian product), or is a list
    of settings, each a mapping of keys to one value (for ablations that change one thing at a time); every key in
    `seed_params` is set to the seed. Names are `<prefix>-<index>-s<seed>` (DVC experiment names must be unique).
    """
    if isinstance(grid, list):
        if not grid or not all(isinstance(g, dict) and g for g in grid):
            raise ValueError("a list grid needs at least one setting, each a non-empty mapping of params keys to "
                             "values")
        settings = [tuple(sorted(g.items())) for g in grid]
        if len(set(settings)) != len(settings):
            raise ValueError(f"duplicate settings in the grid: {grid}")
        return _experiments(settings, grid_keys(grid), seeds, seed_params, prefix)
    empty = [k for k, v in grid.items() if not v]
    if empty:
        raise ValueError(f"grid keys with no values: {empty}")
    keys = sorted(grid)
    return _experiments([tuple(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))], keys,
                        seeds, seed_params, prefix)


def _experiments(settings: list[tuple[tuple[str, Any], ...]], keys: list[str], seeds: list[int], seed_params: list[str],
                 prefix: str) -> list[Experiment]:
    bad = [k for k in [*keys, *seed_params] if not _PARAM.match(k)]
    if bad:
        raise ValueError(f"sweep keys must be dotted params keys like 'train_sft.w_end'; got {bad}")
    if not seeds:
        raise ValueError("a sweep needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"duplicate seeds in {seeds}")
    experiments = []
    for i, setting in enumerate(settings):
        for seed in seeds:
            overrides = setting + tuple((p, seed) for p in seed_params)
            experiments.append(Experiment(experiment_name(prefix, i, seed), overrides, seed, setting))
    return experiments


def experiment_name(prefix: str, index: int, seed: int) -> str:
    """`<prefix>-<grid index>-s<seed>`: the name of one sweep experiment."""
    return f"{prefix}-{index}-s{seed}"


def is_experiment_of(name: str, prefix: str) -> bool:
    """Whether `name` is an experiment of the sweep called `prefix` (`r1grid-v2-0-s3` is one of `r1grid-v2`, while
    `r1grid-v2-ablation-0-s3` is not: a plain prefix match would mix two sweeps whose names share a beginning)."""
    return re.fullmatch(rf"{re.escape(prefix)}-\d+-s\d+", name) is not None
