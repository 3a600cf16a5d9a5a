"""The params loader: a `params.yaml` section validated by pydantic v2 into a frozen config dataclass.

Configs are pydantic dataclasses declared with `@config_dataclass` (strict types, unknown keys forbidden, NaN and
infinities refused, frozen): bounds are `Annotated[int, Range(ge=1)]` (or an alias such as `PositiveInt`), non-empty
text and lists `Annotated[str, NonEmpty()]`, and cross-field rules a `check()` method that a model validator runs
once every field is valid. Rules hold however a config is built (the loader, `dataclasses.replace`, a test).

This module is the glue: it reads the YAML, validates it as JSON (strict JSON accepts lists for tuples and mappings
for nested configs, which strict Python input would not) and turns pydantic's errors into one `ConfigError` naming
every full dotted key (`train_sft.scale.w_start: must be <= 1, got 1.5`). A stage's `main` prints that and exits 2.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import annotated_types
import pydantic
import yaml
from pydantic_core import PydanticCustomError

from scalevlm.errors import PipelineError

T = TypeVar("T")
Problems = Iterator[tuple[str, str]]
CONFIG = pydantic.ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class ConfigError(PipelineError, ValueError):
    """A params section does not match its stage's Config."""


def config_dataclass(cls: type[T]) -> type[T]:
    """Declare a config: a frozen pydantic dataclass under the strict rules of `CONFIG`. Built by hand (a test,
    `dataclasses.replace`), a violation is a ConfigError worded as the loader words it (`max_steps: must be >= 1,
    got 0`), not pydantic's report."""
    built = pydantic.dataclasses.dataclass(frozen=True, config=CONFIG)(cls)
    validate = built.__init__

    @functools.wraps(validate)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807 (the dataclass's own __init__)
        try:
            validate(self, *args, **kwargs)
        except pydantic.ValidationError as e:
            raise ConfigError(_describe(built, e, "")) from None

    built.__init__ = __init__  # type: ignore[misc]
    return built


# Declared rules ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Range(annotated_types.Interval):
    """Bounds of a number field, `Annotated[float, Range(ge=0, lt=1)]`, enforced by pydantic; `problem()` checks a
    value by hand for the few rules that live in a `check()` (a pure core type's fields)."""

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, got {type(value).__name__}: {value!r}"
        if not math.isfinite(value):
            return f"expected a finite number, got {value!r}"
        ok = ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)  # type: ignore[operator]
              and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))  # type: ignore[operator]
        return None if ok else f"must be {self}, got {value!r}"

    def __str__(self) -> str:
        low = f"[{self.ge:g}" if self.ge is not None else f"({self.gt:g}" if self.gt is not None else None
        high = f"{self.le:g}]" if self.le is not None else f"{self.lt:g})" if self.lt is not None else None
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f"{'>=' if self.ge is not None else '>'} {low[1:]}"
        return f"{'<=' if self.le is not None else '<'} {high[:-1]}" if high else "a number"


def _non_empty(value: Any) -> Any:
    if (not value.strip()) if isinstance(value, str) else len(value) == 0:
        raise ValueError("must not be empty")
    return value


@dataclasses.dataclass(frozen=True)
class NonEmpty(pydantic.AfterValidator):
    """A string with non-whitespace text, or a list with at least one item: `Annotated[str, NonEmpty()]`."""

    func: Any = _non_empty


PositiveInt = Annotated[int, Range(ge=1)]
NonNegativeInt = Annotated[int, Range(ge=0)]  # seeds, counts where 0 means "none" or "default"
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(ge=0)]
Probability = Annotated[float, Range(ge=0, le=1)]  # probabilities, rates, weights in [0, 1]
Fraction = Annotated[float, Range(ge=0, lt=1)]  # a share of something that must leave the rest non-empty
Text = Annotated[str, NonEmpty()]


@config_dataclass
class Checked:
    """Base of configs with cross-field rules: `check()` runs after every field passed its own rules."""

    @pydantic.model_validator(mode="after")
    def _cross_field_rules(self) -> Checked:
        problems = list(self.check())
        if problems:
            raise PydanticCustomError("config_rule", "{text}", {"problems": problems, "text": _join(problems)})
        return self

    def check(self) -> Problems:
        """Cross-field rules: yield (key relative to this dataclass, problem) for each violation ("" = the whole)."""
        return iter(())


def _join(problems: list[tuple[str, str]], where: str = "") -> str:
    return "; ".join(f"{_key(where, key)}: {problem}" if where or key else problem for key, problem in problems)


# Loading ----------------------------------------------------------------------------------------------------------


MAX_YAML_NODES = 100_000  # nodes after alias expansion; params.yaml has ~400. Refuses "billion laughs" documents


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            if isinstance(key, typing.Hashable) and key in seen:
                raise ConfigError(f"{self.name}:{key_node.start_mark.line + 1}: duplicate key {key!r} (first on line "
                                  f"{seen[key] + 1}): keep one")
            if isinstance(key, typing.Hashable):
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes in the document once every alias is expanded (memoised per node: linear in the written document)."""
    if id(node) not in memo:
        memo[id(node)] = 1  # a recursive alias counts once
        if isinstance(node, yaml.SequenceNode):
            memo[id(node)] += sum(_expanded_size(child, memo) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            memo[id(node)] += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    return memo[id(node)]


def read_yaml(path: str | Path, what: str = "file") -> Any:
    """One YAML document from a user-written file (params, a profile, a sweep spec): safe types only, no duplicate
    keys, at most `MAX_YAML_NODES` nodes after alias expansion. Every problem is a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        with path.open(encoding="utf-8") as stream:
            loader = _StrictLoader(stream)
            try:
                node = loader.get_single_node()
                if node is None:
                    return None
                if (size := _expanded_size(node, {})) > MAX_YAML_NODES:
                    raise ConfigError(f"{path}: {size:,} YAML nodes once its aliases are expanded (more than "
                                      f"{MAX_YAML_NODES:,}): write the values out instead of nesting aliases")
                return loader.construct_document(node)
            finally:
                loader.dispose()
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text: {e}") from None


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path} (run from the project root or pass --params)")
    data = read_yaml(path, "params file") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of stage sections, got {type(data).__name__}")
    return data


def load_config(cls: type[T], params: dict[str, Any] | str | Path, section: str) -> T:
    """Build `cls` from `params[section]` (params may be a dict or a params.yaml path)."""
    if not isinstance(params, dict):
        params = load_params(params)
    if section not in params:
        raise ConfigError(f"params has no section '{section}' (sections present: {sorted(params)})")
    return from_dict(cls, params[section], where=section)


def from_dict(cls: type[T], data: Any, where: str) -> T:
    """Validate plain data (as YAML gives it) into `cls`; every problem is named by its dotted key under `where`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}: {data!r}")
    _check_keys_are_text(data, where)
    try:
        return _adapter(cls).validate_json(json.dumps(data, default=_unsupported))
    except pydantic.ValidationError as e:
        raise ConfigError(_describe(cls, e, where)) from None


@functools.cache
def _adapter(cls: type) -> pydantic.TypeAdapter:
    if not pydantic.dataclasses.is_pydantic_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a config: declare it with @config_dataclass")
    return pydantic.TypeAdapter(cls)


def _check_keys_are_text(data: Any, where: str) -> None:
    """JSON would turn a YAML mapping key `3` into "3"; the strict rule is that keys are text."""
    if isinstance(data, dict):
        for key, value in data.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where} key {key!r}: expected text, got {type(key).__name__}")
            _check_keys_are_text(value, f"{where}.{key}")
    elif isinstance(data, list | tuple):
        for i, item in enumerate(data):
            _check_keys_are_text(item, f"{where}[{i}]")


def _unsupported(value: Any) -> Any:
    raise TypeError(f"unsupported value {value!r} ({type(value).__name__})")


# pydantic's error types as this project words them; `{got}` is ", got <type>: <value>"
_EXPECTED = {"int_type": "expected int", "int_from_float": "expected int", "float_type": "expected float",
             "bool_type": "expected bool", "string_type": "expected str", "tuple_type": "expected a list",
             "list_type": "expected a list", "dict_type": "expected a mapping", "dataclass_type": "expected a mapping",
             "finite_number": "expected a finite number"}
_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


def _describe(cls: type, error: pydantic.ValidationError, where: str) -> str:
    """One line per problem, `<dotted key>: <why>`; unknown and missing keys are grouped per mapping."""
    lines: list[str] = []
    unknown: dict[str, list[str]] = {}
    missing: dict[str, list[str]] = {}
    choices: dict[str, tuple[Any, list[str]]] = {}  # a union of Literals fails once per arm: one line for all
    names = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
    for e in error.errors(include_url=False):
        if e["loc"] and isinstance(e["loc"][0], int) and e["loc"][0] < len(names):  # a positional argument
            e["loc"] = (names[e["loc"][0]], *e["loc"][1:])
        path, parent, key = _path(e["loc"], where), _path(e["loc"][:-1], where), str(e["loc"][-1]) if e["loc"] else ""
        kind, got = e["type"], e.get("input")
        if kind in ("unexpected_keyword_argument", "extra_forbidden"):
            unknown.setdefault(parent, []).append(key)
        elif kind in ("missing", "missing_keyword_argument"):
            missing.setdefault(parent, []).append(key)
        elif kind == "literal_error":
            choices.setdefault(path, (got, []))[1].append(e["ctx"]["expected"].replace(" or ", ", "))
        elif kind == "config_rule":
            lines.append(_join(e["ctx"]["problems"], path))
        else:
            optional = type(None) in typing.get_args(_type_at(cls, path, where))
            lines.append(f"{path}: {_why(kind, e, got, optional)}")
    lines += [f"{path}: {got!r} is not one of [{', '.join(expected)}]" for path, (got, expected) in choices.items()]
    for parent in sorted(set(unknown) | set(missing)):
        parts = [f"unknown keys {sorted(unknown[parent])}"] if parent in unknown else []
        parts += [f"missing keys {sorted(missing[parent])}"] if parent in missing else []
        lines.append(f"{parent}: {' and '.join(parts)}; expected keys: {_fields_at(cls, parent, where)}")
    return "; ".join(lines)


def _why(kind: str, e: Any, got: Any, optional: bool) -> str:
    if kind in _BOUNDS:
        bound = next(iter(e["ctx"].values()))
        return f"must be {_BOUNDS[kind]} {bound:g}, got {got!r}"
    if kind == "value_error":
        return str(e["ctx"]["error"])
    if kind == "finite_number":
        return f"expected a finite number, got {got!r}"
    if kind in _EXPECTED:
        expected = _EXPECTED[kind].replace("expected ", "expected null or ", 1) if optional else _EXPECTED[kind]
        return f"{expected}, got {type(got).__name__}: {got!r}{_hint(kind, got)}"
    return f"{e['msg']}, got {got!r}"


def _path(loc: tuple[Any, ...], where: str) -> str:
    out = where
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" not in str(part) and "-" not in str(part):  # skip the branch tags of unions (`literal['a']`)
            out = _key(out, str(part))
    return out


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where and key else where or key


def _fields_at(cls: type, parent: str, where: str) -> list[str]:
    """The field names of the config dataclass found at dotted key `parent` (for "expected keys")."""
    tp = _unwrap(_type_at(cls, parent, where))
    return sorted(f.name for f in dataclasses.fields(tp)) if dataclasses.is_dataclass(tp) else []


def _type_at(cls: type, path: str, where: str) -> Any:
    """The declared type at dotted key `path` (`where.a.b[0].c`) of config dataclass `cls`; Any where unknown."""
    tp: Any = cls
    for part in path[len(where):].replace("[", ".[").split("."):
        if not part:
            continue
        tp = _unwrap(tp)
        if part.startswith("["):
            args = typing.get_args(tp)
            tp = args[0] if args else Any
        else:
            tp = typing.get_type_hints(tp, include_extras=True).get(part, Any) if dataclasses.is_dataclass(tp) else Any
    return tp


def _unwrap(tp: Any) -> Any:
    """`X`, from `Annotated[X, …]` and `X | None`."""
    if typing.get_origin(tp) is Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        return _unwrap(arms[0]) if len(arms) == 1 else tp
    return tp


def _hint(kind: str, value: Any) -> str:
    """The fix for YAML's number surprises: a quoted number is text, and PyYAML reads `1e-5` (no dot) as text."""
    if kind in ("int_type", "float_type") and isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        if "e" in value.lower() and "." not in value:
            return " (YAML reads an exponent number without a dot as text: write 1.0e-5, not 1e-5)"
        return " (a quoted number is text in YAML: write it without quotes)"
    return ""


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-data view of a config (tuples become lists) for saving beside outputs."""
    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    return conv(cfg)
