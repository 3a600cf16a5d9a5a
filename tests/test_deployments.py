"""Integration: a real `prefect server` on 127.0.0.1, deployments from prefect.yaml, a process worker.

Bounded in time (every wait has a deadline) and loopback only. Runs the `smoke` deployment (curation only, to
keep it short) to completion in a copy of the project, and checks that cron schedules create scheduled runs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import copy_project

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.slow, pytest.mark.prefect]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, str]]:
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect_home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(healthy, 90, "prefect server health")
        yield env
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def prefect(env: dict[str, str], cwd: Path, *args: str, timeout: float = 120) -> str:
    result = subprocess.run([str(BIN / "prefect"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"prefect {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def flow_runs(env: dict[str, str], body: dict) -> list[dict]:
    response = httpx.post(f"{env['PREFECT_API_URL']}/flow_runs/filter", json=body, timeout=10)
    response.raise_for_status()
    return response.json()


def test_deploy_schedule_and_run_smoke_through_a_process_worker(server: dict[str, str], tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    params = (project / "params.yaml").read_bytes()
    env = {**server, "SCALEVLM_ROOT": str(project)}
    prefect(env, project, "work-pool", "create", "scalevlm-process", "--type", "process")
    prefect(env, project, "--no-prompt", "deploy", "--all")
    response = httpx.post(f"{env['PREFECT_API_URL']}/deployments/filter", json={}, timeout=10)
    deployments = {d["name"]: d for d in response.json()}
    assert set(deployments) == {"nightly-retrain", "weekly-evaluation", "smoke", "prod-evaluation"}
    assert deployments["prod-evaluation"]["entrypoint"] == "flows/consumer.py:evaluate_registry"
    assert deployments["nightly-retrain"]["schedules"][0]["schedule"]["cron"] == "0 2 * * *"

    scheduled = wait_for(lambda: flow_runs(env, {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}),
                         60, "the scheduler to create cron runs")
    assert {r["deployment_id"] for r in scheduled}, "cron deployments have scheduled runs"

    out = prefect(env, project, "deployment", "run", "scalevlm-pipeline/smoke", "--params",
                  json.dumps({"targets": ["curate_dataset"]}))
    run_id = next(line.split()[-1] for line in out.splitlines() if "UUID" in line)
    worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "scalevlm-process", "--run-once"],
                              cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    try:
        def finished() -> dict | None:
            run = httpx.get(f"{env['PREFECT_API_URL']}/flow_runs/{run_id}", timeout=10).json()
            return run if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None
        run = wait_for(finished, 300, "the smoke flow run to finish", interval=2)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
        worker_out = worker.communicate(timeout=30)[0]
    assert run["state"]["type"] == "COMPLETED", worker_out[-3000:]
    metrics = json.loads((project / "reports/curate_dataset/metrics.json").read_text())
    assert metrics["input"] == 400, "the smoke profile (400 r1grid samples) was applied"
    assert (project / "params.yaml").read_bytes() == params, "the profile held params.yaml for the run only"
