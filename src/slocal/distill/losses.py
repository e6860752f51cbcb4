"""Distillation losses: robust 3D distance to the teacher and a soft-clamped reprojection error.

Their schedules (learning rate, the reprojection clamp) are in ``optim.py``.
"""

from __future__ import annotations

import torch

#: Predicted points nearer their camera than this (metres) get no reprojection loss (ACE's 10 cm).
MIN_DEPTH_M = 0.1


def coordinate_loss(
    pred_BN3: torch.Tensor,
    target_BN3: torch.Tensor,
    valid_BN: torch.Tensor,
    soft_clamp: float | None = None,
    log_unc_BN: torch.Tensor | None = None,
    weight_BN: torch.Tensor | None = None,
    metres_per_unit: float = 1.0,
) -> torch.Tensor:
    """Weighted mean Euclidean distance in metres over valid cells, optionally soft-clamped.

    Coordinates are in scene units; ``metres_per_unit`` turns the distance into metres, so the
    clamp (metres) and the balance against the reprojection loss (pixels) are those the recipes
    were tuned at whatever unit the scene is in (a COLMAP model's unit is arbitrary).

    With ``soft_clamp = c`` a distance ``d > c`` costs ``c (1 + log(d / c))``:
    continuous, still pulling (a hard cap would give no gradient at all early
    in training, when every prediction is far off), but far less than ``d``,
    so a few hopeless cells (occlusion edges, wrong depth) do not dominate.
    With ``log_unc_BN`` the loss is the negative log-likelihood of a
    Laplace-like distance model, ``d / sigma + log sigma`` (sigma = exp(log_unc)).
    ``weight_BN`` (e.g. teacher confidence) weights each valid cell.
    """
    d = (pred_BN3 - target_BN3).norm(dim=-1) * metres_per_unit
    if soft_clamp is not None:
        c = soft_clamp
        d = torch.where(d <= c, d, c * (1.0 + torch.log(d.clamp(min=c) / c)))
    if log_unc_BN is not None:
        d = d * torch.exp(-log_unc_BN) + log_unc_BN
    w = valid_BN.to(d.dtype)
    if weight_BN is not None:
        w = w * weight_BN.to(d.dtype)
    return (d * w).sum() / w.sum().clamp(min=1e-6)


def reprojection_loss(
    pred_BN3: torch.Tensor,
    uv_N2: torch.Tensor,
    K_B33: torch.Tensor,
    cam_from_world_B34: torch.Tensor,
    tau: float,
    pixel_scale: float,
    mask_BN: torch.Tensor | None = None,
    min_depth: float = MIN_DEPTH_M,
) -> torch.Tensor:
    """Soft-clamped reprojection error of the predicted points (ACE-style).

    ``tau * tanh(e / tau)`` with ``e`` the pixel error scaled by ``pixel_scale``
    (to 640-px-width pixels): behaves like ``e`` for small errors and saturates
    at ``tau``. Points behind or too close to the camera, or absurdly far off,
    are left out (the coordinate loss handles them).

    Args:
        pred_BN3: predicted points, world frame (relative to the scene centre).
        uv_N2: image coordinates of the cells, shared (N, 2) or per image (B, N, 2).
        K_B33, cam_from_world_B34: the (augmented) cameras, same world frame.
        tau: clamp in (scaled) pixels.
        pixel_scale: 640 / image width.
        mask_BN: cells to include (e.g. those showing the image, not a warp border); None = all.
        min_depth: points nearer the camera than this (scene units: ``MIN_DEPTH_M`` in a metric scene) are left out.
    """
    R = cam_from_world_B34[:, :, :3]
    t = cam_from_world_B34[:, :, 3]
    pc = pred_BN3 @ R.transpose(1, 2) + t[:, None, :]
    z = pc[..., 2]
    zc = z.clamp(min=min_depth)
    u = pc[..., 0] / zc * K_B33[:, None, 0, 0] + K_B33[:, None, 0, 2]
    v = pc[..., 1] / zc * K_B33[:, None, 1, 1] + K_B33[:, None, 1, 2]
    uv_BN2 = uv_N2 if uv_N2.dim() == 3 else uv_N2[None]
    e = torch.sqrt((u - uv_BN2[..., 0]) ** 2 + (v - uv_BN2[..., 1]) ** 2 + 1e-8) * pixel_scale
    ok = (z > min_depth) & (e < 1000.0)
    if mask_BN is not None:
        ok = ok & mask_BN
    ok = ok.to(e.dtype)
    terms = tau * torch.tanh(e / tau)
    return (terms * ok).sum() / ok.sum().clamp(min=1.0)
