"""Presets, YAML files and stored dicts -> the typed student and training settings of ``config.py``.

A preset (``ace-lite0``, ``ace-lite0-std``, ``hybrid-lite0``, ``cnn-small``, ``cnn-resnet18``,
``vit-tiny``, ``vit-small``; aliases ``ace``, ``cnn`` and ``vit``) is a YAML file in
``slocal/distill/presets/`` (package data, the only source of the presets; ``aliases.yaml``
there maps the short names). Each lists every field that applies to its architecture and
recipe, and is the starting point for custom files::

    student:            # fields of the architecture's StudentConfig class (arch picks it)
      arch: cnn
      widths: [32, 64, 128, 256]
    train:              # fields of its training settings (TrainConfig or BufferTrainConfig)
      lr: 0.002

Unknown keys, and keys that do not apply to the student's architecture, are errors naming the
file, so a typo never silently falls back to a default. Values are coerced and checked by
pydantic (``slocal.config``: PyYAML reads ``1e-3`` as a string; it becomes 0.001), and a bad
value is one line naming the file, the key, the value and the rule or expected type.

Model files and checkpoints store the settings as plain dicts (``to_plain``). Those written
before the settings were typed per architecture hold every architecture's fields; reading them
(``student_from_plain``, ``train_from_plain``) keeps the fields of the stored ``arch``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from slocal.config import build, field_names
from slocal.distill.config import (
    DEFAULT_STUDENT,
    STUDENT_CONFIGS,
    AceStudentConfig,
    AnyStudentConfig,
    BufferTrainConfig,
    StudentConfig,
    TrainConfig,
)
from slocal.errors import SlocalError
from slocal.runs import default_student_path

ALIASES_FILE = "aliases.yaml"
# Every key a section may hold, for some architecture: a key outside these is a typo.
STUDENT_KEYS = tuple(dict.fromkeys(k for cls in STUDENT_CONFIGS.values() for k in field_names(cls)))
TRAIN_KEYS = tuple(field_names(BufferTrainConfig))
# The architecture of a file that names none (the first student slocal had).
FALLBACK_ARCH = "cnn"

Source = str | Path | None


# --------------------------------------------------------------------------- presets


def _presets_dir() -> Traversable:
    return resources.files("slocal.distill") / "presets"


@functools.cache
def _presets() -> dict[str, Traversable]:
    return {
        f.name.removesuffix(".yaml"): f
        for f in _presets_dir().iterdir()
        if f.name.endswith(".yaml") and f.name != ALIASES_FILE
    }


@functools.cache
def _aliases() -> dict[str, str]:
    file = _presets_dir() / ALIASES_FILE
    aliases = yaml.safe_load(file.read_text()) or {}
    bad = {a: p for a, p in aliases.items() if p not in _presets()}
    if bad:
        raise SlocalError(f"aliases of missing presets: {bad}", str(file))
    return {str(a): str(p) for a, p in aliases.items()}


def presets() -> list[str]:
    """The presets, one YAML file each (no aliases)."""
    return sorted(_presets())


def preset_names() -> list[str]:
    """Every preset and alias."""
    return presets() + sorted(_aliases())


def resolve_preset(name: str) -> str:
    """The preset a name or alias refers to."""
    name = _aliases().get(name, name)
    if name not in _presets():
        raise SlocalError(f"unknown student {name!r}; choose one of {', '.join(preset_names())} or pass --config FILE")
    return name


def preset_file(name: str) -> Traversable:
    """The YAML file of a preset or alias (package data)."""
    return _presets()[resolve_preset(name)]


# --------------------------------------------------------------------------- files


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error in one line (its message draws the line and a caret below it)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split())


def _section(values: Any, known: tuple[str, ...], source: Source, section: str) -> dict[str, Any]:
    """``values`` as a dict, refusing keys that no architecture has."""
    if not isinstance(values, Mapping):
        raise SlocalError(f"section {section!r} must be a mapping, got {type(values).__name__}", source)
    unknown = sorted(set(map(str, values)) - set(known))
    if unknown:
        raise SlocalError(
            f"unknown key(s) {', '.join(unknown)} in section {section!r}; known: {', '.join(known)}", source
        )
    return dict(values)


def _parse(text: str, source: str | Path) -> dict[str, dict[str, Any]]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise SlocalError(f"not valid YAML: {_yaml_problem(exc)}", source) from exc
    if not isinstance(data, dict):
        raise SlocalError("config must be a mapping with sections 'student' and/or 'train'", source)
    unknown = sorted(set(map(str, data)) - {"student", "train"})
    if unknown:
        raise SlocalError(f"unknown top-level key(s) {', '.join(unknown)}; expected 'student' and/or 'train'", source)
    return {
        "student": _section(data.get("student") or {}, STUDENT_KEYS, source, "student"),
        "train": _section(data.get("train") or {}, TRAIN_KEYS, source, "train"),
    }


def read_config_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a student/train YAML file into key-checked ``{"student": {...}, "train": {...}}`` (values not yet typed)."""
    path = Path(path)
    if not path.is_file():
        raise SlocalError("config file not found", path)
    return _parse(path.read_text(), path)


def student_class(values: Mapping[str, Any], source: Source = None) -> type[StudentConfig]:
    """The settings class of the architecture ``values`` name (``cnn`` when they name none)."""
    arch = values.get("arch", FALLBACK_ARCH)
    if arch not in STUDENT_CONFIGS:
        raise SlocalError(
            f"section 'student': arch must be one of {', '.join(map(repr, STUDENT_CONFIGS))}, got {arch!r}", source
        )
    return STUDENT_CONFIGS[arch]


def _refuse_inapplicable(cls: type, values: Mapping[str, Any], student: str, source: Source, section: str) -> None:
    others = sorted(set(values) - set(field_names(cls)))
    if others:
        verb = "does" if len(others) == 1 else "do"
        raise SlocalError(
            f"section {section!r}: {', '.join(others)} {verb} not apply to {student} "
            f"({cls.__name__}: {', '.join(field_names(cls))})",
            source,
        )


def _typed(s_values: dict[str, Any], t_values: dict[str, Any], source: Source) -> tuple[StudentConfig, TrainConfig]:
    """Both sections as their architecture's classes; keys of other architectures are refused."""
    s_cls = student_class(s_values, source)
    s_values = {"arch": s_cls.arch, **s_values}
    student = f"the {s_values['arch']} student {s_values.get('name', '')!r}"
    _refuse_inapplicable(s_cls, s_values, student, source, "student")
    _refuse_inapplicable(s_cls.train_config, t_values, student, source, "train")
    config = build(AnyStudentConfig, s_values, source, "section 'student'")
    train = build(s_cls.train_config, t_values, source, "section 'train'")
    return _check_together(config, train, source)


def _check_together(student: StudentConfig, train: TrainConfig, source: Source) -> tuple[StudentConfig, TrainConfig]:
    """Refuse training settings the student cannot use (each section alone is checked by its class)."""
    if not isinstance(train, BufferTrainConfig):
        return student, train
    frozen_ace = isinstance(student, AceStudentConfig) and not student.tune_encoder
    levels = list(getattr(student, "encoder_levels", ()))
    tuned = getattr(student, "tune_encoder", False)
    if train.level_dropout > 0 and (not frozen_ace or len(levels) < 2):
        raise SlocalError(
            f"train.level_dropout needs an ace student with two or more frozen encoder levels, not {student.name} "
            f"(arch {student.arch}, levels {levels}, tune_encoder {tuned})",
            source,
        )
    if train.standardize_input and not frozen_ace:
        raise SlocalError(
            f"train.standardize_input needs an ace student with a frozen encoder, not {student.name} "
            f"(arch {student.arch}, tune_encoder {tuned})",
            source,
        )
    return student, train


def configs_from_file(path: str | Path) -> tuple[StudentConfig, TrainConfig]:
    """The settings of a YAML file alone (the classes' defaults + the file, no preset)."""
    data = read_config_file(path)
    check_budget(data["train"].get("minutes"), data["train"].get("iterations"), path)
    return _typed(data["student"], data["train"], path)


def check_budget(minutes: float | None, iterations: int | None, source: Source = None) -> None:
    """Refuse a training budget given both ways: a wall-clock one and a number of head steps.

    Either alone replaces the budget of the layer below (preset, then file); given together, which one
    wins would be a guess.

    Args:
        source: the file the two come from; None for the command line.
    """
    if minutes is None or iterations is None:
        return
    if source is None:
        raise SlocalError("give the training budget as --iterations or --minutes, not both")
    raise SlocalError("give the training budget as train.iterations or train.minutes, not both", source)


def _overlay_train(t_values: dict[str, Any], layer: Mapping[str, Any], source: Source) -> None:
    """Set one layer's training values over ``t_values``; a budget the layer gives replaces the other kind."""
    check_budget(layer.get("minutes"), layer.get("iterations"), source)
    t_values.update(layer)
    if layer.get("iterations") is not None:
        t_values["minutes"] = None
    if layer.get("minutes") is not None:
        t_values["iterations"] = None


def load_configs(
    student: str = DEFAULT_STUDENT, config_file: str | Path | None = None, **train_overrides: Any
) -> tuple[StudentConfig, TrainConfig]:
    """The student and training settings: preset, then the YAML file, then overrides.

    A file that names another ``arch`` than the preset's starts from the preset's fields that
    apply to that architecture.

    Args:
        student: preset name or alias (``ace``, ``cnn``, ``vit``, ``cnn-small``, ...).
        config_file: optional YAML file whose sections override the preset.
        train_overrides: ``TrainConfig`` fields to set (None values are ignored); ``minutes`` and
            ``iterations`` are each a whole budget, so at most one of them may be set.
    """
    overrides = _section(
        {k: v for k, v in train_overrides.items() if v is not None}, tuple(field_names(TrainConfig)), None, "train"
    )
    preset = preset_file(student)
    data = _parse(preset.read_text(), str(preset))
    s_values, t_values = data["student"], data["train"]
    source: str | Path = str(preset)
    if config_file is not None:
        source = config_file
        data = read_config_file(config_file)
        if data["student"].get("arch", s_values["arch"]) != s_values["arch"]:
            cls = student_class(data["student"], source)
            s_values = {k: v for k, v in s_values.items() if k in field_names(cls)}
            t_values = {k: v for k, v in t_values.items() if k in field_names(cls.train_config)}
        s_values.update(data["student"])
        _overlay_train(t_values, data["train"], config_file)
    _overlay_train(t_values, overrides, None)
    return _typed(s_values, t_values, source)


def student_folder(student: str) -> str:
    """The folder name of a student: its preset with aliases resolved (``cnn`` -> ``cnn-small``).

    A name that is no preset (a student made from a custom --config) is kept as typed.
    """
    try:
        return resolve_preset(student)
    except SlocalError:
        return student


def default_model_path(runs_root: str | Path, scene_id: str, student: str = DEFAULT_STUDENT) -> Path:
    """Where ``slocal distill --student NAME`` writes a scene's student: ``<runs>/<scene>/students/<preset>/model.pt``.

    The one model path rule of distill, localize, export, view and bench: aliases name the same folder.
    """
    return default_student_path(runs_root, scene_id, student_folder(student))


# --------------------------------------------------------------------------- stored dicts


def _stored(cls: type, values: Any, known: tuple[str, ...], source: Source, section: str) -> dict[str, Any]:
    """The fields of ``cls`` among stored ``values``; another architecture's (an older file's) are dropped."""
    values = _section(values, known, source, section)
    return {k: v for k, v in values.items() if k in field_names(cls)}


def student_from_plain(values: Mapping[str, Any], source: Source = None) -> StudentConfig:
    """Rebuild a student's settings stored with ``to_plain`` (by a model file or checkpoint, of any version)."""
    cls = student_class(values, source)
    return build(cls, _stored(cls, values, STUDENT_KEYS, source, "student"), source, "section 'student'")


def train_from_plain(
    values: Mapping[str, Any], student: StudentConfig | type[StudentConfig], source: Source = None
) -> TrainConfig:
    """Rebuild the training settings of ``student`` stored with ``to_plain``."""
    cls = student.train_config
    return build(cls, _stored(cls, values, TRAIN_KEYS, source, "train"), source, "section 'train'")


__all__ = [
    "check_budget",
    "configs_from_file",
    "load_configs",
    "preset_file",
    "preset_names",
    "presets",
    "read_config_file",
    "resolve_preset",
    "student_class",
    "student_from_plain",
    "train_from_plain",
]
