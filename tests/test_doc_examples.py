"""The shell examples in README.md and docs/ are current: every command they show names a make target, a module, a
`scalevlm` subcommand, a stage, a profile and params keys that exist, and the project's own argument parsers
accept the arguments (parsed, not run: the examples train models and talk to servers)."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import yaml

from scalevlm.cli import COMMANDS
from scalevlm.config import load_params
from scalevlm.study import flatten

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXTERNAL = {"git", "pip", "prefect", "export", "dvc"}  # other tools' commands: only `dvc exp run -S` keys are checked


def examples() -> list[tuple[str, str]]:
    """(file, command) for every command line of every ```bash block, comments and `VAR=value` prefixes removed."""
    found = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S):
            for line in block.splitlines():
                line = line.split("  #")[0].strip()
                if line and not line.startswith("#"):
                    found += [(doc.name, part.strip()) for part in line.split("&&")]
    return found


def stage_names() -> set[str]:
    """`name` and `name@item` of every dvc.yaml stage (matrix items joined with '-', as DVC names them)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    names = set(stages)
    for name, spec in stages.items():
        items = [[]]
        for values in (spec.get("matrix") or {}).values():
            items = [[*item, str(v)] for item in items for v in values]
        names |= {f"{name}@{'-'.join(item)}" for item in items if item}
    return names


def check_overrides(args: list[str]) -> None:
    known = flatten(load_params(ROOT / "params.yaml"))
    for flag, value in zip(args, args[1:], strict=False):
        if flag in ("-S", "--set-param"):
            assert value.split("=")[0] in known, f"-S {value}: not a params.yaml key"


def check(command: str) -> None:
    words = shlex.split(command)
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        words = words[1:]
    tool, args = words[0].removeprefix(".venv/bin/"), words[1:]
    if tool == "make":
        targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))
        assert set(args) <= targets, f"no make target {set(args) - targets}"
    elif tool == "python" and args[:1] == ["-m"]:
        module, rest = args[1], args[2:]
        assert importlib.util.find_spec(module) is not None, f"no module {module}"
        if module == "scalevlm.predict":
            from scalevlm.predict import _parser

            _parser().parse_args(rest)
        if module == "flows.pipeline":
            for i, arg in enumerate(rest):
                if arg == "--profile":
                    assert (ROOT / "profiles" / f"{rest[i + 1]}.yaml").is_file(), f"no profile {rest[i + 1]}"
                elif not arg.startswith("-") and rest[i - 1:i] != ["--profile"]:
                    assert arg in stage_names(), f"no stage {arg}"
        if module == "scalevlm.registry":
            assert rest[0] in ("list", "show", "fetch"), f"no registry command {rest[0]}"
    elif tool == "scalevlm":
        assert args[0] in COMMANDS, f"no scalevlm command {args[0]}"
        if args[0] == "predict":
            from scalevlm.predict import _parser

            _parser().parse_args(args[1:])
        if args[0] == "run":
            assert args[1] in stage_names(), f"no stage {args[1]}"
            check_overrides(args)
    elif tool == "dvc" and args[:2] == ["exp", "run"]:
        check_overrides(args)
    else:
        assert tool in EXTERNAL, f"an example runs {tool!r}: teach this test to check it"


@pytest.mark.parametrize(("doc", "command"), examples())
def test_a_documented_command_names_what_exists(doc: str, command: str) -> None:
    check(command)


def test_the_checks_can_fail() -> None:
    for wrong in ("make reproo", "python -m scalevlm.predictt --model prod", "scalevlm trian",
                  "scalevlm run train_sft@scale -S train_sft.max_step=3", "scalevlm run train_sft@scal",
                  "python -m flows.pipeline --profile smok", "python -m scalevlm.registry lst prod", "rm -rf x"):
        with pytest.raises((AssertionError, SystemExit)):
            check(wrong)
    assert len(examples()) >= 20
