"""One strict loader from a `params.yaml` section to a frozen dataclass, and the one way configs declare their rules.

Unknown and missing keys are rejected with a message naming them; nested dataclasses and tuples of them are built
recursively; scalar types are checked (int accepted where float is declared; NaN and infinities never are), and
`Literal` fields accept only their listed values.

Rules beyond the type live on the config dataclass itself, so they hold however it is built (the loader,
`dataclasses.replace`, a test): the dataclass derives from `Checked`, bounds each number with
`Annotated[int, Range(ge=1)]` (or an alias such as `PositiveInt`), and states cross-field rules in `check()`.
A violation raises `FieldError`; the loader turns it into a `ConfigError` naming the full dotted key
(`train_sft.scale.w_start: must be in [0, 1], got 1.5`). A stage's `main` prints that and exits 2.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml

from scalevlm.errors import PipelineError

T = TypeVar("T")


class ConfigError(PipelineError, ValueError):
    """A params section does not match its stage's Config."""


class FieldError(ConfigError):
    """Rule violations of one config dataclass, each as (key relative to it, problem); the loader adds the path."""

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{key}: {problem}" if key else problem for key, problem in self.problems))


# Declared rules ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Range:
    """Bounds of a number field: `Annotated[float, Range(ge=0, lt=1)]`. The value must also be finite."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, got {type(value).__name__}: {value!r}"
        if not math.isfinite(value):
            return f"expected a finite number, got {value!r}"
        ok = ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
              and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))
        return None if ok else f"must be {self}, got {value!r}"

    def __str__(self) -> str:
        low = f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}" if self.gt is not None else None
        high = f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})" if self.lt is not None else None
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f"{'>=' if self.ge is not None else '>'} {low[1:]}"
        return f"{'<=' if self.le is not None else '<'} {high[:-1]}" if high else "a number"


def _num(x: float) -> str:
    return f"{x:g}"


@dataclasses.dataclass(frozen=True)
class NonEmpty:
    """A string with non-whitespace text, or a list with at least one item: `Annotated[str, NonEmpty()]`."""

    def problem(self, value: Any) -> str | None:
        empty = not value.strip() if isinstance(value, str) else len(value) == 0
        return "must not be empty" if empty else None


PositiveInt = Annotated[int, Range(ge=1)]
NonNegativeInt = Annotated[int, Range(ge=0)]  # seeds, counts where 0 means "none" or "default"
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(ge=0)]
Probability = Annotated[float, Range(ge=0, le=1)]  # probabilities, rates, weights in [0, 1]
Fraction = Annotated[float, Range(ge=0, lt=1)]  # a share of something that must leave the rest non-empty
Text = Annotated[str, NonEmpty()]

Problems = Iterator[tuple[str, str]]


class Checked:
    """Base of config dataclasses: construction checks the `Annotated` rules of every field, then `check()`."""

    def __post_init__(self) -> None:
        problems = [p for f in dataclasses.fields(self) for p in _rule_problems(_hints(type(self))[f.name],  # type: ignore[arg-type]
                                                                                 getattr(self, f.name), f.name)]
        if not problems:  # cross-field rules may assume every field is in range (no division by zero)
            problems = list(self.check())
        if problems:
            raise FieldError(problems)

    def check(self) -> Problems:
        """Cross-field rules: yield (key relative to this dataclass, problem) for each violation ("" = the whole)."""
        return iter(())


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _rule_problems(tp: Any, value: Any, key: str) -> Problems:
    """Violations of the `Annotated` rules found in `tp` (also inside `X | None` and tuples) by `value`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        yield from _rule_problems(args[0], value, key)
        for rule in tp.__metadata__:
            if isinstance(rule, Range | NonEmpty) and (problem := rule.problem(value)):
                yield key, problem
                return
    elif origin in (typing.Union, types.UnionType):
        if value is not None:
            arms = [a for a in args if a is not type(None)]
            yield from _rule_problems(arms[0], value, key) if len(arms) == 1 else ()
    elif origin in (tuple, list) and isinstance(value, tuple | list) and args:
        for i, item in enumerate(value):
            yield from _rule_problems(args[0], item, f"{key}[{i}]")


# Loading ----------------------------------------------------------------------------------------------------------


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path} (run from the project root or pass --params)")
    try:
        with path.open() as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
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
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}: {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields), key=str)
    required = {n for n, f in fields.items() if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING}
    missing = sorted(required - set(data))
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"unknown keys {unknown}")
        if missing:
            parts.append(f"missing keys {missing}")
        raise ConfigError(f"{where}: {' and '.join(parts)}; expected keys: {sorted(fields)}")
    kwargs = {name: _coerce(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except FieldError as e:
        raise ConfigError("; ".join(f"{where}.{key}: {problem}" if key else f"{where}: {problem}"
                                    for key, problem in e.problems)) from None
    except (ValueError, TypeError) as e:  # a dataclass outside the `Checked` convention still names its section
        raise ConfigError(f"{where}: {e}") from None


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except ConfigError as e:
                errors.append(str(e))
        if len(errors) == 1:  # `X | None`: X's own message, with null named as the other choice
            raise ConfigError(errors[0].replace(": expected ", ": expected null or ", 1) if type(None) in args
                              else errors[0])
        raise ConfigError(f"{where}: {value!r} matches none of {args}: {errors}")
    if origin is typing.Literal:
        if value not in args or isinstance(value, bool) != any(isinstance(a, bool) for a in args):
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}: {value!r}")
        item = args[0] if args else Any
        return tuple(_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}: {value!r}")
        key_tp, value_tp = args or (Any, Any)
        return {_coerce(key_tp, k, f"{where} key {k!r}"): _coerce(value_tp, v, f"{where}.{k}")
                for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp in (int, float, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {type(value).__name__}: "
                              f"{value!r}{_hint(tp, value)}")
        return value
    raise ConfigError(f"{where}: unsupported config type {tp!r}")


def _hint(tp: Any, value: Any) -> str:
    """The fix for YAML's number surprises: a quoted number is text, and PyYAML reads `1e-5` (no dot) as text."""
    if tp in (int, float) and isinstance(value, str):
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
