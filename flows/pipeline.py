"""The pipeline flow: every DVC stage as its own Prefect task, in the order of DVC's graph.

DVC decides what is stale: each task asks `dvc status --json <stage>`, then runs `dvc repro --single-item
<stage>`, which skips a stage whose deps, params and outs are unchanged. The flow only orders, runs, logs and
reports; it never sets hyperparameters. All DVC calls go through `flows.dvc_cli` (DVC's machine interfaces).

Profiles: a `profile` other than `default` selects a declared params set (`profiles/<name>.yaml`: only keys that
exist in params.yaml). It is applied for the run only: its values are written into params.yaml with a
round-trip YAML editor (comments and layout kept, as DVC's own `-S` does), the stages run on them, and the file
is put back byte for byte at the end. The outputs and dvc.lock then hold the profile's results, so `dvc status`
shows those stages stale against your params. Not `dvc exp run -S`, because in the workspace it leaves the set
values in params.yaml (DVC does not put them back), and with `--temp` the outputs never reach the workspace
(the smoke deployment, CI's smoke table and the gate read them there); it also runs every stage in one call,
where the flow keeps one task per stage. A run killed before it could restore params.yaml leaves a backup in
`.scalevlm/profile/`; the next flow run puts it back.

Concurrency: DVC holds a repository lock while it reproduces, so stages of one workspace run one at a time;
arms run in parallel through DVC's experiment queue (`dvc exp run --queue` + `dvc queue start -j N`).
Retries: none on stages (a failed training is not fixed by running it again); `curate_dataset` may read the
hub, so it gets retries when a hub source is enabled.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows import dvc_cli
from flows.dvc_cli import stage_order
from scalevlm.facts import COMPARE_REPORT, METRICS, PROMOTE_DECISION, VALIDATE, report_dir
from scalevlm.guard import StageBusyError, StageLock, atomic_write_text
from scalevlm.study import flatten

__all__ = ["apply_profile", "pipeline", "profile_applied", "select", "stage_env", "stage_order"]
stage_env = dvc_cli.env  # the environment every DVC subprocess of the flows gets
BACKUP = Path(".scalevlm") / "profile"  # the user's params.yaml while a profile run holds it (git-ignored)


def select(order: list[str], targets: list[str] | None) -> list[str]:
    """Keep stages named in `targets` (a stage name selects all its matrix items), in graph order."""
    if not targets:
        return order
    unknown = [t for t in targets if not any(s == t or s.split("@")[0] == t for s in order)]
    if unknown:
        raise ValueError(f"unknown stage targets {unknown}; stages are {order}")
    return [s for s in order if s in targets or s.split("@")[0] in targets]


# --- profiles --------------------------------------------------------------------------------------------------


def load_profile(root: Path, profile: str) -> dict[str, Any]:
    """The params overlay `profiles/<profile>.yaml` (`{}` for `default`)."""
    if profile == "default":
        return {}
    path = root / "profiles" / f"{profile}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in (root / "profiles").glob("*.yaml"))
        raise ValueError(f"unknown profile '{profile}': no {path}; available: {['default', *available]}")
    return yaml.safe_load(path.read_text()) or {}


def profile_overrides(overlay: dict[str, Any]) -> list[str]:
    """The overlay as `key=value` strings, the arguments `dvc exp run -S` would take for the same values."""
    return [f"{key}={json.dumps(value)}" for key, value in flatten(overlay).items()]


def _round_trip() -> Any:
    from ruamel.yaml import YAML  # DVC's own YAML library (its `-S` edits params.yaml with it)

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096  # never re-wrap long lines
    rt.indent(mapping=2, sequence=4, offset=2)  # this project's layout: params.yaml round-trips byte for byte
    rt.representer.add_representer(type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))
    return rt


def _overlaid(text: str, overlay: dict[str, Any], profile: str) -> str:
    """params.yaml text with the overlay's values set; comments, order and layout of everything else kept."""
    rt = _round_trip()
    params = rt.load(text)
    merge_profile(params, overlay, profile)
    out = io.StringIO()
    rt.dump(params, out)
    return out.getvalue()


def merge_profile(base: dict[str, Any], overlay: dict[str, Any], where: str) -> None:
    """Put a profile's values into a params mapping in place; a key params.yaml lacks is an error naming it."""
    for key, value in overlay.items():
        if key not in base:
            raise ValueError(f"profile {where}: key '{key}' does not exist in params.yaml")
        if isinstance(value, dict) and isinstance(base[key], dict):
            merge_profile(base[key], value, f"{where}.{key}")
        else:
            base[key] = value


def apply_profile(root: Path, profile: str) -> dict[str, Any]:
    """Write a profile's values into params.yaml for good (comments kept): for a scratch copy or a clone that
    then runs `dvc repro` itself (tests, CI). The flow uses `profile_applied`, which puts the file back."""
    overlay = load_profile(root, profile)
    if overlay:
        path = root / "params.yaml"
        atomic_write_text(path, _overlaid(path.read_bytes().decode("utf-8"), overlay, profile))
    return overlay


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _put_back(path: Path, original: bytes, mode: int) -> None:
    """The exact bytes (decoding UTF-8 and writing it back is lossless on POSIX) and permissions of before."""
    atomic_write_text(path, original.decode("utf-8"))
    os.chmod(path, mode)


def recover_params(root: Path) -> str | None:
    """Put back the params.yaml a killed profile run left behind (its backup in `.scalevlm/profile/`).

    Only when params.yaml is still exactly what that run wrote; if it was edited since, refuse rather than
    guess. The caller holds the profile lock (the run that wrote the backup is dead). Returns what was done, or
    None when there was nothing to recover."""
    backup = root / BACKUP
    if not (backup / "state.json").is_file():
        return None
    state = json.loads((backup / "state.json").read_text())
    path = root / "params.yaml"
    if path.read_bytes() == (backup / "params.yaml").read_bytes():  # killed before it wrote the profile's values
        _forget(backup)
        return None
    if _sha(path.read_bytes()) != state["applied_sha256"]:
        raise ValueError(
            f"a run of profile '{state['profile']}' was interrupted and params.yaml was edited since: your params.yaml "
            f"before that run is {backup / 'params.yaml'}; keep what you want in params.yaml, then delete {backup}")
    _put_back(path, (backup / "params.yaml").read_bytes(), state["mode"])
    _forget(backup)
    return f"params.yaml restored from an interrupted run of profile '{state['profile']}'"


def _forget(backup: Path) -> None:
    (backup / "state.json").unlink()  # first: without it the backup is inert
    (backup / "params.yaml").unlink(missing_ok=True)


@contextmanager
def profile_applied(root: Path, profile: str) -> Iterator[dict[str, Any]]:
    """params.yaml carries the profile's values inside the block; on leaving it has its exact original bytes.

    A profile run holds a lock (`scalevlm.guard.StageLock`, released by the kernel if the run dies) for the whole
    block, so no other flow run recovers or reads params.yaml under it; a default run only takes it to recover."""
    overlay = load_profile(root, profile)
    lock = StageLock(root, "params-profile")
    try:
        lock.acquire()
        busy = False
    except StageBusyError:
        busy = True
    if busy:
        if overlay or (root / BACKUP / "state.json").is_file():
            owner = lock.path.read_text().strip() or "unknown"
            raise ValueError(f"params.yaml holds the values of a profile run in progress ({owner}): wait for it to "
                             "finish, or stop it, then run again")
        yield overlay  # another default run checking for a backup at this moment: nothing to hold
        return
    try:
        recovered = recover_params(root)
        if recovered:
            print(recovered)
        if not overlay:
            lock.release()
            yield overlay
            return
        path, backup = root / "params.yaml", root / BACKUP
        original, mode = path.read_bytes(), path.stat().st_mode & 0o7777
        applied = _overlaid(original.decode("utf-8"), overlay, profile)
        backup.mkdir(parents=True, exist_ok=True)
        (backup / "params.yaml").write_bytes(original)
        atomic_write_text(backup / "state.json", json.dumps({"profile": profile, "mode": mode, "applied_sha256": _sha(applied.encode())}))
        atomic_write_text(path, applied)
        print(f"profile {profile} for this run: {' '.join(profile_overrides(overlay))}")
        try:
            yield overlay
        finally:
            if _sha(path.read_bytes()) == _sha(applied.encode()):
                _put_back(path, original, mode)
                _forget(backup)
            else:  # edited during the run: the edit wins, the backup stays for the user
                print(f"params.yaml was edited during the run: left as it is; before the run it was {backup / 'params.yaml'}")
    finally:
        lock.release()


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
            runner = repro_stage.with_options(retries=2, retry_delay_seconds=30) if stage == "curate_dataset" and hub_enabled else repro_stage
            results.append(runner(stage, str(project), force))
        if gate and "promote" in stages:
            outcome = promotion_gate(str(project))
            results.append({"stage": "gate", "ran": True, "seconds": 0.0, "promoted": outcome["promoted"]})
    publish_artifacts(project, results)
    return results


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m flows.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--gate", action="store_true", help="run the promotion gate after the promote stage")
    args = parser.parse_args()
    try:  # the user's mistakes are refused before a Prefect server starts, as one line and exit 2
        load_profile(Path("."), args.profile)
        select(dvc_cli.stage_order(Path(".")), args.targets or None)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    pipeline(targets=args.targets or None, force=args.force, profile=args.profile, gate=args.gate)
