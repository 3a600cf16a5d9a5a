"""Shared fixtures. The offline/telemetry environment is set before any test imports a library."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `stages` and `flows` are top-level packages of the project

from scalevlm.env import set_offline_env  # noqa: E402

set_offline_env()
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


def copy_project(dest: Path) -> Path:
    """The working tree as git sees it (tracked and untracked, minus ignored files) in a fresh git repo."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    for rel in files:
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "ci@example.com"],
                ["git", "config", "user.name", "ci"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
    return dest


def dvc_env() -> dict[str, str]:
    """The environment a `dvc` subprocess needs: dvc.yaml's `python` is this interpreter."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture(scope="session")
def smoke_trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The project trained once for the session: the smoke profile, every stage (`dvc repro`), committed. The
    gate's floors are relaxed (min_accuracy and format_floor 0) so that its 12-step models promote. Returns
    (project, the output of `dvc repro`); tests that change it work on `copy_trained(...)`."""
    import yaml

    from flows.profiles import apply_profile

    root = copy_project(tmp_path_factory.mktemp("smoke") / "project")
    apply_profile(root, "smoke")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["promote"]["rules"].update(min_accuracy=0.0, format_floor=0.0)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    done = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=root, env=dvc_env(), capture_output=True,
                          text=True, timeout=1200)
    assert done.returncode == 0, f"dvc repro failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", "smoke run"]):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    return root, done.stdout


def copy_trained(src: Path, dest: Path) -> Path:
    """An independent copy of a trained project: work tree, git history and DVC cache (not DVC's tmp state)."""
    shutil.copytree(src, dest, symlinks=True,
                    ignore=lambda folder, names: ["tmp"] if Path(folder).name == ".dvc" else [])
    return dest
