"""The strict params loader: unknown, missing, mistyped and out-of-range keys are errors that name them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Literal

import pytest

from scalevlm.config import (
    Checked,
    ConfigError,
    NonEmpty,
    NonNegativeInt,
    PositiveInt,
    Problems,
    Range,
    Text,
    config_dataclass,
    from_dict,
    load_config,
    load_params,
    to_dict,
)


@config_dataclass
class Inner:
    kind: Literal["a", "b"]
    weight: float


@config_dataclass
class Outer:
    steps: int
    name: str
    inner: Inner
    items: tuple[Inner, ...]
    limit: int | None
    flag: bool = False


GOOD = {"steps": 3, "name": "x", "inner": {"kind": "a", "weight": 1}, "items": [{"kind": "b", "weight": 0.5}],
        "limit": None}


def test_builds_nested_frozen_config() -> None:
    cfg = from_dict(Outer, GOOD, "s")
    assert cfg.inner == Inner("a", 1.0) and isinstance(cfg.inner.weight, float)
    assert cfg.items == (Inner("b", 0.5),) and cfg.flag is False
    assert to_dict(cfg)["items"] == [{"kind": "b", "weight": 0.5}]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"extra": 1}, r"s: unknown keys \['extra'\]"),
        ({"steps": None}, r"s.steps: expected int, got NoneType"),
        ({"steps": "3"}, r"s.steps: expected int, got str"),
        ({"steps": True}, r"s.steps: expected int, got bool"),
        ({"inner": {"kind": "c", "weight": 1.0}}, r"s.inner.kind: 'c' is not one of \['a', 'b'\]"),
        ({"inner": {"kind": "a"}}, r"s.inner: missing keys \['weight'\]"),
        ({"items": {"kind": "a"}}, r"s.items: expected a list"),
        ({"limit": "x"}, r"s.limit: expected null or int, got str: 'x'"),
    ],
    ids=["unknown_key", "none_for_int", "str_for_int", "bool_for_int", "bad_literal", "nested_missing", "not_a_list",
         "bad_optional"],
)
def test_rejects_bad_values(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, {**GOOD, **change}, "s")


def test_missing_keys_are_listed_with_the_expected_keys() -> None:
    data = {k: v for k, v in GOOD.items() if k not in ("steps", "name")}
    with pytest.raises(ConfigError, match=r"missing keys \['name', 'steps'\]; expected keys: \["):
        from_dict(Outer, data, "s")


def test_missing_section_and_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "p.yaml").write_text("other: {}\n")
    with pytest.raises(ConfigError, match=r"no section 'outer' \(sections present: \['other'\]\)"):
        load_config(Outer, tmp_path / "p.yaml", "outer")


# Declared rules: pydantic config dataclasses with `Annotated` bounds and cross-field `check()` ----------------------


@config_dataclass
class Part(Checked):
    size: PositiveInt
    share: Annotated[float, Range(ge=0, lt=1)]


@config_dataclass
class Whole(Checked):
    low: NonNegativeInt
    high: PositiveInt
    name: Text
    tags: Annotated[tuple[Text, ...], NonEmpty()]
    limit: PositiveInt | None
    parts: tuple[Part, ...]

    def check(self) -> Problems:
        if self.low > self.high:
            yield "low", f"{self.low} exceeds high {self.high}"


WHOLE = {"low": 1, "high": 2, "name": "w", "tags": ["t"], "limit": None, "parts": [{"size": 1, "share": 0.5}]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"high": 0}, r"^w\.high: must be >= 1, got 0$"),
        ({"low": -1, "high": 0}, r"^w\.low: must be >= 0, got -1; w\.high: must be >= 1, got 0$"),
        ({"low": 3}, r"^w\.low: 3 exceeds high 2$"),
        ({"name": "  "}, r"^w\.name: must not be empty$"),
        ({"tags": []}, r"^w\.tags: must not be empty$"),
        ({"tags": ["a", ""]}, r"^w\.tags\[1\]: must not be empty$"),
        ({"limit": 0}, r"^w\.limit: must be >= 1, got 0$"),
        ({"limit": "3"}, r"^w\.limit: expected null or int, got str: '3' \(a quoted number is text in YAML"),
        ({"parts": [{"size": 1, "share": 1.0}]}, r"^w\.parts\[0\]\.share: must be < 1, got 1\.0$"),
        ({"parts": [{"size": 1, "share": float("nan")}]}, r"^w\.parts\[0\]\.share: expected a finite number, got nan$"),
        ({"parts": [{"size": 1, "share": "1e-3"}]}, r"without a dot as text: write 1\.0e-5"),
    ],
    ids=["range", "all_ranges_at_once", "cross_field", "blank_text", "empty_tuple", "empty_item", "optional_range",
         "quoted_number", "nested_item", "nan", "yaml_exponent"],
)
def test_declared_rules_name_the_dotted_key(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(Whole, {**WHOLE, **change}, "w")


def test_rules_hold_however_the_config_is_built() -> None:
    whole = from_dict(Whole, WHOLE, "w")
    with pytest.raises(ConfigError, match=r"^low: 3 exceeds high 2$"):
        dataclasses.replace(whole, low=3)
    with pytest.raises(ConfigError, match=r"^size: expected int, got str: '1'"):
        Part("1", 0.5)  # type: ignore[arg-type]
    assert str(Range(gt=0)) == "> 0" and str(Range(ge=0, le=1)) == "in [0, 1]" and str(Range(lt=2)) == "< 2"


def test_mapping_keys_must_be_text() -> None:
    """Validation goes through JSON, which would turn a YAML key `3` into "3": the loader refuses it first."""

    @config_dataclass
    class Mapping:
        names: dict[str, str]

    assert from_dict(Mapping, {"names": {"a": "b"}}, "m").names == {"a": "b"}
    with pytest.raises(ConfigError, match=r"m\.names key 3: expected text, got int"):
        from_dict(Mapping, {"names": {3: "b"}}, "m")


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_params(tmp_path / "p.yaml")
