"""The optimizer and the schedules the training loop follows: learning rate, reprojection clamp, loss weights."""

from __future__ import annotations

import math

import torch

from slocal.distill.config import TrainConfig


def make_optimizer(params, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW at ``cfg``'s learning rate and weight decay over ``params`` (tensors or param groups).

    The fused kernel updates every parameter in one pass instead of a dozen tensor ops per
    parameter: on 2 CPU cores the head's optimizer step took 12 % of a mapping step with the
    default implementation (py-spy), and the fused one is 3x faster (0.18 vs 0.56 ms).
    """
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device.type in ("cpu", "cuda"))


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """``lr`` for every parameter group, times the group's ``lr_factor`` (fine-tuned encoder stages train slower)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_factor", 1.0)


def cosine_ramp(start: float, end: float, progress: float) -> float:
    """Cosine interpolation from ``start`` (progress 0) to ``end`` (progress 1)."""
    p = min(max(progress, 0.0), 1.0)
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * p))


def one_cycle_lr(peak: float, progress: float, warmup: float, final_factor: float) -> float:
    """One-cycle learning rate at ``progress`` in [0, 1]: cosine warm-up from peak/25, cosine decay to
    peak*final_factor."""
    p = min(max(progress, 0.0), 1.0)
    if warmup > 0 and p < warmup:
        return cosine_ramp(peak / 25.0, peak, p / warmup)
    return cosine_ramp(peak, peak * final_factor, (p - warmup) / max(1e-12, 1.0 - warmup))


def learning_rate(cfg: TrainConfig, progress: float) -> float:
    """The peak-``lr`` one-cycle schedule of ``cfg`` at ``progress`` (fraction of the budget used)."""
    return one_cycle_lr(cfg.lr, progress, cfg.warmup, cfg.final_lr_factor)


def reprojection_tau(cfg: TrainConfig, progress: float) -> float | None:
    """The reprojection loss's clamp (px at 640 width) at ``progress``, or None while that loss is off.

    It is on from ``reproj_start`` when ``reproj_weight`` > 0, its clamp tightened from
    ``reproj_tau_start`` to ``reproj_tau_end`` over the rest of the run (ACE's schedule).
    """
    if cfg.reproj_weight <= 0 or progress < cfg.reproj_start:
        return None
    rest = (progress - cfg.reproj_start) / max(1e-9, 1 - cfg.reproj_start)
    return cosine_ramp(cfg.reproj_tau_start, cfg.reproj_tau_end, rest)


def coordinate_weight(cfg: TrainConfig, progress: float) -> float:
    """The coordinate loss's weight at ``progress``: 1 until ``coord_fade_start``, then a cosine fall to
    ``coord_weight_end`` at the end of the run."""
    if progress <= cfg.coord_fade_start or cfg.coord_weight_end == 1.0:
        return 1.0
    rest = (progress - cfg.coord_fade_start) / max(1e-9, 1 - cfg.coord_fade_start)
    return cosine_ramp(1.0, cfg.coord_weight_end, rest)
