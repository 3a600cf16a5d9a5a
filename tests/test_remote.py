"""From a promoted tag to predictions on another clone, with a real local DVC remote (a temporary folder).

The session's smoke-trained project (`conftest.smoke_trained`, every arm) is copied, its decision made for the
named arm sft-scale, committed and promoted by the gate, which pushes the model and its inputs. Then a fresh clone with
an empty DVC cache fetches `prod` with the documented command and `predict` reproduces the evaluation's completions
exactly; a version whose data was never pushed fails to fetch with a message naming the remote and the version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import copy_trained

from scalevlm.records import read_jsonl

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
ARTIFACT = "scalevlm-vlm"


def sh(cwd: Path, *cmd: str, env: dict[str, str] | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    result = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if ok:
        assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def python(cwd: Path, *args: str, env: dict[str, str] | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    return sh(cwd, sys.executable, "-m", *args, env=env, ok=ok)


@pytest.fixture(scope="module")
def promoted(smoke_trained: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The session's smoke-trained project (every arm, the gate's floors relaxed), with `promote.candidate` naming
    sft-scale, decided again, committed and promoted by the gate (`prod` = v0.0.1), and the remote it pushed to."""
    base = tmp_path_factory.mktemp("remote_e2e")
    root = copy_trained(smoke_trained[0], base / "trained")
    remote = base / "remote"
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["promote"]["artifact"] == ARTIFACT
    params["promote"]["candidate"] = "sft-scale"  # a named arm: the tests below compare with its evaluation
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    python(root, "dvc", "repro", "promote")  # nothing but the decision: every arm is already trained
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "promote sft-scale")
    gate = python(root, "stages.promote", "--gate", env={"SCALEVLM_DVC_REMOTE": str(remote)})
    assert f"promoted sft-scale as {ARTIFACT}@v0.0.1 -> prod" in gate.stdout
    assert f"pushed promote and its inputs to remote 'scalevlm-env' ({remote})" in gate.stdout
    return {"root": root, "remote": remote, "base": base}


def fresh_clone(promoted: dict[str, Path], name: str) -> Path:
    clone = promoted["base"] / name
    sh(promoted["base"], "git", "clone", "-q", str(promoted["root"]), str(clone))
    assert not (clone / ".dvc" / "cache").exists() and not (clone / "models/train_sft/scale").exists()
    return clone


@pytest.mark.timeout(900)  # its module fixture trains and promotes the smoke profile
def test_fresh_clone_fetches_prod_and_predict_reproduces_the_evaluation(promoted: dict[str, Path]) -> None:
    clone = fresh_clone(promoted, "clone")
    env = {"SCALEVLM_DVC_REMOTE": str(promoted["remote"])}
    listed = python(clone, "scalevlm.registry", "list").stdout
    assert listed.startswith(f"{ARTIFACT}@v0.0.1  commit ") and listed.rstrip().endswith("stages: prod")
    shown = python(clone, "scalevlm.cli", "registry", "show", "prod").stdout  # the `scalevlm` command's module
    assert shown.startswith(f"{ARTIFACT}@v0.0.1  commit ") and "\n  arm sft-scale: accuracy " in shown
    fetched = python(clone, "scalevlm.registry", "fetch", "prod", env=env)
    folder = clone / "models/registry" / f"{ARTIFACT}@v0.0.1"
    assert f"prod = {ARTIFACT}@v0.0.1" in fetched.stdout and (folder / "config.json").is_file()
    assert json.loads((folder / ".fetched.json").read_text())["version"] == "v0.0.1"
    assert sh(clone, "git", "status", "--porcelain").stdout == "", "fetched weights stay out of git"

    # the test split and its images come from the same remote (the gate pushed the model's inputs); CI's way
    sh(clone, "dvc", "remote", "add", "--local", "-d", "team", str(promoted["remote"]))
    sh(clone, "dvc", "pull", "-q", "validate_segments", "curate_dataset")
    evaluated = [row for _, row in read_jsonl(clone / "reports/evaluate/sft-scale/predictions.jsonl")]
    by_id = {r["id"]: r for _, r in read_jsonl(clone / "data/validate_segments/test.jsonl")}
    inputs = clone / "inputs.jsonl"
    inputs.write_text("".join(json.dumps({"id": e["id"], "images": by_id[e["id"]]["images"],
                                          "question": by_id[e["id"]]["question"]})
                              + "\n" for e in evaluated))
    params = yaml.safe_load((clone / "params.yaml").read_text())["evaluate"]
    python(clone, "scalevlm.predict", "--model", "prod", "--input", "inputs.jsonl", "--image-root", ".", "--out",
           "preds.jsonl",
           "--batch-size", str(params["batch_size"]), "--max-new-tokens", str(params["max_new_tokens"]), "--dtype",
           params["dtype"],
           env=env)
    preds = [row for _, row in read_jsonl(clone / "preds.jsonl")]
    assert len(preds) == len(evaluated) >= 4
    assert [p["completion"] for p in preds] == [e["completion"] for e in evaluated]
    assert [int(p["format_ok"]) for p in preds] == [e["format_ok"] for e in evaluated]

    first = by_id[evaluated[0]["id"]]
    one = python(clone, "scalevlm.predict", "--model", "prod", "--image", first["images"][0], "--question",
                 first["question"],
                 "--max-new-tokens", str(params["max_new_tokens"]), env=env)
    assert f"model:  models/registry/{ARTIFACT}@v0.0.1" in one.stdout and "segment rule: " in one.stdout


def test_a_fetched_model_edited_afterwards_is_refused_and_force_fetches_it_again(promoted: dict[str, Path]) -> None:
    clone = fresh_clone(promoted, "clone_tamper")
    env = {"SCALEVLM_DVC_REMOTE": str(promoted["remote"])}
    python(clone, "scalevlm.registry", "fetch", "prod", env=env)
    folder = clone / "models/registry" / f"{ARTIFACT}@v0.0.1"
    weights = next(folder.glob("*.safetensors"))
    original = weights.read_bytes()
    weights.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))  # one bit of the weights
    from PIL import Image

    Image.new("RGB", (16, 16)).save(clone / "x.png")
    for cmd in (["scalevlm.registry", "fetch", "prod"], ["scalevlm.predict", "--model", "prod", "--image", "x.png",
                                                         "--question", "q"]):
        result = python(clone, *cmd, env=env, ok=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert f"no longer holds {ARTIFACT}@v0.0.1 as registered" in result.stderr and weights.name in result.stderr
    python(clone, "scalevlm.registry", "fetch", "prod", "--force", env=env)
    assert weights.read_bytes() == original
    python(clone, "scalevlm.registry", "fetch", "prod", env=env)  # and now it verifies


def test_fetching_without_a_configured_remote_says_so(promoted: dict[str, Path]) -> None:
    clone = fresh_clone(promoted, "clone_no_remote")
    sh(clone, "dvc", "remote", "remove", "local")  # the project's committed default remote
    result = python(clone, "scalevlm.registry", "fetch", "prod", env={"SCALEVLM_DVC_REMOTE": ""}, ok=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "configures no default DVC remote" in result.stderr and "auto-generated" not in result.stderr


def test_fetching_a_version_that_was_never_pushed_names_the_remote_and_the_version(promoted: dict[str, Path]) -> None:
    root = promoted["root"]
    # v0.0.2: different weights, registered without the gate, so nobody pushed them
    (root / "models/promote/NOTES.md").write_text("retrained elsewhere\n")
    python(root, "dvc", "commit", "-f", "-q", "promote")
    sh(root, "git", "commit", "-qam", "v0.0.2 weights")
    sh(root, "gto", "register", ARTIFACT, "--version", "v0.0.2")
    clone = fresh_clone(promoted, "clone2")
    env = {"SCALEVLM_DVC_REMOTE": str(promoted["remote"])}
    result = python(clone, "scalevlm.registry", "fetch", "v0.0.2", env=env, ok=False)
    assert result.returncode == 2
    assert f"{ARTIFACT}@v0.0.2" in result.stderr and f"remote 'scalevlm-env' ({promoted['remote']})" in result.stderr
    assert "never pushed" in result.stderr and "Traceback" not in result.stderr
    assert not (clone / "models/registry" / f"{ARTIFACT}@v0.0.2").exists()
    assert not (clone / "models/registry" / f"{ARTIFACT}@v0.0.2.partial").exists()

    unknown = python(clone, "scalevlm.registry", "fetch", "v9.9.9", env=env, ok=False)
    assert unknown.returncode == 2 and "registered versions: ['v0.0.1', 'v0.0.2']" in unknown.stderr


@pytest.mark.prefect
def test_scheduled_consumer_flow_evaluates_prod_and_publishes_an_artifact(promoted: dict[str, Path],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The `prod-evaluation` deployment's flow on a clone that has neither the model nor the data."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.testing.utilities import prefect_test_harness

    from flows.consumer import evaluate_registry

    clone = fresh_clone(promoted, "consumer")
    monkeypatch.setenv("SCALEVLM_DVC_REMOTE", str(promoted["remote"]))
    evaluated = json.loads((clone / "reports/evaluate/sft-scale/metrics.json").read_text())
    with prefect_test_harness(server_startup_timeout=90):
        result = evaluate_registry(ref="prod", max_samples=evaluated["n"], root=str(clone))
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["prod-evaluation"])))
    assert result["ref"] == f"{ARTIFACT}@v0.0.1" and result["metrics"]["n"] == evaluated["n"]
    for key in ("accuracy", "format_compliance", "answer_parse_rate"):  # the same model, data and batches as the stage
        assert result["metrics"][key] == evaluated[key] == result["promoted"][key]
    assert len(artifacts) == 1 and (f"| accuracy | {evaluated['accuracy']:.4f} | {evaluated['accuracy']:.4f} "
                                    "|") in artifacts[0].data
