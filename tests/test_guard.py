"""One writer per stage output, no orphans, atomic outputs (scalevlm.guard), tested with real processes and DVC."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from scalevlm.guard import StageBusyError, StageLock, atomic_dir, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}/src{os.pathsep}{ROOT}"}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(predicate, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


HOLDER = "import sys, time; from pathlib import Path; from scalevlm.guard import StageLock; " \
         "StageLock(Path(sys.argv[1]), 'demo').acquire(); print('held', flush=True); time.sleep(600)"


def test_a_live_owner_blocks_a_second_run_and_a_killed_owner_does_not(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StageBusyError, match=rf"stage demo is already running \(pid {holder.pid}:"):
            StageLock(tmp_path, "demo").acquire()
        holder.send_signal(signal.SIGKILL)  # no cleanup runs: the lock file keeps the dead owner's pid
        holder.wait()
        lock = StageLock(tmp_path, "demo").acquire()  # stale: the kernel released the dead owner's flock
        assert f"pid {os.getpid()}" in lock.path.read_text()
        lock.release()
        assert lock.path.read_text() == ""
    finally:
        holder.kill()


def test_a_stage_refuses_to_run_while_another_process_owns_its_outputs(tmp_path: Path) -> None:
    lock = StageLock(tmp_path, "compare").acquire()
    try:
        proc = subprocess.run([sys.executable, "-m", "stages.compare", "--params", str(ROOT / "params.yaml"),
                               "--root", str(tmp_path)], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=120)
    finally:
        lock.release()
    assert proc.returncode == 2, proc.stderr
    assert f"stage compare is already running (pid {os.getpid()}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "reports").exists(), "the refused stage wrote nothing"


STAGE = textwrap.dedent("""
    import os, subprocess, sys, time
    from pathlib import Path
    from scalevlm.config import config_dataclass
    from scalevlm.runtime import stage_main

    @config_dataclass
    class Config:
        seconds: float

    def run(cfg, root):
        child = subprocess.Popen(["sleep", "600"])  # a child of the stage, like a data-loader worker
        Path(root, "pids.txt").write_text(f"{os.getpid()} {child.pid}")
        time.sleep(cfg.seconds)
        child.kill()
        Path(root, "out").write_text("done")
        return {"ok": True}

    raise SystemExit(stage_main("slow", Config, run))
""")


def _slow_project(tmp_path: Path, seconds: float) -> Path:
    (tmp_path / "stage.py").write_text(STAGE)
    (tmp_path / "params.yaml").write_text(f"slow:\n  seconds: {seconds}\n")
    (tmp_path / "dvc.yaml").write_text(f"stages:\n  slow:\n    cmd: {sys.executable} stage.py\n    params: [slow]\n"
                                       "    outs: [out]\n")
    return tmp_path


def _launch(kind: str, project: Path) -> subprocess.Popen:
    """The process that starts the stage: `dvc repro`, or a parent that runs it behind a `sh -c` wrapper."""
    if kind == "dvc":
        for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
            subprocess.run(cmd, cwd=project, check=True, env=ENV)
        cmd = [sys.executable, "-m", "dvc", "repro", "slow"]
    else:  # `; true` keeps sh alive between the parent and the stage (no exec)
        cmd = [sys.executable, "-c",
               f"import subprocess; subprocess.run(['sh', '-c', '{sys.executable} stage.py; true'])"]
    return subprocess.Popen(cmd, cwd=project, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dvc", "sh-wrapper"])
def test_killing_the_launcher_stops_the_stage_and_its_children(tmp_path: Path, kind: str) -> None:
    project = _slow_project(tmp_path, seconds=600)
    launcher = _launch(kind, project)
    pids = project / "pids.txt"
    try:
        assert _wait(pids.exists, 120), "the stage never started"
        stage_pid, child_pid = map(int, pids.read_text().split())
        launcher.send_signal(signal.SIGKILL)  # what `kill -9` of `dvc repro` does: no chance to clean up
        launcher.wait()
        assert _wait(lambda: not _alive(stage_pid) and not _alive(child_pid), 15), "orphans kept running"
    finally:
        os.killpg(launcher.pid, signal.SIGKILL)
    # the next run owns the outputs again (the dead stage's lock is stale) and completes
    (project / "params.yaml").write_text("slow:\n  seconds: 0\n")
    proc = subprocess.run([sys.executable, "stage.py"], cwd=project, env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (project / "out").read_text() == "done"


def test_atomic_dir_keeps_the_old_output_until_the_new_one_is_complete(tmp_path: Path) -> None:
    out = tmp_path / "data" / "stage"
    out.mkdir(parents=True)
    (out / "records.jsonl").write_text("old\n")
    with pytest.raises(RuntimeError, match="boom"), atomic_dir(out) as tmp:
        (tmp / "records.jsonl").write_text("half")
        raise RuntimeError("boom")
    assert (out / "records.jsonl").read_text() == "old\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["stage"], "no temporary folder left behind"
    with atomic_dir(out) as tmp:
        (tmp / "records.jsonl").write_text("new\n")
        assert (out / "records.jsonl").read_text() == "old\n"
    assert sorted(p.name for p in out.iterdir()) == ["records.jsonl"]
    assert (out / "records.jsonl").read_text() == "new\n"


def test_atomic_dir_removes_leftovers_of_killed_runs(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = tmp_path / f".stage.new-{dead.pid}"
    (leftover / "x").mkdir(parents=True)
    with atomic_dir(tmp_path / "stage") as tmp:
        (tmp / "a").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage"]


def test_atomic_write_text_never_leaves_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text("{}\n")
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(path, '{"a": "\ud800"}')  # a lone surrogate cannot be encoded: the write fails midway
    assert path.read_text() == "{}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


@pytest.mark.parametrize(("cap", "asked", "expected"), [(None, 2, 2), ("1", 2, 1), ("4", 2, 2), ("", 2, 2)])
def test_torch_threads_are_capped_by_omp_num_threads(monkeypatch: pytest.MonkeyPatch, cap: str | None, asked: int,
                                                     expected: int) -> None:
    import torch

    from scalevlm.runtime import set_torch_threads

    before = torch.get_num_threads()
    if cap is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", cap)
    try:
        set_torch_threads(asked)
        assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)
