"""Offline by default, however a stage is started: no network call unless the user turns the hub on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SWITCHES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "SCALEVLM_ONLINE",
            "HF_HUB_DISABLE_TELEMETRY",
            "HF_EVALUATE_OFFLINE", "DO_NOT_TRACK", "DVC_NO_ANALYTICS")

# Loaded by Python at start-up (sitecustomize): every attempt to resolve a host or open a connection is recorded
# and refused, so the test sees network use however deep in a library it happens.
BLOCKER = """
import os, socket
_log = os.environ["NETWORK_LOG"]
def _refuse(*args, **kwargs):
    with open(_log, "a") as f:
        f.write(repr(args[:2]) + "\\n")
    raise OSError("network blocked by the test")
socket.getaddrinfo = _refuse
socket.create_connection = _refuse
socket.socket.connect = _refuse
"""


def _start_stage(tmp_path: Path, extra_env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prepare_model"]["name_or_path"] = "some-org/some-vlm"  # a hub id, not cached anywhere
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    log = tmp_path / "network.log"
    env = {k: v for k, v in os.environ.items() if k not in SWITCHES}  # as a user's shell: no offline variables set
    env.update({"PYTHONPATH": f"{blocker}{os.pathsep}{ROOT}/src{os.pathsep}{ROOT}", "NETWORK_LOG": str(log),
                "HF_HOME": str(tmp_path / "hf_home"), **extra_env})
    proc = subprocess.Popen([sys.executable, "-m", "stages.prepare_model", "--params", str(tmp_path / "params.yaml"),
                             "--root", str(tmp_path)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            text=True)
    return proc, log


def _attempts(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.slow
def test_a_stage_started_directly_with_a_hub_id_stays_offline_and_says_how_to_go_online(tmp_path: Path) -> None:
    start = time.monotonic()
    proc, log = _start_stage(tmp_path, {})
    _, stderr = proc.communicate(timeout=300)
    assert _attempts(log) == [], f"network calls were made: {_attempts(log)[:5]}"
    assert proc.returncode == 2, stderr[-2000:]
    assert "Traceback" not in stderr
    assert "some-org/some-vlm" in stderr and "SCALEVLM_ONLINE=1" in stderr
    assert time.monotonic() - start < 120
    assert not (tmp_path / "models").exists()


@pytest.mark.slow
def test_going_online_is_explicit_and_reaches_for_the_hub(tmp_path: Path) -> None:
    """The blocker must see an attempt once the user opts in, or the test above proves nothing. (The hub client
    then retries with back-off; the test stops the stage at the first attempt.)"""
    proc, log = _start_stage(tmp_path, {"SCALEVLM_ONLINE": "1"})
    try:
        deadline = time.monotonic() + 120
        while not _attempts(log) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _attempts(log), "online mode made no network call: the blocker is not working"
    finally:
        proc.kill()
        proc.communicate()


def test_importing_the_package_sets_the_offline_defaults_before_any_library_loads() -> None:
    env = {k: v for k, v in os.environ.items() if k not in SWITCHES}
    code = ("import sys, os, stages; "
            "assert 'transformers' not in sys.modules and 'huggingface_hub' not in sys.modules; "
            "print(os.environ['HF_HUB_OFFLINE'], os.environ['TRANSFORMERS_OFFLINE'], "
            "os.environ['HF_DATASETS_OFFLINE'])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1", "1"]
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "SCALEVLM_ONLINE": "1"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "0", "0"]
