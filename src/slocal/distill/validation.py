"""Validation during training: held-out mapping frames localized through the localizer's PnP-RANSAC."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from slocal.distill.data import TrainFrame, ValFrame
from slocal.distill.encoder import normalise
from slocal.distill.students import StudentNet
from slocal.geometry.camera import pixel_centers
from slocal.geometry.pnp import DENSE_PNP, solve_pnp
from slocal.geometry.pose import pose_error


def validate(
    net: StudentNet,
    frames: Sequence[TrainFrame | ValFrame],
    centre: np.ndarray,
    bf16: bool,
    device: torch.device,
    mean,
    std,
) -> dict:
    """Pose accuracy on held-out frames through the localizer's PnP-RANSAC (at the student's threshold).

    Returns:
        ``frames``, ``median_cm``, ``median_deg``, ``pct_10cm5deg``, ``pct_5cm5deg``; {} without frames.
    """
    pnp = replace(DENSE_PNP, threshold_px=net.config.ransac_threshold_px)
    was_training = net.training
    net.eval()
    errors = []
    with torch.inference_mode():
        for f in frames:
            x = normalise(f.image_HW3[None], mean, std)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = net(x.to(device))
            xyz = out[0, :3].permute(1, 2, 0).reshape(-1, 3).double().cpu().numpy() + centre
            uv = pixel_centers(f.camera.width, f.camera.height, net.config.stride).reshape(-1, 2)
            result = solve_pnp(uv, xyz, f.camera, pnp)
            if result.success:
                errors.append(pose_error(result.cam_from_world, f.cam_from_world))
            else:
                errors.append((math.inf, math.inf))
    net.train(was_training)
    if not errors:
        return {}
    e = np.asarray(errors)
    return {
        "frames": len(frames),
        "median_cm": float(np.median(e[:, 0]) * 100),
        "median_deg": float(np.median(e[:, 1])),
        "pct_10cm5deg": float(np.mean((e[:, 0] < 0.10) & (e[:, 1] < 5)) * 100),
        "pct_5cm5deg": float(np.mean((e[:, 0] < 0.05) & (e[:, 1] < 5)) * 100),
    }


def format_validation(v: dict) -> str:
    """One line of a validation result."""
    if not v:
        return "-"
    return (
        f"{v['pct_10cm5deg']:.0f}% @10cm5deg, {v['pct_5cm5deg']:.0f}% @5cm5deg, "
        f"median {v['median_cm']:.1f} cm / {v['median_deg']:.2f} deg ({v['frames']} frames)"
    )
