"""ACE-style mapping: a scene-specific head trained on a frozen pretrained encoder's feature buffer.

The encoder runs once per augmented pass of each mapping image
(``buffer.build_buffer``); training then only runs the small head, on large
random batches of buffer cells (``ace``) or whole buffer maps (``hybrid``).
That is what lets a CPU afford millions of supervised cells per minute: the
end-to-end trainer (``trainer.py``) pushes every image through the whole
network at every step.

Loss per cell: the Euclidean distance to the teacher's target where one
exists (weighted by its confidence), plus ``reproj_weight`` times the
tanh-clamped reprojection error through the pass's exact camera, with a clamp
that tightens from ``reproj_tau_start`` to ``reproj_tau_end`` px over the run
(ACE's schedule). The reprojection term also reaches cells without a target,
which is what sparse (SfM, COLMAP) and noisy (DUSt3R) teachers need.

Budget: ``minutes`` covers encoding *and* training (the learning-rate schedule
follows the time left after encoding), or a fixed number of ``iterations``.
Checkpoints hold the head, optimizer, iteration, elapsed time and the batch
generator's state; the buffer is rebuilt on resume from the same seed, so a
resumed run with ``iterations`` is bit-exact.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from slocal.data.scene import Frame, Scene
from slocal.device import resolve_device, use_bf16
from slocal.distill.buffer import FeatureBuffer, build_buffer
from slocal.distill.config import StudentConfig, TrainConfig, to_plain
from slocal.distill.data import load_val_frames, recipe_metres_per_unit, scene_centre, validation_split
from slocal.distill.encoder import DenseEncoder
from slocal.distill.losses import MIN_DEPTH_M, coordinate_loss, cosine_ramp, one_cycle_lr, reprojection_loss
from slocal.distill.model_file import save_student
from slocal.distill.runtime import (
    DistEnv,
    DistillResult,
    TrainingLoop,
    check_resume,
    init_distributed,
    load_checkpoint,
    make_optimizer,
    max_over_ranks,
    resumed_loop_state,
    validate,
    write_checkpoint,
)
from slocal.distill.students import AceStudent, BufferStudent, build_student, input_size, num_params
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


def split_frames(scene: Scene, targets: TargetSet, cfg: TrainConfig) -> tuple[list[Frame], list[Frame]]:
    """(training, validation) mapping frames with targets, in trajectory order (``validation_split``)."""
    names = targets.by_name()
    frames = [f for f in scene.mapping if f.name in names]
    if not frames:
        raise SlocalError("no mapping frame has teacher targets", targets.directory)
    train_idx, val_idx = validation_split(len(frames), cfg.val_frames, cfg.val_stretch)
    return [frames[i] for i in train_idx], [frames[i] for i in val_idx]


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


def train_buffer_student(
    scene: Scene,
    targets: TargetSet,
    student_cfg: StudentConfig,
    train_cfg: TrainConfig,
    out: str | Path,
    *,
    device: str | None = None,
    resume: bool = False,
    teacher: str | None = None,
    stop_after: int | None = None,
    checkpoint_path: Path,
) -> DistillResult:
    """Map ``scene`` with an ``ace``/``hybrid`` student and write the model file ``out`` (rank 0).

    Args: as ``trainer.train_student`` (no ``pretrained``: the encoder is the pretrained part).
    """
    out = Path(out)
    teacher = teacher or targets.teacher
    dev0 = resolve_device(device)
    env, created_group = init_distributed(dev0)
    dev = resolve_device(device, env.local_rank) if env.active else dev0
    try:
        return _map(scene, targets, student_cfg, train_cfg, out, checkpoint_path, dev, env, resume, teacher, stop_after)
    finally:
        if created_group:
            dist.destroy_process_group()


def _map(
    scene, targets, student_cfg, cfg, out, ckpt_path, dev, env: DistEnv, resume, teacher, stop_after
) -> DistillResult:
    t0 = time.monotonic()
    ck = None
    if resume:
        ck = load_checkpoint(ckpt_path)
        check_resume(ck, ckpt_path, scene, student_cfg, cfg, env.world_size, teacher)
    train_frames, val_frames_src = split_frames(scene, targets, cfg)
    centre = (
        np.asarray(ck["centre"], np.float64)
        if ck is not None
        else scene_centre(targets, {f.name for f in train_frames})
    )
    metres_per_unit, scale_source = recipe_metres_per_unit(scene, targets, {f.name for f in train_frames})
    ref = train_frames[0].camera
    image_size = input_size(student_cfg, ref.width, ref.height)
    encoder = DenseEncoder(student_cfg.encoder, levels=tuple(student_cfg.encoder_levels)).to(dev)
    shard = train_frames[env.rank :: env.world_size]
    if not shard:
        raise SlocalError("no training frames in this shard (too few mapping frames for the number of processes?)")
    buffer = build_buffer(
        shard,
        targets.by_name(),
        encoder,
        image_size,
        centre,
        cfg,
        seed=cfg.seed * 1000 + env.rank,
        spill_path=out.with_name(f"{out.name}.buffer{env.rank}.npy"),
        mean=student_cfg.mean,
        std=student_cfg.std,
        part="bottom" if student_cfg.tune_encoder else "levels",
        metres_per_unit=metres_per_unit,
    )
    try:
        return _fit(
            scene,
            student_cfg,
            cfg,
            out,
            ckpt_path,
            dev,
            env,
            teacher,
            stop_after,
            ck,
            buffer,
            encoder,
            centre,
            image_size,
            train_frames,
            val_frames_src,
            t0,
            (metres_per_unit, scale_source),
        )
    finally:
        buffer.release()


def _fit(
    scene,
    student_cfg,
    cfg,
    out,
    ckpt_path,
    dev,
    env,
    teacher,
    stop_after,
    ck,
    buffer,
    encoder,
    centre,
    image_size,
    train_frames,
    val_frames_src,
    t0,
    scale: tuple[float, str],
) -> DistillResult:
    metres_per_unit, scale_source = scale
    encode_s = max_over_ranks(time.monotonic() - t0, env, dev)
    torch.manual_seed(cfg.seed)
    net = build_student(student_cfg, image_size, encoder=encoder).to(dev)
    assert isinstance(net, BufferStudent)
    if cfg.standardize_input:
        assert isinstance(net, AceStudent)  # config._check_together
        net.standardize_input(*buffer.channel_stats(STANDARDIZE_CELLS, seed=cfg.seed))
    step_module: torch.nn.Module = _HeadStep(net)
    if env.active:
        step_module = torch.nn.parallel.DistributedDataParallel(
            step_module, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    enc_params = [p for p in net.encoder.parameters() if p.requires_grad]
    enc_ids = {id(p) for p in enc_params}
    head_params = [p for p in net.parameters() if p.requires_grad and id(p) not in enc_ids]
    params = head_params + enc_params
    groups = [{"params": head_params, "lr_factor": 1.0}]
    if enc_params:
        groups.append({"params": enc_params, "lr_factor": cfg.encoder_lr_factor})
    opt = make_optimizer(groups, cfg, dev)
    bf16 = use_bf16(cfg.precision, dev)
    sampler = CellSampler(buffer, seed=cfg.seed * 1000 + 17 + env.rank)

    loop_state: dict = {"elapsed_s": encode_s}
    resumed_from = None
    if ck is not None:
        net.load_scene_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        resumed_from = int(ck["iteration"])
        loop_state = resumed_loop_state(ck)
        sampler.generator.set_state(ck["rng"][env.rank]["sampler"])
        log.info("resuming from iteration %d (%.1f min trained)", resumed_from, loop_state["elapsed_s"] / 60)

    val_frames = load_val_frames(val_frames_src, image_size) if env.is_main else []
    pixel_scale = 640.0 / image_size[0]
    per_map = student_cfg.arch == "hybrid" or student_cfg.tune_encoder

    def run_validation() -> dict:
        return validate(net, val_frames, centre, bf16, dev, student_cfg.mean, student_cfg.std) if val_frames else {}

    def checkpoint(loop: TrainingLoop) -> None:
        write_checkpoint(
            ckpt_path,
            loop,
            {"sampler": sampler.generator.get_state()},
            scene=scene,
            teacher=teacher,
            student_cfg=student_cfg,
            train_cfg=cfg,
            centre=centre,
            model_state=net.scene_state_dict(),
            optimizer=opt,
        )

    if env.is_main:
        log.info(
            "mapping %s (%s on %s, %.2f M trained params) on %s at %dx%d: %d train / %d val frames, buffer %d passes "
            "(%.1f s to encode), %s; %.4g m per unit (%s)",
            student_cfg.name,
            student_cfg.arch,
            student_cfg.encoder,
            sum(p.numel() for p in params) / 1e6,
            scene.id,
            image_size[0],
            image_size[1],
            len(train_frames),
            len(val_frames_src),
            buffer.num_passes,
            encode_s,
            f"{cfg.iterations} iterations" if cfg.iterations is not None else f"{cfg.minutes:g} min in all",
            metres_per_unit,
            scale_source,
        )

    coarsest = encoder.level_channels[-1]
    step_module.train()
    loop = TrainingLoop(
        cfg, env, dev, label=f"map {student_cfg.name}", spent_before_s=encode_s, stop_after=stop_after, **loop_state
    )
    with loop:
        while loop.running():
            p = loop.progress()
            lr = one_cycle_lr(cfg.lr, p, cfg.warmup, cfg.final_lr_factor)
            for g in opt.param_groups:
                g["lr"] = lr * g["lr_factor"]
            batch = sampler.map_batch(cfg.batch_size) if per_map else sampler.cell_batch(cfg.batch_cells)
            if cfg.level_dropout > 0:
                batch["feat"] = drop_coarsest_level(batch["feat"], coarsest, cfg.level_dropout, sampler.generator)
            batch = {k: v.to(dev) for k, v in batch.items()}
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                out_B3hw = step_module(batch["feat"])
            pred_BN3 = out_B3hw.flatten(2).transpose(1, 2)
            loss = coordinate_loss(
                pred_BN3, batch["coords"], batch["valid"], cfg.loss_clamp, None, batch["weight"], metres_per_unit
            )
            if cfg.reproj_weight > 0 and p >= cfg.reproj_start:
                tau = cosine_ramp(
                    cfg.reproj_tau_start, cfg.reproj_tau_end, (p - cfg.reproj_start) / max(1e-9, 1 - cfg.reproj_start)
                )
                loss = loss + cfg.reproj_weight * reprojection_loss(
                    pred_BN3,
                    batch["uv"],
                    batch["K"],
                    batch["pose"],
                    tau,
                    pixel_scale,
                    batch["inside"],
                    min_depth=MIN_DEPTH_M / metres_per_unit,
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loop.after_step(float(loss.detach()), lr, run_validation, checkpoint)
    validation = loop.finish(run_validation, checkpoint)
    if env.is_main:
        net.eval()
        train_info = {
            "recipe": "buffer",
            "iterations": loop.iteration,
            "metres_per_unit": metres_per_unit,
            "metres_per_unit_source": scale_source,
            "minutes": loop.elapsed / 60.0,
            "encode_minutes": encode_s / 60.0,
            "buffer_passes": buffer.num_passes,
            "final_loss": loop.loss_ema,
            "world_size": env.world_size,
            "precision": "bf16" if bf16 else "fp32",
            "validation_frames": [f.name for f in val_frames_src],
            "validation": loop.history,
            "settings": to_plain(cfg),
            "pretrained": student_cfg.encoder,
        }
        save_student(
            out,
            net,
            scene_id=scene.id,
            scene_fingerprint=scene.fingerprint,
            centre=centre,
            image_size=image_size,
            camera=train_frames[0].camera,
            teacher=teacher,
            train=train_info,
        )
        log.info("wrote %s (%.2f MB)", out, out.stat().st_size / 2**20)
    if env.active:
        dist.barrier()
    return DistillResult(
        model_path=out,
        checkpoint_path=ckpt_path,
        student=student_cfg.name,
        scene_id=scene.id,
        teacher=teacher,
        iterations=loop.iteration,
        train_seconds=loop.elapsed - (loop_state["elapsed_s"] if resumed_from is not None else 0.0),
        final_loss=loop.loss_ema,
        image_size=image_size,
        num_params=num_params(net),
        file_mb=out.stat().st_size / 2**20 if out.is_file() else 0.0,
        world_size=env.world_size,
        precision="bf16" if bf16 else "fp32",
        resumed_from=resumed_from,
        validation=validation,
        rank=env.rank,
    )
