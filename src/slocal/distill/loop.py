"""The training loop every distillation recipe runs in.

A recipe (``end_to_end.EndToEndRecipe``, ``mapping.BufferRecipe``) says how a student
learns: ``prepare`` loads its data and builds the network, ``step`` puts one batch through
it, and it keeps the random state that checkpoints save. ``run_training`` owns everything
around that, the same for every recipe:

- resume: the checkpoint is read and checked against the run's settings, its weights,
  optimizer, progress and every rank's RNG state restored (with ``iterations`` a resumed run
  is bit-exact);
- DDP: the recipe's trainable module is wrapped (gradients averaged over ranks; the process
  group itself is joined once per run by the caller, ``ddp.distributed``);
- the optimizer (AdamW) and its schedules: the one-cycle learning rate and the reprojection
  clamp (``optim.py``), both following the fraction of the budget used;
- the loss: coordinate loss (its weight fading at the end where the recipe finishes on reprojection)
  plus the reprojection loss while it is on (``losses.py``), their
  metric settings (``loss_clamp``, the nearest depth) in metres whatever the scene's unit
  (``Prepared.metres_per_unit``, from ``data.recipe_metres_per_unit``);
- the budget (``iterations``, or ``minutes`` of wall time that the recipe's preparation, such
  as encoding the feature buffer, counts against), progress bar, periodic validation (rank 0)
  and checkpoints (``TrainingLoop``);
- the result: the model file (``model_file.save_student``) and a ``DistillResult``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from slocal.data.scene import Scene
from slocal.device import use_bf16
from slocal.distill.checkpoints import check_resume, load_checkpoint, resumed_progress, write_checkpoint
from slocal.distill.config import StudentConfig, TrainConfig, to_plain
from slocal.distill.data import TrainFrame, ValFrame
from slocal.distill.ddp import DistEnv, barrier, data_parallel, max_over_ranks
from slocal.distill.losses import MIN_DEPTH_M, coordinate_loss, reprojection_loss
from slocal.distill.model_file import save_student
from slocal.distill.optim import (
    coordinate_weight,
    learning_rate,
    make_optimizer,
    reprojection_tau,
    set_learning_rate,
)
from slocal.distill.students import StudentNet, num_params
from slocal.distill.validation import format_validation, validate
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera
from slocal.progress import make_progress
from slocal.teach.targets import TargetSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """One training run: what to train, on what, where the files go, on which rank and device."""

    scene: Scene
    targets: TargetSet
    student: StudentConfig
    train: TrainConfig
    out: Path
    checkpoint: Path
    teacher: str
    env: DistEnv
    device: torch.device
    resume: bool = False
    stop_after: int | None = None


@dataclass(frozen=True, eq=False)
class Prepared:
    """What a recipe's ``prepare`` hands the loop.

    Attributes:
        net: the student (what the model file stores).
        module: its trainable forward (the loop wraps it for DDP); ``step`` gets it back.
        param_groups: the optimizer's parameter groups, each with an ``lr_factor``.
        centre: (3,) scene centre the network's coordinates are relative to.
        image_size: (width, height) the network runs at.
        camera: the reference camera stored in the model file.
        val_frames: the held-out frames validation localizes (rank 0).
        val_names: their names.
        train_frames: mapping frames trained on (all ranks).
        spent_s: preparation time counted against a ``minutes`` budget (the buffer's encoding).
        metres_per_unit: the scene's scale for the recipe's metric settings (``data.recipe_metres_per_unit``;
            1 in a metric scene), and ``scale_source`` where it comes from.
        detail: how the recipe describes the student for the log (parameters, buffer...).
    """

    net: StudentNet
    module: torch.nn.Module
    param_groups: list[dict]
    centre: np.ndarray
    image_size: tuple[int, int]
    camera: Camera
    val_frames: Sequence[TrainFrame | ValFrame]
    val_names: list[str]
    train_frames: int
    spent_s: float = 0.0
    metres_per_unit: float = 1.0
    scale_source: str = "metric"
    detail: str = ""


@dataclass(frozen=True, eq=False)
class StepOutput:
    """One batch's predictions and what the losses compare them with (torch tensors).

    Attributes:
        pred_BN3: predicted coordinates (centre-relative) of N cells per sample.
        coords_BN3, valid_BN, weight_BN: targets, where they exist, their weights.
        uv_N2: cell centres, shared (N, 2) or per sample (B, N, 2).
        K_B33, cam_from_world_B34: each sample's exact camera (world relative to the centre).
        log_unc_BN: predicted log-uncertainty (students with ``uncertainty``), else None.
        mask_BN: cells the reprojection loss may use (None: all).
    """

    pred_BN3: torch.Tensor
    coords_BN3: torch.Tensor
    valid_BN: torch.Tensor
    weight_BN: torch.Tensor
    uv_N2: torch.Tensor
    K_B33: torch.Tensor
    cam_from_world_B34: torch.Tensor
    log_unc_BN: torch.Tensor | None = None
    mask_BN: torch.Tensor | None = None


class Recipe(Protocol):
    """How a student learns, plugged into ``run_training``."""

    #: Stored in the model file's training summary; ``label`` names the progress bar.
    name: str
    label: str

    def prepare(self, run: Run, checkpoint: dict | None) -> Prepared:
        """Load the data, build the student (a fresh run's weights; a checkpoint's are loaded by the loop)."""

    def step(self, forward: Callable[[torch.Tensor], torch.Tensor]) -> StepOutput:
        """Draw one batch and run its input through ``forward`` (the DDP-wrapped module, under autocast)."""

    def start(self, rng_state: dict | None) -> None:
        """Restore this rank's random state saved by ``rng_state``, or seed a fresh run's (None)."""

    def rng_state(self) -> dict:
        """This rank's random state (data order, augmentation) for the checkpoint."""

    def summary(self) -> dict:
        """The recipe's entries of the model file's training summary."""

    def close(self) -> None:
        """Release what ``prepare`` holds (a memory-mapped buffer's file)."""


@dataclass
class DistillResult:
    """What a distillation run produced (rank 0's view)."""

    model_path: Path
    checkpoint_path: Path
    student: str
    scene_id: str
    teacher: str
    iterations: int
    train_seconds: float
    final_loss: float
    image_size: tuple[int, int]
    num_params: int
    file_mb: float
    world_size: int
    precision: str
    resumed_from: int | None = None
    validation: dict = field(default_factory=dict)
    rank: int = 0

    def to_dict(self) -> dict:
        return {
            "model": str(self.model_path),
            "checkpoint": str(self.checkpoint_path),
            "student": self.student,
            "scene": self.scene_id,
            "teacher": self.teacher,
            "iterations": self.iterations,
            "train_minutes": self.train_seconds / 60.0,
            "its_per_s": self.iterations / self.train_seconds if self.train_seconds > 0 else None,
            "final_loss": self.final_loss,
            "image_size": list(self.image_size),
            "num_params": self.num_params,
            "file_mb": self.file_mb,
            "world_size": self.world_size,
            "precision": self.precision,
            "resumed_from": self.resumed_from,
            "validation": self.validation,
        }


def run_training(recipe: Recipe, run: Run) -> DistillResult:
    """Train ``run.student`` with ``recipe`` and write the model file ``run.out`` (rank 0).

    Raises:
        SlocalError: an incompatible checkpoint, unusable data (from the recipe), a diverging loss.
    """
    cfg, env, dev = run.train, run.env, run.device
    ck = None
    if run.resume:
        ck = load_checkpoint(run.checkpoint)
        check_resume(ck, run.checkpoint, run.scene, run.student, cfg, env.world_size, run.teacher, run.targets.settings)
    try:
        prep = recipe.prepare(run, ck)
        net = prep.net
        model = data_parallel(prep.module, env, dev)
        opt = make_optimizer(prep.param_groups, cfg, dev)
        bf16 = use_bf16(cfg.precision, dev)
        precision = "bf16" if bf16 else "fp32"
        progress: dict = {"elapsed_s": prep.spent_s}
        resumed_from = None
        if ck is not None:
            net.load_scene_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            resumed_from = int(ck["iteration"])
            progress = resumed_progress(ck)
            recipe.start(ck["rng"][env.rank])
            log.info("resuming from iteration %d (%.1f min trained)", resumed_from, progress["elapsed_s"] / 60)
        else:
            recipe.start(None)

        def run_validation() -> dict:
            if not prep.val_frames:
                return {}
            return validate(net, prep.val_frames, prep.centre, bf16, dev, run.student.mean, run.student.std)

        def checkpoint(loop: TrainingLoop) -> None:
            write_checkpoint(
                run.checkpoint,
                env,
                loop.progress_state(),
                recipe.rng_state(),
                scene=run.scene,
                teacher=run.teacher,
                teacher_settings=run.targets.settings,
                student_cfg=run.student,
                train_cfg=cfg,
                centre=prep.centre,
                model_state=net.scene_state_dict(),
                optimizer=opt,
            )

        def forward(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                return model(x)

        if env.is_main:
            log.info(
                "%s %s (%s) on %s at %dx%d: %d train / %d val frames, %s, %s%s; %.4g m per unit (%s)",
                recipe.label,
                run.student.name,
                prep.detail,
                run.scene.id,
                *prep.image_size,
                prep.train_frames,
                len(prep.val_names),
                precision,
                f"{cfg.iterations} iterations" if cfg.iterations is not None else f"{cfg.minutes:g} min in all",
                f" x {env.world_size} processes" if env.active else "",
                prep.metres_per_unit,
                prep.scale_source,
            )
        pixel_scale = 640.0 / prep.image_size[0]
        min_depth = MIN_DEPTH_M / prep.metres_per_unit
        model.train()
        label = f"{recipe.label} {run.student.name}"
        loop = TrainingLoop(
            cfg, env, dev, label=label, spent_before_s=prep.spent_s, stop_after=run.stop_after, **progress
        )
        with loop:
            while loop.running():
                p = loop.progress()
                lr = learning_rate(cfg, p)
                set_learning_rate(opt, lr)
                out = recipe.step(forward)
                loss = coordinate_weight(cfg, p) * coordinate_loss(
                    out.pred_BN3,
                    out.coords_BN3,
                    out.valid_BN,
                    cfg.loss_clamp,
                    out.log_unc_BN,
                    out.weight_BN,
                    prep.metres_per_unit,
                )
                tau = reprojection_tau(cfg, p)
                if tau is not None:
                    K, pose = out.K_B33.to(dev), out.cam_from_world_B34.to(dev)
                    reprojection = reprojection_loss(
                        out.pred_BN3, out.uv_N2, K, pose, tau, pixel_scale, out.mask_BN, min_depth=min_depth
                    )
                    loss = loss + cfg.reproj_weight * reprojection
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loop.after_step(float(loss.detach()), lr, run_validation, checkpoint)
        validation = loop.finish(run_validation, checkpoint)
        if env.is_main:
            net.eval()
            summary = {
                "recipe": recipe.name,
                "iterations": loop.iteration,
                "minutes": loop.elapsed / 60.0,
                "metres_per_unit": prep.metres_per_unit,
                "metres_per_unit_source": prep.scale_source,
                "final_loss": loop.loss_ema,
                "world_size": env.world_size,
                "precision": precision,
                "validation_frames": prep.val_names,
                "validation": loop.history,
                "settings": to_plain(cfg),
                **recipe.summary(),
            }
            save_student(
                run.out,
                net,
                scene_id=run.scene.id,
                scene_fingerprint=run.scene.fingerprint,
                centre=prep.centre,
                image_size=prep.image_size,
                camera=prep.camera,
                teacher=run.teacher,
                train=summary,
                teacher_settings=run.targets.settings,
                teacher_consistency=run.targets.stats.get("consistency"),
                depth_registration=run.scene.extra.get("depth_registration"),
            )
            log.info(
                "wrote %s (%.2f MB, %.2f M params)", run.out, run.out.stat().st_size / 2**20, num_params(net) / 1e6
            )
        barrier(env)
        return DistillResult(
            model_path=run.out,
            checkpoint_path=run.checkpoint,
            student=run.student.name,
            scene_id=run.scene.id,
            teacher=run.teacher,
            iterations=loop.iteration,
            train_seconds=loop.elapsed - (progress["elapsed_s"] if resumed_from is not None else 0.0),
            final_loss=loop.loss_ema,
            image_size=prep.image_size,
            num_params=num_params(net),
            file_mb=run.out.stat().st_size / 2**20 if run.out.is_file() else 0.0,
            world_size=env.world_size,
            precision=precision,
            resumed_from=resumed_from,
            validation=validation,
            rank=env.rank,
        )
    finally:
        recipe.close()


def next_loss_ema(loss_ema: float, value: float, iteration: int) -> float:
    """The running loss after one more step; a non-finite loss stops training with a clear message."""
    if not math.isfinite(value):
        raise SlocalError(f"training diverged (loss {value}) at iteration {iteration}; lower the learning rate")
    return value if math.isnan(loss_ema) else 0.98 * loss_ema + 0.02 * value


class TrainingLoop:
    """The budget and the bookkeeping around the steps: clock, progress bar, validation and checkpoint cadence.

    Budget: ``cfg.iterations``, or ``cfg.minutes`` of wall time of which the first
    ``spent_before_s`` seconds (encoding the buffer) are not training time; the time
    is the slowest rank's, so all ranks stop together. Validation runs on rank 0 every
    ``val_every_s`` (``validate_fn() -> dict``, {} without frames), checkpoints every
    ``checkpoint_every_s`` (``checkpoint_fn(loop)``), both at the end as well.

    Usage::

        with TrainingLoop(cfg, env, dev, label="map ace", ...) as loop:
            while loop.running():
                lr = learning_rate(cfg, loop.progress())
                ...                                  # one optimisation step
                loop.after_step(loss_value, lr, validate_fn, checkpoint_fn)
        validation = loop.finish(validate_fn, checkpoint_fn)
    """

    def __init__(
        self,
        cfg: TrainConfig,
        env: DistEnv,
        device: torch.device,
        *,
        label: str,
        iteration: int = 0,
        elapsed_s: float = 0.0,
        loss_ema: float = math.nan,
        history: Sequence[dict] = (),
        spent_before_s: float = 0.0,
        stop_after: int | None = None,
    ):
        self.cfg, self.env, self.device, self.stop_after = cfg, env, device, stop_after
        self.iteration, self.elapsed, self.loss_ema, self.history = iteration, elapsed_s, loss_ema, list(history)
        self.spent_before_s = spent_before_s
        self.train_budget_s = None if cfg.iterations is not None else cfg.minutes * 60.0 - spent_before_s
        if self.train_budget_s is not None and self.train_budget_s <= 0:
            raise SlocalError(
                f"preparing the training data took {spent_before_s / 60:.1f} min, the whole budget of "
                f"{cfg.minutes:g} min; give more --minutes (or lower train.buffer_passes)"
            )
        self._elapsed0, self._it0 = elapsed_s, iteration
        self._last_val = self._last_ckpt = 0.0
        self._bar = make_progress(transient=False)
        self._bar.disable = self._bar.disable or not env.is_main
        self._task = None
        self._label = label

    def __enter__(self) -> TrainingLoop:
        self._t0 = time.monotonic()
        self._bar.__enter__()
        timed = self.train_budget_s is not None
        total = int(round(self.train_budget_s)) if timed else self.cfg.iterations
        self._task = self._bar.add_task(self._label + (" (s)" if timed else ""), total=total, info="")
        return self

    def __exit__(self, *exc) -> None:
        self._bar.__exit__(*exc)

    def progress(self) -> float:
        """Fraction of the budget used, in [0, 1] (the schedules' clock)."""
        if self.cfg.iterations is not None:
            return self.iteration / self.cfg.iterations
        return (self.elapsed - self.spent_before_s) / self.train_budget_s

    def running(self) -> bool:
        return self.progress() < 1.0 and (self.stop_after is None or self.iteration < self.stop_after)

    def progress_state(self) -> dict:
        """What a checkpoint keeps of the loop (``checkpoints.resumed_progress`` reads it back)."""
        return {
            "iteration": self.iteration,
            "elapsed_s": self.elapsed,
            "loss_ema": self.loss_ema,
            "history": self.history,
        }

    def after_step(self, loss_value: float, lr: float, validate_fn, checkpoint_fn) -> None:
        """Count the step; update the clock, the bar, and run a validation or checkpoint when due."""
        self.iteration += 1
        self.loss_ema = next_loss_ema(self.loss_ema, loss_value, self.iteration)
        wall = time.monotonic() - self._t0
        self.elapsed = max_over_ranks(self._elapsed0 + wall, self.env, self.device)
        if self.env.is_main:
            ips = (self.iteration - self._it0) / max(wall, 1e-9)
            done = (
                self.iteration
                if self.train_budget_s is None
                else min(self.elapsed - self.spent_before_s, self.train_budget_s)
            )
            self._bar.update(self._task, completed=done, info=f"loss {self.loss_ema:.4f}  {ips:.2f} it/s  lr {lr:.1e}")
        if not self.running():
            return
        run_s = self.elapsed - self._elapsed0
        if self.env.is_main and run_s - self._last_val >= self.cfg.val_every_s:
            self._last_val = run_s
            self._validate(validate_fn, f"it {self.iteration}")
        if run_s - self._last_ckpt >= self.cfg.checkpoint_every_s:
            self._last_ckpt = run_s
            checkpoint_fn(self)

    def finish(self, validate_fn, checkpoint_fn) -> dict:
        """The final checkpoint and (rank 0) validation; returns the validation result ({} without frames)."""
        checkpoint_fn(self)
        return self._validate(validate_fn, "final") if self.env.is_main else {}

    def _validate(self, validate_fn, when: str) -> dict:
        v = validate_fn()
        if v:
            self.history.append({"iteration": self.iteration, "elapsed_s": self.elapsed, "loss": self.loss_ema, **v})
            log.info("%s: loss %.4f, val %s", when, self.loss_ema, format_validation(v))
        return v
