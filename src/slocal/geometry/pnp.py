"""Absolute pose from 2D-3D correspondences with poselib's LO-RANSAC + non-linear refinement."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import poselib
from pydantic import Field

from slocal.config import config_dataclass
from slocal.geometry.camera import Camera
from slocal.geometry.pose import to_homogeneous, transform_points


@config_dataclass
class PnpConfig:
    """RANSAC settings.

    Attributes:
        threshold_px: inlier threshold in pixels *at 640 pixels image width*;
            scaled linearly with the actual width so one setting serves every resolution.
        min_inliers: fewer inliers than this is a failed localization.
        max_iterations, min_iterations, success_prob: RANSAC stopping rule.
        seed: RANSAC seed, for reproducible results.
        ransac_points: run RANSAC on at most this many matches, evenly spaced in the order
            given (None: all); poselib then counts the inliers among all matches, optimises
            and refines the pose on them, as it does after a RANSAC on all. RANSAC's cost
            grows with the matches it scores every hypothesis on; the refinement is what the
            extra matches are for.
        refine_px: scale (pixels at 640 width) of the Cauchy loss of a final refinement on all
            matches (None: poselib's own refinement on the RANSAC inliers is the last step).
    """

    threshold_px: Annotated[float, Field(gt=0)] = 10.0
    min_inliers: int = 20
    max_iterations: int = 10000
    min_iterations: int = 100
    success_prob: float = 0.9999
    seed: int = 0
    ransac_points: Annotated[int, Field(ge=4)] | None = None
    refine_px: Annotated[float, Field(gt=0)] | None = None

    def threshold_for(self, camera: Camera) -> float:
        return self.threshold_px * camera.width / 640.0

    def final_bundle(self, camera: Camera) -> dict:
        """poselib bundle options of the final refinement: Cauchy loss at ``refine_px`` (scaled to ``camera``)."""
        if self.refine_px is None:
            raise ValueError("no final refinement without refine_px")
        return {"loss_type": "CAUCHY", "loss_scale": self.refine_px * camera.width / 640.0}


# Dense scene-coordinate predictions (one match per stride-8 cell, 1 200 at 320x240, often under
# 20 % inliers away from the mapping trajectory): a looser threshold and an iteration cap, chosen on
# validation frames held out of redkitchen-split's mapping set (benchmarks/results/history/2026-11/tune_ransac.md):
# at least as accurate there as the sparse-match default and several times faster, because the
# looser threshold finds enough inliers for RANSAC to stop early. RANSAC on 320 of the matches,
# then poselib on all of them from that pose: as accurate as RANSAC on all on 450 validation poses
# (90 frames, 6 models, 5 RANSAC seeds) at under half the time (tune_ransac_pooled.md). 240 was as
# good there; 320 keeps a third more inliers to score hypotheses with on harder frames. 25 px
# rather than 20 since the recipes got more precise: on the held-out frames of redkitchen-split
# and of the demo's room, for the default and the previous recipe, two seeds each (600 poses),
# 24 poses won and 12 lost within 5 cm / 5 deg (tune_ransac_threshold_*.md).
DENSE_PNP = PnpConfig(threshold_px=25.0, max_iterations=500, ransac_points=320)


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
    return {
        "model": "PINHOLE",
        "width": camera.width,
        "height": camera.height,
        "params": [camera.fx, camera.fy, camera.cx, camera.cy],
    }


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

    Raises:
        ValueError: the points are not (N, 2) and (N, 3) arrays of the same length.
    """
    start = time.perf_counter()
    # Check the layout before anything is flattened: (2, N) and (3, N) arrays would reshape into
    # equally long, scrambled (N, 2) and (N, 3) ones and give a wrong pose, never an error.
    if np.ndim(uv_N2) != 2 or np.shape(uv_N2)[1] != 2 or np.ndim(xyz_N3) != 2 or np.shape(xyz_N3)[1] != 3:
        raise ValueError(
            f"expected (N, 2) image points and (N, 3) world points, got {np.shape(uv_N2)} and {np.shape(xyz_N3)}"
        )
    uv = np.ascontiguousarray(uv_N2, dtype=np.float64)
    xyz = np.ascontiguousarray(xyz_N3, dtype=np.float64)
    if len(uv) != len(xyz):
        raise ValueError(f"{len(uv)} image points but {len(xyz)} world points")
    finite = np.isfinite(uv).all(1) & np.isfinite(xyz).all(1)
    n = int(finite.sum())
    if n < max(4, config.min_inliers):
        return PnpResult(None, False, 0, n, None, (time.perf_counter() - start) * 1e3)
    threshold = config.threshold_for(camera)
    ransac = {
        "max_reproj_error": threshold,
        "max_iterations": config.max_iterations,
        "min_iterations": config.min_iterations,
        "success_prob": config.success_prob,
        "seed": config.seed,
    }
    idx = np.flatnonzero(finite)
    sample = idx
    if config.ransac_points is not None and n > config.ransac_points:
        sample = idx[np.linspace(0, n - 1, config.ransac_points).round().astype(np.int64)]
    cam = poselib_camera(camera)
    pose, info = poselib.estimate_absolute_pose(uv[sample], xyz[sample], cam, ransac, {})
    if sample is not idx:
        # RANSAC saw a subset: poselib again on all matches, started from that pose with no new
        # hypotheses, so inliers are counted, locally optimised and refined on all of them exactly
        # as after a RANSAC on all (its final step: Cauchy loss on the inliers).
        pose, info = poselib.estimate_absolute_pose(
            uv[idx], xyz[idx], cam, {**ransac, "max_iterations": 0, "min_iterations": 0}, {}, initial_pose=pose
        )
    inliers = np.zeros(len(uv), bool)
    inliers[idx] = np.asarray(info["inliers"], bool)
    if config.refine_px is not None and int(inliers.sum()) >= 4:
        pose, _ = poselib.refine_absolute_pose(uv[inliers], xyz[inliers], pose, cam, config.final_bundle(camera))
        inliers[idx] = reprojection_errors(pose.Rt, uv[idx], xyz[idx], camera) < threshold
    num = int(inliers.sum())
    cam_from_world = to_homogeneous(np.asarray(pose.R), np.asarray(pose.t))
    ok = num >= config.min_inliers and bool(np.isfinite(cam_from_world).all())
    return PnpResult(cam_from_world if ok else None, ok, num, n, inliers, (time.perf_counter() - start) * 1e3)


def reprojection_errors(
    cam_from_world_34: np.ndarray, uv_N2: np.ndarray, xyz_N3: np.ndarray, camera: Camera
) -> np.ndarray:
    """(N,) pixel distance between ``uv_N2`` and the projections of the world points ``xyz_N3``; inf behind."""
    uv, _ = camera.project(transform_points(np.asarray(cam_from_world_34, np.float64), xyz_N3))
    err = np.linalg.norm(uv - uv_N2, axis=1)
    return np.where(np.isfinite(err), err, np.inf)
