"""The sweep flow: a grid of params × seeds as queued DVC experiments, executed by DVC's queue, then collected.

    python -m flows.sweep sweeps/ablation.yaml      # queue, run (parallel jobs from the spec), collect, report

A sweep spec (YAML): `name`, `grid` (dotted params key → values), `seeds`, `seed_params` (keys set to the seed),
`targets` (stages to reproduce; empty = all), `jobs` (parallel queue workers). Each experiment is
`dvc exp run --queue -n <name>-<i>-s<seed> -S key=value …`; `dvc queue start -j <jobs>` runs them in isolated
temporary workspaces; `dvc exp show --json` (all DVC calls go through `flows.dvc_cli`) tracks their queue states
and is the record of what ran, and `scalevlm.study` turns it into the report, so the report's numbers are the
experiments' numbers.
"""

from __future__ import annotations

import difflib
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import pydantic
from prefect import flow, get_run_logger, task

from flows import dvc_cli
from scalevlm.config import (
    Checked,
    ConfigError,
    NonEmpty,
    NonNegativeInt,
    PositiveInt,
    Problems,
    Text,
    config_dataclass,
    from_dict,
    load_params,
    read_yaml,
    to_dict,
)
from scalevlm.core.seeds import Experiment, expand, grid_keys
from scalevlm.facts import STUDY_REPORTS
from scalevlm.study import flatten

Scalar = int | float | str | bool | None
SweepName = Annotated[str, pydantic.StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)]


@config_dataclass
class SweepSpec(Checked):
    name: SweepName  # experiment names are `<name>-<i>-s<seed>` and the report goes to reports/study/<name>/
    grid: dict[Text, Annotated[tuple[Scalar, ...], NonEmpty()]] | tuple[dict[Text, Scalar], ...]
    seeds: Annotated[tuple[NonNegativeInt, ...], NonEmpty()]
    seed_params: tuple[Text, ...]
    targets: tuple[Text, ...]  # dvc stage addresses (`evaluate@sft-scale`); empty = every stage
    jobs: PositiveInt

    def check(self) -> Problems:
        if len(set(self.seeds)) != len(self.seeds):
            yield "seeds", f"{list(self.seeds)} repeats a seed"


def load_spec(path: Path, root: Path | None = None) -> dict[str, Any]:
    """A sweep spec, typed (`SweepSpec`); with `root`, its params keys and targets are checked against the project's
    params.yaml and dvc.yaml too. Every problem is a ConfigError naming the file and the key, before any work."""
    spec = from_dict(SweepSpec, read_yaml(path, "sweep spec"), where=str(path))
    if root is not None:
        _check_against_project(spec, Path(path), root)
    return to_dict(spec)


def _check_against_project(spec: SweepSpec, path: Path, root: Path) -> None:
    known = flatten(load_params(root / "params.yaml"))
    keys = [(f"grid.{k}", k) for k in grid_keys(spec.grid)] + [("seed_params", k) for k in spec.seed_params]
    for where, key in keys:
        if key not in known:
            near = difflib.get_close_matches(key, list(known), n=3)
            raise ConfigError(f"{path}: {where}: '{key}' is not a key of params.yaml"
                              + (f" (did you mean {near}?)" if near else ""))
    stages = dvc_cli.stage_order(root)
    for i, target in enumerate(spec.targets):
        if target not in stages and not any(s.startswith(f"{target}@") for s in stages):
            raise ConfigError(f"{path}: targets[{i}]: '{target}' is not a stage of dvc.yaml; stages: {stages}")


def experiments(spec: dict[str, Any]) -> list[Experiment]:
    return expand(spec["grid"] or {}, list(spec["seeds"]), list(spec["seed_params"]), prefix=spec["name"])


@task(task_run_name="queue {exp.name}")
def queue_experiment(exp: Experiment, targets: list[str], root: str) -> str:
    dvc_cli.queue_experiment(Path(root), exp.name, exp.set_args(), targets)
    return exp.name


def existing_experiments(root: Path) -> set[str]:
    """Names of experiments already in the repository (any commit): a re-run sweep only adds what is missing."""
    return dvc_cli.experiment_names(root)


def queue_progress(runs: list[dvc_cli.ExpRun], names: list[str]) -> tuple[list[dvc_cli.ExpRun], list[dvc_cli.ExpRun]]:
    """(experiments still queued or running, experiments of `names` that failed and have no successful run)."""
    active = [r for r in runs if r.state in ("queued", "running")]
    succeeded = {r.name for r in runs if r.state == "success"}
    return active, [r for r in runs if r.state == "failed" and r.name in names and r.name not in succeeded]


@task(task_run_name="run the DVC queue")
def run_queue(jobs: int, root: str, timeout_s: float, names: list[str]) -> None:
    """Start `jobs` queue workers and wait until no experiment is queued or running (bounded by `timeout_s`).

    States come from `dvc exp show --json`. One of `names` (this sweep's experiments) that failed and has no
    successful run fails the task; failures that earlier sweeps left in the queue are not this sweep's."""
    logger = get_run_logger()
    project = Path(root)
    dvc_cli.queue_start(project, jobs)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        active, failed = queue_progress(dvc_cli.parse_experiments(dvc_cli.exp_show(project)), names)
        if not active:
            if failed:
                lines = "\n".join(f"{r.name} (log: {r.log})" for r in failed)
                raise RuntimeError(f"experiments failed:\n{lines}\nsee `dvc queue logs <name>`")
            return
        logger.info("%d experiments queued or running", len(active))
        time.sleep(10)
    dvc_cli.queue_kill(project)
    raise TimeoutError(f"the experiment queue did not finish within {timeout_s:.0f} s")


@task(task_run_name="collect dvc exp show")
def collect(root: str) -> list[dict[str, Any]]:
    return dvc_cli.exp_show(Path(root))


@flow(name="scalevlm-sweep", log_prints=True)
def sweep(spec_path: str, root: str = ".", timeout_s: float = 6 * 3600, report: bool = True,
          run: bool = True) -> dict[str, Any]:
    """Queue every experiment of the spec, run the queue, collect `dvc exp show` and write the report.

    `run=False` only collects and reports (experiments already run, e.g. to rebuild a report)."""
    project = Path(root).resolve()
    spec = load_spec(project / spec_path, project)
    names = []
    if run:
        done = existing_experiments(project)
        todo = [exp for exp in experiments(spec) if exp.name not in done]
        names = [queue_experiment(exp, list(spec["targets"] or []), str(project)) for exp in todo]
        if names:
            run_queue(int(spec["jobs"]), str(project), timeout_s, names)
    shown = collect(str(project))
    out: dict[str, Any] = {"queued": names}
    if report:
        from scalevlm.study import write_report

        out["report"] = str(write_report(spec, shown, project / STUDY_REPORTS / spec["name"]))
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m flows.sweep`: a missing or malformed spec is refused before a Prefect server starts (exit 2);
    `--check` stops there (exit 0)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m flows.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="sweep spec YAML, e.g. sweeps/ablation.yaml")
    parser.add_argument("--timeout-s", type=float, default=6 * 3600, help="bound on the queue's run (seconds)")
    parser.add_argument("--report-only", action="store_true", help="collect and report experiments already run")
    parser.add_argument("--check", action="store_true", help="check the spec against the project, run nothing")
    args = parser.parse_args(argv)
    try:
        if not args.timeout_s > 0:
            raise ValueError(f"--timeout-s must be > 0, got {args.timeout_s}")
        experiments(load_spec(Path(args.spec), Path(".")))
    except (OSError, ValueError, dvc_cli.DvcError) as e:  # ConfigError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.check:
        print(json.dumps(sweep(args.spec, timeout_s=args.timeout_s, run=not args.report_only), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
