"""The DVC remote: where models and data go so that another machine, a CI job or a server can fetch them.

The project's default remote is `local` in `.dvc/config`: a folder under the user's cache dir
(`~/.cache/scalevlm/dvc-remote`), outside the work tree and created by DVC on the first push, so `make repro`
needs no setup. Choosing another remote, highest precedence first:

- `SCALEVLM_DVC_REMOTE=<url or folder>`: read by the project's commands (the promotion gate, the registry fetch,
  predict); tests point it at a temporary folder. Plain `dvc push/pull` do not read it.
- `dvc remote add -d --local <name> <url>`: this clone only (`.dvc/config.local`, never committed); CI does this
  with its repository secret.
- `dvc remote add -d <name> <url>`: the team's remote, committed in `.dvc/config`.

S3, GCS, Azure and SSH remotes need DVC's plugin for the scheme: `pip install -e ".[s3]"` (or `gcs`, `azure`,
`ssh`); credentials come from the usual environment variables of each cloud.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV = "SCALEVLM_DVC_REMOTE"
ENV_REMOTE_NAME = "scalevlm-env"  # the name the override gets inside DVC's config (never written to a file)
_URL_SCHEME = re.compile(r"\w+://")


class RemoteError(RuntimeError):
    """The DVC remote is not configured, not reachable, or lacks data an operation needs."""


def config_override(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """DVC config that makes `$SCALEVLM_DVC_REMOTE` the default remote; None when the variable is unset."""
    url = (os.environ if environ is None else environ).get(ENV, "").strip()
    if not url:
        return None
    if not _URL_SCHEME.match(url):  # a folder: absolute, because DVC resolves relative paths against .dvc/
        url = os.path.abspath(os.path.expanduser(url))
    return {"core": {"remote": ENV_REMOTE_NAME}, "remote": {ENV_REMOTE_NAME: {"url": url}}}


def describe(config: Mapping[str, Any]) -> str:
    """`remote 'name' (url)` of the default remote in a loaded DVC config (`repo.config`)."""
    name = config.get("core", {}).get("remote")
    if not name:
        raise RemoteError(f"no default DVC remote is configured: set {ENV}=<url or folder>, or run "
                          "`dvc remote add -d <name> <url>`")
    remote = config.get("remote", {}).get(name)
    if remote is None:
        raise RemoteError(f"the default DVC remote '{name}' is not defined: `dvc remote add -d {name} <url>`")
    return f"remote '{name}' ({remote.get('url')})"


def open_repo(root: Path) -> Any:
    """The DVC repository at `root` with the remote override applied (use as a context manager)."""
    from dvc.repo import Repo

    return Repo(str(root), config=config_override())


def producing_stage(repo: Any, path: str) -> tuple[str, str]:
    """(target, name) of the stage or `.dvc` file whose output is `path` (relative to the repo root).

    The target is absolute (`/root/dvc.yaml:train_sft@scale`, `/root/x.dvc`): DVC resolves relative targets
    from the process's working directory, which need not be the project's."""
    from dvc.exceptions import DvcException
    from dvc.stage import PipelineStage

    try:
        infos = repo.stage.collect_granular(os.path.join(repo.root_dir, path))
    except DvcException as e:
        raise RemoteError(f"{path} is not an output of any DVC stage or .dvc file of {repo.root_dir}: {e}") from e
    if not infos:
        raise RemoteError(f"{path} is not tracked by DVC in {repo.root_dir}")
    stage = infos[0].stage
    if isinstance(stage, PipelineStage):
        return f"{stage.path}:{stage.name}", stage.name
    return stage.path, os.path.relpath(stage.path, repo.root_dir)


def absent_on_remote(repo: Any, target: str) -> list[str]:
    """Cached outputs of `target` and its upstream stages that are not complete on the default remote.

    Checked object by object (a directory's manifest and every file in it): `dvc push` only warns about data
    it cannot find, and `dvc status --cloud` says nothing about a directory whose manifest is nowhere."""
    from dvc_data.hashfile.tree import Tree

    odb = repo.cloud.get_remote_odb(None, "push")
    absent = []
    for stage in repo.stage.collect(target, with_deps=True):
        for out in stage.outs:
            if not out.use_cache or not out.hash_info or not out.hash_info.value:
                continue
            oids = [out.hash_info.value]
            if out.hash_info.isdir:
                try:
                    oids += [hi.value for _, _, hi in Tree.load(odb, out.hash_info)]
                except FileNotFoundError:  # not even the directory's manifest is there
                    absent.append(str(out))
                    continue
            if set(oids) - set(odb.oids_exist(oids)):
                absent.append(str(out))
    return sorted(absent)


def push_with_deps(root: Path, path: str) -> dict[str, Any]:
    """Push `path` and every DVC-tracked input upstream of it (the data it was trained and evaluated on, the
    base model), then check that all of it is on the remote.

    Returns {"remote": description, "stage": name, "pushed": objects uploaded now}. Raises RemoteError naming
    the remote and the outputs when something is not on the remote after the push (typically: not in the local
    cache either, because this machine did not produce it and did not pull it).
    """
    from dvc.exceptions import DvcException

    with open_repo(root) as repo:
        where = describe(repo.config)
        target, name = producing_stage(repo, path)
        try:
            pushed = repo.push(targets=[target], with_deps=True)
            absent = absent_on_remote(repo, target)
        except DvcException as e:
            raise RemoteError(f"dvc push of {name} (with its inputs) to {where} failed: {e}") from e
    if absent:
        raise RemoteError(
            f"{len(absent)} output(s) of {name} and its inputs are not on {where} after the push: {', '.join(absent)}. "
            f"This machine's DVC cache lacks them too: `dvc pull --with-deps {name}` from a remote that has them, "
            f"or `dvc repro {name}`, then push again"
        )
    return {"remote": where, "stage": name, "pushed": int(pushed)}


def pull(root: Path, outputs: list[str]) -> dict[str, Any]:
    """`dvc pull` of DVC-tracked outputs (paths relative to `root`, e.g. data/validate_segments) from the remote."""
    from dvc.exceptions import DvcException

    with open_repo(root) as repo:
        where = describe(repo.config)
        try:
            result = repo.pull(targets=[os.path.join(repo.root_dir, t) for t in outputs])
        except DvcException as e:
            raise RemoteError(f"dvc pull {' '.join(outputs)} from {where} failed: {e}") from e
    return {"remote": where, "fetched": int(result.get("fetched", 0)) if isinstance(result, dict) else 0}
