"""The pipeline flow: every DVC stage as its own Prefect task, in the order of DVC's graph.

DVC decides what is stale: each task runs `dvc repro --single-item <stage>`, which skips a stage whose deps,
params and outs are unchanged. The flow only orders, runs, logs and reports; it never sets hyperparameters.
A `profile` other than `default` selects a declared params set (`profiles/<name>.yaml`, merged into
params.yaml before the run — use it in a CI checkout or a clone, as the smoke runs do).

Concurrency: DVC holds a repository lock while it reproduces, so stages of one workspace run one at a time;
arms run in parallel through DVC's experiment queue (`dvc exp run --queue` + `dvc queue start -j N`).
Retries: none on stages (a failed training is not fixed by running it again); `curate_dataset` may read the
hub, so it gets retries when a hub source is enabled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import networkx as nx
import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from scalevlm.study import flatten

DVC = [sys.executable, "-m", "dvc"]


def stage_order(root: Path) -> list[str]:
    """Stage addresses (`train_sft@scale` for matrix items) in dependency order, ties broken by name."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edge a -> b: stage a depends on stage b
        names = {node: node.name for node in graph.nodes}
        ordered = nx.lexicographical_topological_sort(graph.reverse(copy=True), key=lambda n: names[n])
        return [names[n] for n in ordered]


def select(order: list[str], targets: list[str] | None) -> list[str]:
    """Keep stages named in `targets` (a stage name selects all its matrix items), in graph order."""
    if not targets:
        return order
    unknown = [t for t in targets if not any(s == t or s.split("@")[0] == t for s in order)]
    if unknown:
        raise ValueError(f"unknown stage targets {unknown}; stages are {order}")
    return [s for s in order if s in targets or s.split("@")[0] in targets]


def apply_profile(root: Path, profile: str) -> dict[str, Any]:
    """Merge `profiles/<profile>.yaml` into params.yaml; only keys that already exist may be set."""
    if profile == "default":
        return {}
    path = root / "profiles" / f"{profile}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in (root / "profiles").glob("*.yaml"))
        raise ValueError(f"unknown profile '{profile}': no {path}; available: ['default', *{available}]")
    overlay = yaml.safe_load(path.read_text()) or {}
    params_path = root / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    _merge(params, overlay, profile)
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    return overlay


def _merge(base: dict[str, Any], overlay: dict[str, Any], where: str) -> None:
    for key, value in overlay.items():
        if key not in base:
            raise ValueError(f"profile {where}: key '{key}' does not exist in params.yaml")
        if isinstance(value, dict) and isinstance(base[key], dict):
            _merge(base[key], value, f"{where}.{key}")
        else:
            base[key] = value


def stage_env() -> dict[str, str]:
    """Environment for DVC subprocesses: stage commands say `python`, so put this interpreter's folder (the
    project's venv) first on PATH, whatever PATH the worker has."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "DVC_NO_ANALYTICS": "1", "PYTHONUNBUFFERED": "1"}


def _run_streaming(cmd: list[str], root: Path) -> tuple[int, list[str]]:
    """Run a command, forwarding each output line to the Prefect run log as it arrives."""
    logger = get_run_logger()
    env = stage_env()
    lines: list[str] = []
    with subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            logger.info(line.rstrip("\n"))
        return proc.wait(), lines


@task(task_run_name="dvc repro {stage}")
def repro_stage(stage: str, root: str, force: bool = False) -> dict[str, Any]:
    """Reproduce one stage; returns whether it ran or DVC skipped it as unchanged."""
    cmd = [*DVC, "repro", "--single-item", *(["--force"] if force else []), stage]
    start = time.perf_counter()
    code, lines = _run_streaming(cmd, Path(root))
    if code != 0:
        tail = "\n".join(lines[-20:])
        raise RuntimeError(f"stage {stage} failed (exit {code}): {' '.join(cmd)}\n{tail}")
    skipped = any("didn't change, skipping" in line or "is cached - skipping" in line for line in lines)
    return {"stage": stage, "ran": not skipped, "seconds": round(time.perf_counter() - start, 2)}


@task(task_run_name="promotion gate")
def promotion_gate(root: str) -> dict[str, Any]:
    """Run the gate; a negative decision is a result (nothing is assigned), not a flow failure."""
    code, lines = _run_streaming([sys.executable, "-m", "stages.promote", "--gate"], Path(root))
    if code not in (0, 1):
        raise RuntimeError("promotion gate could not run:\n" + "\n".join(lines[-20:]))
    return {"promoted": code == 0, "output": lines}


def _json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def publish_artifacts(root: Path, results: list[dict[str, Any]]) -> list[str]:
    """Markdown artifacts from the reports the stages wrote (absent reports are simply not published)."""
    published = []
    rows = "\n".join(f"| {r['stage']} | {'ran' if r['ran'] else 'skipped'} | {r['seconds']} |" for r in results)
    create_markdown_artifact(key="pipeline-run", markdown=f"| stage | status | seconds |\n|---|---|---|\n{rows}\n")
    published.append("pipeline-run")
    validation = _json(root / "reports/validate_segments/metrics.json")
    if validation is not None:
        body = "\n".join(f"| {k} | {v} |" for k, v in sorted(flatten(validation).items()))
        create_markdown_artifact(key="validation-summary", markdown=f"| metric | value |\n|---|---|\n{body}\n")
        published.append("validation-summary")
    table = root / "reports/compare/table.md"
    if table.is_file():
        create_markdown_artifact(key="comparison-table", markdown=table.read_text())
        published.append("comparison-table")
    decision = _json(root / "reports/promote/decision.json")
    if decision is not None:
        create_markdown_artifact(key="promotion-decision", markdown=f"```json\n{json.dumps(decision, indent=2)}\n```\n")
        published.append("promotion-decision")
    return published


@flow(name="scalevlm-pipeline", log_prints=True)
def pipeline(
    targets: list[str] | None = None, force: bool = False, profile: str = "default", gate: bool = False, root: str = "."
) -> list[dict[str, Any]]:
    """Run the selected DVC stages in graph order; returns one status dict per stage.

    With `gate=True` and the `promote` stage among them, the promotion gate runs last: only a positive decision
    assigns a new registry version (the reports must be committed first, as in CI).
    """
    project = Path(root).resolve()
    apply_profile(project, profile)
    stages = select(stage_order(project), targets)
    hub = (yaml.safe_load((project / "params.yaml").read_text()) or {}).get("curate_dataset", {})
    hub_enabled = bool(hub.get("sources", {}).get("hub", {}).get("enabled"))
    results = []
    for stage in stages:
        runner = repro_stage.with_options(retries=2, retry_delay_seconds=30) if stage == "curate_dataset" and hub_enabled else repro_stage
        results.append(runner(stage, str(project), force))
    if gate and "promote" in stages:
        outcome = promotion_gate(str(project))
        results.append({"stage": "gate", "ran": True, "seconds": 0.0, "promoted": outcome["promoted"]})
    publish_artifacts(project, results)
    return results


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--gate", action="store_true", help="run the promotion gate after the promote stage")
    args = parser.parse_args()
    pipeline(targets=args.targets or None, force=args.force, profile=args.profile, gate=args.gate)
