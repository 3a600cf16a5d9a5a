"""Private APIs of our ML/pipeline libraries are used only where a comment names the version and why.

A use is: importing a `_name` (or from a `_module`) of a watched library; `module._name` on a watched import;
in a class that inherits from a watched library's class (directly, through our classes, or as a mixin combined
with one), defining or touching `self._name` / `super()._name` where `_name` belongs to that library class; and
`obj._name` / `getattr(obj, "_name")` anywhere, where `_name` belongs to a watched class we import and is not one
of our own names. Each needs a comment on its line or in the comment lines right above it:

    # private: <library> <version> <what it is and why we need it>

with the installed version of that library (its first two or three components), so an upgrade flags every such
use for re-checking. The TRL / transformers seam (`scalevlm.training.trl_adapter`) is pinned here too.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.metadata
import inspect
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("src", "stages", "flows")
WATCHED = {"trl": "trl", "transformers": "transformers", "datasets": "datasets", "dvc": "dvc", "dvclive": "dvclive",
           "great_expectations": "great-expectations"}  # import name -> distribution name
LIBRARY_NAMES = {**{k: k for k in WATCHED}, "gx": "great_expectations", "great-expectations": "great_expectations"}
MARK = re.compile(r"#\s*private:\s*(?P<lib>[\w.-]+)\s+v?(?P<version>\d+\.\d+(?:\.\d+)?)\b(?P<why>.*)")
OWN_PACKAGES = ("scalevlm", "stages", "flows")


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@cache
def installed(lib: str) -> str:
    return importlib.metadata.version(WATCHED[lib])


def same_release(installed_version: str, named: str) -> bool:
    """`named` (e.g. 5.23 or 5.23.0) is the installed version's first components: 5.2 does not match 5.23.0."""
    return installed_version.split(".")[: len(named.split("."))] == named.split(".")


def is_self(node: ast.expr) -> bool:
    """`self`, `cls` or `super()`: attributes of the class itself, checked against its library bases."""
    return (isinstance(node, ast.Name) and node.id in ("self", "cls")) or (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super")


@cache
def class_private_names(cls: type) -> dict[str, frozenset[str]]:
    """`_names` a watched class and its watched bases define (class attributes, methods, `self._x = ...`), each with
    the libraries of the classes that define it (an SFTTrainer's `_load_from_checkpoint` is transformers')."""
    names: dict[str, set[str]] = {}
    for klass in cls.__mro__:
        lib = klass.__module__.split(".")[0]
        if lib not in WATCHED:
            continue
        found = {n for n in vars(klass) if private(n)}
        with contextlib.suppress(OSError, TypeError):  # no source (a C extension): its class attributes suffice
            found.update(n for n in re.findall(r"self\.(_\w+)\s*(?::[^=\n]+)?=[^=]", inspect.getsource(klass))
                         if private(n))
        for n in found:
            names.setdefault(n, set()).add(lib)
    return {n: frozenset(libs) for n, libs in names.items()}


@dataclass(frozen=True)
class Finding:
    where: str  # module:line
    what: str
    libs: frozenset[str]

    def __str__(self) -> str:
        return (f"{self.where}: {self.what} (add '# private: {sorted(self.libs)[0]} {installed(sorted(self.libs)[0])} "
                "<why>')")


class Module:
    """One source file: its imports of watched libraries and of our own classes, its classes and comments."""

    def __init__(self, name: str, source: str) -> None:
        self.name, self.lines, self.tree = name, source.splitlines(), ast.parse(source)
        self.aliases: dict[str, str] = {}  # local name -> dotted path (watched libraries and our own modules)
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    self.aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        self.classes = {f"{name}.{c.name}": c for c in ast.walk(self.tree) if isinstance(c, ast.ClassDef)}

    def dotted(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, f"{self.name}.{node.id}")
        if isinstance(node, ast.Attribute):
            base = self.dotted(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def marked(self, line: int, libs: frozenset[str]) -> bool:
        """A `# private:` comment naming one of `libs` at its installed version, on `line` or right above it."""
        candidates, i = [self.lines[line - 1]], line - 2
        while i >= 0 and self.lines[i].strip().startswith("#"):
            candidates.append(self.lines[i])
            i -= 1
        for text in candidates:
            m = MARK.search(text)
            lib = LIBRARY_NAMES.get(m["lib"].lower()) if m else None
            if m and lib in libs and same_release(installed(lib), m["version"]) and len(m["why"].split()) >= 3:
                return True
        return False


def load_class(path: str) -> type | None:
    module, _, name = path.rpartition(".")
    if not module:
        return None
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    return obj if isinstance(obj, type) else None


def owners(classes: set[type], attr: str) -> frozenset[str]:
    """The libraries among `classes` (and their bases) that define `attr`."""
    return frozenset().union(*(class_private_names(c).get(attr, frozenset()) for c in classes))


def scan(sources: dict[str, str]) -> list[Finding]:
    """Every unmarked private use (see the module docstring) in `sources` (module name -> source text)."""
    modules = [Module(name, text) for name, text in sources.items()]
    ours = {path: (m, c) for m in modules for path, c in m.classes.items()}
    bases = {path: [m.dotted(b) for b in c.bases] for path, (m, c) in ours.items()}

    def lib_classes(path: str, seen: frozenset[str] = frozenset()) -> set[type]:
        out: set[type] = set()
        for base in bases.get(path, []):
            if base in ours and base not in seen:
                out |= lib_classes(base, seen | {path})
            elif base and base.split(".")[0] in WATCHED and (cls := load_class(base)):
                out.add(cls)
        return out

    def ancestors(path: str) -> set[str]:
        found = {path}
        for base in bases.get(path, []):
            if base in ours and base not in found:
                found |= ancestors(base)
        return found

    family: dict[str, set[type]] = {path: set() for path in ours}  # lib classes in any MRO that holds our class
    for path in ours:
        for ancestor in ancestors(path):
            family[ancestor] |= lib_classes(path)
    imported = {cls for m in modules for target in m.aliases.values()
                if target.split(".")[0] in WATCHED and (cls := load_class(target))}
    # our own private names: functions and classes we define, attributes our classes set on themselves (unless
    # the attribute belongs to one of their library bases: setting TRL's `self._metrics` does not make it ours)
    own_names = {n.name for m in modules for n in ast.walk(m.tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    for path, (_, cls_node) in ours.items():
        own_names |= {n.attr for n in ast.walk(cls_node) if isinstance(n, ast.Attribute)
                      and isinstance(n.ctx, ast.Store)
                      and is_self(n.value) and not owners(family[path], n.attr)}
    loose: dict[str, frozenset[str]] = {}  # private names of the library classes we import -> their libraries
    for cls in imported:
        for n, libs in class_private_names(cls).items():
            if n not in own_names:
                loose[n] = loose.get(n, frozenset()) | libs

    findings: list[Finding] = []

    def report(m: Module, node: ast.AST, what: str, libs: frozenset[str]) -> None:
        if not m.marked(node.lineno, libs):
            findings.append(Finding(f"{m.name}:{node.lineno}", what, libs))

    for m in modules:
        for node in ast.walk(m.tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in WATCHED:
                bad = [p for p in node.module.split(".") if private(p)] + [a.name for a in node.names
                                                                           if private(a.name)]
                if bad:
                    report(m, node, f"imports private {bad} from {node.module}", frozenset({node.module.split(".")[0]}))
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] in WATCHED and any(private(p) for p in a.name.split(".")):
                        report(m, node, f"imports private module {a.name}", frozenset({a.name.split(".")[0]}))
        for path, (_, cls_node) in ((p, v) for p, v in ours.items() if v[0] is m):
            libs = family[path]
            for item in cls_node.body:
                if isinstance(item, ast.FunctionDef) and private(item.name) and owners(libs, item.name):
                    report(m, item, f"{path} overrides private {item.name}", owners(libs, item.name))
            for node in ast.walk(cls_node):
                if isinstance(node, ast.Attribute) and private(node.attr) and is_self(node.value) and owners(libs,
                                                                                                             node.attr):
                    report(m, node, f"{path} uses private {node.attr}", owners(libs, node.attr))
        for node in ast.walk(m.tree):
            if isinstance(node, ast.Attribute) and private(node.attr):
                target = m.dotted(node.value)
                if target and target.split(".")[0] in WATCHED:
                    report(m, node, f"uses private {target}.{node.attr}", frozenset({target.split(".")[0]}))
                elif node.attr in loose and not is_self(node.value):
                    report(m, node, f"uses private {node.attr} of {sorted(loose[node.attr])}", loose[node.attr])
            elif (isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("getattr", "setattr", "hasattr")
                  and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                  and isinstance(node.args[1].value, str) and node.args[1].value in loose):
                report(m, node, f"uses private {node.args[1].value} by name", loose[node.args[1].value])
    return sorted(set(findings), key=str)


def tree_sources() -> dict[str, str]:
    out = {}
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT / "src" if top == "src" else ROOT).with_suffix("")
            out[".".join(rel.parts).removesuffix(".__init__")] = path.read_text(encoding="utf-8")
    return out


# -- the tree --------------------------------------------------------------------------------------------------------


def test_every_private_use_in_the_tree_names_its_version_and_why() -> None:
    findings = scan(tree_sources())
    assert not findings, "private library APIs used without a current '# private:' comment:\n" + "\n".join(map(str,
                                                                                                               findings))


def test_the_trl_seam_is_pinned_to_the_installed_versions() -> None:
    """Upgrading TRL or transformers fails here first: re-check the items in trl_adapter's docstring, then bump."""
    from scalevlm.training import trl_adapter

    assert installed("trl").startswith(trl_adapter.TRL_VERSION + ".")
    assert installed("transformers").startswith(trl_adapter.TRANSFORMERS_VERSION + ".")
    assert trl_adapter.version_mismatches() == []


# -- the scanner catches what it should -----------------------------------------------------------------------------

MARKED = f"# private: datasets {installed('datasets')} needed for the data-file split rule"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from datasets.data_files import _get_data_files_patterns\n", 1),
        (f"{MARKED}\nfrom datasets.data_files import _get_data_files_patterns\n", 0),
        ("# private: datasets 0.1 needed for the data-file split rule\nfrom datasets.data_files import _x\n", 1),
        ("# private: datasets 5.2\nfrom datasets.data_files import _x\n", 1),  # no reason given
        ("# private: trl 1.16 the wrong library named here\nfrom datasets.data_files import _x\n", 1),
        ("import great_expectations as gx\nx = gx.core._private\n", 1),
        ("from trl import SFTTrainer\nclass T(SFTTrainer):\n    def f(self):\n        return self._metrics\n", 1),
        ("from trl import SFTTrainer\nclass T(SFTTrainer):\n    def __init__(self):\n        self._mine = 1\n"
         "    def f(self):\n        return self._mine\n", 0),
        ("from trl import SFTTrainer\nclass M:\n    def _load_from_checkpoint(self):\n"
         "        return super()._load_from_checkpoint()\nclass T(M, SFTTrainer):\n    pass\n", 2),
        ("from trl import SFTTrainer\nclass T(SFTTrainer):\n    pass\ndef f(trainer):\n"
         "    return trainer._total_train_tokens + getattr(trainer, '_total_train_tokens', 0)\n", 2),
        ("import os\nclass L:\n    def __init__(self):\n        self._fd = None\nos._exit(0)\n", 0),
    ],
)
def test_scanner(source: str, expected: int) -> None:
    assert len(scan({"scalevlm.example": source})) == expected, scan({"scalevlm.example": source})


def test_scanner_follows_our_own_base_classes_across_modules() -> None:
    base = "from trl import SFTTrainer\nclass Base(SFTTrainer):\n    pass\n"
    child = "from scalevlm.base import Base\nclass Child(Base):\n    def f(self):\n        return self._metrics\n"
    assert [f.where for f in scan({"scalevlm.base": base, "scalevlm.child": child})] == ["scalevlm.child:4"]
