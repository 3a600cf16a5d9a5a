"""Contracts between dvc.yaml, params.yaml and the code: names line up, configs load, layering holds."""

from __future__ import annotations

import ast
import importlib
import itertools
import re
from pathlib import Path

import pytest
import yaml

from scalevlm.config import load_config
from tools.stage_deps import import_closure

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def _paths(entries: list) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]


@pytest.mark.parametrize("name", sorted(DVC))
def test_stage_names_line_up(name: str) -> None:
    spec = DVC[name]
    assert re.match(rf"python -m stages\.{name}( |$)", spec["cmd"]), spec["cmd"]
    assert (ROOT / "stages" / f"{name}.py").is_file()
    assert f"stages/{name}.py" in spec["deps"], "a stage depends on its own module"
    assert name in [p if isinstance(p, str) else next(iter(p)) for p in spec.get("params", [])]
    outs = _paths(spec.get("outs")) + _paths(spec.get("metrics")) + _paths(spec.get("plots"))
    assert outs, "every stage declares outputs"
    for out in outs:
        assert re.match(rf"(data|models|reports)/{name}(/|$)", out), f"{out} is not under data|models|reports/{name}"


@pytest.mark.parametrize("name", sorted(DVC))
def test_params_section_loads_into_the_stage_config(name: str) -> None:
    module = importlib.import_module(f"stages.{name}")
    assert name == module.NAME
    load_config(module.Config, PARAMS, name)  # raises naming unknown/missing keys


def test_every_params_section_belongs_to_a_stage() -> None:
    assert set(PARAMS) <= set(DVC), set(PARAMS) - set(DVC)


def _expand(spec: dict, entries: list) -> list[str]:
    """Concrete paths of a (matrix) stage: `${item.k}` replaced by every combination of the matrix values."""
    matrix = spec.get("matrix") or {}
    keys = sorted(matrix)
    out = []
    for values in itertools.product(*(matrix[k] for k in keys)) if keys else [()]:
        item = dict(zip(keys, values))
        for path in _paths(entries):
            out.append(re.sub(r"\$\{item\.(\w+)\}", lambda m, item=item: str(item[m.group(1)]), path))
    return out


def test_stage_deps_are_code_in_the_repo_or_outputs_of_a_stage() -> None:
    produced = [o for spec in DVC.values() for key in ("outs", "metrics", "plots")
                for o in _expand(spec, spec.get(key))]
    for name, spec in DVC.items():
        for dep in _expand(spec, spec["deps"]):
            dep = re.sub(r"\$\{(\w+)\.(\w+)\}", lambda m: str(PARAMS[m.group(1)][m.group(2)]), dep)
            from_stage = any(dep == out or dep.startswith(out.rstrip("/") + "/") for out in produced)
            assert from_stage or (ROOT / dep).exists(), f"{name}: dep {dep} is neither in the repo nor a stage output"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] if not a.name.startswith("scalevlm") else a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module if node.module.startswith("scalevlm") else node.module.split(".")[0])
    return names


LAYERS = [
    # (files, forbidden import prefixes)
    ("src/scalevlm/core", ("prefect", "dvc", "dvclive", "trl", "transformers", "datasets", "great_expectations",
                           "stages", "flows", "PIL")),
    ("src/scalevlm", ("prefect", "stages", "flows")),
    ("stages", ("prefect", "flows")),
    # flows reach stages through DVC or a CLI subprocess only, and hold no ML (README: architecture)
    ("flows", ("stages", "torch", "transformers", "trl")),
]


@pytest.mark.parametrize(("folder", "forbidden"), LAYERS, ids=[f for f, _ in LAYERS])
def test_dependencies_point_one_way(folder: str, forbidden: tuple[str, ...]) -> None:
    for path in (ROOT / folder).rglob("*.py"):
        bad = {m for m in _imports(path) if m.split(".")[0] in forbidden}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
    # lower floors never import the training floor (prompts, labels, evaluation are below it)
    if folder == "src/scalevlm":
        for sub in ("core", "evaluation", "modeling", "labels.py", "prompts.py", "validation"):
            for path in ((ROOT / folder / sub).rglob("*.py") if (ROOT / folder / sub).is_dir()
                         else [ROOT / folder / sub]):
                up = {m for m in _imports(path) if m.startswith("scalevlm.training")}
                assert not up, f"{path.relative_to(ROOT)} imports {sorted(up)}: an import that runs back up"
    if folder.endswith("core"):
        for path in (ROOT / folder).rglob("*.py"):
            outside = {m for m in _imports(path) if m.startswith("scalevlm") and not m.startswith("scalevlm.core")}
            assert not outside, f"{path.relative_to(ROOT)} imports {sorted(outside)} outside the core"


def test_registry_artifact_is_the_model_promote_copies() -> None:
    from scalevlm.facts import PROMOTED_MODEL

    artifacts = yaml.safe_load((ROOT / "dvc.yaml").read_text())["artifacts"]
    assert artifacts[PARAMS["promote"]["artifact"]]["path"] == PROMOTED_MODEL.as_posix()



@pytest.mark.parametrize("name", sorted(DVC))
def test_stage_deps_cover_the_import_closure_of_its_code(name: str) -> None:
    """Editing any module a stage runs must make DVC re-run the stage: deps cover the import closure."""
    deps = [d.rstrip("/") for d in _paths(DVC[name]["deps"])]
    missing = sorted(f for f in import_closure(ROOT / "stages" / f"{name}.py")
                     if not any(f == d or f.startswith(d + "/") for d in deps))
    assert not missing, f"dvc.yaml stage {name} runs code it does not depend on: {missing}; run `make deps`"


def test_import_closure_sees_lazy_imports_and_package_inits() -> None:
    closure = import_closure(ROOT / "stages" / "train_sft.py")
    assert "src/scalevlm/training/trainer.py" in closure  # imported inside run_sft(), not at module level
    assert "src/scalevlm/core/scale_loss.py" in closure  # reached only through trainer.py
    assert "src/scalevlm/__init__.py" in closure  # run by Python before any scalevlm submodule


# dvc.yaml against the facts module (scalevlm.facts): one owner for arms, methods and every stage path ------------


def _items(name: str) -> list[dict[str, str]]:
    matrix = DVC[name].get("matrix") or {}
    keys = sorted(matrix)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(matrix[k] for k in keys))] or [{}]


def _resolve(path: str, item: dict[str, str]) -> str:
    path = re.sub(r"\$\{item\.(\w+)\}", lambda m: item[m.group(1)], path)
    return re.sub(r"\$\{(\w+)\.(\w+)\}", lambda m: str(PARAMS[m.group(1)][m.group(2)]), path)


def test_stages_and_matrices_are_the_facts() -> None:
    from scalevlm import facts

    assert tuple(DVC) == facts.STAGES, "dvc.yaml lists the stages of scalevlm.facts.STAGES, in that order"
    assert {n: {k: tuple(v) for k, v in (s.get("matrix") or {}).items()} for n, s in DVC.items() if s.get("matrix")} \
        == facts.MATRIX
    assert tuple(facts.arm(t, m) for t in facts.TRAININGS for m in facts.METHODS) == facts.ARMS
    assert facts.INITS == facts.METHODS
    for a, b in facts.PAIRS + facts.CLAIM_PAIRS:
        assert a in facts.ARMS and b in facts.ARMS and a != b
    assert set(facts.METHOD_PAIRS) <= set(facts.PAIRS) and len(set(facts.PAIRS)) == len(facts.PAIRS)


@pytest.mark.parametrize("name", sorted(DVC))
def test_stage_outputs_and_data_deps_are_the_facts(name: str) -> None:
    """Every outs/metrics/plots path and every data dep (data|models|reports) of every item, as facts says."""
    from scalevlm import facts

    spec = DVC[name]
    for item in _items(name):
        where = item
        outs = [_resolve(p, item) for key in ("outs", "metrics", "plots") for p in _paths(spec.get(key))]
        assert sorted(outs) == sorted(p.as_posix() for p in facts.outputs(name, where)), (name, item)
        data = [d for d in (_resolve(p, item) for p in _paths(spec["deps"])) if re.match(r"(data|models|reports)/", d)]
        assert sorted(data) == sorted(p.as_posix() for p in facts.inputs(name, where)), (name, item)
        code = [d for d in _paths(spec["deps"]) if not re.match(r"(data|models|reports)/", d)]
        assert all(re.match(r"(stages|src|metrics)/", d) for d in code), code


def _string_constants(path: Path) -> set[str]:
    return {n.value for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def test_no_arm_name_is_spelled_outside_the_facts_module() -> None:
    """Arm names come from `scalevlm.facts` (ARMS, SFT_SCALE, …) only: a string literal equal to an arm in any other
    module of the project's code is a second owner of that name."""
    from scalevlm.facts import ARMS

    facts = ROOT / "src/scalevlm/facts.py"
    spelled = {str(path.relative_to(ROOT)): sorted(_string_constants(path) & set(ARMS))
               for folder in ("src", "stages", "flows", "benchmarks", "tools") for path in (ROOT / folder).rglob("*.py")
               if path != facts}
    assert not {p: arms for p, arms in spelled.items() if arms}
