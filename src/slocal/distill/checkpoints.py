"""Training checkpoints: what ``--resume`` continues from, written next to the model file.

A checkpoint (``<model>.ckpt``, written atomically every ``checkpoint_every_s`` and at the end)
holds the student's scene-specific weights, the optimizer, the iteration, elapsed time, the
running loss, the validation history and every rank's RNG state (the recipe's), plus the
settings, scene, teacher and teacher settings it was made with: resuming with anything else is refused. It is
``torch.save`` of plain values and tensors, so it loads with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from slocal.data.scene import Scene
from slocal.distill.config import StudentConfig, TrainConfig, to_plain
from slocal.distill.config_files import student_from_plain, train_from_plain
from slocal.distill.ddp import DistEnv, gather_states
from slocal.errors import SlocalError
from slocal.io import atomic_path
from slocal.teach import differing_settings
from slocal.torch_io import read_torch_file

CHECKPOINT_FORMAT = "slocal-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write a training checkpoint atomically."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path) -> dict:
    """Read and check a training checkpoint (``weights_only`` load)."""
    ck = read_torch_file(path, "no checkpoint to resume from (train without --resume first)", "unreadable checkpoint")
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT or ck.get("version") != CHECKPOINT_VERSION:
        raise SlocalError("not a slocal training checkpoint of this version", path)
    return ck


def check_resume(
    ck: dict,
    path: Path,
    scene: Scene,
    student_cfg: StudentConfig,
    train_cfg: TrainConfig,
    world: int,
    teacher: str,
    teacher_settings: dict,
) -> None:
    """Refuse to resume a checkpoint made with other settings, scene, teacher or process count.

    The teacher's settings are compared where the checkpoint records them (not before they were).
    """
    problems = []
    if ck["scene_fingerprint"] != scene.fingerprint or ck["scene_id"] != scene.id:
        problems.append(f"scene {ck['scene_id']} ({ck['scene_fingerprint']}) vs {scene.id} ({scene.fingerprint})")
    stored_student = student_from_plain(ck["student"], path)
    if to_plain(stored_student) != to_plain(student_cfg):
        diff = [k for k, v in to_plain(student_cfg).items() if to_plain(stored_student).get(k) != v]
        problems.append(f"student settings differ ({', '.join(diff)})")
    stored = to_plain(train_from_plain(ck["train_config"], stored_student, path))
    diff = [f"{k} {stored.get(k)} vs {v}" for k, v in to_plain(train_cfg).items() if stored.get(k) != v]
    if diff:
        problems.append(f"training settings differ ({'; '.join(diff)})")
    if ck["world_size"] != world:
        problems.append(f"it was trained with {ck['world_size']} process(es), now {world}")
    if ck["teacher"] != teacher:
        problems.append(f"teacher {ck['teacher']} vs {teacher}")
    elif "teacher_settings" in ck and ck["teacher_settings"] != teacher_settings:
        stored = ck["teacher_settings"]
        diff = differing_settings(stored, teacher_settings)
        problems.append(
            f"teacher settings differ ({'; '.join(f'{k} {stored.get(k)} vs {teacher_settings.get(k)}' for k in diff)})"
        )
    if problems:
        raise SlocalError("cannot resume: " + "; ".join(problems) + " (resume with the original settings)", path)


def resumed_progress(ck: dict) -> dict:
    """The loop's progress a checkpoint continues: ``iteration``, ``elapsed_s``, ``loss_ema``, ``history``."""
    return {
        "iteration": int(ck["iteration"]),
        "elapsed_s": float(ck["elapsed_s"]),
        "loss_ema": float(ck["loss_ema"]),
        "history": list(ck.get("validation", [])),
    }


def write_checkpoint(
    path: Path,
    env: DistEnv,
    progress: dict,
    rng_state: dict,
    *,
    scene: Scene,
    teacher: str,
    teacher_settings: dict,
    student_cfg: StudentConfig,
    train_cfg: TrainConfig,
    centre: np.ndarray,
    model_state: dict,
    optimizer: torch.optim.Optimizer,
) -> None:
    """Gather every rank's RNG state; rank 0 writes the checkpoint atomically.

    Args:
        progress: the loop's ``iteration``, ``elapsed_s``, ``loss_ema`` and ``history`` (``resumed_progress``).
        rng_state: this rank's RNG state (the recipe's).
        model_state: the student's scene-specific weights (``scene_state_dict``).
    """
    states = gather_states(rng_state, env)
    if not env.is_main:
        return
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "scene_id": scene.id,
        "scene_fingerprint": scene.fingerprint,
        "teacher": teacher,
        "teacher_settings": dict(teacher_settings),
        "student": to_plain(student_cfg),
        "train_config": to_plain(train_cfg),
        "world_size": env.world_size,
        "centre": [float(v) for v in centre],
        "model": {k: v.detach().cpu().clone() for k, v in model_state.items()},
        "optimizer": optimizer.state_dict(),
        "iteration": progress["iteration"],
        "elapsed_s": progress["elapsed_s"],
        "loss_ema": progress["loss_ema"],
        "rng": states,
        "validation": progress["history"],
    }
    save_checkpoint(path, payload)
