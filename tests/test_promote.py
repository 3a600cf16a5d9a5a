"""The promotion decision (pure) and the gate against a real GTO registry in a temporary git repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dvc.repo  # noqa: F401  (DVC binds its log handlers to the streams at first import: not under capsys)
import pytest

from scalevlm.core.promotion import ArmResult, Rules, decide
from scalevlm.runtime import write_json
from stages import promote

RULES = Rules(min_accuracy=0.5, format_floor=0.9, tracked_metrics=("accuracy", "format_compliance"),
              max_regression=0.02, require_significant=True, alpha=0.05, n_bootstrap=2000, seed=0)


def arm(name: str, accuracy: float, fmt: float = 1.0, n: int = 200) -> ArmResult:
    k = round(accuracy * n)
    return ArmResult(name, {"accuracy": accuracy, "format_compliance": fmt},
                     {f"s{i:03d}": float(i < k) for i in range(n)})


@pytest.mark.parametrize(
    ("cand", "champ", "promote_it", "failing"),
    [
        (arm("c", 0.9), None, True, []),
        (arm("c", 0.4), None, False, ["min_accuracy"]),
        (arm("c", 0.9, fmt=0.5), None, False, ["format_floor"]),
        (arm("c", 0.9), arm("p", 0.7), True, []),
        (arm("c", 0.71), arm("p", 0.7), False, ["significant_gain"]),
        (arm("c", 0.6), arm("p", 0.7), False, ["no_regression[accuracy]", "significant_gain"]),
        (arm("c", 0.9, fmt=0.95), arm("p", 0.7, fmt=1.0), False, ["no_regression[format_compliance]"]),
    ],
    ids=["bootstrap_first", "below_floor", "format_floor", "better", "not_significant", "worse", "format_regression"],
)
def test_decide(cand: ArmResult, champ: ArmResult | None, promote_it: bool, failing: list[str]) -> None:
    d = decide(cand, champ, RULES)
    assert d.promote is promote_it
    assert [c.rule for c in d.checks if not c.passed] == failing
    assert all(any(r.startswith(f) for r in d.reasons) for f in failing)


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary DVC remote (a local folder) that the gate pushes to."""
    monkeypatch.setenv("SCALEVLM_DVC_REMOTE", str(tmp_path / "remote"))
    return tmp_path / "remote"


@pytest.fixture
def repo(tmp_path: Path, remote: Path) -> Path:
    """A git + DVC repository whose registry artifact (a DVC-tracked model folder) is committed."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.email", "ci@example.com")
    git(root, "config", "user.name", "ci")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True,
                   env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    (root / "dvc.yaml").write_text("artifacts:\n  vlm:\n    path: models/promote\n    type: model\n")
    (root / "models/train_sft/scale").mkdir(parents=True)
    (root / "models/train_sft/scale/model.safetensors").write_bytes(b"weights v1")
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "models/train_sft/scale"], cwd=root, check=True,
                   env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    git(root, "add", "-A")
    git(root, "commit", "-qm", "model")
    return root


def remote_files(remote: Path) -> set[str]:
    return {p.name for p in remote.rglob("*") if p.is_file()} if remote.exists() else set()


def evaluated(root: Path, accuracy: float, n: int = 200, arm_name: str = "sft-scale", fmt: float = 1.0) -> None:
    folder = root / "reports/evaluate" / arm_name
    write_json(folder / "metrics.json", {"accuracy": accuracy, "format_compliance": fmt, "n": n})
    k = round(accuracy * n)
    rows = [json.dumps({"id": f"s{i:03d}", "correct": i < k}) for i in range(n)]
    (folder / "predictions.jsonl").write_text("\n".join(rows) + "\n")


CFG = promote.Config(candidate="sft-scale", artifact="vlm", stage="prod", rules=RULES)


def track_promoted(repo: Path) -> None:
    """What `dvc repro` does with promote's output: the chosen model becomes a DVC-tracked (cached) folder."""
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "models/promote"], cwd=repo, check=True,
                   env={**os.environ, "DVC_NO_ANALYTICS": "1"})


def decide_commit_gate(repo: Path, accuracy: float, drop_cache: bool = False) -> tuple[dict, int]:
    evaluated(repo, accuracy)
    promote.run(CFG, repo)
    assert (repo / "models/promote/model.safetensors").read_bytes() == b"weights v1"  # the candidate's model, copied
    track_promoted(repo)
    if drop_cache:
        import shutil

        shutil.rmtree(repo / ".dvc" / "cache")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"evaluated {accuracy}")
    return json.loads((repo / "reports/promote/decision.json").read_text()), promote.gate(CFG, repo)


def test_gate_bootstraps_promotes_better_and_refuses_worse(repo: Path, remote: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    decision, code = decide_commit_gate(repo, 0.7)
    assert code == 0 and decision["champion"] is None
    assert "vlm#prod#1" in git(repo, "tag").split()
    assert len(remote_files(remote)) == 2, "the gate pushed the model (its directory manifest and its one file)"

    decision, code = decide_commit_gate(repo, 0.9)
    assert code == 0 and decision["champion"] == "sft-scale" and decision["champion_version"] == "v0.0.1"
    assert {"vlm@v0.0.2", "vlm#prod#2"} <= set(git(repo, "tag").split())

    tags = git(repo, "tag")
    decision, code = decide_commit_gate(repo, 0.91)  # better, but not significantly
    assert code == 1 and not decision["promote"]
    assert "significant_gain" in capsys.readouterr().out
    decision, code = decide_commit_gate(repo, 0.5)  # worse
    assert code == 1 and any(r.startswith("no_regression[accuracy]") for r in decision["reasons"])
    assert git(repo, "tag") == tags, "a refused candidate changes nothing in the registry"


def test_gate_refuses_uncommitted_reports_and_missing_decision(repo: Path, capsys: pytest.CaptureFixture) -> None:
    assert promote.gate(CFG, repo) == 2
    evaluated(repo, 0.8)
    promote.run(CFG, repo)
    assert promote.gate(CFG, repo) == 2
    assert "not committed" in capsys.readouterr().err
    assert git(repo, "tag") == ""


def test_missing_evaluation_names_the_stage_to_run(repo: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"dvc repro evaluate@sft-scale"):
        promote.run(CFG, repo)


def test_gate_does_not_tag_a_model_it_cannot_push(repo: Path, remote: Path, capsys: pytest.CaptureFixture) -> None:
    """A model missing from the local DVC cache (this machine neither trained nor pulled it) cannot be pushed:
    the gate names the remote and the missing output, and creates no registry version."""
    decision, code = decide_commit_gate(repo, 0.7, drop_cache=True)
    assert decision["promote"] and code == 2
    err = capsys.readouterr().err
    assert str(remote) in err and "models/promote" in err and "dvc pull" in err
    assert git(repo, "tag") == "" and not remote_files(remote)


def test_gate_no_push_tags_without_pushing(repo: Path, remote: Path, capsys: pytest.CaptureFixture) -> None:
    evaluated(repo, 0.7)
    promote.run(CFG, repo)
    track_promoted(repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "evaluated")
    assert promote.gate(CFG, repo, push=False) == 0
    assert "NOT pushed" in capsys.readouterr().out
    assert "vlm#prod#1" in git(repo, "tag").split() and not remote_files(remote)


def test_the_registry_artifact_must_be_the_promoted_model(repo: Path) -> None:
    """An artifact declared at an arm's own folder would tag weights the rule may not have chosen."""
    from scalevlm.config import ConfigError

    evaluated(repo, 0.8)
    (repo / "dvc.yaml").write_text("artifacts:\n  vlm:\n    path: models/train_sft/scale\n    type: model\n")
    with pytest.raises(ConfigError,
                       match=r"declared at models/train_sft/scale.*copies the chosen model to models/promote"):
        promote.run(CFG, repo)


def test_best_passing_chooses_the_most_accurate_arm_that_passes(repo: Path) -> None:
    """The rule judges every arm by the gate's rules: the most accurate arm fails the format floor, so the next one
    is chosen and its model is copied; when no arm passes, the most accurate is reported and nothing promotes."""
    import dataclasses

    for name in ("sft-vanilla", "grpo-vanilla", "grpo-scale"):
        folder = repo / "models" / ("train_" + name.replace("-", "/"))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.safetensors").write_bytes(name.encode())
    evaluated(repo, 0.95, arm_name="sft-scale", fmt=0.8)  # most accurate, below the 0.9 format floor
    evaluated(repo, 0.9, arm_name="grpo-vanilla")
    evaluated(repo, 0.9, arm_name="grpo-scale")  # tied with grpo-vanilla: the order of facts.ARMS decides
    evaluated(repo, 0.7, arm_name="sft-vanilla")
    rule = dataclasses.replace(CFG, candidate="best_passing")
    summary = promote.run(rule, repo)
    decision = json.loads((repo / "reports/promote/decision.json").read_text())
    assert summary["promote"] and decision["candidate"] == "grpo-vanilla" and decision["rule"] == "best_passing"
    assert not decision["considered"]["sft-scale"]["passes"] and len(decision["considered"]) == 4
    assert (repo / "models/promote/model.safetensors").read_bytes() == b"grpo-vanilla"
    for name in ("sft-vanilla", "grpo-vanilla", "grpo-scale"):
        evaluated(repo, 0.3, arm_name=name)
    summary = promote.run(rule, repo)
    assert not summary["promote"] and summary["candidate"] == "sft-scale"
    assert any(r.startswith("format_floor") for r in summary["reasons"])


def test_a_stage_with_a_missing_input_says_which_stage_makes_it(tmp_path: Path) -> None:
    for argv, needed in ((["stages.train_sft", "--method", "scale"], "dvc repro prepare_model"),
                         (["stages.evaluate", "--arm", "sft-vanilla"], "train the arm first")):
        done = subprocess.run([sys.executable, "-m", *argv, "--root", str(tmp_path)], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[1], timeout=120)
        assert done.returncode == 2 and needed in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
