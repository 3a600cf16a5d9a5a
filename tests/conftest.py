"""Shared fixtures. The offline/telemetry environment is set before any test imports a library."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `stages` and `flows` are top-level packages of the project

from scalevlm.env import set_offline_env  # noqa: E402

set_offline_env()
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
# Parallel workers (`pytest -n N`, pytest-xdist) share the cores: each gets its share of torch threads, here and in
# every subprocess it starts (`scalevlm.runtime.set_torch_threads` caps a stage's torch_threads at OMP_NUM_THREADS).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT", "").isdigit():
    share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(share)

# The files whose tests use the session's trained project (`smoke_trained`): one unit of work for the parallel
# workers, so the project is trained once. A test elsewhere that uses it is refused at collection (below).
SHARED_PROJECT_FILES = ("test_e2e.py", "test_remote.py")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile` with one change: the files of SHARED_PROJECT_FILES are one unit, not two."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedProjectFileScheduling(LoadScopeScheduling):
        # private: pytest-xdist 3.8 `_split_scope` is the scope rule its own LoadFileScheduling overrides; the public
        # `xdist_group` mark cannot serve under pytest 9 (xdist renames `item._nodeid`, pytest 9 reads `item._id`)
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return "smoke_trained" if Path(file).name in SHARED_PROJECT_FILES else file

    return SharedProjectFileScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow files first (with `--no-loadscope-reorder` the workers take units in this order), the shared project's
    first of all, so the long units start early and the short ones fill the gaps."""
    strays = [item.nodeid for item in items
              if "smoke_trained" in item.fixturenames and item.path.name not in SHARED_PROJECT_FILES]
    if strays:
        raise pytest.UsageError(f"{strays[0]} uses smoke_trained: add its file to conftest.SHARED_PROJECT_FILES")

    def weight(item: pytest.Item) -> int:
        if item.path.name in SHARED_PROJECT_FILES:
            return 0
        return 1 if any(item.iter_markers("slow")) or any(item.iter_markers("prefect")) else 2

    files: dict[Path, int] = {}
    for item in items:
        files[item.path] = min(files.get(item.path, 2), weight(item))
    items.sort(key=lambda item: files[item.path])


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
