"""Distillation: scene-coordinate students (CNN / ViT) trained on teacher targets.

``distill_student`` is the one-call entry point (targets -> training -> model
file); ``load_student`` reads a model file for the localizer.
"""

from slocal.distill.config import PRESETS, StudentConfig, TrainConfig, load_configs, preset_names
from slocal.distill.model_file import Student, StudentOutput, load_student, save_student
from slocal.distill.students import build_student, input_size
from slocal.distill.trainer import DistillResult, distill_student, train_student

__all__ = [
    "PRESETS",
    "DistillResult",
    "Student",
    "StudentConfig",
    "StudentOutput",
    "TrainConfig",
    "build_student",
    "distill_student",
    "input_size",
    "load_configs",
    "load_student",
    "preset_names",
    "save_student",
    "train_student",
]
