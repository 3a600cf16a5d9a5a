"""A stage killed while writing leaves its previous output whole: nothing deleted first, nothing half written."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}/src{os.pathsep}{ROOT}"}


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _params(tmp_path: Path, n: int) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["curate_dataset"]["sources"]["synthetic"]["n"] = n
    path = tmp_path / f"params-{n}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _curate(tmp_path: Path, params: Path, **kwargs) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "stages.curate_dataset", "--params", str(params), "--root", str(tmp_path)]
    return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            **kwargs)


@pytest.mark.slow
def test_curation_killed_while_writing_keeps_the_previous_output_whole(tmp_path: Path) -> None:
    first = _curate(tmp_path, _params(tmp_path, 200))
    assert first.wait(timeout=300) == 0, first.stderr.read()
    out = tmp_path / "data" / "curate_dataset"
    before = _digest(out)
    assert "records.jsonl" in before and len(before) > 100

    second = _curate(tmp_path, _params(tmp_path, 6000))  # a larger run: writing its images takes a while
    try:
        deadline = time.monotonic() + 300
        staging = []
        while not staging and second.poll() is None and time.monotonic() < deadline:
            staging = list(out.parent.glob(".curate_dataset.new-*"))
            time.sleep(0.05)
        assert staging, "the second run never started writing"
        time.sleep(0.3)  # well inside the write phase
        second.send_signal(signal.SIGKILL)
        second.wait()
    finally:
        second.kill()
    assert _digest(out) == before, "the killed run changed the previous output"

    third = _curate(tmp_path, _params(tmp_path, 200))  # the next run cleans the dead run's staging folder
    assert third.wait(timeout=300) == 0, third.stderr.read()
    assert _digest(out) == before  # deterministic: the same params give the same bytes
    assert sorted(p.name for p in out.parent.iterdir()) == ["curate_dataset"]
