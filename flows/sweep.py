"""The sweep flow: a grid of params × seeds as queued DVC experiments, executed by DVC's queue, then collected.

    python -m flows.sweep sweeps/ablation.yaml      # queue, run (parallel jobs from the spec), collect, report

A sweep spec (YAML): `name`, `grid` (dotted params key → values), `seeds`, `seed_params` (keys set to the seed),
`targets` (stages to reproduce; empty = all), `jobs` (parallel queue workers). Each experiment is
`dvc exp run --queue -n <name>-<i>-s<seed> -S key=value …`; `dvc queue start -j <jobs>` runs them in isolated
temporary workspaces; `dvc exp show --json` is the record of what ran, and `scalevlm.study` turns it into the
report, so the report's numbers are the experiments' numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task

from flows.pipeline import stage_env
from scalevlm.core.seeds import Experiment, expand

DVC = [sys.executable, "-m", "dvc"]
SPEC_KEYS = {"name", "grid", "seeds", "seed_params", "targets", "jobs"}


def load_spec(path: Path) -> dict[str, Any]:
    spec = yaml.safe_load(Path(path).read_text()) or {}
    missing, unknown = SPEC_KEYS - set(spec), set(spec) - SPEC_KEYS
    if missing or unknown:
        raise ValueError(f"{path}: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}; a sweep spec has {sorted(SPEC_KEYS)}")
    return spec


def experiments(spec: dict[str, Any]) -> list[Experiment]:
    return expand(spec["grid"] or {}, list(spec["seeds"]), list(spec["seed_params"]), prefix=spec["name"])


def _dvc(root: Path, *args: str) -> str:
    result = subprocess.run([*DVC, *args], cwd=root, capture_output=True, text=True, env=stage_env())
    if result.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed (exit {result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result.stdout


@task(task_run_name="queue {exp.name}")
def queue_experiment(exp: Experiment, targets: list[str], root: str) -> str:
    _dvc(Path(root), "exp", "run", "--queue", "-n", exp.name, *exp.set_args(), *targets)
    return exp.name


def existing_experiments(root: Path) -> set[str]:
    """Names of experiments already in the repository (any commit): a re-run sweep only adds what is missing."""
    return set(_dvc(root, "exp", "list", "--all-commits", "--name-only").split())


@task(task_run_name="run the DVC queue")
def run_queue(jobs: int, root: str, timeout_s: float) -> None:
    """Start `jobs` queue workers and wait until nothing is queued or running (bounded by `timeout_s`)."""
    logger = get_run_logger()
    _dvc(Path(root), "queue", "start", "-j", str(jobs))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = _dvc(Path(root), "queue", "status")
        active = [line for line in status.splitlines() if " Queued " in f" {line} " or " Running " in f" {line} "]
        if not active:
            failed = [line for line in status.splitlines() if " Failed " in f" {line} "]
            if failed:
                raise RuntimeError("experiments failed:\n" + "\n".join(failed) + "\nsee `dvc queue logs <name>`")
            return
        logger.info("%d experiments queued or running", len(active))
        time.sleep(10)
    _dvc(Path(root), "queue", "stop", "--kill")
    raise TimeoutError(f"the experiment queue did not finish within {timeout_s:.0f} s")


@task(task_run_name="collect dvc exp show")
def collect(root: str) -> list[dict[str, Any]]:
    # --all-commits: experiments hang off the commit they were queued from, which need not be HEAD any more
    return json.loads(_dvc(Path(root), "exp", "show", "--json", "--no-fetch", "--all-commits"))


@flow(name="scalevlm-sweep", log_prints=True)
def sweep(spec_path: str, root: str = ".", timeout_s: float = 6 * 3600, report: bool = True, run: bool = True) -> dict[str, Any]:
    """Queue every experiment of the spec, run the queue, collect `dvc exp show` and write the report.

    `run=False` only collects and reports (experiments already run, e.g. to rebuild a report)."""
    project = Path(root).resolve()
    spec = load_spec(project / spec_path)
    names = []
    if run:
        done = existing_experiments(project)
        todo = [exp for exp in experiments(spec) if exp.name not in done]
        names = [queue_experiment(exp, list(spec["targets"] or []), str(project)) for exp in todo]
        if names:
            run_queue(int(spec["jobs"]), str(project), timeout_s)
    shown = collect(str(project))
    out: dict[str, Any] = {"queued": names}
    if report:
        from scalevlm.study import write_report

        out["report"] = str(write_report(spec, shown, project / "reports" / "study" / spec["name"]))
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="sweep spec YAML, e.g. sweeps/ablation.yaml")
    parser.add_argument("--timeout-s", type=float, default=6 * 3600)
    parser.add_argument("--report-only", action="store_true", help="collect and report experiments already run")
    args = parser.parse_args()
    print(json.dumps(sweep(args.spec, timeout_s=args.timeout_s, run=not args.report_only), indent=2))
