"""Distillation entry points: teacher targets -> a student trained by its recipe -> the model file.

``distill_student`` (what ``slocal distill`` calls) reads the preset, computes missing teacher
targets and trains; ``train_student`` trains on targets at hand. Students on a pretrained
encoder (``ace``, ``hybrid``) are mapped on its feature buffer (``mapping.BufferRecipe``), the
others trained end to end (``end_to_end.EndToEndRecipe``); both run in one training loop
(``loop.run_training``: budget, schedules, validation, checkpoints, resume, the model file).

One process, or DDP under ``torchrun`` (``ddp.py``): the process group is joined once per run,
here.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch

from slocal.data.scene import Scene
from slocal.distill.config import DEFAULT_STUDENT, EncoderStudentConfig, StudentConfig, TrainConfig
from slocal.distill.config_files import default_model_path, load_configs
from slocal.distill.data import split_mapping
from slocal.distill.ddp import DistEnv, barrier, distributed
from slocal.distill.end_to_end import EndToEndRecipe
from slocal.distill.loop import DistillResult, Recipe, Run, run_training
from slocal.distill.mapping import BufferRecipe
from slocal.distill.novel_views import is_dense
from slocal.errors import SlocalError
from slocal.io import process_lock
from slocal.runs import checkpoint_path_for
from slocal.teach import default_teacher, ensure_targets, make_teacher
from slocal.teach.targets import TargetSet

log = logging.getLogger(__name__)

__all__ = ["DistillResult", "checkpoint_path_for", "distill_student", "recipe_for", "train_student"]


def recipe_for(student_cfg: StudentConfig, pretrained: str | Path | None = None) -> Recipe:
    """The recipe that trains ``student_cfg``: the buffer for encoder students, end to end for the others.

    Raises:
        SlocalError: ``pretrained`` weights for a student that brings its own pretrained encoder.
    """
    if isinstance(student_cfg, EncoderStudentConfig):
        if pretrained is not None:
            raise SlocalError(
                f"student {student_cfg.name!r} maps on its pretrained {student_cfg.encoder} encoder; --pretrained "
                "does not apply"
            )
        return BufferRecipe()
    return EndToEndRecipe(pretrained)


def train_student(
    scene: Scene,
    targets: TargetSet,
    student_cfg: StudentConfig,
    train_cfg: TrainConfig,
    out: str | Path,
    *,
    device: str | None = None,
    resume: bool = False,
    pretrained: str | Path | None = None,
    teacher: str | None = None,
    stop_after: int | None = None,
) -> DistillResult:
    """Train a student on ``targets`` and write the model file ``out`` (rank 0).

    Args:
        scene: the scene (mapping frames, fingerprint).
        targets: the teacher's targets for the mapping frames.
        out: model file path; the checkpoint goes next to it (``out + '.ckpt'``).
        device: torch device (default: cuda if available).
        resume: continue from the checkpoint next to ``out``.
        pretrained: ``"timm"`` (timm's own weights, needs the network) or a local
            weights file for the backbone; None trains from scratch.
        teacher: teacher name stored in the model (default: ``targets.teacher``).
        stop_after: pause after this many iterations in total (checkpoint and model
            written); ``resume`` continues the same schedule.

    Raises:
        SlocalError: unusable targets, bad pretrained weights, an incompatible checkpoint.
    """
    recipe = recipe_for(student_cfg, pretrained)
    with distributed(device) as (env, dev):
        return _train(recipe, scene, targets, student_cfg, train_cfg, Path(out), env, dev, resume, teacher, stop_after)


def mostly_sparse(targets: TargetSet) -> bool:
    """Whether most mapping frames are labelled on under half their cells (``is_dense``): COLMAP and SfM points, and
    MVS's partial depth (about a third of the pixels), as opposed to depth or DUSt3R."""
    return sum(map(is_dense, targets.frames)) * 2 < len(targets.frames)


def student_for_targets(cfg: StudentConfig, targets: TargetSet) -> StudentConfig:
    """``cfg``, localizing at its ``ransac_threshold_sparse_px`` where the teacher is sparse (stored in the model).

    A sparsely taught student interpolates between the labelled points, and matches far from their cell
    mislead its pose: on colmap-redkitchen's held-out stretch (two seeds) 15 px against 25 px turned 122
    of 150 poses less and put 117 closer (docs/lab-book.md, 2026-12-07, seventeenth session).
    """
    sparse_px = cfg.ransac_threshold_sparse_px
    if sparse_px is None or sparse_px == cfg.ransac_threshold_px or not mostly_sparse(targets):
        return cfg
    log.info(
        "%s targets are sparse: the student localizes with a %g px RANSAC threshold (ransac_threshold_sparse_px)",
        targets.teacher,
        sparse_px,
    )
    return replace(cfg, ransac_threshold_px=sparse_px)


def finish_for_targets(cfg: TrainConfig, targets: TargetSet) -> TrainConfig:
    """``cfg``, without its reprojection finish where the teacher is sparse and ``coord_fade_sparse`` is off.

    With most frames sparsely taught (COLMAP, SfM points) the coordinate loss holds the few labelled
    cells and the surfaces interpolated between them; on colmap-redkitchen's held-out mapping frames the
    run that faded it out ended farther from the poses (docs/lab-book.md, 2026-12-05, third session).
    """
    fades = cfg.coord_fade_start < 1 and cfg.coord_weight_end < 1
    if not fades or cfg.coord_fade_sparse or not mostly_sparse(targets):
        return cfg
    log.info(
        "%s targets are sparse: the coordinate loss is kept to the end of the run (coord_fade_sparse)", targets.teacher
    )
    return replace(cfg, coord_fade_start=1.0)


def _train(
    recipe: Recipe,
    scene: Scene,
    targets: TargetSet,
    student_cfg: StudentConfig,
    train_cfg: TrainConfig,
    out: Path,
    env: DistEnv,
    device: torch.device,
    resume: bool,
    teacher: str | None,
    stop_after: int | None = None,
) -> DistillResult:
    run = Run(
        scene=scene,
        targets=targets,
        student=student_for_targets(student_cfg, targets),
        train=finish_for_targets(train_cfg, targets),
        out=out,
        checkpoint=checkpoint_path_for(out),
        teacher=teacher or targets.teacher,
        env=env,
        device=device,
        resume=resume,
        stop_after=stop_after,
    )
    return run_training(recipe, run)


def distill_student(
    scene: Scene,
    runs_root: str | Path,
    student: str = DEFAULT_STUDENT,
    *,
    teacher: str | None = None,
    minutes: float | None = None,
    iterations: int | None = None,
    device: str | None = None,
    config_file: str | Path | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    pretrained: str | Path | None = None,
    seed: int | None = None,
    teacher_options: dict | None = None,
) -> DistillResult:
    """Distill a student for ``scene``: targets (computed if missing), training, model file.

    Args:
        student: preset name or alias (``cnn``, ``vit``, ``cnn-small``, ...).
        teacher: one of ``teach.TEACHERS`` (default: ``teach.default_teacher(scene)``).
        minutes, iterations: training budget (default: the preset's, 10 minutes).
        config_file: YAML overriding the preset (sections ``student``, ``train``).
        out: model path (default: ``config_files.default_model_path``, aliases resolved).
        resume, pretrained, device: see ``train_student``.
        teacher_options: settings of the teacher (e.g. ``{"checkpoint": ...}`` for dust3r); they
            must equal those ``slocal teach`` used for its cached targets to be reused.
    """
    student_cfg, train_cfg = load_configs(student, config_file, minutes=minutes, iterations=iterations, seed=seed)
    recipe = recipe_for(student_cfg, pretrained)
    teacher = teacher or default_teacher(scene)
    out_path = Path(out) if out is not None else default_model_path(runs_root, scene.id, student)
    if resume and not checkpoint_path_for(out_path).is_file():
        raise SlocalError("no checkpoint to resume from (train without --resume first)", checkpoint_path_for(out_path))
    with distributed(device) as (env, dev):
        # A second run into the same model file would overwrite the first one's checkpoint: refuse at once.
        lock = (
            process_lock(out_path.with_name(out_path.name + ".lock"), f"model file {out_path}", timeout_s=0)
            if env.is_main
            else nullcontext()
        )
        with lock:
            # Rank 0 computes missing targets; the others then read the cache.
            if not env.is_main:
                barrier(env)
            teach_scene = scene
            if not train_cfg.teach_held_out:
                teach_scene = split_mapping(scene, train_cfg.val_frames, train_cfg.val_stretch)[0]
                log.info(
                    "teaching on %d of %d mapping frames (teach_held_out off)",
                    len(teach_scene.mapping),
                    len(scene.mapping),
                )
            targets = ensure_targets(teach_scene, make_teacher(teacher, **(teacher_options or {})), runs_root)
            if env.is_main:
                barrier(env)
            return _train(recipe, scene, targets, student_cfg, train_cfg, out_path, env, dev, resume, teacher)
