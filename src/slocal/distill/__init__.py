"""Distillation: scene-coordinate students trained on teacher targets.

``slocal.distill.trainer.distill_student`` is the one-call entry point
(targets -> training -> model file); ``load_student`` reads a model file for the
localizer. The trainer is not imported here: loading a model for inference must
not pull in torch.distributed, the teachers or rich.
"""

from slocal.distill.config import StudentConfig, TrainConfig
from slocal.distill.config_files import load_configs, preset_names
from slocal.distill.model_file import Student, StudentOutput, load_student, save_student
from slocal.distill.students import build_student, input_size

__all__ = [
    "Student",
    "StudentConfig",
    "StudentOutput",
    "TrainConfig",
    "build_student",
    "input_size",
    "load_configs",
    "preset_names",
    "load_student",
    "save_student",
]
