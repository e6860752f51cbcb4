"""Absolute pose from 2D-3D correspondences with poselib's LO-RANSAC + non-linear refinement."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import poselib

from slocal.geometry.camera import Camera
from slocal.geometry.pose import to_homogeneous


@dataclass(frozen=True)
class PnpConfig:
    """RANSAC settings.

    Attributes:
        threshold_px: inlier threshold in pixels *at 640 pixels image width*;
            scaled linearly with the actual width so one setting serves every resolution.
        min_inliers: fewer inliers than this is a failed localization.
        max_iterations, min_iterations, success_prob: RANSAC stopping rule.
        seed: RANSAC seed, for reproducible results.
    """

    threshold_px: float = 10.0
    min_inliers: int = 20
    max_iterations: int = 10000
    min_iterations: int = 100
    success_prob: float = 0.9999
    seed: int = 0

    def threshold_for(self, camera: Camera) -> float:
        return self.threshold_px * camera.width / 640.0


# Dense scene-coordinate predictions (one match per stride-8 cell, 1 280 at 320x256, often under
# 20 % inliers away from the mapping trajectory): a looser threshold and an iteration cap. Chosen on
# validation frames held out of redkitchen-split's mapping set (benchmarks/results/tune_ransac.md):
# at least as accurate there as the sparse-match default and several times faster, because the
# looser threshold finds enough inliers for RANSAC to stop early.
DENSE_PNP = PnpConfig(threshold_px=20.0, max_iterations=500)


@dataclass(frozen=True, eq=False)
class PnpResult:
    """Outcome of one PnP-RANSAC call.

    Attributes:
        cam_from_world: (4, 4) pose, or None if no model was found.
        success: at least ``min_inliers`` inliers.
        num_inliers, num_correspondences: counts.
        inlier_mask: bool (N,) or None.
        ms: wall time in milliseconds.
    """

    cam_from_world: np.ndarray | None
    success: bool
    num_inliers: int
    num_correspondences: int
    inlier_mask: np.ndarray | None
    ms: float


def poselib_camera(camera: Camera) -> dict:
    """poselib camera dict; poselib uses the image coordinates it is given, so ours carry over unchanged."""
    return {"model": "PINHOLE", "width": camera.width, "height": camera.height, "params": [camera.fx, camera.fy, camera.cx, camera.cy]}


def solve_pnp(uv_N2: np.ndarray, xyz_N3: np.ndarray, camera: Camera, config: PnpConfig = PnpConfig()) -> PnpResult:
    """Estimate ``cam_from_world`` from image points and their world points.

    Args:
        uv_N2: (N, 2) image coordinates in ``camera`` (pixel-centre convention of ``slocal.geometry.camera``).
        xyz_N3: (N, 3) world points in metres.
        camera: the pinhole camera of the image.
        config: RANSAC settings.

    Returns:
        A ``PnpResult``; too few correspondences or inliers is reported as
        ``success=False``, not raised.
    """
    start = time.perf_counter()
    uv = np.ascontiguousarray(uv_N2, dtype=np.float64).reshape(-1, 2)
    xyz = np.ascontiguousarray(xyz_N3, dtype=np.float64).reshape(-1, 3)
    if len(uv) != len(xyz):
        raise ValueError(f"{len(uv)} image points but {len(xyz)} world points")
    finite = np.isfinite(uv).all(1) & np.isfinite(xyz).all(1)
    n = int(finite.sum())
    if n < max(4, config.min_inliers):
        return PnpResult(None, False, 0, n, None, (time.perf_counter() - start) * 1e3)
    ransac = {
        "max_reproj_error": config.threshold_for(camera),
        "max_iterations": config.max_iterations,
        "min_iterations": config.min_iterations,
        "success_prob": config.success_prob,
        "seed": config.seed,
    }
    pose, info = poselib.estimate_absolute_pose(uv[finite], xyz[finite], poselib_camera(camera), ransac, {})
    inliers = np.zeros(len(uv), bool)
    inliers[finite] = np.asarray(info["inliers"], bool)
    num = int(inliers.sum())
    cam_from_world = to_homogeneous(np.asarray(pose.R), np.asarray(pose.t))
    ok = num >= config.min_inliers and bool(np.isfinite(cam_from_world).all())
    return PnpResult(cam_from_world if ok else None, ok, num, n, inliers, (time.perf_counter() - start) * 1e3)
