"""Profiles: a declared params set (`profiles/<name>.yaml`) applied to params.yaml for one flow run, then put back.

A `profile` other than `default` selects a declared params set (`profiles/<name>.yaml`: only keys that
exist in params.yaml). It is applied for the run only: its values are written into params.yaml with a
round-trip YAML editor (comments and layout kept, as DVC's own `-S` does), the stages run on them, and the file
is put back byte for byte at the end. The outputs and dvc.lock then hold the profile's results, so `dvc status`
shows those stages stale against your params. Not `dvc exp run -S`, because in the workspace it leaves the set
values in params.yaml (DVC does not put them back), and with `--temp` the outputs never reach the workspace
(the smoke deployment, CI's smoke table and the gate read them there); it also runs every stage in one call,
where the flow keeps one task per stage. A run killed before it could restore params.yaml leaves a backup in
`.scalevlm/profile/`; the next flow run puts it back.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from scalevlm.config import ConfigError, read_yaml
from scalevlm.guard import StageBusyError, StageLock, atomic_write_text
from scalevlm.study import flatten

BACKUP = Path(".scalevlm") / "profile"  # the user's params.yaml while a profile run holds it (git-ignored)


# --- profiles --------------------------------------------------------------------------------------------------


def load_profile(root: Path, profile: str) -> dict[str, Any]:
    """The params overlay `profiles/<profile>.yaml` (`{}` for `default`), read by the strict YAML reader."""
    if profile == "default":
        return {}
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", profile):
        raise ConfigError(f"profile {profile!r}: a profile is the name of a file in profiles/ (letters, digits, _ "
                          "and -), e.g. smoke")
    path = root / "profiles" / f"{profile}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in (root / "profiles").glob("*.yaml"))
        raise ConfigError(f"unknown profile '{profile}': no {path}; available: {['default', *available]}")
    overlay = read_yaml(path, "profile") or {}
    if not isinstance(overlay, dict):
        raise ConfigError(f"{path}: expected a mapping of params.yaml sections to the values to set, got "
                          f"{type(overlay).__name__}")
    return overlay


def check_profile(root: Path, profile: str) -> dict[str, Any]:
    """The profile's overlay, once params.yaml with it applied passes every stage's Config (`python -m stages
    --check-params`, a subprocess: flows do not import stages). Refuses with the profile and the key named."""
    overlay = load_profile(root, profile)
    if not overlay:
        return overlay
    params = read_yaml(root / "params.yaml", "params file") or {}
    merge_profile(params, overlay, profile)
    with tempfile.TemporaryDirectory(prefix="profile-check-") as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        done = subprocess.run([sys.executable, "-m", "stages", "--check-params", str(path)], cwd=root,
                              capture_output=True, text=True)
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        raise ConfigError(f"profile {profile}: {why.removeprefix('error: ').replace(str(path) + ': ', '')}")
    return overlay


def profile_overrides(overlay: dict[str, Any]) -> list[str]:
    """The overlay as `key=value` strings, the arguments `dvc exp run -S` would take for the same values."""
    return [f"{key}={json.dumps(value)}" for key, value in flatten(overlay).items()]


def _round_trip() -> Any:
    from ruamel.yaml import YAML  # DVC's own YAML library (its `-S` edits params.yaml with it)

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096  # never re-wrap long lines
    rt.indent(mapping=2, sequence=4, offset=2)  # this project's layout: params.yaml round-trips byte for byte
    rt.representer.add_representer(type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))
    return rt


def _overlaid(text: str, overlay: dict[str, Any], profile: str) -> str:
    """params.yaml text with the overlay's values set; comments, order and layout of everything else kept."""
    rt = _round_trip()
    params = rt.load(text)
    merge_profile(params, overlay, profile)
    out = io.StringIO()
    rt.dump(params, out)
    return out.getvalue()


def merge_profile(base: dict[str, Any], overlay: dict[str, Any], where: str) -> None:
    """Put a profile's values into a params mapping in place; a key params.yaml lacks is an error naming it."""
    for key, value in overlay.items():
        if key not in base:
            raise ConfigError(f"profile {where}: key '{key}' does not exist in params.yaml")
        if isinstance(base[key], dict) and not isinstance(value, dict):
            raise ConfigError(f"profile {where}: '{key}' is a section of params.yaml: give the keys to change under "
                              f"it, not {type(value).__name__} {value!r}")
        if isinstance(value, dict) and isinstance(base[key], dict):
            merge_profile(base[key], value, f"{where}.{key}")
        else:
            base[key] = value


def apply_profile(root: Path, profile: str) -> dict[str, Any]:
    """Write a profile's values into params.yaml for good (comments kept): for a scratch copy or a clone that
    then runs `dvc repro` itself (tests, CI). The flow uses `profile_applied`, which puts the file back."""
    overlay = load_profile(root, profile)
    if overlay:
        path = root / "params.yaml"
        atomic_write_text(path, _overlaid(path.read_bytes().decode("utf-8"), overlay, profile))
    return overlay


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _put_back(path: Path, original: bytes, mode: int) -> None:
    """The exact bytes (decoding UTF-8 and writing it back is lossless on POSIX) and permissions of before."""
    atomic_write_text(path, original.decode("utf-8"))
    os.chmod(path, mode)


def recover_params(root: Path) -> str | None:
    """Put back the params.yaml a killed profile run left behind (its backup in `.scalevlm/profile/`).

    Only when params.yaml is still exactly what that run wrote; if it was edited since, refuse rather than
    guess. The caller holds the profile lock (the run that wrote the backup is dead). Returns what was done, or
    None when there was nothing to recover."""
    backup = root / BACKUP
    if not (backup / "state.json").is_file():
        return None
    state = json.loads((backup / "state.json").read_text())
    path = root / "params.yaml"
    if path.read_bytes() == (backup / "params.yaml").read_bytes():  # killed before it wrote the profile's values
        _forget(backup)
        return None
    if _sha(path.read_bytes()) != state["applied_sha256"]:
        raise ValueError(
            f"a run of profile '{state['profile']}' was interrupted and params.yaml was edited since: your params.yaml "
            f"before that run is {backup / 'params.yaml'}; keep what you want in params.yaml, then delete {backup}")
    _put_back(path, (backup / "params.yaml").read_bytes(), state["mode"])
    _forget(backup)
    return f"params.yaml restored from an interrupted run of profile '{state['profile']}'"


def _forget(backup: Path) -> None:
    (backup / "state.json").unlink()  # first: without it the backup is inert
    (backup / "params.yaml").unlink(missing_ok=True)


@contextmanager
def profile_applied(root: Path, profile: str) -> Iterator[dict[str, Any]]:
    """params.yaml carries the profile's values inside the block; on leaving it has its exact original bytes.

    A profile run holds a lock (`scalevlm.guard.StageLock`, released by the kernel if the run dies) for the whole
    block, so no other flow run recovers or reads params.yaml under it; a default run only takes it to recover."""
    overlay = load_profile(root, profile)
    lock = StageLock(root, "params-profile")
    try:
        lock.acquire()
        busy = False
    except StageBusyError:
        busy = True
    if busy:
        if overlay or (root / BACKUP / "state.json").is_file():
            owner = lock.path.read_text().strip() or "unknown"
            raise ValueError(f"params.yaml holds the values of a profile run in progress ({owner}): wait for it to "
                             "finish, or stop it, then run again")
        yield overlay  # another default run checking for a backup at this moment: nothing to hold
        return
    try:
        recovered = recover_params(root)
        if recovered:
            print(recovered)
        if not overlay:
            lock.release()
            yield overlay
            return
        path, backup = root / "params.yaml", root / BACKUP
        original, mode = path.read_bytes(), path.stat().st_mode & 0o7777
        applied = _overlaid(original.decode("utf-8"), overlay, profile)
        backup.mkdir(parents=True, exist_ok=True)
        (backup / "params.yaml").write_bytes(original)
        atomic_write_text(backup / "state.json",
                          json.dumps({"profile": profile, "mode": mode, "applied_sha256": _sha(applied.encode())}))
        atomic_write_text(path, applied)
        print(f"profile {profile} for this run: {' '.join(profile_overrides(overlay))}")
        try:
            yield overlay
        finally:
            if _sha(path.read_bytes()) == _sha(applied.encode()):
                _put_back(path, original, mode)
                _forget(backup)
            else:  # edited during the run: the edit wins, the backup stays for the user
                print("params.yaml was edited during the run: left as it is; before the run it was "
                      f"{backup / 'params.yaml'}")
    finally:
        lock.release()
