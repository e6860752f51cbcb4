"""Teachers: per-pixel world-frame scene coordinates for the mapping frames.

``make_teacher(name, **options)`` builds one of ``TEACHERS``; ``ensure_targets``
caches what it produces under ``<runs>/<scene>/targets/``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import typing
from collections.abc import Sequence

from pydantic import TypeAdapter, ValidationError

from slocal.errors import SlocalError
from slocal.teach.colmap_teacher import ColmapTeacher, ColmapTeacherConfig
from slocal.teach.depth import DepthTeacher, DepthTeacherConfig
from slocal.teach.dust3r.teacher import Dust3rTeacher, Dust3rTeacherConfig
from slocal.teach.fused import FusedTeacher, FusedTeacherConfig
from slocal.teach.mvs import MvsTeacher, MvsTeacherConfig
from slocal.teach.sfm import SfmTeacher, SfmTeacherConfig
from slocal.teach.targets import FrameTargets, TargetSet, Teacher, ensure_targets, load_targets, target_stats

TEACHERS = ("depth", "sfm", "dust3r", "colmap", "fused", "mvs")

__all__ = [
    "TEACHERS",
    "FrameTargets",
    "TargetSet",
    "Teacher",
    "default_teacher",
    "differing_settings",
    "ensure_targets",
    "load_targets",
    "make_teacher",
    "non_default_settings",
    "parse_settings",
    "teacher_options",
    "target_stats",
]


def default_teacher(scene) -> str:
    """The teacher a scene gets unless one is named.

    ``depth`` for an RGB-D scene (7-Scenes' depth goes through the colour-depth rig first, see
    ``data.rig``): per-frame depth beat one fused TSDF surface on redkitchen-gap's held-out mapping
    frames once the teacher no longer saw those frames (``train.teach_held_out: false``; the earlier
    comparison, which let the fused surface be built with them, had it the other way:
    docs/lab-book.md, 2026-12-06, fifth session). ``colmap`` for a COLMAP model (its own points, no
    re-extraction), else ``sfm``.
    """
    if scene.has_depth:
        return "depth"
    return "colmap" if scene.format == "colmap" else "sfm"


def teacher_options(
    name: str, checkpoint: str | None = None, device: str | None = None, settings: Sequence[str] = ()
) -> dict:
    """The options of teacher ``name`` that users set from outside.

    Args:
        checkpoint, device: a DUSt3R checkpoint and torch device (``dust3r`` only).
        settings: ``KEY=VALUE`` fields of the teacher's config (``--teacher-option``); ``make_teacher``
            checks the keys and coerces the values.

    Raises:
        SlocalError: a setting without ``=`` or without a key.
    """
    options: dict = {}
    if name == "dust3r":
        options["checkpoint"] = str(checkpoint) if checkpoint else None
        if device:
            options["device"] = device
    return {**options, **parse_settings(settings)}


def parse_settings(settings: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings as a dict (values still strings: ``make_teacher`` coerces them).

    Raises:
        SlocalError: a setting without ``=`` or without a key.
    """
    parsed = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SlocalError(f"a teacher option is KEY=VALUE (e.g. smooth_px=15), got {item!r}")
        parsed[key.strip()] = value.strip()
    return parsed


_BUILDERS = {
    "depth": (DepthTeacher, DepthTeacherConfig),
    "sfm": (SfmTeacher, SfmTeacherConfig),
    "colmap": (ColmapTeacher, ColmapTeacherConfig),
    "dust3r": (Dust3rTeacher, Dust3rTeacherConfig),
    "fused": (FusedTeacher, FusedTeacherConfig),
    "mvs": (MvsTeacher, MvsTeacherConfig),
}


@functools.cache
def _adapter(config_cls: type) -> TypeAdapter:
    return TypeAdapter(config_cls)


def make_teacher(name: str, /, **options) -> Teacher:
    """Build a teacher by name; ``options`` are fields of its config dataclass.

    Options are checked and coerced to the field types by pydantic (``max_side="80"`` is 80), so a
    wrongly typed value is one error naming the option rather than a ``TypeError`` from comparing
    it in the config's own checks. ``name`` is positional only: an option called ``name`` is an
    unknown option, not a second teacher name.

    Raises:
        SlocalError: an unknown teacher, an option its config does not have, a value of the wrong
            type, or one the config refuses.
    """
    if name not in _BUILDERS:
        raise SlocalError(f"unknown teacher {name!r}; choose one of {', '.join(TEACHERS)}")
    teacher_cls, config_cls = _BUILDERS[name]
    # The fields' types without their range constraints (``Annotated[int, Field(ge=8)]`` -> int).
    types = {k: getattr(v, "__name__", str(v)) for k, v in typing.get_type_hints(config_cls).items()}
    unknown = sorted(set(options) - set(types))
    if unknown:
        raise SlocalError(
            f"the {name} teacher has no option {', '.join(unknown)}; its options: {', '.join(sorted(types))}"
        )
    # Config fields hold paths as strings (they enter the targets' cache key); accept a Path too.
    options = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in options.items()}
    try:
        config = _adapter(config_cls).validate_python(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "?"
        raise SlocalError(
            f"the {name} teacher's option {key} must be {types.get(key, '?')}, got {options.get(key)!r} ({err['msg']})"
        ) from exc
    return teacher_cls(config)


def non_default_settings(name: str, settings: dict) -> dict:
    """The entries of a teacher's ``settings()`` that differ from its config's defaults.

    What a report names beside the teacher (``depth (smooth_px=15)``). Entries that are not config
    fields (a cache version, a checkpoint's identity) are not compared.
    """
    if name not in _BUILDERS:
        return {}
    defaults = {
        f.name: f.default for f in dataclasses.fields(_BUILDERS[name][1]) if f.default is not dataclasses.MISSING
    }
    return {k: v for k, v in settings.items() if k in defaults and _plain(v) != _plain(defaults[k])}


def differing_settings(a: dict, b: dict) -> list[str]:
    """The keys, sorted, whose values differ between two teachers' settings (a key one lacks included)."""
    return sorted(k for k in {*a, *b} if a.get(k) != b.get(k))


def _plain(value):
    return list(value) if isinstance(value, tuple) else value
