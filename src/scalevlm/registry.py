"""The model registry: GTO (DVC's registry) on git tags.

Artifacts are declared under `artifacts:` in dvc.yaml; a version is a `NAME@vX.Y.Z` tag on the commit whose
files made it, the `prod` stage a `NAME#prod#N` tag. The champion's evaluation snapshot is read back from
that commit (`reports/promote/candidate.json` as it was committed), so comparisons need no other store.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SNAPSHOT = "reports/promote/candidate.json"


class RegistryError(RuntimeError):
    """The registry or the git repository is not in a state the operation needs."""


@dataclass(frozen=True)
class Champion:
    version: str
    commit: str
    snapshot: dict[str, Any]


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise RegistryError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def champion(root: Path, artifact: str, stage: str = "prod") -> Champion | None:
    """The version currently in `stage`, with its snapshot; None when nothing was ever promoted."""
    from gto.api import find_versions_in_stage
    from gto.exceptions import ArtifactNotFound

    try:
        found = find_versions_in_stage(str(root), artifact, stage)
    except ArtifactNotFound:  # no tag mentions the artifact yet
        return None
    if not found:
        return None
    version = found[0] if isinstance(found, list) else found
    commit = version.commit_hexsha
    try:
        snapshot = json.loads(_git(root, "show", f"{commit}:{SNAPSHOT}"))
    except RegistryError as e:
        raise RegistryError(f"champion {artifact}@{version.version} (commit {commit[:8]}) has no {SNAPSHOT}: {e}") from e
    return Champion(version=version.version, commit=commit, snapshot=snapshot)


def register_and_assign(root: Path, artifact: str, stage: str, message: str) -> str:
    """Register HEAD as the next version of `artifact` and assign it to `stage`; returns the version."""
    from gto.api import assign, register

    dirty = _git(root, "status", "--porcelain", "--", SNAPSHOT, "reports/promote/decision.json").strip()
    if dirty:
        raise RegistryError(
            f"the promotion reports are not committed ({dirty.splitlines()}): commit dvc.lock and reports/ first, "
            "so the registered commit holds the evaluated model"
        )
    tag = register(str(root), artifact, "HEAD", message=message, bump_minor=False)
    version = tag.version if hasattr(tag, "version") else str(tag)
    assign(str(root), artifact, stage, version=version, message=message, skip_registration=True)
    return version
