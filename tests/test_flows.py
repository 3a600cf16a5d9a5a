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
        # its output stands in for the candidate's model, which promote copies to models/promote (the artifact)
        "summarise": {"cmd": "python -c \"import pathlib; p = pathlib.Path('models/train_sft/scale'); "
                             "p.mkdir(parents=True, exist_ok=True); (p / "
                             "'w.txt').write_text(pathlib.Path('a.txt').read_text() * 2)\"",
                      "deps": ["a.txt"], "outs": ["models/train_sft/scale"]},
        "make_a": {"cmd": "python -c \"import pathlib; "
                          "pathlib.Path('a.txt').write_text(pathlib.Path('in.txt').read_text())\"",
                   "deps": ["in.txt"], "outs": ["a.txt"]},
        "promote": {"cmd": "python -m stages.promote", "deps": ["models/train_sft/scale", "reports/evaluate/sft-scale"],
                    "params": ["promote"],
                    "outs": ["models/promote", {"reports/promote/decision.json": {"cache": False}},
                             {"reports/promote/candidate.json": {"cache": False}}]},
    },
    "artifacts": {"vlm": {"path": "models/promote", "type": "model"}},
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
    (ev / "predictions.jsonl").write_text("".join(json.dumps({"id": f"s{i}", "correct": i % 2 == 0}) + "\n"
                                                  for i in range(20)))
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


@pytest.mark.prefect
def test_runs_in_order_then_skips_unchanged_and_refuses_a_negative_promotion(project: Path, harness: None) -> None:
    from prefect.client.orchestration import get_client

    from flows.pipeline import pipeline

    first = pipeline(root=str(project), gate=True)
    assert [r["stage"] for r in first] == ["make_a", "summarise", "promote", "gate"]
    assert all(r["ran"] for r in first[:3])
    assert first[-1]["promoted"] is False  # accuracy 0.5 < 0.95
    assert sh(project, "git", "tag") == "", "a negative decision assigns nothing"
    assert (project / "models/train_sft/scale/w.txt").read_text() == "xx"
    assert (project / "models/promote/w.txt").read_text() == "xx"  # promote copied the chosen model

    second = pipeline(root=str(project))
    assert [(r["stage"], r["ran"]) for r in second] == [("make_a", False), ("summarise", False), ("promote", False)]

    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_artifacts()}
    assert {"pipeline-run", "promotion-decision"} <= keys


def test_unknown_profile_is_an_error_naming_the_choices(project: Path) -> None:
    from flows.profiles import apply_profile

    (project / "profiles").mkdir()
    (project / "profiles/smoke.yaml").write_text("promote:\n  rules:\n    min_accuracy: 0.1\n")
    with pytest.raises(ValueError, match=r"unknown profile 'fast'.*'smoke'"):
        apply_profile(project, "fast")
    apply_profile(project, "smoke")
    assert yaml.safe_load((project / "params.yaml").read_text())["promote"]["rules"]["min_accuracy"] == 0.1
    (project / "profiles/bad.yaml").write_text("promote:\n  nope: 1\n")
    with pytest.raises(ValueError, match="key 'nope' does not exist"):
        apply_profile(project, "bad")


COMMENTED_PARAMS = """\
# thresholds of the gate; comments must survive a profile run
promote:
  candidate: sft-scale   # the arm that is registered
  artifact: vlm
  stage: prod
  rules:
    min_accuracy: 0.95     # strict on purpose
    format_floor: 0.9
    tracked_metrics: [accuracy]
    max_regression: 0.0
    require_significant: true
    alpha: 0.05
    n_bootstrap: 500
    seed: 0
"""


def _smoke_profile(project: Path) -> None:
    (project / "profiles").mkdir(exist_ok=True)
    (project / "profiles/smoke.yaml").write_text("promote:\n  rules:\n    min_accuracy: 0.1\n    n_bootstrap: 100\n")


def test_profile_values_hold_inside_the_block_and_params_bytes_come_back(project: Path) -> None:
    from flows.profiles import profile_applied

    _smoke_profile(project)
    params = project / "params.yaml"
    params.write_text(COMMENTED_PARAMS)
    original = params.read_bytes()
    with profile_applied(project, "smoke") as overlay:
        inside = params.read_text()
        assert overlay == {"promote": {"rules": {"min_accuracy": 0.1, "n_bootstrap": 100}}}
        assert yaml.safe_load(inside)["promote"]["rules"]["min_accuracy"] == 0.1
        assert "# strict on purpose" in inside and "# thresholds of the gate" in inside, "comments kept during the run"
    assert params.read_bytes() == original
    with pytest.raises(RuntimeError, match="stage failed"), profile_applied(project, "smoke"):
        raise RuntimeError("stage failed")
    assert params.read_bytes() == original, "a failed run puts params.yaml back too"
    assert not (project / ".scalevlm/profile/state.json").exists()


def test_project_params_keep_every_comment_and_get_the_old_merge_values(project_root: Path) -> None:
    """The round-trip edit gives the values the old safe_load/merge/safe_dump gave, and keeps the file's text."""
    from flows.profiles import _overlaid, load_profile, merge_profile

    text = (project_root / "params.yaml").read_text()
    assert _overlaid(text, {}, "none") == text, "params.yaml round-trips byte for byte"
    for profile in ("smoke", "digits"):
        overlay = load_profile(project_root, profile)
        merged = yaml.safe_load(text)
        merge_profile(merged, overlay, profile)
        applied = _overlaid(text, overlay, profile)
        assert yaml.safe_load(applied) == merged
        comments = [line.split("#", 1)[1] for line in text.splitlines() if "#" in line]
        assert all(comment in applied for comment in comments)


def _hold_profile(project: Path, then: str) -> subprocess.Popen:
    """Another process inside `profile_applied(smoke)`: it says `in` and then `then` ('sleep' or 'die')."""
    code = ("import os, sys, time; from pathlib import Path; from flows.profiles import profile_applied\n"
            f"with profile_applied(Path({str(project)!r}), 'smoke'):\n"
            "    print('in', flush=True)\n"
            f"    os.kill(os.getpid(), 9) if {then!r} == 'die' else time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert "in" in iter(lambda: proc.stdout.readline().strip(), ""), "the other process entered the block"
    return proc


def test_a_killed_profile_run_is_undone_by_the_next_run_and_a_live_one_blocks(project: Path) -> None:
    from flows.profiles import profile_applied

    _smoke_profile(project)
    params = project / "params.yaml"
    params.write_text(COMMENTED_PARAMS)
    original = params.read_bytes()
    live = _hold_profile(project, "sleep")
    try:
        for profile in ("smoke", "default"):
            with pytest.raises(ValueError, match=r"profile run in progress \(pid"), profile_applied(project, profile):
                pass
    finally:
        live.kill()
        live.wait()
    assert params.read_bytes() != original, "SIGKILL: no chance to put params.yaml back"
    with profile_applied(project, "default"):
        assert params.read_bytes() == original, "the next run restores it before anything reads it"

    _hold_profile(project, "die").wait()
    params.write_text(params.read_text() + "# edited after the crash\n")
    with (pytest.raises(ValueError, match=r"edited since.*\.scalevlm/profile/params\.yaml"),
          profile_applied(project, "default")):
        pass
    assert (project / ".scalevlm/profile/params.yaml").read_bytes() == original


@pytest.mark.prefect
def test_a_profile_run_of_the_flow_leaves_params_yaml_as_it_was(project: Path, harness: None) -> None:
    from flows import dvc_cli
    from flows.pipeline import pipeline

    _smoke_profile(project)
    params = project / "params.yaml"
    params.write_text(COMMENTED_PARAMS)
    original = params.read_bytes()
    results = pipeline(root=str(project), profile="smoke")
    assert [(r["stage"], r["ran"]) for r in results] == [("make_a", True), ("summarise", True), ("promote", True)]
    assert params.read_bytes() == original
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert lock["stages"]["promote"]["params"]["params.yaml"]["promote"]["rules"]["min_accuracy"] == 0.1
    assert dvc_cli.changes(project, "promote"), "the outputs are the profile's: stale against the user's params"
