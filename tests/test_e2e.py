"""End to end: `dvc repro` of the whole pipeline on the smoke profile in a copy of the project, then two
`dvc exp run -S` experiments (two SCALe w_end values; only the SCALe-SFT stage, to keep CI short) compared with
`dvc metrics diff` and `dvc plots diff`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import copy_trained

from scalevlm.facts import ARMS

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def dvc(root: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.mark.timeout(1500)  # the whole smoke pipeline (the session fixture), then two experiments
def test_smoke_repro_then_experiments(smoke_trained: tuple[Path, str], tmp_path: Path) -> None:
    root, out = copy_trained(smoke_trained[0], tmp_path / "project"), smoke_trained[1]
    for stage in ("curate_dataset", "validate_segments", "prepare_model", "train_sft@scale", "train_grpo@vanilla",
                  "evaluate@grpo-scale", "compare", "promote"):
        assert f"Running stage '{stage}'" in out
    compare = json.loads((root / "reports/compare/metrics.json").read_text())
    assert sorted(compare["arms"]) == sorted(ARMS) and compare["n"] > 0
    assert (root / "reports/compare/table.md").read_text().count("|") > 10
    decision = json.loads((root / "reports/promote/decision.json").read_text())
    assert decision["rule"] == "best_passing" and decision["candidate"] in ARMS and decision["reasons"]
    assert sorted(decision["considered"]) == sorted(ARMS)
    assert (root / "models/promote/config.json").is_file()  # the chosen model, copied for the registry

    again = dvc(root, "repro")
    assert "Running stage 'train_sft@scale'" not in again and "didn't change, skipping" in again
    for name, w_end in (("wend0", "0.0"), ("wend5", "0.5")):
        dvc(root, "exp", "run", "-n", name, "-S", f"train_sft.scale.w_end={w_end}", "train_sft@scale")
    shown = json.loads(dvc(root, "exp", "show", "--json"))
    assert {"wend0", "wend5"} <= {e.get("name") for entry in shown for exp in entry.get("experiments") or []
                                  for e in exp["revs"]}
    diff = json.loads(dvc(root, "metrics", "diff", "wend0", "wend5", "--json"))
    assert any(path.startswith("reports/train_sft/scale") for path in diff)
    dvc(root, "plots", "diff", "wend0", "wend5", "-o", str(tmp_path / "plots"))
    html = (tmp_path / "plots" / "index.html").read_text()
    assert "sft_loss_think" in html and "grpo_heldout_accuracy" in html  # dvc.yaml's overlays of both arms
    assert "total_flos" not in html and "epoch.tsv" not in html  # bookkeeping logs are not curves
