"""ACE-style mapping: a scene-specific head trained on a frozen pretrained encoder's feature buffer.

The encoder runs once per augmented pass of each mapping image
(``buffer.build_buffer``); training then only runs the small head, on large
random batches of buffer cells (``ace``) or whole buffer maps (``hybrid``).
That is what lets a CPU afford millions of supervised cells per minute: the
end-to-end recipe (``end_to_end.py``) pushes every image through the whole
network at every step.

Loss per cell: the Euclidean distance to the teacher's target where one
exists (weighted by its confidence), plus ``reproj_weight`` times the
tanh-clamped reprojection error through the pass's exact camera, with a clamp
that tightens from ``reproj_tau_start`` to ``reproj_tau_end`` px over the run
(ACE's schedule). The reprojection term also reaches cells without a target,
which is what sparse (SfM, COLMAP) and noisy (DUSt3R) teachers need.

``BufferRecipe`` plugs into ``loop.run_training``, which owns the budget: ``minutes``
covers encoding *and* training (the schedules follow the time left after encoding), or
a fixed number of ``iterations``. Checkpoints keep the batch generator's state; the
buffer is rebuilt on resume from the same seed, so a resumed run with ``iterations``
is bit-exact.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from slocal.data.scene import Frame, Scene
from slocal.distill.buffer import FeatureBuffer, build_buffer
from slocal.distill.config import BufferTrainConfig, HybridStudentConfig
from slocal.distill.data import load_val_frames, recipe_metres_per_unit, scene_centre, split_mapping
from slocal.distill.ddp import max_over_ranks
from slocal.distill.encoder import DenseEncoder
from slocal.distill.loop import Prepared, Run, StepOutput
from slocal.distill.students import AceStudent, BufferStudent, build_student, input_size
from slocal.errors import SlocalError
from slocal.teach.targets import TargetSet

log = logging.getLogger(__name__)

# Buffer cells whose per-channel statistics standardise the head's input (``standardize_input``).
STANDARDIZE_CELLS = 65536


class _HeadStep(torch.nn.Module):
    """The trainable part as one module, so DDP sees a forward: features -> coordinates (B, 3, h, w)."""

    def __init__(self, net: BufferStudent):
        super().__init__()
        self.net = net

    def forward(self, feat_BChw: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(feat_BChw)


def drop_coarsest_level(feat_BChw: torch.Tensor, channels: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """Zero the last ``channels`` features (the coarsest encoder level) of each sample with probability ``p``.

    The kept blocks are not rescaled (unlike unit-wise dropout): the whole block goes or stays, so
    the head learns two modes, with and without it, and at inference it always sees the "with"
    mode exactly as in training (an inverted-dropout ``1 / (1 - p)`` would show it a scale it was
    never trained on). ``generator`` is the sampler's (a CPU one), whose state the checkpoint keeps
    (resuming stays bit-exact); ``feat_BChw`` may be on any device.
    """
    keep_B = (torch.rand(feat_BChw.shape[0], generator=generator) >= p).to(feat_BChw.device, feat_BChw.dtype)
    scale_BC = torch.ones(feat_BChw.shape[:2], dtype=feat_BChw.dtype, device=feat_BChw.device)
    scale_BC[:, -channels:] = keep_B[:, None]
    return feat_BChw * scale_BC[:, :, None, None]


def split_frames(scene: Scene, targets: TargetSet, cfg: BufferTrainConfig) -> tuple[list[Frame], list[Frame]]:
    """(training frames with targets, held-out frames), in trajectory order (``split_mapping``)."""
    train_scene, held_out = split_mapping(scene, cfg.val_frames, cfg.val_stretch)
    names = targets.by_name()
    frames = [f for f in train_scene.mapping if f.name in names]
    if not frames:
        raise SlocalError("no mapping frame has teacher targets", targets.directory)
    return frames, held_out


class CellSampler:
    """Random batches of buffer cells (``ace``) or passes (``hybrid``) from one seeded torch Generator."""

    def __init__(self, buffer: FeatureBuffer, seed: int):
        self.buffer = buffer
        self.generator = torch.Generator().manual_seed(seed)
        self.cells = torch.from_numpy(np.flatnonzero(buffer.inside_PN.reshape(-1)))
        if len(self.cells) == 0:
            raise SlocalError("the feature buffer has no usable cell (do the images show what the targets see?)")

    def cell_batch(self, size: int) -> dict[str, torch.Tensor]:
        """``size`` cells as a batch of one-cell images: feat (B, C, 1, 1), coords (B, 1, 3), uv/K/pose per cell.

        The cells come in buffer order (the draw sorted): the loss is a mean over them, and
        reading the float16 features in memory order, converted by torch afterwards, takes a
        fifth of the time of a gather in draw order through numpy's float32 cast.
        """
        b = self.buffer
        idx = torch.sort(self.cells[torch.randint(len(self.cells), (size,), generator=self.generator)]).values.numpy()
        P, N = b.feat_PNC.shape[:2]
        p, n = idx // N, idx % N
        return {
            "feat": torch.from_numpy(b.feat_PNC.reshape(P * N, -1).take(idx, axis=0)).float()[:, :, None, None],
            "coords": torch.from_numpy(b.coords_PN3.reshape(P * N, 3).take(idx, axis=0))[:, None],
            "valid": torch.from_numpy(b.valid_PN.reshape(-1).take(idx))[:, None],
            "inside": torch.ones(size, 1, dtype=torch.bool),
            "weight": torch.from_numpy(b.weight_PN.reshape(-1).take(idx))[:, None],
            "uv": torch.from_numpy(b.uv_N2.take(n, axis=0))[:, None],
            "K": torch.from_numpy(b.K_P33.take(p, axis=0)),
            "pose": torch.from_numpy(b.cam_from_world_P34.take(p, axis=0)),
        }

    def map_batch(self, size: int) -> dict[str, torch.Tensor]:
        """``size`` whole passes: feat (B, C, h, w), per-cell arrays (B, N, ...), uv (N, 2)."""
        b = self.buffer
        p = torch.randint(b.num_passes, (size,), generator=self.generator).numpy()
        h, w = b.grid
        feat = torch.from_numpy(b.feat_PNC[p].astype(np.float32))
        return {
            "feat": feat.reshape(size, h, w, -1).permute(0, 3, 1, 2).contiguous(),
            "coords": torch.from_numpy(b.coords_PN3[p]),
            "valid": torch.from_numpy(b.valid_PN[p]),
            "inside": torch.from_numpy(b.inside_PN[p]),
            "weight": torch.from_numpy(b.weight_PN[p]),
            "uv": torch.from_numpy(b.uv_N2),
            "K": torch.from_numpy(b.K_P33[p]),
            "pose": torch.from_numpy(b.cam_from_world_P34[p]),
        }


class BufferRecipe:
    """A head on a frozen encoder's feature buffer (``Recipe`` of ``loop.run_training``).

    ``prepare`` encodes this rank's shard of the mapping frames into the buffer (its time
    counts against a ``minutes`` budget) and builds the student on the same encoder.
    """

    name = "buffer"
    label = "map"

    def __init__(self) -> None:
        self.buffer: FeatureBuffer | None = None

    def prepare(self, run: Run, checkpoint: dict | None) -> Prepared:
        t0 = time.monotonic()
        student_cfg, cfg, env, dev = run.student, run.train, run.env, run.device
        train_frames, val_frames = split_frames(run.scene, run.targets, cfg)
        centre = (
            np.asarray(checkpoint["centre"], np.float64)
            if checkpoint is not None
            else scene_centre(run.targets, {f.name for f in train_frames})
        )
        metres_per_unit, scale_source = recipe_metres_per_unit(run.scene, run.targets, {f.name for f in train_frames})
        ref = train_frames[0].camera
        image_size = input_size(student_cfg, ref.width, ref.height)
        encoder = DenseEncoder(student_cfg.encoder, levels=tuple(student_cfg.encoder_levels)).to(dev)
        shard = train_frames[env.rank :: env.world_size]
        if not shard:
            raise SlocalError("no training frames in this shard (too few mapping frames for the number of processes?)")
        self.buffer = build_buffer(
            shard,
            run.targets.by_name(),
            encoder,
            image_size,
            centre,
            cfg,
            seed=cfg.seed * 1000 + env.rank,
            spill_path=run.out.with_name(f"{run.out.name}.buffer{env.rank}.npy"),
            mean=student_cfg.mean,
            std=student_cfg.std,
            part="bottom" if student_cfg.tune_encoder else "levels",
            metres_per_unit=metres_per_unit,
        )
        encode_s = max_over_ranks(time.monotonic() - t0, env, dev)
        torch.manual_seed(cfg.seed)
        net = build_student(student_cfg, image_size, encoder=encoder).to(dev)
        assert isinstance(net, BufferStudent)
        if cfg.standardize_input:
            assert isinstance(net, AceStudent)  # config._check_together
            net.standardize_input(*self.buffer.channel_stats(STANDARDIZE_CELLS, seed=cfg.seed))
        enc_params = [p for p in net.encoder.parameters() if p.requires_grad]
        enc_ids = {id(p) for p in enc_params}
        head_params = [p for p in net.parameters() if p.requires_grad and id(p) not in enc_ids]
        groups = [{"params": head_params, "lr_factor": 1.0}]
        if enc_params:
            groups.append({"params": enc_params, "lr_factor": cfg.encoder_lr_factor})
        self.sampler = CellSampler(self.buffer, seed=cfg.seed * 1000 + 17 + env.rank)
        self.per_map = isinstance(student_cfg, HybridStudentConfig) or student_cfg.tune_encoder
        self.batch_size, self.batch_cells = cfg.batch_size, cfg.batch_cells
        self.level_dropout, self.coarsest = cfg.level_dropout, encoder.level_channels[-1]
        self.device = dev
        self.summary_ = {
            "encode_minutes": encode_s / 60.0,
            "buffer_passes": self.buffer.num_passes,
            "pretrained": student_cfg.encoder,
        }
        trained = sum(p.numel() for p in head_params + enc_params) / 1e6
        return Prepared(
            net=net,
            module=_HeadStep(net),
            param_groups=groups,
            centre=centre,
            image_size=image_size,
            camera=train_frames[0].camera,
            val_frames=load_val_frames(val_frames, image_size) if env.is_main else [],
            val_names=[f.name for f in val_frames],
            train_frames=len(train_frames),
            spent_s=encode_s,
            metres_per_unit=metres_per_unit,
            scale_source=scale_source,
            detail=(
                f"{student_cfg.arch} on {student_cfg.encoder}, {trained:.2f} M trained params, buffer "
                f"{self.buffer.num_passes} passes, {encode_s:.1f} s to encode"
            ),
        )

    def start(self, rng_state: dict | None) -> None:
        # A fresh run's generator is seeded in ``prepare``; the head's steps draw from nothing else.
        if rng_state is not None:
            self.sampler.generator.set_state(rng_state["sampler"])

    def rng_state(self) -> dict:
        return {"sampler": self.sampler.generator.get_state()}

    def step(self, forward) -> StepOutput:
        sampler = self.sampler
        batch = sampler.map_batch(self.batch_size) if self.per_map else sampler.cell_batch(self.batch_cells)
        if self.level_dropout > 0:
            batch["feat"] = drop_coarsest_level(batch["feat"], self.coarsest, self.level_dropout, sampler.generator)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        out_B3hw = forward(batch["feat"])
        return StepOutput(
            pred_BN3=out_B3hw.flatten(2).transpose(1, 2),
            coords_BN3=batch["coords"],
            valid_BN=batch["valid"],
            weight_BN=batch["weight"],
            uv_N2=batch["uv"],
            K_B33=batch["K"],
            cam_from_world_B34=batch["pose"],
            mask_BN=batch["inside"],
        )

    def summary(self) -> dict:
        return self.summary_

    def close(self) -> None:
        if self.buffer is not None:
            self.buffer.release()
