"""Property-based fuzz of the command lines a user types: predict, the registry and the three flows.

Whatever the arguments, each CLI ends with exit 0 or 2 (argparse's usage errors are 2), never a traceback, and
writes nothing outside its declared outputs. The flows get `--check` so that a valid command line validates and
stops instead of starting a run. Arguments are drawn from each CLI's own flags, values that look right, values that
are wrong in the ways users get them wrong (paths that escape, empty text, negative numbers), and random text.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
VALUES = st.one_of(TEXT, st.sampled_from(["", " ", "-1", "0", "1", "2.5", "nan", "prod", "v0.0.1", "v9.9.9", "../x",
                                          "/nonexistent/x", "owner/name", "cuda", "cuda:7", "cpu", "a.png",
                                          "in.jsonl", "out.jsonl", "sub/out.jsonl", "smoke", "default", "compare",
                                          "train_sft@scale", "bogus", "test", "val", "params.yaml", "."]))


def argv_of(flags: list[str], positional: int = 0) -> st.SearchStrategy[list[str]]:
    flag_items = st.lists(st.tuples(st.sampled_from(flags), VALUES), max_size=5)
    return st.tuples(st.lists(VALUES, max_size=positional), flag_items).map(
        lambda t: [*t[0], *[x for pair in t[1] for x in (pair[0], pair[1]) if x != ""]])


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and ".git/" not in p.as_posix()
            and not p.relative_to(root).as_posix().startswith((".git/", ".scalevlm/"))}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository with a registry artifact declared and nothing registered, an image and an input file."""
    from PIL import Image

    root = tmp_path_factory.mktemp("fuzz")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / "dvc.yaml").write_text("artifacts:\n  vlm:\n    path: models/m\n    type: model\n")
    Image.new("RGB", (16, 16)).save(root / "a.png")
    (root / "in.jsonl").write_text('{"question": "How many?", "image": "a.png"}\n')
    return root


def run_cli(main: Callable[[list[str]], int], argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse: --help exits 0, a usage error 2
            code = e.code if isinstance(e.code, int) else 2
    return code, err.getvalue()


def check(main: Callable[[list[str]], int], argv: list[str], root: Path, outputs: set[str] = frozenset()) -> None:
    before = _files(root)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        code, err = run_cli(main, argv)
    finally:
        os.chdir(cwd)
    assert code in (0, 2), (argv, code, err[-1500:])
    assert "Traceback" not in err, (argv, err[-1500:])
    written = _files(root) - before
    assert written <= set(outputs), (argv, sorted(written))


pytestmark = pytest.mark.slow  # ~30 s: 200 command lines, some of which load torch or read a git repository
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])


@FUZZ
@given(argv_of(["--model", "--image", "--question", "--input", "--out", "--device", "--dtype", "--batch-size",
                "--max-new-tokens", "--temperature", "--top-p", "--top-k", "--sample", "--repo", "--artifact",
                "--image-root", "--text-only"]))
def test_predict(workdir: Path, argv: list[str]) -> None:
    from scalevlm.predict import main

    outs = {argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--out"}
    check(main, argv, workdir, outs)


@FUZZ
@given(argv_of(["--repo", "--artifact", "--out", "--force"], positional=2))
def test_registry(workdir: Path, argv: list[str]) -> None:
    from scalevlm.registry import main

    check(main, ["fetch", *argv], workdir)


@FUZZ
@given(argv_of(["--profile", "--force", "--gate"], positional=2))
def test_pipeline_flow(workdir: Path, argv: list[str]) -> None:
    from flows.pipeline import main

    check(main, [*argv, "--check"], workdir)


@FUZZ
@given(argv_of(["--timeout-s", "--report-only"], positional=1))
def test_sweep_flow(workdir: Path, argv: list[str]) -> None:
    from flows.sweep import main

    check(main, [*argv, "--check"], workdir)


@FUZZ
@given(argv_of(["--ref", "--split", "--benchmark", "--max-samples", "--artifact"]))
def test_consumer_flow(workdir: Path, argv: list[str]) -> None:
    from flows.consumer import main

    check(main, [*argv, "--check"], workdir)
