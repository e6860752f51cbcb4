"""Scale alignment of one DUSt3R pair to the known poses (see ``docs/dust3r_teacher.md``, step 3).

The pointmaps come in view 1's camera frame up to scale; the known pose of
view 1 fixes rotation and translation, and the scale is solved from view 2's
known rays (``rays``) or from camera 2's predicted centre (``centre``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from slocal.config import config_dataclass
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera, pixel_centers
from slocal.geometry.pose import angle_deg, invert, transform_points

ALIGNMENTS = ("rays", "centre")
PAIR_STATUSES = ("ok", "degenerate", "inconsistent", "failed")


@config_dataclass
class PairSettings:
    """Pair ranking and alignment settings, shared by the DUSt3R teacher and the bench baseline.

    Attributes:
        min_baseline: metres; shorter camera baselines are never paired.
        target_baseline: metres; baselines up to this are preferred increasingly.
        max_angle_deg: largest angle between the optical axes of a pair.
        min_overlap: smallest co-visibility estimate of a pair (0..1).
        overlap_depths: depths (metres) at which the overlap estimate samples rays.
        candidate_pool: nearest cameras considered per frame.
        alignment: ``rays`` (1-DoF scale from view 2's rays) or ``centre`` (baseline ratio).
        min_conf: network confidence below which a point is ignored (fit and targets).
        min_triangulation_deg: pairs whose median triangulation angle is smaller are degenerate.
        max_residual_deg: pairs whose median angular residual after alignment is larger are rejected.
        fit_points: at most this many view-2 points enter the scale fit (evenly subsampled).
    """

    min_baseline: Annotated[float, Field(ge=0)] = 0.05
    target_baseline: Annotated[float, Field(gt=0)] = 0.4
    max_angle_deg: float = 45.0
    min_overlap: float = 0.3
    overlap_depths: Annotated[tuple[Annotated[float, Field(gt=0)], ...], Field(min_length=1)] = (1.0, 2.0, 4.0)
    candidate_pool: Annotated[int, Field(ge=1)] = 128
    alignment: Literal[ALIGNMENTS] = "rays"
    # DUSt3R's confidences are >= 1.
    min_conf: Annotated[float, Field(ge=1)] = 3.0
    min_triangulation_deg: float = 2.0
    max_residual_deg: float = 5.0
    fit_points: Annotated[int, Field(ge=10)] = 20000

    def __post_init__(self) -> None:
        if self.min_baseline > self.target_baseline:
            raise SlocalError(
                f"{type(self).__name__}: min_baseline ({self.min_baseline}) must be <= target_baseline "
                f"({self.target_baseline})"
            )


@dataclass(frozen=True)
class PairAlignment:
    """Outcome of aligning one pair's prediction to the known poses.

    Attributes:
        status: ``ok``, ``degenerate``, ``inconsistent`` or ``failed``.
        scale: metres per network unit (NaN when the fit failed).
        residual_deg: median angle between view 2's known rays and its aligned points, seen from camera 2.
        triangulation_deg: median angle at view 2's aligned points between the two camera centres.
        baseline: known distance between the camera centres (metres).
        centre_2: camera 2's centre in camera 1's frame as the aligned prediction places it
            (the known centre for ``rays``; ``scale * ĉ`` for ``centre``).
        num_points: view-2 points in the fit.
    """

    status: str
    scale: float
    residual_deg: float
    triangulation_deg: float
    baseline: float
    centre_2: np.ndarray
    num_points: int


def _cauchy(theta_deg: np.ndarray) -> np.ndarray:
    """Cauchy IRLS weights with a scale of 1.4826 * median |theta| (at least 0.05 degrees)."""
    sigma = max(1.4826 * float(np.median(np.abs(theta_deg))), 0.05)
    return 1.0 / (1.0 + (theta_deg / sigma) ** 2)


def fit_scale(
    points_N3: np.ndarray,
    rays_N3: np.ndarray,
    centre_3: np.ndarray,
    weights_N: np.ndarray,
    method: str = "rays",
    iterations: int = 15,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Scale that puts predicted view-2 points on view 2's known rays (camera 1's frame).

    Args:
        points_N3: predicted view-2 points in camera 1's frame (network units).
        rays_N3: unit directions of those pixels' rays, in camera 1's frame.
        centre_3: known metric centre of camera 2 in camera 1's frame.
        weights_N: non-negative prior weights (confidence).
        method: ``rays`` (s only) or ``centre`` (ĉ by ray intersection, s = |c| / |ĉ|).
        iterations: IRLS iterations.

    Returns:
        scale, the predicted camera-2 centre in camera 1's frame after scaling,
        and the final angular residuals in degrees (N,).
    """
    Y, d = points_N3.astype(np.float64), rays_N3.astype(np.float64)
    c, w0 = np.asarray(centre_3, np.float64), weights_N.astype(np.float64)
    if method == "rays":
        a = np.cross(d, Y)
        b = np.cross(d, np.broadcast_to(c, d.shape))
        w = w0.copy()
        scale = np.nan
        for _ in range(iterations):
            den = float(np.sum(w * np.einsum("ni,ni->n", a, a)))
            if not den > 0:
                return np.nan, np.full(3, np.nan), np.full(len(Y), 180.0)
            new = float(np.sum(w * np.einsum("ni,ni->n", a, b))) / den
            converged = np.isfinite(scale) and abs(new - scale) <= 1e-10 * abs(new)
            scale = new
            if converged:
                break
            X = scale * Y - c
            theta = angle_deg(d, X)
            rho2 = np.maximum(np.einsum("ni,ni->n", X, X), 1e-12 * max(float(c @ c), 1e-12))
            w = w0 * _cauchy(theta) / rho2
        return scale, c.copy(), angle_deg(d, scale * Y - c)
    if method != "centre":
        raise ValueError(f"unknown alignment method {method!r}")
    proj = np.eye(3)[None] - d[:, :, None] * d[:, None, :]
    w = w0.copy()
    c_hat = np.full(3, np.nan)
    for _ in range(iterations):
        A = np.einsum("n,nij->ij", w, proj)
        rhs = np.einsum("n,nij,nj->i", w, proj, Y)
        if not np.all(np.isfinite(A)) or np.linalg.cond(A) > 1e12:
            return np.nan, np.full(3, np.nan), np.full(len(Y), 180.0)
        new = np.linalg.solve(A, rhs)
        converged = np.all(np.isfinite(c_hat)) and np.linalg.norm(new - c_hat) <= 1e-10 * np.linalg.norm(new)
        c_hat = new
        if converged:
            break
        X = Y - c_hat
        rho2 = np.maximum(np.einsum("ni,ni->n", X, X), 1e-24)
        w = w0 * _cauchy(angle_deg(d, X)) / rho2
    norm = float(np.linalg.norm(c_hat))
    scale = float(np.linalg.norm(c)) / norm if norm > 0 else np.nan
    return scale, scale * c_hat, angle_deg(d, Y - c_hat)


def _subsample(mask_N: np.ndarray, limit: int) -> np.ndarray:
    idx = np.flatnonzero(mask_N)
    if len(idx) > limit:
        idx = idx[np.linspace(0, len(idx) - 1, limit).round().astype(int)]
    return idx


def align_pair(
    pts3d_2_HW3: np.ndarray,
    conf_2_HW: np.ndarray,
    camera_2: Camera,
    cam1_from_cam2: np.ndarray,
    config: PairSettings,
) -> PairAlignment:
    """Scale of one pair's prediction from view 2's point map and the known relative pose.

    Args:
        pts3d_2_HW3: view 2's predicted points in camera 1's frame (network units).
        conf_2_HW: their confidences.
        camera_2: view 2's processed camera (the network grid; pixel ``(col, row)``
            sees the ray through ``(col + 0.5, row + 0.5)``).
        cam1_from_cam2: (4, 4) known metric relative pose.
        config: ``alignment``, ``min_conf``, ``fit_points`` and the acceptance limits.
    """
    H, W = conf_2_HW.shape
    c = cam1_from_cam2[:3, 3]
    baseline = float(np.linalg.norm(c))
    Y_all = pts3d_2_HW3.reshape(-1, 3)
    good = (conf_2_HW.reshape(-1) >= config.min_conf) & np.isfinite(Y_all).all(1) & (np.linalg.norm(Y_all, axis=1) > 0)
    idx = _subsample(good, config.fit_points)
    nan3 = np.full(3, np.nan)
    if len(idx) < 10:
        return PairAlignment("failed", np.nan, np.nan, np.nan, baseline, nan3, len(idx))
    if baseline <= 1e-9:
        return PairAlignment("degenerate", np.nan, np.nan, 0.0, baseline, nan3, len(idx))
    uv = pixel_centers(W, H).reshape(-1, 2)[idx]
    rays = camera_2.rays(uv) @ cam1_from_cam2[:3, :3].T
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    Y = Y_all[idx].astype(np.float64)
    weights = np.log(conf_2_HW.reshape(-1)[idx].astype(np.float64))
    scale, centre, theta = fit_scale(Y, rays, c, weights, config.alignment)
    if not (np.isfinite(scale) and scale > 0):
        return PairAlignment("failed", float(scale), np.nan, np.nan, baseline, centre, len(idx))
    X = scale * Y
    tri = float(np.median(angle_deg(X, X - centre)))
    residual = float(np.median(theta))
    if tri < config.min_triangulation_deg:
        status = "degenerate"
    elif residual > config.max_residual_deg:
        status = "inconsistent"
    else:
        status = "ok"
    return PairAlignment(status, float(scale), residual, tri, baseline, centre, len(idx))


def pair_depths(
    pts3d_1_HW3: np.ndarray, pts3d_2_HW3: np.ndarray, scale: float, cam1_from_cam2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Metric z-depths of both views in their own cameras.

    Returns:
        depth_1 (H1, W1) = scale * P1_z, and depth_2 (H2, W2), the z of
        ``scale * P2`` moved into camera 2 with the known pose (float64, NaN where not finite).
    """
    depth_1 = scale * pts3d_1_HW3[..., 2].astype(np.float64)
    cam2_from_cam1 = invert(cam1_from_cam2)
    p2 = transform_points(cam2_from_cam1, scale * pts3d_2_HW3.reshape(-1, 3).astype(np.float64))
    depth_2 = p2[:, 2].reshape(pts3d_2_HW3.shape[:2])
    return depth_1, depth_2
