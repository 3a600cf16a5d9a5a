"""The one place flows talk to DVC: its command line, read through its machine interfaces.

Every DVC call of a flow runs `python -m dvc` with this interpreter (the project's venv) in the project root,
with `env()`. Decisions are taken on DVC's machine-readable outputs only — `dvc dag --dot` (stage order),
`dvc status --json` (is a stage stale), `dvc exp show --json` (experiments and their queue states),
`dvc exp list --name-only` — never on its human log text nor on its Python internals (`Repo.index`), which
change between releases without notice. The log of `dvc repro` is streamed to people, not parsed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

DVC = [sys.executable, "-m", "dvc"]
# `dvc dag --dot` writes networkx's pydot rendering: one `"node";` line per stage, one `"a" -> "b";` line per
# edge (a runs before b). Names are quoted because stage addresses may contain `@` and `:`.
_DOT_NODE = re.compile(r'^"(?P<node>[^"]+)";$')
_DOT_EDGE = re.compile(r'^"(?P<src>[^"]+)" -> "(?P<dst>[^"]+)";$')
_DOT_FRAME = {"strict digraph {", "digraph {", "}", ""}
STATES = ("queued", "running", "success", "failed")


class DvcError(RuntimeError):
    """A DVC command failed or printed something this module cannot read."""


def env() -> dict[str, str]:
    """Environment for DVC subprocesses: stage commands say `python`, so put this interpreter's folder (the
    project's venv) first on PATH, whatever PATH the worker has."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "DVC_NO_ANALYTICS": "1", "PYTHONUNBUFFERED": "1"}


def call(root: Path, *args: str) -> str:
    """Run `dvc <args>` in `root` and return its stdout; a non-zero exit raises with both streams' tails."""
    result = subprocess.run([*DVC, *args], cwd=root, capture_output=True, text=True, env=env())
    if result.returncode != 0:
        raise DvcError(f"dvc {' '.join(args)} failed (exit {result.returncode}):\n{result.stdout[-2000:]}\n"
                       f"{result.stderr[-2000:]}")
    return result.stdout


def stream(cmd: list[str], root: Path, on_line: Callable[[str], None]) -> tuple[int, list[str]]:
    """Run a command in `root` with `env()`, handing each output line to `on_line` as it arrives."""
    lines: list[str] = []
    with subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env()) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            on_line(lines[-1])
        return proc.wait(), lines


def repro(root: Path, stage: str, force: bool, on_line: Callable[[str], None]) -> tuple[int, list[str]]:
    """`dvc repro --single-item [--force] <stage>`, its log streamed to `on_line`."""
    return stream([*DVC, "repro", "--single-item", *(["--force"] if force else []), stage], root, on_line)


# --- stage graph and staleness ---------------------------------------------------------------------------------


def parse_dot(text: str) -> nx.DiGraph:
    """The stage graph of `dvc dag --dot` (edge a -> b: a runs before b)."""
    graph = nx.DiGraph()
    for line in (raw.strip() for raw in text.splitlines()):
        if edge := _DOT_EDGE.match(line):
            graph.add_edge(edge["src"], edge["dst"])
        elif node := _DOT_NODE.match(line):
            graph.add_node(node["node"])
        elif line not in _DOT_FRAME:
            raise DvcError(f"unexpected line in `dvc dag --dot` output: {line!r}")
    return graph


def stage_order(root: Path) -> list[str]:
    """Stage addresses (`train_sft@scale` for matrix items) in dependency order, ties broken by name."""
    return list(nx.lexicographical_topological_sort(parse_dot(call(root, "dag", "--dot"))))


def parse_status(text: str, stage: str) -> list[Any]:
    """What `dvc status --json <stage>` says changed for the stage: `[]` when it is up to date."""
    status = json.loads(text or "{}")
    unexpected = set(status) - {stage}
    if unexpected:
        raise DvcError(f"`dvc status --json {stage}` reported other stages {sorted(unexpected)}")
    return list(status.get(stage, []))


def changes(root: Path, stage: str) -> list[Any]:
    """Why the stage is stale (changed deps, params, outs, command); empty when `dvc repro` would skip it."""
    return parse_status(call(root, "status", "--json", stage), stage)


# --- experiments and the queue ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpRun:
    """One experiment of `dvc exp show --json`: its name, the queue's state for it, the commit it hangs off."""

    name: str
    state: str  # queued | running | success | failed
    baseline: str
    log: str | None  # the queue worker's log file, when DVC ran it from the queue


def exp_show(root: Path) -> list[dict[str, Any]]:
    """`dvc exp show --json` over every commit: experiments hang off the commit they were queued from, which need
    not be HEAD any more."""
    return json.loads(call(root, "exp", "show", "--json", "--no-fetch", "--all-commits"))


def parse_experiments(shown: list[dict[str, Any]]) -> list[ExpRun]:
    """Every experiment in `dvc exp show --json` output with its state. An experiment without an executor was
    run in a workspace and committed, so it counts as a success."""
    return list(_experiments(shown))


def _experiments(shown: list[dict[str, Any]]) -> Iterator[ExpRun]:
    for commit in shown:
        for exp in commit.get("experiments") or []:
            revs = exp.get("revs") or [{}]
            name = exp.get("name") or revs[0].get("name") or revs[0].get("rev", "?")
            executor = exp.get("executor") or {}
            state = executor.get("state", "success")
            if state not in STATES:
                raise DvcError(f"`dvc exp show --json`: experiment {name} has unknown state {state!r}")
            yield ExpRun(name, state, commit["rev"], (executor.get("local") or {}).get("log"))


def queue_experiment(root: Path, name: str, set_args: list[str], targets: list[str]) -> None:
    """`dvc exp run --queue -n <name> -S key=value … <targets>`."""
    call(root, "exp", "run", "--queue", "-n", name, *set_args, *targets)


def experiment_names(root: Path) -> set[str]:
    """Names of the experiments committed in the repository, under any commit."""
    return set(call(root, "exp", "list", "--all-commits", "--name-only").split())


def queue_start(root: Path, jobs: int) -> None:
    call(root, "queue", "start", "-j", str(jobs))


def queue_kill(root: Path) -> None:
    call(root, "queue", "stop", "--kill")
