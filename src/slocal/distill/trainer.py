"""The distillation trainer: teacher targets -> a scene-coordinate student.

One process, or DDP under ``torchrun`` (nccl on GPUs, gloo on CPU): each rank
trains on its own shard of the mapping frames, gradients are averaged, only
rank 0 validates and writes files.

Budget: ``iterations`` (the schedule follows the iteration count; resume is
bit-exact) or ``minutes`` (the schedule follows elapsed wall time, so a busy
machine trains fewer iterations rather than overrunning; elapsed time is
checkpointed, so a resumed run gets the remaining time).

Checkpoints (``<model>.ckpt``, written atomically every ``checkpoint_every_s``
and at the end) hold the model, optimizer, iteration, elapsed time and the
RNG states of torch, numpy (the data sampler: order and augmentation) and
python of every rank.
"""

from __future__ import annotations

import logging
import random
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from slocal.data.scene import Scene
from slocal.device import resolve_device, use_bf16
from slocal.distill.config import (
    BUFFER_ARCHS,
    DEFAULT_STUDENT,
    StudentConfig,
    TrainConfig,
    load_configs,
    resolve_preset,
    to_plain,
)
from slocal.distill.data import (
    BatchSampler,
    load_train_frames,
    recipe_metres_per_unit,
    scene_centre,
    validation_split,
)
from slocal.distill.losses import MIN_DEPTH_M, coordinate_loss, cosine_ramp, one_cycle_lr, reprojection_loss
from slocal.distill.mapping import train_buffer_student
from slocal.distill.model_file import save_student
from slocal.distill.runtime import (
    DistillResult,
    TrainingLoop,
    check_resume,
    init_distributed,
    load_checkpoint,
    make_optimizer,
    resumed_loop_state,
    validate,
    write_checkpoint,
)
from slocal.distill.students import build_student, input_size, load_pretrained, num_params
from slocal.errors import SlocalError
from slocal.io import process_lock
from slocal.runs import checkpoint_path_for, default_student_path
from slocal.teach import default_teacher, ensure_targets, make_teacher
from slocal.teach.targets import TargetSet

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- checkpoints


def _rng_state(sampler: BatchSampler) -> dict:
    state = {"torch": torch.get_rng_state(), "numpy_sampler": sampler.state_dict(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict, sampler: BatchSampler) -> None:
    torch.set_rng_state(state["torch"])
    sampler.load_state_dict(state["numpy_sampler"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# --------------------------------------------------------------------------- training


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
    out = Path(out)
    ckpt_path = checkpoint_path_for(out)
    teacher = teacher or targets.teacher
    if student_cfg.arch in BUFFER_ARCHS:
        if pretrained is not None:
            raise SlocalError(
                f"student {student_cfg.name!r} maps on its pretrained {student_cfg.encoder} encoder; --pretrained "
                "does not apply"
            )
        return train_buffer_student(
            scene,
            targets,
            student_cfg,
            train_cfg,
            out,
            device=device,
            resume=resume,
            teacher=teacher,
            stop_after=stop_after,
            checkpoint_path=ckpt_path,
        )
    dev0 = resolve_device(device)
    env, created_group = init_distributed(dev0)
    dev = resolve_device(device, env.local_rank) if env.active else dev0
    try:
        return _train(
            scene, targets, student_cfg, train_cfg, out, ckpt_path, dev, env, resume, pretrained, teacher, stop_after
        )
    finally:
        if created_group:
            dist.destroy_process_group()


def _train(
    scene, targets, student_cfg, train_cfg, out, ckpt_path, dev, env, resume, pretrained, teacher, stop_after
) -> DistillResult:
    cfg = train_cfg
    ref_camera = scene.mapping[0].camera
    image_size = input_size(student_cfg, ref_camera.width, ref_camera.height)
    ck = None
    if resume:
        ck = load_checkpoint(ckpt_path)
        check_resume(ck, ckpt_path, scene, student_cfg, cfg, env.world_size, teacher)
        centre = np.asarray(ck["centre"], np.float64)
    else:
        centre = scene_centre(targets)

    frames = load_train_frames(scene, targets, image_size, centre)
    metres_per_unit, scale_source = recipe_metres_per_unit(scene, targets)
    train_idx, val_idx = validation_split(len(frames), cfg.val_frames, cfg.val_stretch)
    shard = train_idx[env.rank :: env.world_size]
    sampler = BatchSampler(frames, shard, cfg, student_cfg.stride, seed=cfg.seed * 1000 + env.rank, centre=centre)

    torch.manual_seed(cfg.seed)
    # On resume the weights come from the checkpoint: no download, no file.
    net = build_student(student_cfg, image_size, pretrained_timm=pretrained == "timm" and ck is None)
    if pretrained is not None and pretrained != "timm" and ck is None:
        counts = load_pretrained(net, pretrained)
        log.info("loaded %d backbone tensors from %s", counts["loaded"], pretrained)
    channels_last = student_cfg.arch != "vit"
    net = net.to(dev)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    model: torch.nn.Module = net
    if env.active:
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
    opt = make_optimizer(net.parameters(), cfg, dev)
    bf16 = use_bf16(cfg.precision, dev)

    loop_state: dict = {}
    resumed_from = None
    if ck is not None:
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        resumed_from = int(ck["iteration"])
        loop_state = resumed_loop_state(ck)
        _set_rng_state(ck["rng"][env.rank], sampler)
        log.info("resuming from iteration %d (%.1f min trained)", resumed_from, loop_state["elapsed_s"] / 60)
    else:
        torch.manual_seed(cfg.seed + env.rank)
        random.seed(cfg.seed + env.rank)

    uv_N2 = torch.from_numpy(sampler.uv_N2).float().to(dev)
    mean = torch.tensor(student_cfg.mean, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(student_cfg.std, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    pixel_scale = 640.0 / image_size[0]
    val_frames = [frames[i] for i in val_idx]

    def run_validation() -> dict:
        return validate(net, val_frames, centre, bf16, dev, student_cfg.mean, student_cfg.std) if val_frames else {}

    def checkpoint(loop: TrainingLoop) -> None:
        write_checkpoint(
            ckpt_path,
            loop,
            _rng_state(sampler),
            scene=scene,
            teacher=teacher,
            student_cfg=student_cfg,
            train_cfg=cfg,
            centre=centre,
            model_state=net.state_dict(),
            optimizer=opt,
        )

    if env.is_main:
        log.info(
            "distilling %s (%s, %.2f M params) on %s at %dx%d, %d train / %d val frames, %s, %s%s; "
            "%.4g m per unit (%s)",
            student_cfg.name,
            student_cfg.arch,
            num_params(net) / 1e6,
            scene.id,
            image_size[0],
            image_size[1],
            len(train_idx),
            len(val_idx),
            "bf16" if bf16 else "fp32",
            f"{cfg.iterations} iterations" if cfg.iterations is not None else f"{cfg.minutes:g} min",
            f" x {env.world_size} processes" if env.active else "",
            metres_per_unit,
            scale_source,
        )

    model.train()
    with TrainingLoop(cfg, env, dev, label=f"distill {student_cfg.name}", stop_after=stop_after, **loop_state) as loop:
        while loop.running():
            p = loop.progress()
            lr = one_cycle_lr(cfg.lr, p, cfg.warmup, cfg.final_lr_factor)
            for g in opt.param_groups:
                g["lr"] = lr
            batch = sampler.next_batch()
            x = torch.from_numpy(batch.images_BHW3).to(dev).permute(0, 3, 1, 2)
            x = (x - mean) / std
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            target = torch.from_numpy(batch.coords_BN3).to(dev)
            valid = torch.from_numpy(batch.valid_BN).to(dev)
            weight = torch.from_numpy(batch.weight_BN).to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                out_B = model(x)
            pred = out_B[:, :3].flatten(2).transpose(1, 2)
            log_unc = out_B[:, 3].flatten(1) if student_cfg.uncertainty else None
            loss = coordinate_loss(pred, target, valid, cfg.loss_clamp, log_unc, weight, metres_per_unit)
            if cfg.reproj_weight > 0 and p >= cfg.reproj_start:
                tau = cosine_ramp(
                    cfg.reproj_tau_start, cfg.reproj_tau_end, (p - cfg.reproj_start) / max(1e-9, 1 - cfg.reproj_start)
                )
                K = torch.from_numpy(batch.K_B33).to(dev)
                pose = torch.from_numpy(batch.cam_from_world_B34).to(dev)
                loss = loss + cfg.reproj_weight * reprojection_loss(
                    pred, uv_N2, K, pose, tau, pixel_scale, min_depth=MIN_DEPTH_M / metres_per_unit
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loop.after_step(float(loss.detach()), lr, run_validation, checkpoint)
    elapsed0 = loop_state.get("elapsed_s", 0.0)
    validation = loop.finish(run_validation, checkpoint)
    if env.is_main:
        net.eval()
        train_info = {
            "iterations": loop.iteration,
            "minutes": loop.elapsed / 60.0,
            "metres_per_unit": metres_per_unit,
            "metres_per_unit_source": scale_source,
            "final_loss": loop.loss_ema,
            "world_size": env.world_size,
            "precision": "bf16" if bf16 else "fp32",
            "validation_frames": [frames[i].name for i in val_idx],
            "validation": loop.history,
            "settings": to_plain(cfg),
            "pretrained": None if pretrained is None else str(pretrained),
        }
        save_student(
            out,
            net,
            scene_id=scene.id,
            scene_fingerprint=scene.fingerprint,
            centre=centre,
            image_size=image_size,
            camera=ref_camera,
            teacher=teacher,
            train=train_info,
        )
        log.info("wrote %s (%.2f MB, %.2f M params)", out, out.stat().st_size / 2**20, num_params(net) / 1e6)
    if env.active:
        dist.barrier()
    return DistillResult(
        model_path=out,
        checkpoint_path=ckpt_path,
        student=student_cfg.name,
        scene_id=scene.id,
        teacher=teacher,
        iterations=loop.iteration,
        train_seconds=loop.elapsed - elapsed0,
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
        teacher: ``depth``/``sfm``/``dust3r`` (default: depth when the scene has it, else sfm).
        minutes, iterations: training budget (default: the preset's, 10 minutes).
        config_file: YAML overriding the preset (sections ``student``, ``train``).
        out: model path (default ``<runs>/<scene>/students/<preset>/model.pt``, aliases resolved).
        resume, pretrained, device: see ``train_student``.
        teacher_options: settings of the teacher (e.g. ``{"checkpoint": ...}`` for dust3r); they
            must equal those ``slocal teach`` used for its cached targets to be reused.
    """
    student_cfg, train_cfg = load_configs(student, config_file, minutes=minutes, iterations=iterations, seed=seed)
    teacher = teacher or default_teacher(scene)
    # Folder by preset, not by name as typed: `cnn` and `cnn-small` are one student.
    out_path = Path(out) if out is not None else default_student_path(runs_root, scene.id, resolve_preset(student))
    if resume and not checkpoint_path_for(out_path).is_file():
        raise SlocalError("no checkpoint to resume from (train without --resume first)", checkpoint_path_for(out_path))
    env, created_group = init_distributed(resolve_device(device))
    # A second run into the same model file would overwrite the first one's checkpoint: refuse at once.
    lock = (
        process_lock(out_path.with_name(out_path.name + ".lock"), f"model file {out_path}", timeout_s=0)
        if env.is_main
        else nullcontext()
    )
    try:
        with lock:
            # Rank 0 computes missing targets; the others then read the cache.
            if env.active and not env.is_main:
                dist.barrier()
            targets = ensure_targets(scene, make_teacher(teacher, **(teacher_options or {})), runs_root)
            if env.active and env.is_main:
                dist.barrier()
            return train_student(
                scene,
                targets,
                student_cfg,
                train_cfg,
                out_path,
                device=device,
                resume=resume,
                pretrained=pretrained,
                teacher=teacher,
            )
    finally:
        if created_group:
            dist.destroy_process_group()
