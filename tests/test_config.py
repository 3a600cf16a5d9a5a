"""The strict params loader: unknown, missing and mistyped keys are errors that name them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from scalevlm.config import ConfigError, from_dict, load_config, load_params, to_dict


@dataclass(frozen=True)
class Inner:
    kind: Literal["a", "b"]
    weight: float


@dataclass(frozen=True)
class Outer:
    steps: int
    name: str
    inner: Inner
    items: tuple[Inner, ...]
    limit: int | None
    flag: bool = False


GOOD = {"steps": 3, "name": "x", "inner": {"kind": "a", "weight": 1}, "items": [{"kind": "b", "weight": 0.5}], "limit": None}


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
        ({"limit": "x"}, r"s.limit: 'x' matches none of"),
    ],
    ids=["unknown_key", "none_for_int", "str_for_int", "bool_for_int", "bad_literal", "nested_missing", "not_a_list", "bad_optional"],
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
