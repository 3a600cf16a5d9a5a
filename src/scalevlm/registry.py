"""The model registry: GTO (DVC's registry) on git tags, and fetching a registered model from the DVC remote.

Artifacts are declared under `artifacts:` in dvc.yaml; a version is a `NAME@vX.Y.Z` tag on the commit whose
files made it, the `prod` stage a `NAME#prod#N` tag. The champion's evaluation snapshot is read back from
that commit (`reports/promote/candidate.json` as it was committed), so comparisons need no other store.

The weights of a version live on the DVC remote (`scalevlm.remote`; the promotion gate pushes them before it
tags). Any clone, or any machine that can read the git repository and the remote, gets them with

    python -m scalevlm.registry fetch prod            # or a version: v0.0.3; --repo <git url or path>

GTO resolves the stage or version to its tag, DVC's artifact download (`dvc artifacts get` without Studio) reads
the artifact's path at that tag from the remote into `models/registry/<artifact>@<version>/` (or `--out`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scalevlm.facts import PROMOTE_CANDIDATE, PROMOTE_DECISION
from scalevlm.runtime import write_json

SNAPSHOT = PROMOTE_CANDIDATE.as_posix()
VERSION = re.compile(r"v\d+\.\d+\.\d+")  # GTO's semantic versions
STAGE_NAME = re.compile(r"[a-z][a-z0-9-]*")  # a GTO stage (prod, staging), as opposed to a folder or a hub id
FETCH_DIR = Path("models") / "registry"  # default home of fetched versions: <artifact>@<version>/
MARKER = ".fetched.json"  # written last: a folder with it holds a complete download of that version


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


def snapshot_at(root: Path, commit: str) -> dict[str, Any]:
    """The evaluation snapshot the gate judged the version at `commit` on (`reports/promote/candidate.json`)."""
    return json.loads(_git(root, "show", f"{commit}:{SNAPSHOT}"))


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
        snapshot = snapshot_at(root, commit)
    except RegistryError as e:
        raise RegistryError(f"champion {artifact}@{version.version} (commit {commit[:8]}) has no {SNAPSHOT}: "
                            f"{e}") from e
    return Champion(version=version.version, commit=commit, snapshot=snapshot)


def check_committed(root: Path) -> None:
    """Refuse uncommitted promotion reports: the registered commit must be the one that was evaluated."""
    dirty = _git(root, "status", "--porcelain", "--", SNAPSHOT, PROMOTE_DECISION.as_posix()).strip()
    if dirty:
        raise RegistryError(
            f"the promotion reports are not committed ({dirty.splitlines()}): commit dvc.lock and reports/ first, "
            "so the registered commit holds the evaluated model"
        )


def artifact_path(root: Path, artifact: str) -> str:
    """The path of `artifact` as declared under `artifacts:` in root/dvc.yaml."""
    declared = (yaml.safe_load((Path(root) / "dvc.yaml").read_text()) or {}).get("artifacts") or {}
    if artifact not in declared:
        raise RegistryError(f"artifact '{artifact}' is not declared under `artifacts:` in {Path(root) / 'dvc.yaml'} "
                            f"(declared: {sorted(declared)})")
    return str(declared[artifact]["path"])


def register_and_assign(root: Path, artifact: str, stage: str, message: str) -> str:
    """Register HEAD as the next version of `artifact` and assign it to `stage`; returns the version."""
    from gto.api import assign, register

    check_committed(root)
    tag = register(str(root), artifact, "HEAD", message=message, bump_minor=False)
    version = tag.version if hasattr(tag, "version") else str(tag)
    assign(str(root), artifact, stage, version=version, message=message, skip_registration=True)
    return version


@dataclass(frozen=True)
class Resolved:
    """A registry reference resolved to one version: `ref` is its git tag (`NAME@vX.Y.Z`)."""

    artifact: str
    version: str
    ref: str
    commit: str
    stage: str | None  # the stage it was asked by, None when asked by version


def default_artifact(root: Path = Path(".")) -> str:
    """The one artifact declared in `root/dvc.yaml` (the name commands use when none is given)."""
    path = Path(root) / "dvc.yaml"
    artifacts = sorted((yaml.safe_load(path.read_text()) or {}).get("artifacts") or {}) if path.is_file() else []
    if len(artifacts) != 1:
        raise RegistryError(f"{path} declares artifacts {artifacts}: name the one you want with --artifact NAME")
    return artifacts[0]


def registered(repo: str, artifact: str) -> list[dict[str, Any]]:
    """Every registered version of `artifact` in `repo` (gto's records: version, commit_hexsha, stages, ...),
    newest first; a RegistryError when there is none or the repository cannot be read."""
    from gto.api import show
    from gto.exceptions import ArtifactNotFound

    try:
        versions = show(repo, artifact)
    except ArtifactNotFound:
        versions = []
    except Exception as e:  # noqa: BLE001 — gto, scmrepo and dulwich raise their own types for a bad repository
        raise RegistryError(f"repository {repo!r} cannot be read as a git repository holding the registry's tags "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if not versions:
        raise RegistryError(f"'{artifact}' has no registered version in {repo}: nothing was promoted yet, or the "
                            "clone lacks the registry's tags (`git fetch --tags`)")
    return sorted(versions, key=lambda v: [int(x) for x in v["version"].lstrip("v").split(".")], reverse=True)


def stages_of(version: dict[str, Any]) -> list[str]:
    return sorted({s["stage"] for s in version.get("stages", [])})


def resolve(repo: str, artifact: str, ref: str) -> Resolved:
    """`prod` (any stage) or `vX.Y.Z` of `artifact` in the git repository `repo` (a path or URL) -> its version."""
    from gto.api import find_versions_in_stage

    if not (VERSION.fullmatch(ref) or STAGE_NAME.fullmatch(ref)):
        raise RegistryError(f"{ref!r} is neither a version (vX.Y.Z) nor a registry stage (lowercase, e.g. prod)")
    versions = registered(repo, artifact)
    if VERSION.fullmatch(ref):
        found = next((v for v in versions if v["version"] == ref), None)
        if found is None:
            known = sorted(v["version"] for v in versions)
            raise RegistryError(f"'{artifact}@{ref}' is not registered in {repo}; registered versions: {known}")
        return Resolved(artifact, ref, f"{artifact}@{ref}", found["commit_hexsha"], None)
    in_stage = find_versions_in_stage(repo, artifact, ref)
    version = (in_stage[0] if in_stage else None) if isinstance(in_stage, list) else in_stage
    if version is None:
        stages = sorted({stage for v in versions for stage in stages_of(v)})
        raise RegistryError(f"no version of '{artifact}' is in stage '{ref}' in {repo} (stages in use: {stages}); "
                            "give a stage or a version vX.Y.Z (`gto show` lists them)")
    return Resolved(artifact, version.version, f"{artifact}@{version.version}", version.commit_hexsha, ref)


def registered_hash(repo: str, resolved: Resolved) -> str:
    """DVC's hash of the artifact's folder at the version's commit (its `md5: ….dir` in dvc.lock, or in the
    `<path>.dvc` file when the artifact is tracked by one): what the fetched files must add up to."""
    import dvc.api

    declared = yaml.safe_load(dvc.api.read("dvc.yaml", repo=repo, rev=resolved.commit)).get("artifacts") or {}
    path = str((declared.get(resolved.artifact) or {}).get("path", "")).rstrip("/")
    lock = yaml.safe_load(dvc.api.read("dvc.lock", repo=repo, rev=resolved.commit)) or {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs", []):
            if str(out.get("path", "")).rstrip("/") == path and out.get("md5"):
                return str(out["md5"])
    raise RegistryError(f"{resolved.ref}: no hash of its path '{path}' in dvc.lock at commit {resolved.commit[:8]}: "
                        "the registered commit does not record the model it names")


def file_hashes(folder: Path) -> dict[str, str]:
    """md5 of every file under `folder` by relative path (the fetch marker excluded)."""
    from dvc_data.hashfile.hash import file_md5

    return {p.relative_to(folder).as_posix(): file_md5(str(p)) for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and p.name != MARKER}


def tree_hash(files: dict[str, str], folder: Path) -> str:
    """DVC's `….dir` hash of a folder with these files (dvc-data's Tree, as `dvc add`/`dvc repro` compute it)."""
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.meta import Meta
    from dvc_data.hashfile.tree import Tree

    tree = Tree()
    for rel, md5 in files.items():
        tree.add(tuple(rel.split("/")), Meta(size=(Path(folder) / rel).stat().st_size), HashInfo("md5", md5))
    tree.digest()
    return str(tree.hash_info.value)


def verify_fetched(folder: Path, resolved: Resolved) -> None:
    """The folder's files are the ones recorded at fetch time, and those add up to the registered hash."""
    marker = json.loads((Path(folder) / MARKER).read_text())
    recorded, expected = marker.get("files") or {}, marker.get("md5")
    now = file_hashes(folder)
    changed = sorted(set(recorded) ^ set(now) | {f for f in set(recorded) & set(now) if recorded[f] != now[f]})
    if changed or not expected or tree_hash(recorded, folder) != expected:
        raise RegistryError(f"{folder} no longer holds {resolved.ref} as registered (changed, added or missing: "
                            f"{changed[:5] or ['the fetch record']}): fetch it again with --force")


def fetched_dir(resolved: Resolved, base: Path = FETCH_DIR) -> Path:
    return Path(base) / f"{resolved.artifact}@{resolved.version}"


def is_fetched(folder: Path, resolved: Resolved) -> bool:
    marker = Path(folder) / MARKER
    return marker.is_file() and json.loads(marker.read_text()).get("commit") == resolved.commit


def fetch(repo: str, artifact: str, ref: str, out: Path | None = None, force: bool = False,
          base: Path | None = None) -> tuple[Resolved, Path, str]:
    """Download the artifact of a stage or version from the DVC remote into `out`.

    `out` defaults to `<base>/models/registry/<artifact>@<version>/` (`base`: `repo` when it is a local folder,
    else the working directory); a folder that already holds that version is reused (versions are immutable
    tags) unless `force`. Returns (resolved version, folder, remote description). Raises RegistryError naming
    the remote and the version when its data is not on the remote.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc_data.index.index import DataIndexError

    from scalevlm.remote import ENV, RemoteError, config_override, describe

    resolved = resolve(repo, artifact, ref)
    if base is None:
        base = Path(repo) if Path(repo).is_dir() else Path(".")
    target = Path(out) if out is not None else base / fetched_dir(resolved)
    if target.exists() and not force:
        if is_fetched(target, resolved):
            verify_fetched(target, resolved)
            return resolved, target, "already fetched"
        raise RegistryError(f"{target} exists and does not hold {resolved.ref}: remove it, pass --force, or choose "
                            "--out")
    partial = target.with_name(target.name + ".partial")  # downloaded beside, moved in when complete
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    where = "the default DVC remote"
    try:
        with Repo.open(url=repo, subrepos=True, uninitialized=True, config=config_override()) as dvc_repo:
            if dvc_repo.config.get("core", {}).get("remote") == "auto-generated-upstream":  # DVC's stand-in
                raise RemoteError(f"{repo} configures no default DVC remote, so the registered model cannot be "
                                  f"fetched: set {ENV}=<url or folder>, or `dvc remote add -d <name> <url>` there")
            where = describe(dvc_repo.config)
            dvc_repo.artifacts.download(artifact, version=resolved.version, out=str(partial), force=True)
    except (DvcException, DataIndexError, FileNotFoundError) as e:  # a file's data, or a folder's listing, is absent
        shutil.rmtree(partial, ignore_errors=True)
        raise RegistryError(
            f"{resolved.ref} (commit {resolved.commit[:8]}) could not be fetched from {where}: {e}. Its data was never "
            f"pushed there: push it from a machine that has it (`dvc push --with-deps <stage>`, which the promotion "
            f"gate does before tagging), or point SCALEVLM_DVC_REMOTE at the remote that holds it"
        ) from e
    files, expected = file_hashes(partial), registered_hash(repo, resolved)
    if tree_hash(files, partial) != expected:
        shutil.rmtree(partial, ignore_errors=True)
        raise RegistryError(f"{resolved.ref}: the files fetched from {where} do not add up to the hash registered "
                            f"at commit {resolved.commit[:8]} ({expected}): the remote holds other data under it")
    write_json(partial / MARKER, {"artifact": artifact, "version": resolved.version, "ref": resolved.ref,
                                  "commit": resolved.commit, "remote": where, "md5": expected, "files": files})
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)
    if out is None:  # fetched weights are not project files: keep git status clean
        ignore = base / FETCH_DIR / ".gitignore"
        if not ignore.exists():
            ignore.write_text("*\n")
    return resolved, target, where


def describe(repo: str, resolved: Resolved) -> list[str]:
    """What `show` prints: the version, its commit and stages, and (local repositories) what the gate judged."""
    version = next(v for v in registered(repo, resolved.artifact) if v["version"] == resolved.version)
    lines = [f"{resolved.ref}  commit {resolved.commit[:8]}  stages: {', '.join(stages_of(version)) or '-'}"]
    if Path(repo).is_dir():
        try:
            snapshot = snapshot_at(Path(repo), resolved.commit)
        except (RegistryError, ValueError):
            return [*lines, f"  (no {SNAPSHOT} at that commit)"]
        metrics = snapshot.get("metrics", {})
        shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, int | float))
        lines.append(f"  arm {snapshot.get('arm')}: {shown}")
    return lines


def main(argv: list[str] | None = None, prog: str = "python -m scalevlm.registry") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="The GTO model registry: list, show and fetch versions.")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--repo", default=".",
                        help="git repository holding the registry tags: path or URL (default: .)")
    common.add_argument("--artifact", default=None, help="artifact name (default: the one in ./dvc.yaml)")
    sub.add_parser("list", parents=[common], help="every registered version, newest first, with its stages")
    show = sub.add_parser("show", parents=[common], help="one version or stage: commit, stages, the gate's numbers")
    show.add_argument("ref", help="a registry stage (prod) or a version (v0.0.3)")
    get = sub.add_parser("fetch", parents=[common], help="download a stage's or a version's model from the DVC remote")
    get.add_argument("ref", help="a registry stage (prod) or a version (v0.0.3)")
    get.add_argument("--out", type=Path, default=None, help=f"folder (default: {FETCH_DIR}/<artifact>@<version>)")
    get.add_argument("--force", action="store_true", help="download again into an existing folder")
    args = parser.parse_args(argv)
    from scalevlm.remote import RemoteError

    try:
        artifact = args.artifact or default_artifact(Path(args.repo) if Path(args.repo).is_dir() else Path("."))
        if args.command == "list":
            try:
                versions = registered(args.repo, artifact)
            except RegistryError as e:
                if "has no registered version" not in str(e):
                    raise
                print(e)  # nothing to list is an answer, not an error
                return 0
            for version in versions:
                stages = ", ".join(stages_of(version)) or "-"
                print(f"{artifact}@{version['version']}  commit {version['commit_hexsha'][:8]}  stages: {stages}")
            return 0
        if args.command == "show":
            print("\n".join(describe(args.repo, resolve(args.repo, artifact, args.ref))))
            return 0
        resolved, folder, where = fetch(args.repo, artifact, args.ref, args.out, args.force)
    except (RegistryError, RemoteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    asked = f"{resolved.stage} = " if resolved.stage else ""
    print(f"{asked}{resolved.ref} (commit {resolved.commit[:8]}) -> {folder} [{where}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
