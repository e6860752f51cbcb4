"""The one validation mechanism of the settings dataclasses: every refusal is one line naming field, value, rule."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import pytest
from pydantic import Field

from slocal.config import build, config_dataclass, type_name
from slocal.errors import SlocalError


@config_dataclass
class _Settings:
    rate: Annotated[float, Field(gt=0)] = 1.0
    count: Annotated[int, Field(ge=1, le=10)] = 2
    mode: Literal["a", "b"] = "a"
    sizes: tuple[Annotated[int, Field(ge=8)], ...] = (8, 16)
    limit: Annotated[float, Field(gt=0)] | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < self.rate:
            raise SlocalError(f"_Settings: limit ({self.limit}) must be >= rate ({self.rate})")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rate": 0}, "_Settings: rate must be > 0, got 0"),
        ({"count": 11}, "_Settings: count must be <= 10, got 11"),
        ({"count": 0}, "_Settings: count must be >= 1, got 0"),
        ({"mode": "c"}, "_Settings: mode must be one of 'a' or 'b', got 'c'"),
        ({"sizes": (8, 4)}, r"_Settings: sizes\[1\] must be >= 8, got 4"),
        ({"limit": -1.0}, "_Settings: limit must be > 0, got -1.0"),
        ({"rate": "fast"}, "_Settings, key 'rate': expected float, got 'fast'"),
        ({"count": 2.5}, "_Settings, key 'count': expected int, got 2.5"),
        ({"rte": 1.0}, "_Settings: unknown key 'rte'; known: rate, count, mode, sizes, limit"),
        ({"rate": 2.0, "limit": 1.0}, r"_Settings: limit \(1.0\) must be >= rate \(2.0\)"),
    ],
)
def test_construction_refuses_naming_the_field_the_value_and_the_rule(kwargs, message):
    with pytest.raises(SlocalError, match=message) as info:
        _Settings(**kwargs)
    assert "\n" not in str(info.value)


def test_values_are_coerced_and_the_result_is_frozen():
    s = _Settings(rate="1e-3", count="3", sizes=[8, 32], limit=2)
    assert s.rate == 0.001 and s.count == 3 and s.sizes == (8, 32) and s.limit == 2.0
    assert isinstance(s.limit, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.rate = 2.0  # type: ignore[misc]
    assert dataclasses.replace(s, count=4).count == 4
    with pytest.raises(SlocalError, match="count must be >= 1"):
        dataclasses.replace(s, count=0)


def test_build_names_the_file_and_section(tmp_path):
    source = tmp_path / "mine.yaml"
    with pytest.raises(SlocalError) as info:
        build(_Settings, {"rate": -2.0}, source, "section 'x'")
    assert str(info.value) == f"{source}: section 'x': rate must be > 0, got -2.0"
    with pytest.raises(SlocalError) as info:
        build(_Settings, {"rate": 2.0, "limit": 1.0}, source, "section 'x'")
    assert str(info.value) == f"{source}: section 'x': _Settings: limit (1.0) must be >= rate (2.0)"
    assert build(_Settings, {"count": "5"}, source) == _Settings(count=5)


def test_type_names_read_as_written():
    assert type_name(float) == "float"
    assert type_name(tuple[float, float, float]) == "tuple[float, float, float]"
    assert type_name(tuple[int, ...]) == "tuple[int, ...]"
    assert type_name(int | None) == "int | None"
    assert type_name(Literal["a", "b"]) == "'a' | 'b'"
