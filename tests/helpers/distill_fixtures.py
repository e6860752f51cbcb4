"""Shared settings of the distillation tests: a tiny synthetic scene, a tiny student, short runs."""

from __future__ import annotations

from slocal.data.synth import SynthConfig
from slocal.distill.config import BufferTrainConfig, CnnStudentConfig, TrainConfig

TINY_SCENE = SynthConfig(
    mapping_frames=12,
    query_frames=2,
    color_size=(128, 96),
    depth_size=(64, 48),
    focal=104.0,
    texels_per_metre=100.0,
    seed=1,
)
# ~0.5 M parameters at 64x48: an iteration takes milliseconds.
TINY_STUDENT = CnnStudentConfig(
    name="tiny", widths=(16, 32, 64, 64), blocks8=1, head_width=64, head_layers=2, max_side=64
)
# Settings under which 300 iterations cut the coordinate error by a large factor.
LOSS_TEST_TRAIN = dict(iterations=300, val_frames=0, batch_size=4, aug_scale=0.0, aug_rotation=0.0)


def tiny_train(**kw) -> TrainConfig:
    """Short end-to-end settings (``TrainConfig``), with ``kw`` replacing fields."""
    return TrainConfig(**_tiny_values(kw))


def tiny_buffer_train(**kw) -> BufferTrainConfig:
    """Short settings of the buffer recipe (``BufferTrainConfig``), with ``kw`` replacing fields."""
    return BufferTrainConfig(**_tiny_values(kw))


def _tiny_values(kw: dict) -> dict:
    values = dict(
        minutes=None,
        iterations=20,
        batch_size=2,
        lr=3e-3,
        val_frames=2,
        val_every_s=1e9,
        checkpoint_every_s=1e9,
        precision="fp32",
    )
    values.update(kw)
    return values


def ddp_worker(rank: int, world: int, port: int, data_root: str, runs: str, out: str) -> None:
    """One DDP rank (CPU, gloo) of ``distill_student`` on the tiny scene; torchrun's variables set by hand."""
    import os

    import torch

    from slocal.data import load_scene
    from slocal.distill.trainer import distill_student

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    scene = load_scene(data_root, "tiny")
    config = f"{out}.yaml"
    result = distill_student(scene, runs, "cnn", config_file=config, iterations=6, out=out, device="cpu")
    assert result.world_size == world and result.rank == rank and result.iterations == 6
