"""One validation mechanism for every settings dataclass: pydantic dataclasses, frozen and strict about keys.

A config class is declared with ``@config_dataclass``; each field states its type and, where a
range applies, the rule as a pydantic constraint::

    @config_dataclass
    class PnpConfig:
        threshold_px: Annotated[float, Field(gt=0)] = 10.0
        ransac_points: Annotated[int, Field(ge=4)] | None = None

Constructing one validates and coerces every value (``"1e-3"`` -> 0.001, a list -> a tuple, an
int -> a float), refuses unknown keys, and turns any violation into one ``SlocalError`` line
naming the class (or the file and section), the field, the value and the rule::

    PnpConfig: threshold_px must be > 0, got -1.0

Rules that tie several fields together stay in the class's ``__post_init__``, which runs after
the fields are validated and raises ``SlocalError`` itself. ``build`` is the same validation for
values read from a file (it names the file and section instead of the class).

pydantic rather than hand-written checks: it already coerces YAML's strings and lists, and its
error records say which rule a value broke, so one formatter serves every config.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from slocal.errors import SlocalError

T = TypeVar("T")

# Frozen; unknown keys are errors (a typo must not fall back to a default); defaults are trusted
# as written (not re-validated, so a default's type, e.g. an int for a float, is kept as it is).
CONFIG = ConfigDict(extra="forbid")

# pydantic error type -> the rule it enforces, phrased from the error's context.
_RULES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "multiple_of": "must be a multiple of {multiple_of}",
    "literal_error": "must be one of {expected}",
    "string_too_short": "must have at least {min_length} character(s)",
    "too_short": "must have at least {min_length} item(s)",
    "too_long": "must have at most {max_length} item(s)",
}


def config_dataclass(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen pydantic dataclass whose construction errors are ``SlocalError`` lines."""
    cls = pydantic_dataclass(cls, frozen=True, config=CONFIG)
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except ValidationError as exc:
            raise SlocalError(describe_error(exc, type(self), kwargs, type(self).__name__)) from None

    cls.__init__ = __init__
    return cls


def build(kind: Any, values: Mapping[str, Any], source: str | Path | None = None, context: str = "") -> Any:
    """Validate ``values`` into ``kind`` (a config class, or a union of them) as read from ``source``.

    Raises:
        SlocalError: one line naming ``source``, ``context`` (e.g. ``section 'train'``), the key,
            the value and the rule or expected type; or what the class's ``__post_init__`` refuses.
    """
    try:
        return _adapter(kind).validate_python(dict(values))
    except ValidationError as exc:
        raise SlocalError(describe_error(exc, kind, values, context), source) from None
    except SlocalError as exc:
        raise SlocalError(f"{context}: {exc.message}" if context else exc.message, source) from None


@functools.cache
def _adapter(kind: Any) -> TypeAdapter:
    return TypeAdapter(kind)


def describe_error(exc: ValidationError, kind: Any, values: Mapping[str, Any], context: str) -> str:
    """The first error of ``exc`` in one line: ``<context>: <key> must be > 0, got -1``, or a type mismatch."""
    err = exc.errors(include_url=False)[0]
    ctx = {k: f"{v:g}" if isinstance(v, float) else v for k, v in (err.get("ctx") or {}).items()}
    tag_field, members = _discriminator(kind), _members_by_tag(kind)
    head = f"{context}: " if context else ""
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        expected = ", ".join(repr(t) for t in members)
        return f"{head}{tag_field} must be one of {expected}, got {values.get(tag_field)!r}"
    loc = list(err["loc"])
    cls = members.get(loc[0]) if loc and tag_field else None
    if cls is not None:
        loc = loc[1:]  # a union member's errors start with its tag
    else:
        cls = kind if isinstance(kind, type) else None
    key = str(loc[0]) if loc else "?"
    where = key + "".join(f"[{p}]" for p in loc[1:])
    value = values.get(key, err.get("input")) if len(loc) == 1 else err.get("input")
    if err["type"] == "unexpected_keyword_argument":
        known = ", ".join(field_names(cls)) if cls is not None else "?"
        return f"{head}unknown key {key!r}; known: {known}"
    if err["type"] == "string_too_short" and ctx.get("min_length") == 1:
        return f"{head}{where} must not be empty"
    if err["type"] in _RULES:
        return f"{head}{where} {_RULES[err['type']].format(**ctx)}, got {value!r}"
    expected = type_name(typing.get_type_hints(cls).get(key, "?")) if cls is not None else "?"
    where_key = f"{context}, key {where!r}" if context else f"key {where!r}"
    return f"{where_key}: expected {expected}, got {value!r} ({err['msg']})"


def field_names(cls: type) -> list[str]:
    """The fields of a config class, in declaration order."""
    return [f.name for f in dataclasses.fields(cls)]


def type_name(tp: Any) -> str:
    """A type as a user reads it: ``float``, ``tuple[float, float, float]``, ``int | None``."""
    if isinstance(tp, str):
        return tp
    if tp is type(None):
        return "None"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is not None:
        inner = [("..." if a is Ellipsis else type_name(a)) for a in args]
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(inner)}]"
    return getattr(tp, "__name__", str(tp))


def _discriminator(kind: Any) -> str | None:
    """The field that tells the members of an ``Annotated[A | B, Field(discriminator=...)]`` apart."""
    if typing.get_origin(kind) is not typing.Annotated:
        return None
    for meta in typing.get_args(kind)[1:]:
        tag = getattr(meta, "discriminator", None)
        if isinstance(tag, str):
            return tag
    return None


def _members_by_tag(kind: Any) -> dict[str, type]:
    """``{tag: class}`` of a discriminated union (pydantic puts the tag first in a member's error loc)."""
    tag_field = _discriminator(kind)
    if tag_field is None:
        return {}
    out = {}
    for cls in typing.get_args(typing.get_args(kind)[0]):
        for tag in typing.get_args(typing.get_type_hints(cls)[tag_field]):
            out[tag] = cls
    return out


__all__ = ["CONFIG", "build", "config_dataclass", "describe_error", "field_names", "type_name"]
