"""Student and training settings: frozen dataclasses typed per architecture and per recipe.

A student's settings are one class per architecture, told apart by ``arch`` (a tagged union, as
hloc's per-component confs)::

    StudentConfig                   fields every student has (not built itself)
      CnnStudentConfig      cnn     compact from-scratch ResNet
      TimmStudentConfig     timm    a timm features_only backbone + regression head
      VitStudentConfig      vit     a timm VisionTransformer + dense head
      EncoderStudentConfig          a frozen pretrained encoder + a head trained from a feature buffer
        AceStudentConfig    ace     per-cell MLP head (ACE)
        HybridStudentConfig hybrid  transformer blocks over the encoder's tokens + MLP head

Training settings follow the recipe the student trains with (``train_config`` of its class):
``TrainConfig`` is the end-to-end recipe's (``end_to_end.py``) and what every recipe
shares (budget, optimizer, schedules, losses, augmentation, validation, checkpoints);
``BufferTrainConfig`` adds the buffer recipe's (``mapping.py``): the feature buffer, its
novel views and the head's input.

Ranges are field constraints checked by ``slocal.config`` (one ``SlocalError`` line naming the
field, the value and the rule); rules between fields are in ``__post_init__``. Presets, YAML
files and the plain dicts of model files become these classes in ``config_files.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from slocal.config import config_dataclass
from slocal.device import PRECISIONS
from slocal.errors import SlocalError

# The student ``slocal distill``, ``localize``, ``bench`` and the demo use when none is named.
DEFAULT_STUDENT = "ace"

# Strides of the feature maps a pretrained encoder offers (``EncoderStudentConfig.encoder_levels``).
ENCODER_STRIDES = (8, 16, 32)

Positive = Field(gt=0)
NonNegative = Field(ge=0)
AtLeastOne = Field(ge=1)
Fraction = Field(ge=0, lt=1)  # [0, 1)
# Given or not, the value is checked: the dataclass default (an empty name) is refused too.
NotEmpty = Field(min_length=1, validate_default=True)


def check_encoder_levels(levels: tuple[int, ...]) -> None:
    """Refuse a level list that is not stride 8 followed by coarser ``ENCODER_STRIDES`` in increasing order."""
    levels = tuple(levels)
    if levels[:1] != (8,) or not set(levels) <= set(ENCODER_STRIDES) or levels != tuple(sorted(set(levels))):
        raise SlocalError(f"encoder_levels must be 8 followed by any of 16, 32 in order, got {list(levels)}")


# --------------------------------------------------------------------------- training


@config_dataclass
class TrainConfig:
    """The end-to-end recipe's settings, and those every recipe shares.

    Attributes:
        minutes: wall-clock budget; the learning-rate schedule follows elapsed time.
        iterations: fixed iteration count instead (reproducible; resume is bit-exact).
            Exactly one of ``minutes`` and ``iterations`` is used; ``iterations`` wins.
        batch_size: images per iteration (per process under DDP); buffer students that train on
            whole maps (``hybrid``, ``tune_encoder``): buffer maps per iteration.
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
        reproj_start: fraction of the run after which the reprojection loss is switched on
            (below 1: at 1 or more it would never switch on).
        reproj_tau_start, reproj_tau_end: soft clamp of the reprojection loss (px at 640 width),
            tightened with a cosine schedule over the run.
        coord_fade_start: fraction of the run after which the coordinate loss's weight falls (cosine) from 1
            to ``coord_weight_end``; 1 = never. With ``coord_weight_end`` 0 the run finishes on the
            reprojection loss alone (DSAC*'s schedule): the mapping cameras' rays, not the teacher's depth,
            place the points in the last part of the run.
        coord_weight_end: the coordinate loss's weight at the end of the run (needs ``reproj_weight`` > 0
            below 1: some loss must remain).
        coord_fade_sparse: fade the coordinate loss also when most mapping frames' targets are sparse
            (< 50 % of the pixels labelled: the COLMAP and SfM teachers). Off: there the run keeps the
            coordinate loss to the end, since the finish lost on colmap-redkitchen's held-out frames.
        precision: ``auto`` (bf16 autocast on CUDA with bf16 and CPUs with native bf16),
            ``fp32`` or ``bf16``. The last layer always runs in fp32.
        val_frames: mapping frames held out for validation (evenly spaced), 0 = none.
        val_stretch: instead of ``val_frames``: hold out this fraction of the mapping frames as one
            contiguous stretch at the end of the trajectory (frames in name order), so validation
            measures localization away from the mapped views, as queries do. 0 = off.
        teach_held_out: whether the teacher also sees the held-out frames. Yes (the default) reuses the
            targets ``slocal teach`` made for every mapping frame; validation is then a progress figure,
            since a teacher that fuses views (``fused``, ``mvs``, ``sfm``) shaped its targets with the
            held-out frames' images, depth and poses. No teaches on the training frames alone (a target
            cache of its own), so nothing the student learns from has seen a validation frame: what a
            comparison of recipes or teachers needs. A colour-depth rig and a COLMAP model's points are
            inputs of the scene, made before the split, and keep every frame.
        val_every_s: seconds between validations (also run at the end).
        checkpoint_every_s: seconds between checkpoints (also written at the end).
        seed: seeds torch, numpy and python; the data order follows from it (numpy's seeds are >= 0).
    """

    minutes: Annotated[float, Positive] | None = 10.0
    iterations: Annotated[int, AtLeastOne] | None = None
    batch_size: Annotated[int, AtLeastOne] = 8
    lr: Annotated[float, Positive] = 2e-3
    weight_decay: Annotated[float, NonNegative] = 1e-4
    warmup: Annotated[float, Fraction] = 0.1
    final_lr_factor: Annotated[float, Field(gt=0, le=1)] = 1e-4
    aug_scale: Annotated[float, NonNegative] = 0.0
    aug_rotation: Annotated[float, NonNegative] = 0.0
    aug_color: Annotated[float, NonNegative] = 0.0
    loss_clamp: Annotated[float, Positive] | None = None
    reproj_weight: Annotated[float, NonNegative] = 0.0
    reproj_start: Annotated[float, Fraction] = 0.0
    reproj_tau_start: Annotated[float, Positive] = 50.0
    reproj_tau_end: Annotated[float, Positive] = 2.0
    coord_fade_start: Annotated[float, Field(ge=0, le=1)] = 1.0
    coord_weight_end: Annotated[float, Field(ge=0, le=1)] = 1.0
    coord_fade_sparse: bool = False
    precision: Literal[PRECISIONS] = "auto"
    val_frames: Annotated[int, NonNegative] = 4
    val_stretch: Annotated[float, Field(ge=0, lt=0.5)] = 0.0
    teach_held_out: bool = True
    val_every_s: Annotated[float, NonNegative] = 60.0
    checkpoint_every_s: Annotated[float, NonNegative] = 120.0
    seed: Annotated[int, NonNegative] = 0

    def __post_init__(self) -> None:
        if self.iterations is None and self.minutes is None:
            raise SlocalError("give a training budget: minutes or iterations")
        if self.coord_fade_start < 1 and self.coord_weight_end < 1 and self.reproj_weight <= 0:
            raise SlocalError(
                f"coord_weight_end {self.coord_weight_end} fades the coordinate loss but reproj_weight is 0: "
                "give the reprojection loss a weight to finish on"
            )


@config_dataclass
class BufferTrainConfig(TrainConfig):
    """The buffer recipe's settings (students on a frozen encoder), on top of ``TrainConfig``'s.

    Attributes:
        buffer_passes: passes over each mapping image when filling the feature buffer; pass 0 is
            unaugmented, the others use the ``aug_*`` ranges.
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
        view_neighbours_sparse: a sparsely taught frame's novel views also splat its
            ``view_neighbours`` (through their interpolated surfaces, with targets only at their
            points); off, they show the frame alone.
        level_dropout: ``ace`` students with more than one encoder level: probability that a
            training cell's coarsest level (e.g. the stride-32 map) is zeroed (the kept ones
            unchanged), so the head learns to place cells from the finer levels alone and uses
            the whole-view context only on top. 0: off.
        standardize_input: ``ace`` students with a frozen encoder: the head's input is standardised
            per channel (mean and std of 65 536 buffer cells, fixed before training and stored with
            the head). The raw channels' spreads differ 3-4x; standardised, the head fits its cells
            more closely and, without weight decay, memorises the mapping views more
            (docs/lab-book.md item 24).
    """

    buffer_passes: Annotated[int, AtLeastOne] = 8
    buffer_max_gb: Annotated[float, Positive] = 6.0
    batch_cells: Annotated[int, AtLeastOne] = 4096
    encoder_lr_factor: float = 0.1
    view_passes: Annotated[int, NonNegative] = 0
    view_translation: Annotated[float, NonNegative] = 0.3
    view_rotation: Annotated[float, NonNegative] = 10.0
    view_neighbours: Annotated[int, NonNegative] = 0
    view_neighbours_sparse: bool = False
    level_dropout: Annotated[float, Fraction] = 0.0
    standardize_input: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.view_passes >= self.buffer_passes:
            raise SlocalError(
                f"view_passes must be < buffer_passes ({self.buffer_passes}): pass 0 shows the image itself, "
                f"got {self.view_passes}"
            )
        if self.view_neighbours_sparse and self.view_neighbours == 0:
            raise SlocalError(
                "view_neighbours_sparse is on but view_neighbours is 0: give the number of neighbours to splat"
            )


# --------------------------------------------------------------------------- students


@config_dataclass
class StudentConfig:
    """What every student network has; each architecture is a subclass (see the module docstring).

    Attributes:
        name: preset or user-chosen name (used for the output folder and stored in the model).
        arch: the architecture (the subclass's tag).
        max_side: longer side of the network input in pixels; the scene's camera
            is rescaled to it (aspect kept, sides rounded to ``size_multiple``).
        size_multiple: input sides are rounded to a multiple of this (of the stride, 8).
        stride: output stride (coordinates on a grid of cells of this size); only 8 is implemented.
        uncertainty: predict a per-cell log-uncertainty channel (exposed as confidence).
        head_width, head_layers: the per-cell regression head (hidden width, hidden layers).
        mean, std: input normalisation of RGB in [0, 1].
        ransac_threshold_px: inlier threshold of the PnP-RANSAC that localizes with this student's dense
            matches (pixels at 640 px width; ``slocal.localize.localizer.student_pnp``): how far its
            predictions may reproject from their cell and still count, so it follows how precise they are.
        ransac_threshold_sparse_px: the threshold instead for a student taught by a sparse teacher (most
            mapping frames labelled at points: ``colmap``, ``sfm``; also ``mvs``, which labels about a third of
            the pixels), whose predictions between those points are
            interpolations; training stores it as the model's ``ransac_threshold_px``. None: no change.
    """

    # Which training settings and recipe the architecture takes; whether it runs channels-last.
    train_config: ClassVar[type[TrainConfig]] = TrainConfig
    channels_last: ClassVar[bool] = False

    name: str = "cnn-small"
    arch: str = ""
    max_side: Annotated[int, Field(ge=32)] = 320
    size_multiple: Annotated[int, Field(ge=8, multiple_of=8)] = 8
    stride: Literal[8] = 8
    uncertainty: bool = False
    head_width: Annotated[int, AtLeastOne] = 256
    head_layers: Annotated[int, NonNegative] = 3
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[Annotated[float, Positive], Annotated[float, Positive], Annotated[float, Positive]] = (0.25, 0.25, 0.25)
    ransac_threshold_px: Annotated[float, Positive] = 25.0
    ransac_threshold_sparse_px: Annotated[float, Positive] | None = None

    def __post_init__(self) -> None:
        if type(self) is StudentConfig:
            raise SlocalError(f"a student config needs an architecture: one of {', '.join(STUDENT_CONFIGS)}")


@config_dataclass
class CnnStudentConfig(StudentConfig):
    """``cnn``: compact from-scratch ResNet with a stride-16/32 context branch.

    Attributes:
        widths: channels at strides 2, 4, 8 and of the stride-16/32 context branch.
        blocks8: residual blocks at stride 8.
        context: add the stride-16/32 context branch (wider receptive field).
        norm: ``bn`` (BatchNorm) or ``gn`` (GroupNorm).
    """

    channels_last: ClassVar[bool] = True

    arch: Literal["cnn"] = "cnn"
    widths: tuple[
        Annotated[int, AtLeastOne], Annotated[int, AtLeastOne], Annotated[int, AtLeastOne], Annotated[int, AtLeastOne]
    ] = (32, 64, 128, 256)
    blocks8: Annotated[int, NonNegative] = 2
    context: bool = True
    norm: Literal["bn", "gn"] = "bn"


@config_dataclass
class TimmStudentConfig(StudentConfig):
    """``timm``: a timm ``features_only`` backbone (strides 8/16/32 fused) + regression head.

    Attributes:
        backbone: timm model name.
    """

    channels_last: ClassVar[bool] = True

    arch: Literal["timm"] = "timm"
    backbone: Annotated[str, NotEmpty] = ""


@config_dataclass
class VitStudentConfig(StudentConfig):
    """``vit``: a timm VisionTransformer at the scene's image size + dense head.

    Attributes:
        backbone: timm model name.
        patch_size: 8 or 16 (None keeps the model's).
        vit_depth, vit_embed_dim, vit_heads: overrides of the timm model (None keeps them).
    """

    arch: Literal["vit"] = "vit"
    backbone: Annotated[str, NotEmpty] = ""
    patch_size: Literal[8, 16] | None = None
    vit_depth: int | None = None
    vit_embed_dim: int | None = None
    vit_heads: int | None = None


@config_dataclass
class EncoderStudentConfig(StudentConfig):
    """A frozen pretrained encoder + a scene-specific head, trained from a feature buffer (``ace``, ``hybrid``).

    Attributes:
        encoder: pretrained encoder (``slocal.distill.encoder.ENCODERS``).
        encoder_levels: the encoder's feature maps the head sees, by stride (8 always; 16 and 32
            upsampled onto it). Fewer levels, a smaller receptive field. Input sides
            (``size_multiple``) must be multiples of the coarsest.
        tune_encoder: fine-tune the encoder's stride-16/32 stages per scene (the buffer then holds
            the frozen stride-8 map, and the model file the tuned stages).
    """

    train_config: ClassVar[type[TrainConfig]] = BufferTrainConfig

    encoder: Annotated[str, NotEmpty] = ""
    encoder_levels: tuple[int, ...] = ENCODER_STRIDES
    tune_encoder: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_encoder_levels(self.encoder_levels)
        if self.size_multiple % max(self.encoder_levels):
            raise SlocalError(
                f"student arch {self.arch!r} with encoder levels {list(self.encoder_levels)} needs size_multiple "
                f"a multiple of {max(self.encoder_levels)}, got {self.size_multiple}"
            )


@config_dataclass
class AceStudentConfig(EncoderStudentConfig):
    """``ace``: an MLP applied to each stride-8 cell's encoder features alone (ACE's head), trained on buffer cells."""

    arch: Literal["ace"] = "ace"


@config_dataclass
class HybridStudentConfig(EncoderStudentConfig):
    """``hybrid``: transformer blocks over the encoder's stride-16 tokens + MLP head, trained on buffer maps.

    Attributes:
        vit_depth, vit_embed_dim, vit_heads: the transformer (depth 4, dim 192, 3 heads if None).
    """

    arch: Literal["hybrid"] = "hybrid"
    vit_depth: int | None = None
    vit_embed_dim: int | None = None
    vit_heads: int | None = None


# Architecture -> its settings class; the union pydantic tells apart by ``arch``.
STUDENT_CONFIGS: dict[str, type[StudentConfig]] = {
    "cnn": CnnStudentConfig,
    "timm": TimmStudentConfig,
    "vit": VitStudentConfig,
    "ace": AceStudentConfig,
    "hybrid": HybridStudentConfig,
}
ARCHS = tuple(STUDENT_CONFIGS)
AnyStudentConfig = Annotated[
    CnnStudentConfig | TimmStudentConfig | VitStudentConfig | AceStudentConfig | HybridStudentConfig,
    Field(discriminator="arch"),
]


def to_plain(config: StudentConfig | TrainConfig) -> dict[str, Any]:
    """A dict of plain values (tuples as lists) for model files and JSON."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


__all__ = [
    "ARCHS",
    "AceStudentConfig",
    "AnyStudentConfig",
    "BufferTrainConfig",
    "CnnStudentConfig",
    "DEFAULT_STUDENT",
    "ENCODER_STRIDES",
    "EncoderStudentConfig",
    "HybridStudentConfig",
    "STUDENT_CONFIGS",
    "StudentConfig",
    "TimmStudentConfig",
    "TrainConfig",
    "VitStudentConfig",
    "check_encoder_levels",
    "to_plain",
]
