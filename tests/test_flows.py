"""The pipeline flow under Prefect's test harness, on a small real DVC project in tmp_path.

The project's own dvc.yaml trains models, so the flow is exercised on a three-stage DVC project whose last
stage is the real `promote` stage: order from DVC's graph, skipping unchanged stages, artifacts, and the gate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

DVC_YAML = {
    "stages": {
        # declared out of order on purpose: the flow must follow the graph, not the file
        "summarise": {"cmd": "python -c \"import pathlib; p = pathlib.Path('b.txt'); p.write_text(pathlib.Path('a.txt').read_text() * 2)\"",
                      "deps": ["a.txt"], "outs": ["b.txt"]},
        "make_a": {"cmd": "python -c \"import pathlib; pathlib.Path('a.txt').write_text(pathlib.Path('in.txt').read_text())\"",
                   "deps": ["in.txt"], "outs": ["a.txt"]},
        "promote": {"cmd": "python -m stages.promote", "deps": ["b.txt", "reports/evaluate/sft-scale"], "params": ["promote"],
                    "outs": [{"reports/promote/decision.json": {"cache": False}}, {"reports/promote/candidate.json": {"cache": False}}]},
    },
    "artifacts": {"vlm": {"path": "b.txt", "type": "model"}},
}
PARAMS = {"promote": {"candidate": "sft-scale", "artifact": "vlm", "stage": "prod", "rules": {
    "min_accuracy": 0.95, "format_floor": 0.9, "tracked_metrics": ["accuracy"], "max_regression": 0.0,
    "require_significant": True, "alpha": 0.05, "n_bootstrap": 500, "seed": 0}}}


def sh(root: Path, *cmd: str) -> str:
    return subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    (tmp_path / "in.txt").write_text("x")
    ev = tmp_path / "reports/evaluate/sft-scale"
    ev.mkdir(parents=True)
    (ev / "metrics.json").write_text(json.dumps({"accuracy": 0.5, "format_compliance": 1.0}))
    (ev / "predictions.jsonl").write_text("".join(json.dumps({"id": f"s{i}", "correct": i % 2 == 0}) + "\n" for i in range(20)))
    sh(tmp_path, "git", "init", "-q")
    sh(tmp_path, "git", "config", "user.email", "ci@example.com")
    sh(tmp_path, "git", "config", "user.name", "ci")
    sh(tmp_path, sys.executable, "-m", "dvc", "init", "-q")
    sh(tmp_path, "git", "add", "-A")
    sh(tmp_path, "git", "commit", "-qm", "init")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return tmp_path


def test_stage_order_follows_the_dvc_graph(project: Path) -> None:
    from flows.pipeline import select, stage_order

    order = stage_order(project)
    assert order == ["make_a", "summarise", "promote"]
    assert select(order, ["promote", "make_a"]) == ["make_a", "promote"]
    with pytest.raises(ValueError, match=r"unknown stage targets \['nope'\]"):
        select(order, ["nope"])


def test_runs_in_order_then_skips_unchanged_and_refuses_a_negative_promotion(project: Path, harness: None) -> None:
    from prefect.client.orchestration import get_client

    from flows.pipeline import pipeline

    first = pipeline(root=str(project), gate=True)
    assert [r["stage"] for r in first] == ["make_a", "summarise", "promote", "gate"]
    assert all(r["ran"] for r in first[:3])
    assert first[-1]["promoted"] is False  # accuracy 0.5 < 0.95
    assert sh(project, "git", "tag") == "", "a negative decision assigns nothing"
    assert (project / "b.txt").read_text() == "xx"

    second = pipeline(root=str(project))
    assert [(r["stage"], r["ran"]) for r in second] == [("make_a", False), ("summarise", False), ("promote", False)]

    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_artifacts()}
    assert {"pipeline-run", "promotion-decision"} <= keys


def test_unknown_profile_is_an_error_naming_the_choices(project: Path) -> None:
    from flows.pipeline import apply_profile

    (project / "profiles").mkdir()
    (project / "profiles/smoke.yaml").write_text("promote:\n  rules:\n    min_accuracy: 0.1\n")
    with pytest.raises(ValueError, match=r"unknown profile 'fast'.*'smoke'"):
        apply_profile(project, "fast")
    apply_profile(project, "smoke")
    assert yaml.safe_load((project / "params.yaml").read_text())["promote"]["rules"]["min_accuracy"] == 0.1
    (project / "profiles/bad.yaml").write_text("promote:\n  nope: 1\n")
    with pytest.raises(ValueError, match="key 'nope' does not exist"):
        apply_profile(project, "bad")
