"""Provenance saved beside every model: the resolved stage config, the git revision and library versions.

`write_provenance(out_dir, stage, cfg)` writes `<out_dir>/provenance.json`; every stage that writes a model
calls it, so any checkpoint can be traced to the code and the parameters that made it.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from scalevlm.config import to_dict
from scalevlm.runtime import write_json

PACKAGES = (
    "scalevlm", "torch", "transformers", "trl", "accelerate", "peft", "datasets", "tokenizers", "dvclive", "numpy",
    "pillow",
)
FILENAME = "provenance.json"


def git_revision(root: Path) -> dict[str, Any]:
    """{'commit': sha or None, 'dirty': bool or None} of the repository holding `root` (read-only git calls)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def library_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance(stage: str, cfg: Any, root: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The provenance record of a stage run (`cfg` is the stage's typed Config dataclass or a plain dict)."""
    return {
        "stage": stage,
        "config": to_dict(cfg),
        "git": git_revision(root),
        "versions": library_versions(),
        "platform": {"system": platform.system(), "machine": platform.machine(),
                     "executable": Path(sys.executable).name},
        **(extra or {}),
    }


def write_provenance(out_dir: Path, stage: str, cfg: Any, root: Path, extra: dict[str, Any] | None = None) -> Path:
    path = Path(out_dir) / FILENAME
    write_json(path, provenance(stage, cfg, root, extra))
    return path
