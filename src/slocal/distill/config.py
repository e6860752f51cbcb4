"""Student and training settings: frozen dataclasses, named presets and YAML files.

A preset (``cnn-small``, ``cnn-resnet18``, ``vit-tiny``, ``vit-small``; aliases
``cnn`` and ``vit``) is a YAML file in ``slocal/distill/presets/`` (package data,
the only source of the presets; ``aliases.yaml`` there maps the short names).
Each lists every field and is the starting point for custom files::

    student:            # fields of StudentConfig
      arch: cnn
      widths: [32, 64, 128, 256]
    train:              # fields of TrainConfig
      lr: 0.002

Unknown keys are errors naming the file, so a typo never silently falls back
to a default. Values are coerced and type-checked by pydantic (PyYAML reads
``1e-3`` as a string; it becomes 0.001), and a value of the wrong type is one
line naming the file, the key, the expected type and the value.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, fields
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from slocal.device import PRECISIONS
from slocal.errors import SlocalError

# The student ``slocal distill``, ``localize``, ``bench`` and the demo use when none is named.
DEFAULT_STUDENT = "ace"
ARCHS = ("cnn", "timm", "vit", "ace", "hybrid")
# Students that run on a frozen pretrained encoder and train from a feature buffer.
BUFFER_ARCHS = ("ace", "hybrid")
NORMS = ("bn", "gn")
ALIASES_FILE = "aliases.yaml"


# Strides of the feature maps a pretrained encoder offers (``StudentConfig.encoder_levels``).
ENCODER_STRIDES = (8, 16, 32)


def check_encoder_levels(levels: tuple[int, ...]) -> None:
    """Refuse a level list that is not stride 8 followed by coarser ``ENCODER_STRIDES`` in increasing order."""
    levels = tuple(levels)
    if levels[:1] != (8,) or not set(levels) <= set(ENCODER_STRIDES) or levels != tuple(sorted(set(levels))):
        raise SlocalError(f"encoder_levels must be 8 followed by any of 16, 32 in order, got {list(levels)}")


@dataclass(frozen=True)
class StudentConfig:
    """The student network.

    Attributes:
        name: preset or user-chosen name (used for the output folder and stored in the model).
        arch: ``cnn`` (compact from-scratch ResNet), ``timm`` (a timm ``features_only``
            backbone + regression head), ``vit`` (a timm VisionTransformer + dense head),
            ``ace`` (frozen pretrained ``encoder`` + per-cell MLP head, trained ACE-style
            from a feature buffer) or ``hybrid`` (frozen ``encoder`` + transformer blocks over
            its stride-16 tokens + MLP head, trained from the same buffer).
        max_side: longer side of the network input in pixels; the scene's camera
            is rescaled to it (aspect kept, sides rounded to ``size_multiple``).
        size_multiple: input sides are rounded to a multiple of this.
        stride: output stride (coordinates on a grid of cells of this size).
        uncertainty: predict a per-cell log-uncertainty channel (exposed as confidence).
        widths: ``cnn``: channels at strides 2, 4, 8 and of the stride-16/32 context branch.
        blocks8: ``cnn``: residual blocks at stride 8.
        context: ``cnn``: add the stride-16/32 context branch (wider receptive field).
        norm: ``cnn``: ``bn`` (BatchNorm) or ``gn`` (GroupNorm).
        head_width, head_layers: the 1x1-conv regression head (hidden width, hidden layers).
        backbone: ``timm``/``vit``: timm model name.
        encoder: ``ace``/``hybrid``: pretrained encoder (``slocal.distill.encoder.ENCODERS``).
        encoder_levels: ``ace``/``hybrid``: the encoder's feature maps the head sees, by stride
            (8 always; 16 and 32 upsampled onto it). Fewer levels, a smaller receptive field.
        tune_encoder: ``ace``/``hybrid``: fine-tune the encoder's stride-16/32 stages per scene
            (the buffer then holds the frozen stride-8 map, and the model file the tuned stages).
        patch_size: ``vit``: patch size (8 or 16; None keeps the model's).
        vit_depth, vit_embed_dim, vit_heads: ``vit``: overrides of the timm model (None keeps them);
            ``hybrid``: the transformer over the encoder tokens (depth 4, dim 192, 3 heads if None).
        mean, std: input normalisation of RGB in [0, 1].
    """

    name: str = "cnn-small"
    arch: str = "cnn"
    max_side: int = 320
    size_multiple: int = 8
    stride: int = 8
    uncertainty: bool = False
    widths: tuple[int, ...] = (32, 64, 128, 256)
    blocks8: int = 2
    context: bool = True
    norm: str = "bn"
    head_width: int = 256
    head_layers: int = 3
    backbone: str = ""
    encoder: str = ""
    encoder_levels: tuple[int, ...] = (8, 16, 32)
    tune_encoder: bool = False
    patch_size: int | None = None
    vit_depth: int | None = None
    vit_embed_dim: int | None = None
    vit_heads: int | None = None
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise SlocalError(f"student arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.norm not in NORMS:
            raise SlocalError(f"student norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.stride != 8:
            raise SlocalError(f"only output stride 8 is implemented, got {self.stride}")
        if self.arch == "cnn" and len(self.widths) != 4:
            raise SlocalError(f"cnn widths must have 4 entries (strides 2, 4, 8, context), got {list(self.widths)}")
        if self.arch in BUFFER_ARCHS and not self.encoder:
            raise SlocalError(f"student arch {self.arch!r} needs a pretrained encoder name")
        check_encoder_levels(self.encoder_levels)
        if self.arch in BUFFER_ARCHS and self.size_multiple % max(self.encoder_levels):
            raise SlocalError(
                f"student arch {self.arch!r} with encoder levels {list(self.encoder_levels)} needs size_multiple "
                f"a multiple of {max(self.encoder_levels)}, got {self.size_multiple}"
            )
        if self.arch in ("timm", "vit") and not self.backbone:
            raise SlocalError(f"student arch {self.arch!r} needs a timm backbone name")
        if self.arch == "vit" and self.patch_size not in (None, 8, 16):
            raise SlocalError(f"vit patch_size must be 8 or 16, got {self.patch_size}")
        if self.max_side < 32 or self.size_multiple < 1 or self.size_multiple % self.stride:
            raise SlocalError(f"bad input size settings max_side={self.max_side} size_multiple={self.size_multiple}")
        if min(self.widths, default=1) < 1 or self.head_width < 1:
            raise SlocalError(f"widths and head_width must be >= 1, got {list(self.widths)} and {self.head_width}")
        if self.blocks8 < 0 or self.head_layers < 0:
            raise SlocalError(f"blocks8 and head_layers must be >= 0, got {self.blocks8} and {self.head_layers}")
        if min(self.std) <= 0:
            raise SlocalError(f"std must be > 0, got {list(self.std)}")


@dataclass(frozen=True)
class TrainConfig:
    """The distillation run.

    Attributes:
        minutes: wall-clock budget; the learning-rate schedule follows elapsed time.
        iterations: fixed iteration count instead (reproducible; resume is bit-exact).
            Exactly one of ``minutes`` and ``iterations`` is used; ``iterations`` wins.
        batch_size: images per iteration (per process under DDP).
        lr, weight_decay: AdamW settings; ``lr`` is the peak of the one-cycle schedule.
        warmup: fraction of the run spent warming the learning rate up.
        final_lr_factor: final learning rate as a fraction of ``lr``.
        aug_scale: images are rescaled by a factor in [1/(1+a), 1+a] about the principal point.
        aug_rotation: in-plane rotation range in degrees (about the principal point).
        aug_color: brightness/contrast jitter amplitude.
            Augmentation is off by default: on redkitchen (queries interleaved with the
            mapping views) it slowed convergence within a 10-minute CPU budget (see
            benchmarks/results/history/2026-11/distill_redkitchen_cpu.md); it may help where queries
            come from other viewpoints or lighting (e.g. scale 0.2, rotation 10, colour 0.2).
        loss_clamp: soft clamp (metres) of the Euclidean coordinate loss: errors above it grow
            only logarithmically (see ``losses.coordinate_loss``); None = plain distance.
        reproj_weight: weight of the reprojection loss (pixels at 640 px width), 0 = off.
        reproj_start: fraction of the run after which the reprojection loss is switched on.
        reproj_tau_start, reproj_tau_end: soft clamp of the reprojection loss (px at 640 width),
            tightened with a cosine schedule over the run.
        precision: ``auto`` (bf16 autocast on CUDA with bf16 and CPUs with native bf16),
            ``fp32`` or ``bf16``. The last layer always runs in fp32.
        val_frames: mapping frames held out for validation (evenly spaced), 0 = none.
        val_stretch: instead of ``val_frames``: hold out this fraction of the mapping frames as one
            contiguous stretch at the end of the trajectory (frames in name order), so validation
            measures localization away from the mapped views, as queries do. 0 = off.
        buffer_passes: ``ace``/``hybrid``: passes over each mapping image when filling the
            feature buffer; pass 0 is unaugmented, the others use the ``aug_*`` ranges.
        buffer_max_gb: feature buffer kept in RAM up to this size; a larger buffer is
            memory-mapped from a file next to the model (and refused if the disk lacks room).
        batch_cells: ``ace``: buffer cells per iteration (``hybrid`` and ``tune_encoder`` students
            train on ``batch_size`` whole maps).
        encoder_lr_factor: learning rate of fine-tuned encoder stages relative to ``lr``.
        view_passes: of the ``buffer_passes``, this many show the mapping image from a random nearby
            viewpoint, rendered by splatting its dense targets (novel-view augmentation: teaches
            the head what the scene looks like off the mapping trajectory). Frames whose targets
            are sparse (< 50 % valid: SfM, COLMAP) are rendered through a surface interpolated
            from them, with only their own points as targets.
        view_translation, view_rotation: the largest camera motion of a novel view (metres, degrees).
        view_neighbours: a novel view of a densely taught frame also splats the targets of this
            many other training frames, those nearest to the new camera, so it shows the scene
            where the frame alone leaves holes (0 = the frame alone).
        level_dropout: ``ace`` students with more than one encoder level: probability that a
            training cell's coarsest level (e.g. the stride-32 map) is zeroed (the kept ones
            unchanged), so the head learns to place cells from the finer levels alone and uses
            the whole-view context only on top. 0: off.
        standardize_input: ``ace`` students with a frozen encoder: the head's input is standardised per
            channel (mean and std of 65 536 buffer cells, fixed before training and stored with the
            head). The raw channels' spreads differ 3-4x; standardised, the head fits its cells more closely and,
            without weight decay, memorises the mapping views more (docs/lab-book.md item 24).
        val_every_s: seconds between validations (also run at the end).
        checkpoint_every_s: seconds between checkpoints (also written at the end).
        seed: seeds torch, numpy and python; the data order follows from it.
    """

    minutes: float | None = 10.0
    iterations: int | None = None
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: float = 0.1
    final_lr_factor: float = 1e-4
    aug_scale: float = 0.0
    aug_rotation: float = 0.0
    aug_color: float = 0.0
    loss_clamp: float | None = None
    reproj_weight: float = 0.0
    reproj_start: float = 0.0
    reproj_tau_start: float = 50.0
    reproj_tau_end: float = 2.0
    precision: str = "auto"
    val_frames: int = 4
    val_stretch: float = 0.0
    buffer_passes: int = 8
    buffer_max_gb: float = 6.0
    batch_cells: int = 4096
    encoder_lr_factor: float = 0.1
    view_passes: int = 0
    view_translation: float = 0.3
    view_rotation: float = 10.0
    view_neighbours: int = 0
    level_dropout: float = 0.0
    standardize_input: bool = False
    val_every_s: float = 60.0
    checkpoint_every_s: float = 120.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.iterations is None and self.minutes is None:
            raise SlocalError("give a training budget: minutes or iterations")
        if self.iterations is not None and self.iterations < 1:
            raise SlocalError(f"iterations must be >= 1, got {self.iterations}")
        if self.minutes is not None and self.minutes <= 0:
            raise SlocalError(f"minutes must be > 0, got {self.minutes}")
        if self.batch_size < 1:
            raise SlocalError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.precision not in PRECISIONS:
            raise SlocalError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not 0.0 <= self.val_stretch < 0.5:
            raise SlocalError(f"val_stretch must be in [0, 0.5), got {self.val_stretch}")
        if self.buffer_passes < 1 or self.batch_cells < 1 or self.buffer_max_gb <= 0:
            raise SlocalError(
                f"buffer settings must be positive (buffer_passes={self.buffer_passes}, "
                f"batch_cells={self.batch_cells}, buffer_max_gb={self.buffer_max_gb})"
            )
        if not 0 <= self.view_passes < self.buffer_passes:
            raise SlocalError(f"view_passes must be in [0, buffer_passes), got {self.view_passes}")
        if self.view_neighbours < 0:
            raise SlocalError(f"view_neighbours must be >= 0, got {self.view_neighbours}")
        if not 0.0 <= self.level_dropout < 1.0:
            raise SlocalError(f"level_dropout must be in [0, 1), got {self.level_dropout}")
        if self.view_translation < 0 or self.view_rotation < 0:
            raise SlocalError(
                f"view_translation and view_rotation must be >= 0, got {self.view_translation}, {self.view_rotation}"
            )
        if not 0.0 <= self.warmup < 1.0:
            raise SlocalError(f"warmup must be in [0, 1), got {self.warmup}")
        if self.lr <= 0:
            raise SlocalError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise SlocalError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 < self.final_lr_factor <= 1.0:
            raise SlocalError(f"final_lr_factor must be in (0, 1], got {self.final_lr_factor}")
        for key in ("aug_scale", "aug_rotation", "aug_color", "reproj_weight"):
            if getattr(self, key) < 0:
                raise SlocalError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.loss_clamp is not None and self.loss_clamp <= 0:
            raise SlocalError(f"loss_clamp must be > 0 or null, got {self.loss_clamp}")
        # reproj_start >= 1 would silently never switch the reprojection loss on.
        if not 0.0 <= self.reproj_start < 1.0:
            raise SlocalError(f"reproj_start must be in [0, 1), got {self.reproj_start}")
        if self.reproj_tau_start <= 0 or self.reproj_tau_end <= 0:
            raise SlocalError(
                f"reproj_tau_start and reproj_tau_end must be > 0, got {self.reproj_tau_start}, {self.reproj_tau_end}"
            )
        if self.val_frames < 0:
            raise SlocalError(f"val_frames must be >= 0, got {self.val_frames}")
        if self.val_every_s < 0 or self.checkpoint_every_s < 0:
            raise SlocalError(
                f"val_every_s and checkpoint_every_s must be >= 0, got {self.val_every_s}, {self.checkpoint_every_s}"
            )
        if self.seed < 0:
            raise SlocalError(f"seed must be >= 0 (numpy's seeds are), got {self.seed}")


def _check_keys(cls: type, values: Any, source: str | Path | None, section: str) -> dict[str, Any]:
    """``values`` as a dict, refusing keys that are not fields of ``cls``."""
    if not isinstance(values, dict):
        raise SlocalError(f"section {section!r} must be a mapping, got {type(values).__name__}", source)
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(map(str, values)) - set(known))
    if unknown:
        raise SlocalError(
            f"unknown key(s) {', '.join(unknown)} in section {section!r}; known: {', '.join(known)}", source
        )
    return dict(values)


@functools.cache
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


def _build(cls: type, values: dict[str, Any], source: str | Path | None, section: str):
    """``cls(**values)`` with values coerced to the field types (``"1e-3"`` -> 0.001, lists -> tuples).

    Raises:
        SlocalError: one line naming ``source``, the key, the expected type and the value,
            or what ``__post_init__`` refuses.
    """
    try:
        return _adapter(cls).validate_python(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = err["loc"]
        key = str(loc[0]) if loc else "?"
        types = {f.name: f.type for f in fields(cls)}
        value = values.get(key, err.get("input"))
        where = f"{key}[{loc[1]}]" if len(loc) > 1 else key
        raise SlocalError(
            f"section {section!r}, key {where!r}: expected {types.get(key, '?')}, got {value!r} ({err['msg']})", source
        ) from exc
    except SlocalError as exc:
        raise SlocalError(f"section {section!r}: {exc.message}", source) from exc


def _presets_dir() -> Traversable:
    return resources.files("slocal.distill") / "presets"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error in one line (its message draws the line and a caret below it)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split())


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
        "student": _check_keys(StudentConfig, data.get("student") or {}, source, "student"),
        "train": _check_keys(TrainConfig, data.get("train") or {}, source, "train"),
    }


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


def read_config_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a student/train YAML file into key-checked ``{"student": {...}, "train": {...}}`` (values not yet typed)."""
    path = Path(path)
    if not path.is_file():
        raise SlocalError("config file not found", path)
    return _parse(path.read_text(), path)


def _check_together(
    student: StudentConfig, train: TrainConfig, source: str | Path
) -> tuple[StudentConfig, TrainConfig]:
    """Refuse training settings the student cannot use (each section alone is checked by its dataclass)."""
    if train.level_dropout > 0 and (student.arch != "ace" or student.tune_encoder or len(student.encoder_levels) < 2):
        raise SlocalError(
            f"train.level_dropout needs an ace student with two or more frozen encoder levels, not {student.name} "
            f"(arch {student.arch}, levels {list(student.encoder_levels)}, tune_encoder {student.tune_encoder})",
            source,
        )
    if train.standardize_input and (student.arch != "ace" or student.tune_encoder):
        raise SlocalError(
            f"train.standardize_input needs an ace student with a frozen encoder, not {student.name} "
            f"(arch {student.arch}, tune_encoder {student.tune_encoder})",
            source,
        )
    return student, train


def configs_from_file(path: str | Path) -> tuple[StudentConfig, TrainConfig]:
    """The settings of a YAML file alone (dataclass defaults + the file, no preset)."""
    data = read_config_file(path)
    return _check_together(
        _build(StudentConfig, data["student"], path, "student"), _build(TrainConfig, data["train"], path, "train"), path
    )


def load_configs(
    student: str = DEFAULT_STUDENT, config_file: str | Path | None = None, **train_overrides: Any
) -> tuple[StudentConfig, TrainConfig]:
    """The student and training settings: preset, then the YAML file, then overrides.

    Args:
        student: preset name or alias (``cnn``, ``vit``, ``cnn-small``, ...).
        config_file: optional YAML file whose sections override the preset.
        train_overrides: ``TrainConfig`` fields to set (None values are ignored).
    """
    preset = preset_file(student)
    data = _parse(preset.read_text(), str(preset))
    s_values, t_values = data["student"], data["train"]
    source: str | Path = str(preset)
    if config_file is not None:
        source = config_file
        data = read_config_file(config_file)
        s_values.update(data["student"])
        t_values.update(data["train"])
    overrides = {k: v for k, v in train_overrides.items() if v is not None}
    t_values.update(_check_keys(TrainConfig, overrides, None, "train"))
    if "iterations" in overrides and "minutes" not in overrides:
        t_values["minutes"] = None
    return _check_together(
        _build(StudentConfig, s_values, source, "student"), _build(TrainConfig, t_values, source, "train"), source
    )


def to_plain(config: StudentConfig | TrainConfig) -> dict[str, Any]:
    """A dict of plain values (tuples as lists) for model files and JSON."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def student_from_plain(values: dict[str, Any], source: str | Path | None = None) -> StudentConfig:
    """Rebuild a ``StudentConfig`` stored with ``to_plain``."""
    return _build(StudentConfig, _check_keys(StudentConfig, values, source, "student"), source, "student")


def train_from_plain(values: dict[str, Any], source: str | Path | None = None) -> TrainConfig:
    """Rebuild a ``TrainConfig`` stored with ``to_plain``."""
    return _build(TrainConfig, _check_keys(TrainConfig, values, source, "train"), source, "train")


__all__ = [
    "StudentConfig",
    "TrainConfig",
    "configs_from_file",
    "load_configs",
    "preset_file",
    "preset_names",
    "presets",
    "read_config_file",
    "resolve_preset",
    "student_from_plain",
    "to_plain",
    "train_from_plain",
]
