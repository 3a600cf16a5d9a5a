"""flows.dvc_cli on real DVC output: a tiny DVC project in tmp_path (stage graph, staleness, the experiment queue),
and the stage order of the project's own dvc.yaml."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
import pytest
import yaml

from flows import dvc_cli
from flows.sweep import queue_progress

ROOT = Path(__file__).resolve().parents[1]
WRITE_X = ("python -c \"import yaml; p = yaml.safe_load(open('params.yaml'))['make']; assert p['x'] != 13, 'x=13 "
           "fails'; open('a.txt', 'w').write(str(p['x'] * 10 + p['seed']))\"")
DVC_YAML = f"""\
stages:
  # declared out of order on purpose: the order comes from the graph
  report:
    cmd: python -c "open('report.txt', 'w').write(''.join(open(f'b_{{n}}.txt').read() for n in ('one', 'two')))"
    deps: [b_one.txt, b_two.txt]
    outs: [report.txt]
  double:
    matrix:
      n: [two, one]
    cmd: python -c "open('b_${{item.n}}.txt', 'w').write(open('a.txt').read() * 2)"
    deps: [a.txt]
    outs: ["b_${{item.n}}.txt"]
  make_a:
    cmd: {WRITE_X}
    params: [make]
    outs: [a.txt]
  alone:
    cmd: python -c "open('alone.txt', 'w').write('1')"
    outs: [alone.txt]
"""


def sh(root: Path, *cmd: str) -> str:
    return subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True, env=dvc_cli.env()).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "params.yaml").write_text("make:\n  x: 1  # the value make_a writes\n  seed: 0\n")
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "ci@example.com"],
                ["git", "config", "user.name", "ci"],
                [sys.executable, "-m", "dvc", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        sh(tmp_path, *cmd)
    return tmp_path


def old_stage_order(root: Path) -> list[str]:
    """The order the pipeline flow used before dvc_cli: DVC's Python index (kept here only as the oracle)."""
    from dvc.repo import Repo

    with Repo(str(root)) as dvc_repo:
        graph = dvc_repo.index.graph
        names = {node: node.name for node in graph.nodes}
        return [names[n] for n in nx.lexicographical_topological_sort(graph.reverse(copy=True), key=lambda n: names[n])]


def test_stage_order_from_dvc_dag_follows_the_graph_with_ties_by_name(repo: Path) -> None:
    order = dvc_cli.stage_order(repo)
    assert order == ["alone", "make_a", "double@one", "double@two", "report"]
    assert order == old_stage_order(repo)


def test_stage_order_of_the_project_is_the_order_the_flow_had() -> None:
    order = dvc_cli.stage_order(ROOT)
    assert order == old_stage_order(ROOT)
    assert order[:3] == ["curate_dataset", "validate_segments", "prepare_model"]
    assert set(order) >= {"train_sft@scale", "train_grpo@vanilla", "evaluate@grpo-scale", "compare", "promote"}


def test_parse_dot_refuses_output_it_cannot_read() -> None:
    graph = dvc_cli.parse_dot('strict digraph {\n"a";\n"b";\n"a" -> "b";\n}\n')
    assert list(graph.edges) == [("a", "b")]
    with pytest.raises(dvc_cli.DvcError, match="unexpected line"):
        dvc_cli.parse_dot('strict digraph {\n"a" -> "b" [label=x];\n}\n')


def test_changes_says_what_repro_would_do(repo: Path) -> None:
    stale = dvc_cli.changes(repo, "make_a")
    assert stale and any("changed outs" in c for c in stale if isinstance(c, dict))
    sh(repo, sys.executable, "-m", "dvc", "repro", "-q")
    assert [dvc_cli.changes(repo, s) for s in dvc_cli.stage_order(repo)] == [[]] * 5
    (repo / "params.yaml").write_text("make:\n  x: 2\n  seed: 0\n")
    assert dvc_cli.changes(repo, "make_a") == [{"changed deps": {"params.yaml": {"make": "modified"}}}]
    assert dvc_cli.changes(repo, "double@one") == [], "downstream stages are judged on their own deps"
    with pytest.raises(dvc_cli.DvcError, match="nope"):
        dvc_cli.changes(repo, "nope")


@pytest.mark.slow
def test_queue_states_from_exp_show(repo: Path) -> None:
    for name, x in (("good", "3"), ("bad", "13")):
        dvc_cli.queue_experiment(repo, name, ["-S", f"make.x={x}"], ["make_a"])
    runs = dvc_cli.parse_experiments(dvc_cli.exp_show(repo))
    assert sorted((r.name, r.state) for r in runs) == [("bad", "queued"), ("good", "queued")]
    active, _ = queue_progress(runs, ["good", "bad"])
    assert len(active) == 2

    dvc_cli.queue_start(repo, 2)
    deadline = time.monotonic() + 180
    while (active := queue_progress(runs := dvc_cli.parse_experiments(dvc_cli.exp_show(repo)), ["good", "bad"])[0]):
        assert time.monotonic() < deadline, f"queue still busy: {active}"
        time.sleep(1)
    states = {r.name: r for r in runs}
    assert (states["good"].state, states["bad"].state) == ("success", "failed")
    assert "x=13 fails" in Path(states["bad"].log).read_text(), "the failed run's log is where DVC says"
    assert [r.name for r in queue_progress(runs, ["bad"])[1]] == ["bad"]
    assert queue_progress(runs, ["good"])[1] == [], "a failure outside this sweep's names is not its failure"
    assert dvc_cli.experiment_names(repo) == {"good"}


def test_parse_experiments_rejects_an_unknown_state() -> None:
    shown = [{"rev": "abc", "experiments": [{"name": "e", "executor": {"state": "paused"}, "revs": []}]}]
    with pytest.raises(dvc_cli.DvcError, match="unknown state 'paused'"):
        dvc_cli.parse_experiments(shown)


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.mark.slow
@pytest.mark.prefect
def test_sweep_flow_queues_runs_and_fails_only_on_its_own_failures(repo: Path, harness: None) -> None:
    from flows.sweep import sweep

    spec = {"name": "t", "grid": {"make.x": [2, 13]}, "seeds": [0], "seed_params": ["make.seed"], "targets": ["make_a"],
            "jobs": 2}
    (repo / "sweep.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(RuntimeError, match=r"experiments failed:\nt-1-s0 \(log: "):
        sweep("sweep.yaml", root=str(repo), report=False, timeout_s=300)
    assert dvc_cli.experiment_names(repo) == {"t-0-s0"}

    spec["grid"] = {"make.x": [2, 3]}  # t-0-s0 exists: only t-1-s0 (now x=3) is queued; the old failure is not ours
    (repo / "sweep.yaml").write_text(yaml.safe_dump(spec))
    out = sweep("sweep.yaml", root=str(repo), report=False, timeout_s=300)
    assert out["queued"] == ["t-1-s0"]
    assert dvc_cli.experiment_names(repo) == {"t-0-s0", "t-1-s0"}
