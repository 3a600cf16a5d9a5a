"""The pipeline flow: every DVC stage as its own Prefect task, in the order of DVC's graph.

DVC decides what is stale: each task asks `dvc status --json <stage>`, then runs `dvc repro --single-item
<stage>`, which skips a stage whose deps, params and outs are unchanged. The flow only orders, runs, logs and
reports; it never sets hyperparameters. All DVC calls go through `flows.dvc_cli` (DVC's machine interfaces).

Profiles (`flows.profiles`): a declared params set applied for one run and put back byte for byte.

Concurrency: DVC holds a repository lock while it reproduces, so stages of one workspace run one at a time;
arms run in parallel through DVC's experiment queue (`dvc exp run --queue` + `dvc queue start -j N`).
Retries: none on stages (a failed training is not fixed by running it again); `curate_dataset` may read the
hub, so it gets retries when a hub source is enabled.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows import dvc_cli
from flows.dvc_cli import stage_order
from flows.profiles import check_profile, profile_applied
from scalevlm.facts import COMPARE_REPORT, METRICS, PROMOTE_DECISION, VALIDATE, report_dir
from scalevlm.study import flatten

__all__ = ["pipeline", "select", "stage_env", "stage_order"]
stage_env = dvc_cli.env  # the environment every DVC subprocess of the flows gets


def select(order: list[str], targets: list[str] | None) -> list[str]:
    """Keep stages named in `targets` (a stage name selects all its matrix items), in graph order."""
    if not targets:
        return order
    unknown = [t for t in targets if not any(s == t or s.split("@")[0] == t for s in order)]
    if unknown:
        raise ValueError(f"unknown stage targets {unknown}; stages are {order}")
    return [s for s in order if s in targets or s.split("@")[0] in targets]


# --- stages ----------------------------------------------------------------------------------------------------


@task(task_run_name="dvc repro {stage}")
def repro_stage(stage: str, root: str, force: bool = False) -> dict[str, Any]:
    """Reproduce one stage. `ran`: DVC found it stale (or it was forced) and brought it up to date, by running
    its command or restoring its outputs from the run cache; otherwise `dvc repro` skipped it."""
    logger = get_run_logger()
    project = Path(root)
    stale = dvc_cli.changes(project, stage)
    if stale:
        logger.info("%s is stale: %s", stage, json.dumps(stale))
    start = time.perf_counter()
    code, lines = dvc_cli.repro(project, stage, force, logger.info)
    if code != 0:
        tail = "\n".join(lines[-20:])
        raise RuntimeError(f"stage {stage} failed (exit {code}): dvc repro --single-item {stage}\n{tail}")
    return {"stage": stage, "ran": force or bool(stale), "seconds": round(time.perf_counter() - start, 2)}


@task(task_run_name="promotion gate")
def promotion_gate(root: str) -> dict[str, Any]:
    """Run the gate; a negative decision is a result (nothing is assigned), not a flow failure."""
    code, lines = dvc_cli.stream([sys.executable, "-m", "stages.promote", "--gate"], Path(root), get_run_logger().info)
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
    validation = _json(root / report_dir(VALIDATE) / METRICS)
    if validation is not None:
        body = "\n".join(f"| {k} | {v} |" for k, v in sorted(flatten(validation).items()))
        create_markdown_artifact(key="validation-summary", markdown=f"| metric | value |\n|---|---|\n{body}\n")
        published.append("validation-summary")
    table = root / COMPARE_REPORT / "table.md"
    if table.is_file():
        create_markdown_artifact(key="comparison-table", markdown=table.read_text())
        published.append("comparison-table")
    decision = _json(root / PROMOTE_DECISION)
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
    stages = select(stage_order(project), targets)
    with profile_applied(project, profile):
        hub = (yaml.safe_load((project / "params.yaml").read_text()) or {}).get("curate_dataset", {})
        hub_enabled = bool(hub.get("sources", {}).get("hub", {}).get("enabled"))
        results = []
        for stage in stages:
            runner = (repro_stage.with_options(retries=2, retry_delay_seconds=30)
                      if stage == "curate_dataset" and hub_enabled else repro_stage)
            results.append(runner(stage, str(project), force))
        if gate and "promote" in stages:
            outcome = promotion_gate(str(project))
            results.append({"stage": "gate", "ran": True, "seconds": 0.0, "promoted": outcome["promoted"]})
    publish_artifacts(project, results)
    return results


def main(argv: list[str] | None = None) -> int:
    """`python -m flows.pipeline`: the user's mistakes are refused before a Prefect server starts, as one line and
    exit 2; `--check` stops there (exit 0)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m flows.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="stages to run (default: all), e.g. train_sft@scale")
    parser.add_argument("--force", action="store_true", help="re-run the stages even when DVC finds them up to date")
    parser.add_argument("--profile", default="default", help="a declared params set, profiles/<name>.yaml")
    parser.add_argument("--gate", action="store_true", help="run the promotion gate after the promote stage")
    parser.add_argument("--check", action="store_true", help="check the profile and targets, run nothing")
    args = parser.parse_args(argv)
    try:
        check_profile(Path("."), args.profile)
        select(dvc_cli.stage_order(Path(".")), args.targets or None)
    except (ValueError, dvc_cli.DvcError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.check:
        pipeline(targets=args.targets or None, force=args.force, profile=args.profile, gate=args.gate)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
