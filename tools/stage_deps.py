"""Code deps of every dvc.yaml stage, generated from the stage's import closure.

DVC re-runs a stage when one of its deps changes, so a stage must depend on every module it can execute. This
walks `stages/<name>.py`'s imports transitively (module-level and lazy imports inside functions, relative
imports, the packages' `__init__.py` files Python runs on the way) and lists them: a library subpackage whose
every module is reached is listed as its folder, otherwise file by file (editing the GX suites must not re-run
training). `tests/test_contracts.py` fails when dvc.yaml lacks a module of the closure.

    python tools/stage_deps.py           # print each stage's code deps
    python tools/stage_deps.py --write   # rewrite the code entries (stages/, src/) of every deps list in dvc.yaml
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("scalevlm", "stages")
SUBPACKAGES = tuple(p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "src" / "scalevlm").iterdir())
                    if (p / "__init__.py").is_file())


def _module_file(module: str) -> Path | None:
    parts = module.split(".")
    base = ROOT / ("src" if parts[0] == "scalevlm" else "") / Path(*parts)
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def _project_imports(path: Path) -> set[str]:
    """Every project module `path` imports, at module level or inside functions."""
    rel = path.relative_to(ROOT / "src" if path.is_relative_to(ROOT / "src") else ROOT).with_suffix("")
    package = list(rel.parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            prefix = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join(prefix + ([node.module] if node.module else []))
            found |= {base} | {f"{base}.{a.name}" for a in node.names}  # `from pkg import submodule`
    return {m for m in found if m.split(".")[0] in PROJECT_PACKAGES}


def import_closure(start: Path) -> set[str]:
    """Root-relative files of every project module reachable from `start` by imports."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _project_imports(path):
            parts = module.split(".")
            todo += [f for i in range(1, len(parts) + 1) if (f := _module_file(".".join(parts[:i])))]
    return {p.relative_to(ROOT).as_posix() for p in seen}


def code_deps(stage: str) -> list[str]:
    """The stage's own module first, then its closure (whole subpackages as folders)."""
    closure = import_closure(ROOT / "stages" / f"{stage}.py")
    deps = set()
    for f in closure:
        folder = next((d for d in SUBPACKAGES if f.startswith(d + "/")), None)
        whole = folder is not None and all(p.relative_to(ROOT).as_posix() in closure
                                           for p in (ROOT / folder).rglob("*.py"))
        deps.add(folder if whole else f)
    own = f"stages/{stage}.py"
    return [own] + sorted(deps - {own})


def rewrite(text: str, stages: list[str]) -> str:
    """dvc.yaml text with each stage's `stages/` and `src/` deps replaced by `code_deps` (other deps kept)."""
    for name in stages:
        block = re.search(rf"^  {name}:\n.*?(?=^  \w|^\S|\Z)", text, re.S | re.M).group(0)
        deps = re.search(r"^    deps:\n((?:      .*\n|\s*#.*\n)+)", block, re.M)
        kept = [line for line in deps.group(1).splitlines(keepends=True) if not re.match(r"\s+- (stages|src)/", line)]
        new = "    deps:\n" + "".join(f"      - {d}\n" for d in code_deps(name)) + "".join(kept)
        text = text.replace(block, block.replace(deps.group(0), new))
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite dvc.yaml in place")
    args = parser.parse_args()
    path = ROOT / "dvc.yaml"
    stages = list(yaml.safe_load(path.read_text())["stages"])
    if args.write:
        path.write_text(rewrite(path.read_text(), stages))
    else:
        for name in stages:
            print(name, *code_deps(name), sep="\n  ")


if __name__ == "__main__":
    main()
