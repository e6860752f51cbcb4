"""The DUSt3R teacher: pairwise DUSt3R point maps placed in the metric world frame with the known poses.

Pipeline, for the scene's *mapping* frames only (queries are never looked at):

1. **Pairs** (:func:`select_pairs`). From the known poses alone, every frame
   ranks the other mapping frames: candidates are its ``candidate_pool``
   nearest camera centres; a candidate is kept when the camera baseline is at
   least ``min_baseline`` metres (rotation-only pairs carry no scale), the
   optical axes differ by at most ``max_angle_deg``, and the view overlap is
   at least ``min_overlap``. The overlap is a co-visibility estimate: a coarse
   8 x 6 grid of pixel rays is sampled at the depths ``overlap_depths`` and the
   fraction of those 3D points that project inside the other image (in front
   of it) is averaged over both directions. The score is
   ``overlap * min(1, baseline / target_baseline)``: overlapping views with a
   useful baseline, no bonus beyond ``target_baseline``. Pairs are chosen
   greedily, frame by frame: a frame takes its best candidates until it takes
   part in ``pairs_per_frame`` pairs (pairs chosen by earlier frames count, so
   (i, j) and (j, i) are never both run: one run gives estimates for both
   frames), skipping candidates that already take part in ``2 * pairs_per_frame``
   pairs and candidates within ``min_baseline`` of a partner it already has.
   ``symmetrize=True`` additionally runs each pair in the other order.

2. **Network** (:mod:`slocal.teach.dust3r`): images are prepared exactly like
   the official loader (``image_size``, resize + centre crop) with the matching
   processed camera; each pair (i, j) gives ``P1`` (view i's pixels) and
   ``P2`` (view j's pixels), both in camera i's frame (x right, y down,
   z forward, like :mod:`slocal.geometry.camera`), sharing one unknown scale,
   with confidences >= 1.

3. **Alignment** (:func:`align_pair`). The frame of the prediction *is* camera
   i's frame, so the known ``world_from_cam`` of view i fixes rotation and
   translation; only the pair's scale ``s`` (metres per network unit) is
   unknown. With the known relative pose, camera j's centre in camera i's
   frame is ``c`` and the ray of view-j pixel ``p`` in camera i's frame is the
   unit vector ``d_p`` (processed camera j's intrinsics rotated by the known
   ``R_ij``). A correct prediction puts the metric point ``s * P2_p`` on that
   ray: ``d_p x (s * P2_p - c) = 0``. This is *linear in s* (the default
   ``alignment="rays"``): ``s * (d_p x P2_p) = d_p x c``, solved by weighted
   least squares in closed form and refined by IRLS. The weights make the
   residual the sine of the angle between the ray and the predicted point as
   seen from camera j (division by ``|s P2_p - c|``), times the network
   confidence (``log(conf)``, as in DUSt3R's own global alignment), times a
   Cauchy weight on that angle with a scale from the median absolute angle
   (points behind camera j count as 180-degree residuals). It uses every
   confident pixel of view j, the full known relative pose (rotation and the
   direction of the translation), has one unknown, and needs neither
   correspondences nor PnP-RANSAC. Noise-free predictions give the exact scale.

   ``alignment="centre"`` is the alternative "known vs predicted baseline":
   camera j's centre ``ĉ`` in the prediction's units is found with the
   known rotation (least-squares intersection of the lines through ``P2_p``
   along ``d_p``, same IRLS weights), and ``s = |c| / |ĉ|``; it ignores the
   known direction of the baseline and is the less constrained of the two.

   Checks after the fit (a pair that fails one is skipped and counted, never
   used): the scale must be finite and positive (``failed``); the median
   triangulation angle of view j's points between the two camera centres must
   reach ``min_triangulation_deg``, otherwise the baseline is too short for the
   scale to be observable (``degenerate``; there is no fallback, because
   DUSt3R's scale is arbitrary per pair and nothing else in the pair fixes it);
   the median angular residual must stay below ``max_residual_deg``, otherwise
   the prediction disagrees with the known relative pose (``inconsistent``).

   Sensitivity (measured on the analytic test room, ~6 degrees triangulation):
   noise and depth-dependent warps of the prediction barely move the scale
   (1 cm noise: < 0.3 %; a 5 % depth warp: ~1 %), but an error of the
   predicted relative rotation about the axis perpendicular to both the
   baseline and the viewing direction is confounded with the scale: 1 degree
   shifts it by ~14 %, roughly (rotation error) / (triangulation angle), and
   raises the residual only slightly. Any single-pair method that trusts the
   known rotation shares this; a 6-DoF PnP of view 2 is immune to it but
   about 4x more sensitive to depth warps and 1.5-4x to errors of the focal
   length implied by the prediction, both common in DUSt3R outputs.
   Hence the wide preferred baselines (``target_baseline``) and step 5's
   per-frame scale consensus over several pairs.

4. **Per-frame estimates**. For view i the metric depth is ``s * P1_z``; for
   view j it is the z of ``s * P2`` moved into camera j with the known pose.
   Points with confidence below ``min_conf`` or depth outside
   ``[min_depth, max_depth]`` are dropped. Depths are resampled from the
   processed (resized + cropped) camera onto the frame's target grid
   (``target_camera(frame, max_side)``), bilinearly by default except
   across depth edges (neighbours more than ``fusion_tolerance`` apart),
   where the nearest sample is taken so that no point lands between a
   foreground and a background surface.

5. **Fusion** (:func:`fuse_estimates`) over a frame's estimates (one per pair
   it takes part in). First a scale consensus (:func:`harmonize_scales`): the
   median log depth ratio of every two estimates gives, by least squares,
   each estimate's relative scale; all are brought to the median scale and
   those more than ``scale_tolerance`` off are dropped (a pair whose scale went
   wrong). Then per target pixel, the ``log(conf)``-weighted median depth is
   the consensus; estimates within ``fusion_tolerance`` (relative) of it are
   averaged with the same weights; the pixel is kept when those agreeing
   estimates hold more than half the weight (a single estimate always does).
   The target confidence is the mean network confidence of the agreeing
   estimates. The world coordinate is the fused depth along the pixel's
   *known* ray, moved to the world with the known pose, so every target
   projects exactly onto its own pixel.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from scipy.spatial import cKDTree

from slocal.data.scene import Frame, Scene
from slocal.device import resolve_device
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera, pixel_centers, visible_fraction
from slocal.geometry.pose import invert, transform_points
from slocal.io import read_image
from slocal.progress import make_progress
from slocal.teach.dust3r.checkpoint import CHECKPOINT_HELP, WEIGHT_FILES, load_dust3r
from slocal.teach.dust3r.inference import Dust3rRunner
from slocal.teach.dust3r.preprocess import preprocess_image
from slocal.teach.targets import FrameTargets, target_camera

log = logging.getLogger(__name__)

PATCH = 16
ALIGNMENTS = ("rays", "centre")
RESAMPLING = ("nearest", "bilinear")
AMP_MODES = ("bf16", "fp16", "fp32")
#: bytes of the checkpoint hashed for its identity (with the file size).
IDENTITY_BYTES = 8 * 2**20
#: coarse pixel grid (columns, rows) for the overlap estimate.
OVERLAP_GRID = (8, 6)
PAIR_STATUSES = ("ok", "degenerate", "inconsistent", "failed")


def checkpoint_help() -> str:
    return CHECKPOINT_HELP


@dataclass(frozen=True)
class Dust3rTeacherConfig:
    """Settings of the DUSt3R teacher (see the module docstring for the method).

    Attributes:
        checkpoint: DUSt3R checkpoint (official ``.pth``, or a folder / state dict
            with ``config.json``); required.
        device: torch device; None: ``cuda`` when available, else ``cpu`` (resolved when teaching).
        amp: autocast precision on CUDA (``bf16``, ``fp16``, ``fp32``).
        image_size: network input size (512 for the 512 checkpoints, 224 for the 224 one).
        batch_size: pairs per forward pass.
        pairs_per_frame: pairs each mapping frame takes part in (at least, when it has candidates).
        symmetrize: also run every pair in the other order (twice the cost, two estimates per pair).
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
        max_side: longer side of the target grid.
        resample: ``bilinear`` (nearest across depth edges) or ``nearest`` from the network grid to the target grid.
        fusion_tolerance: relative depth difference within which estimates agree.
        scale_tolerance: a frame's estimates are first brought to their median scale; those whose
            scale differs from it by more than this (relative) are dropped.
        min_depth, max_depth: accepted metric depth range of an estimate.
    """

    checkpoint: str | None = None
    device: str | None = None
    amp: str = "bf16"
    image_size: int = 512
    batch_size: int = 4
    pairs_per_frame: int = 3
    symmetrize: bool = False
    min_baseline: float = 0.05
    target_baseline: float = 0.4
    max_angle_deg: float = 45.0
    min_overlap: float = 0.3
    overlap_depths: tuple[float, ...] = (1.0, 2.0, 4.0)
    candidate_pool: int = 128
    alignment: str = "rays"
    min_conf: float = 3.0
    min_triangulation_deg: float = 2.0
    max_residual_deg: float = 5.0
    fit_points: int = 20000
    max_side: int = 320
    resample: str = "bilinear"
    fusion_tolerance: float = 0.05
    scale_tolerance: float = 0.3
    min_depth: float = 0.05
    max_depth: float = 20.0

    def __post_init__(self) -> None:
        if self.checkpoint is None or str(self.checkpoint) == "":
            raise SlocalError(
                "the dust3r teacher needs a DUSt3R checkpoint (--checkpoint PATH); " + checkpoint_help()
            )
        object.__setattr__(self, "checkpoint", str(self.checkpoint))
        object.__setattr__(self, "overlap_depths", tuple(float(d) for d in self.overlap_depths))
        problems = []
        if self.amp not in AMP_MODES:
            problems.append(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.alignment not in ALIGNMENTS:
            problems.append(f"alignment must be one of {ALIGNMENTS}, got {self.alignment!r}")
        if self.resample not in RESAMPLING:
            problems.append(f"resample must be one of {RESAMPLING}, got {self.resample!r}")
        if self.image_size < PATCH or self.image_size % PATCH:
            problems.append(f"image_size must be a positive multiple of {PATCH}, got {self.image_size}")
        if self.pairs_per_frame < 1 or self.batch_size < 1 or self.candidate_pool < 1 or self.fit_points < 10:
            problems.append("pairs_per_frame, batch_size and candidate_pool must be >= 1, fit_points >= 10")
        if not self.overlap_depths or min(self.overlap_depths) <= 0:
            problems.append("overlap_depths must be positive")
        if not 0 <= self.min_baseline <= self.target_baseline or self.target_baseline <= 0:
            problems.append("need 0 <= min_baseline <= target_baseline and target_baseline > 0")
        if not 0 < self.min_depth < self.max_depth:
            problems.append("need 0 < min_depth < max_depth")
        if self.max_side < 1 or self.fusion_tolerance <= 0 or self.scale_tolerance <= 0 or self.min_conf < 1:
            problems.append("max_side and fusion_tolerance must be positive, min_conf >= 1 (DUSt3R confidences are >= 1)")
        if problems:
            raise SlocalError("invalid dust3r teacher settings: " + "; ".join(problems))


class PairSettings(Protocol):
    """The settings pair ranking and alignment read (a :class:`Dust3rTeacherConfig`, or the bench baseline's)."""

    min_baseline: float
    target_baseline: float
    max_angle_deg: float
    min_overlap: float
    overlap_depths: tuple[float, ...]
    candidate_pool: int
    alignment: str
    min_conf: float
    min_triangulation_deg: float
    max_residual_deg: float
    fit_points: int


def checkpoint_identity(path: str | Path) -> dict:
    """Size and a hash of the first bytes of a checkpoint (and of its ``config.json``).

    The identity, not the path, enters the teacher settings: a moved or renamed
    file keeps its cached targets, other weights get new ones.

    Raises:
        SlocalError: the checkpoint does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise SlocalError(f"DUSt3R checkpoint not found; {checkpoint_help()}", path)
    if path.is_dir():
        weights = [path / n for n in WEIGHT_FILES if (path / n).is_file()]
        if not weights:
            raise SlocalError(f"folder holds none of {', '.join(WEIGHT_FILES)}; {checkpoint_help()}", path)
        files = [weights[0], path / "config.json"]
    else:
        files = [path, path.parent / "config.json"]
    h = hashlib.sha256()
    total = 0
    for role, f in zip(("weights", "config"), files):
        if not f.is_file():
            continue
        size = f.stat().st_size
        total += size
        h.update(f"{role}|{size}|".encode())
        with f.open("rb") as fh:
            h.update(fh.read(IDENTITY_BYTES))
    return {"bytes": total, "sha256_head": h.hexdigest()[:20]}


# ----------------------------------------------------------------------------- pair selection


def _overlap_samples(frames: Sequence[Frame], depths: Sequence[float]) -> np.ndarray:
    """World points of a coarse ray grid of every frame at the given depths, (N, S, 3)."""
    cols, rows = OVERLAP_GRID
    out = []
    for f in frames:
        cam = f.camera
        uv = np.stack(
            np.meshgrid((np.arange(cols) + 0.5) * cam.width / cols, (np.arange(rows) + 0.5) * cam.height / rows), -1
        ).reshape(-1, 2)
        rays = cam.rays(uv)
        pts = np.concatenate([rays * d for d in depths])
        out.append(transform_points(f.world_from_cam, pts))
    return np.stack(out)


def _inside_fraction(points_MS3: np.ndarray, frames: Sequence[Frame]) -> np.ndarray:
    """Fraction of each row's world points that frame m sees (in front, inside the image), (M,)."""
    cam_from_world = np.stack([f.cam_from_world for f in frames])
    intrinsics = np.array(
        [[f.camera.fx, f.camera.fy, f.camera.cx, f.camera.cy, f.camera.width, f.camera.height] for f in frames]
    )
    return visible_fraction(points_MS3, cam_from_world, intrinsics)


def rank_partners(frames: Sequence[Frame], config: PairSettings) -> list[list[tuple[int, float]]]:
    """Acceptable partners of every frame, best first, scored from the known poses only.

    Returns:
        For frame i, ``[(j, score), ...]`` sorted by decreasing score; only
        candidates that pass the baseline, angle and overlap limits.
    """
    n = len(frames)
    if n < 2:
        return [[] for _ in range(n)]
    centres = np.stack([f.world_from_cam[:3, 3] for f in frames])
    axes = np.stack([f.world_from_cam[:3, 2] for f in frames])
    samples = _overlap_samples(frames, config.overlap_depths)
    k = min(n, config.candidate_pool + 1)
    _, nn = cKDTree(centres).query(centres, k=k)
    nn = np.asarray(nn).reshape(n, k)
    cos_max = math.cos(math.radians(config.max_angle_deg))
    ranked = []
    for i in range(n):
        cand = nn[i][nn[i] != i]
        baseline = np.linalg.norm(centres[cand] - centres[i], axis=1)
        keep = (baseline >= config.min_baseline) & (axes[cand] @ axes[i] >= cos_max)
        cand, baseline = cand[keep], baseline[keep]
        if len(cand) == 0:
            ranked.append([])
            continue
        others = [frames[j] for j in cand]
        forward = _inside_fraction(np.broadcast_to(samples[i], (len(cand), *samples[i].shape)), others)
        backward = _inside_fraction(samples[cand], [frames[i]] * len(cand))
        overlap = 0.5 * (forward + backward)
        score = overlap * np.minimum(1.0, baseline / config.target_baseline)
        ok = overlap >= config.min_overlap
        order = np.argsort(-score[ok], kind="stable")
        ranked.append([(int(j), float(s)) for j, s in zip(cand[ok][order], score[ok][order])])
    return ranked


def select_pairs(frames: Sequence[Frame], config: Dust3rTeacherConfig) -> list[tuple[int, int]]:
    """Pairs (view 1, view 2) of indices into ``frames``; see the module docstring.

    Each frame chooses partners until it takes part in ``pairs_per_frame``
    pairs; a partner already in ``2 * pairs_per_frame`` pairs or closer than
    ``min_baseline`` to one of the frame's partners is passed over. Each
    unordered pair appears once (twice, both orders, with ``symmetrize``).
    """
    ranked = rank_partners(frames, config)
    centres = np.stack([f.world_from_cam[:3, 3] for f in frames]) if frames else np.zeros((0, 3))
    k = config.pairs_per_frame
    degree = np.zeros(len(frames), int)
    partners: list[list[int]] = [[] for _ in frames]
    pairs: list[tuple[int, int]] = []
    for i, candidates in enumerate(ranked):
        for j, _ in candidates:
            if degree[i] >= k:
                break
            if j in partners[i] or degree[j] >= 2 * k:
                continue
            if partners[i] and np.linalg.norm(centres[partners[i]] - centres[j], axis=1).min() < config.min_baseline:
                continue
            pairs.append((i, j))
            partners[i].append(j)
            partners[j].append(i)
            degree[i] += 1
            degree[j] += 1
    if config.symmetrize:
        pairs = [p for i, j in pairs for p in ((i, j), (j, i))]
    return pairs


# ----------------------------------------------------------------------------- alignment


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


def _angle_deg(a_N3: np.ndarray, b_N3: np.ndarray) -> np.ndarray:
    """Angles between row vectors, robust for small angles (atan2 of cross and dot)."""
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(a_N3, b_N3), axis=1), np.einsum("ni,ni->n", a_N3, b_N3)))


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
            theta = _angle_deg(d, X)
            rho2 = np.maximum(np.einsum("ni,ni->n", X, X), 1e-12 * max(float(c @ c), 1e-12))
            w = w0 * _cauchy(theta) / rho2
        return scale, c.copy(), _angle_deg(d, scale * Y - c)
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
        w = w0 * _cauchy(_angle_deg(d, X)) / rho2
    norm = float(np.linalg.norm(c_hat))
    scale = float(np.linalg.norm(c)) / norm if norm > 0 else np.nan
    return scale, scale * c_hat, _angle_deg(d, Y - c_hat)


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
    tri = float(np.median(_angle_deg(X, X - centre)))
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


# ----------------------------------------------------------------------------- resampling and fusion


def resample_to(
    target: Camera,
    source: Camera,
    maps: Sequence[np.ndarray],
    valid_HW: np.ndarray,
    mode: str = "nearest",
    edge_tolerance: float | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Sample maps of the ``source`` pixel grid at the pixel centres of ``target``.

    Both cameras must share the optical centre and orientation (a resize and
    crop of the same image); image coordinates follow :mod:`slocal.geometry.camera`.

    Args:
        target: camera of the output grid.
        source: camera of ``maps`` (H_s, W_s).
        maps: (H_s, W_s) arrays.
        valid_HW: (H_s, W_s) bool; invalid source pixels never contribute.
        mode: ``nearest`` (the source pixel containing the point), or ``bilinear``
            (valid only where every contributing neighbour is).
        edge_tolerance: bilinear only: where the contributing neighbours of
            ``maps[0]`` (a depth) differ by more than this relative amount, the
            nearest sample is taken instead, so depth edges get no in-between points.

    Returns:
        the resampled maps (H_t, W_t) float64 and their validity.
    """
    uv_t = pixel_centers(target.width, target.height).reshape(-1, 2)
    uv_s, _ = source.project(target.rays(uv_t))
    Hs, Ws = valid_HW.shape
    shape = (target.height, target.width)
    col = np.floor(uv_s[:, 0]).astype(np.int64)
    row = np.floor(uv_s[:, 1]).astype(np.int64)
    inside = (col >= 0) & (col < Ws) & (row >= 0) & (row < Hs)
    near_ok = np.zeros(len(uv_t), bool)
    near_ok[inside] = valid_HW[row[inside], col[inside]]
    nearest = []
    for m in maps:
        v = np.full(len(uv_t), np.nan)
        v[near_ok] = m[row[near_ok], col[near_ok]]
        nearest.append(v)
    if mode == "nearest":
        return [v.reshape(shape) for v in nearest], near_ok.reshape(shape)
    if mode != "bilinear":
        raise ValueError(f"unknown resampling mode {mode!r}")
    x = uv_s[:, 0] - 0.5
    y = uv_s[:, 1] - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    corners = [(0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)]
    ok = np.isfinite(x) & np.isfinite(y)
    acc = [np.zeros(len(uv_t)) for _ in maps]
    lo, hi = np.full(len(uv_t), np.inf), np.full(len(uv_t), -np.inf)
    for dx, dy, wk in corners:
        cc, rr = x0 + dx, y0 + dy
        inside_k = (cc >= 0) & (cc < Ws) & (rr >= 0) & (rr < Hs)
        contributes = wk > 1e-12
        vk = np.zeros(len(uv_t), bool)
        vk[inside_k] = valid_HW[rr[inside_k], cc[inside_k]]
        ok &= vk | ~contributes
        use = vk & contributes
        for a, m in zip(acc, maps):
            a[use] += wk[use] * m[rr[use], cc[use]]
        first = maps[0][rr[use], cc[use]]
        lo[use] = np.minimum(lo[use], first)
        hi[use] = np.maximum(hi[use], first)
    if edge_tolerance is not None:
        with np.errstate(invalid="ignore"):
            edge = ok & (hi - lo > edge_tolerance * np.abs(lo))
        for a, v in zip(acc, nearest):
            a[edge] = v[edge]
        ok = (ok & ~edge) | (edge & near_ok)
    out = []
    for a in acc:
        a[~ok] = np.nan
        out.append(a.reshape(shape))
    return out, ok.reshape(shape)


def estimate_weights(conf_KHW: np.ndarray, valid_KHW: np.ndarray) -> np.ndarray:
    """Fusion weights ``log(conf)`` (a confidence of exactly 1 still counts a little), 0 where invalid."""
    return np.where(valid_KHW, np.maximum(np.log(np.maximum(conf_KHW, 1.0)), 1e-6), 0.0)


def harmonize_scales(
    depth_KHW: np.ndarray, valid_KHW: np.ndarray, scale_tolerance: float, min_common: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Relative scale of each of a frame's estimates, and which agree with the others.

    For every two estimates with at least ``min_common`` common pixels, the
    median log depth ratio is measured; per-estimate log scales ``x_k`` solve
    ``x_k - x_l = ratio_kl`` in the least-squares sense, relative to their
    median. Estimates further than ``log(1 + scale_tolerance)`` from the median
    (or linked to no other estimate while others are linked) are dropped, and
    the median of the others is the common scale.

    Returns:
        factors_K that bring each estimate to the median scale, and keep_K (bool).
    """
    K = len(depth_KHW)
    if K == 1:
        return np.ones(1), np.ones(1, bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_d = np.where(valid_KHW & (depth_KHW > 0), np.log(depth_KHW), np.nan).reshape(K, -1)
    rows, rhs = [], []
    linked = np.zeros(K, bool)
    for k in range(K):
        for m in range(k + 1, K):
            common = np.isfinite(log_d[k]) & np.isfinite(log_d[m])
            if common.sum() < min_common:
                continue
            row = np.zeros(K)
            row[k], row[m] = 1.0, -1.0
            rows.append(row)
            rhs.append(float(np.median(log_d[k, common] - log_d[m, common])))
            linked[k] = linked[m] = True
    if not rows:
        return np.ones(K), np.ones(K, bool)
    # the gauge: unlinked estimates keep log scale 0 (least-norm solution)
    x = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    ref = float(np.median(x[linked]))
    keep = linked & (np.abs(x - ref) <= math.log1p(scale_tolerance))
    if keep.any():
        # the reference again without the estimates just dropped
        ref = float(np.median(x[keep]))
    factors = np.where(linked, np.exp(ref - x), 1.0)
    return factors, keep


def fuse_estimates(
    depth_KHW: np.ndarray, conf_KHW: np.ndarray, valid_KHW: np.ndarray, tolerance: float, scale_tolerance: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fuse K depth estimates per pixel (module docstring, step 5).

    Args:
        depth_KHW: metric depths along the pixel rays.
        conf_KHW: network confidences (>= 1) of the estimates.
        valid_KHW: which estimates exist.
        tolerance: relative depth difference within which estimates agree with the consensus.
        scale_tolerance: if given, first bring the estimates to their median scale
            (:func:`harmonize_scales`), dropping those further off than this.

    Returns:
        depth_HW (NaN where invalid), conf_HW (0 where invalid), valid_HW.
    """
    valid = valid_KHW & np.isfinite(depth_KHW) & np.isfinite(conf_KHW)
    if scale_tolerance is not None:
        factors, keep = harmonize_scales(depth_KHW, valid, scale_tolerance)
        depth_KHW = depth_KHW * factors[:, None, None]
        valid = valid & keep[:, None, None]
    w = estimate_weights(conf_KHW, valid)
    d = np.where(valid, depth_KHW, np.inf)
    order = np.argsort(d, axis=0)
    d_sorted = np.take_along_axis(d, order, 0)
    w_sorted = np.take_along_axis(w, order, 0)
    total = w_sorted.sum(0)
    cum = np.cumsum(w_sorted, axis=0)
    median_idx = np.argmax(cum >= 0.5 * total[None], axis=0)
    median = np.take_along_axis(d_sorted, median_idx[None], 0)[0]
    agree = valid & (np.abs(depth_KHW - median[None]) <= tolerance * median[None])
    w_in = np.where(agree, w, 0.0)
    s = w_in.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        depth = (np.where(agree, depth_KHW, 0.0) * w_in).sum(0) / s
        conf = np.where(agree, conf_KHW, 0.0).sum(0) / agree.sum(0)
    ok = (total > 0) & (s > 0.5 * total) & np.isfinite(depth)
    return np.where(ok, depth, np.nan), np.where(ok, conf, 0.0), ok


def frame_targets(
    frame: Frame,
    camera: Camera,
    depth_KHW: np.ndarray,
    conf_KHW: np.ndarray,
    valid_KHW: np.ndarray,
    tolerance: float,
    scale_tolerance: float | None = None,
) -> FrameTargets:
    """Fused targets of one frame: the fused depth along each pixel's known ray, in the world."""
    depth, conf, ok = fuse_estimates(depth_KHW, conf_KHW, valid_KHW, tolerance, scale_tolerance)
    uv = pixel_centers(camera.width, camera.height).reshape(-1, 2)
    pts = camera.backproject(uv, np.where(ok, depth, 0.0).reshape(-1))
    coords = transform_points(frame.world_from_cam, pts).astype(np.float32)
    coords[~ok.reshape(-1)] = np.nan
    return FrameTargets(
        frame.name, camera, coords.reshape(camera.height, camera.width, 3), conf.astype(np.float32), ok
    )


# ----------------------------------------------------------------------------- the teacher


@dataclass(frozen=True, eq=False)
class PairView:
    """One side of a network pair: a frame's processed image and camera.

    Attributes:
        index: index of the frame in ``scene.mapping`` (-1 for a bench query).
        frame: the frame (None for a bench query, whose pose is unknown).
        image: (3, H, W) float32 tensor in [-1, 1].
        camera: the processed camera (network grid).
    """

    index: int
    frame: Frame | None
    image: torch.Tensor
    camera: Camera


@dataclass(frozen=True)
class PairReport:
    """What happened to one pair (for logs and tests)."""

    view1: str
    view2: str
    alignment: PairAlignment


#: ``predict(pairs) -> predictions``: the network as the teacher uses it (replaceable in tests).
Predictor = Callable[[Sequence[tuple[PairView, PairView]]], list]


def prepare_view(index: int, frame: Frame, image_size: int) -> PairView:
    """Read and preprocess one frame's image like the official loader."""
    rgb = read_image(frame.image_path)
    if rgb.shape[:2] != (frame.camera.height, frame.camera.width):
        raise SlocalError(
            f"image is {rgb.shape[1]}x{rgb.shape[0]} but its camera is {frame.camera.width}x{frame.camera.height}",
            frame.image_path,
        )
    try:
        image, camera = preprocess_image(rgb, frame.camera, size=image_size)
    except ValueError as exc:
        raise SlocalError(f"cannot prepare the image for DUSt3R: {exc}", frame.image_path) from exc
    return PairView(index, frame, image, camera)


def check_frames(scene: Scene) -> None:
    """Refuse scenes the teacher cannot work on (too few mapping frames, images below the patch size)."""
    if len(scene.mapping) < 2:
        raise SlocalError(
            f"the dust3r teacher needs at least 2 mapping frames with known poses, scene {scene.id} has {len(scene.mapping)}",
            scene.root,
        )
    for f in scene.mapping:
        if min(f.camera.width, f.camera.height) < PATCH:
            raise SlocalError(
                f"image is {f.camera.width}x{f.camera.height}, smaller than the DUSt3R patch size {PATCH} pixels",
                f.image_path,
            )


class Dust3rTeacher:
    """World-frame targets from DUSt3R pairs of mapping frames, scaled and placed with the known poses.

    Args:
        config: settings; the checkpoint must exist.
        predictor: replaces the network (tests); None loads ``config.checkpoint`` when teaching.
    """

    name = "dust3r"

    def __init__(self, config: Dust3rTeacherConfig, predictor: Predictor | None = None):
        self.config = config
        self._identity = checkpoint_identity(config.checkpoint)
        self._predictor = predictor
        self.pair_reports: list[PairReport] = []

    def settings(self) -> dict:
        """Every setting that changes the targets: not the device, path or batch size; the checkpoint's identity."""
        s = asdict(self.config)
        for key in ("device", "checkpoint", "batch_size"):
            s.pop(key)
        s["overlap_depths"] = list(s["overlap_depths"])
        s["checkpoint_id"] = dict(self._identity)
        return s

    def _network_predictor(self) -> Predictor:
        device = resolve_device(self.config.device)
        net = load_dust3r(self.config.checkpoint, device=device)
        runner = Dust3rRunner(net, device=device, batch_size=self.config.batch_size, amp=self.config.amp)
        amp = f", {self.config.amp} autocast" if torch.device(device).type == "cuda" else ""
        log.info("dust3r teacher on %s%s", device, amp)

        def predict(pairs: Sequence[tuple[PairView, PairView]]) -> list:
            return runner.run([(a.image, b.image) for a, b in pairs], progress=False)

        return predict

    def teach(self, scene: Scene) -> Iterator[FrameTargets]:
        c = self.config
        check_frames(scene)
        frames = scene.mapping
        pairs = select_pairs(frames, c)
        if not pairs:
            raise SlocalError(
                f"no pair of mapping frames passes the DUSt3R pair selection (baseline >= {c.min_baseline} m, "
                f"axes within {c.max_angle_deg} deg, overlap >= {c.min_overlap})",
                scene.root,
            )
        in_pairs = {i for p in pairs for i in p}
        if len(in_pairs) < len(frames):
            log.warning(
                "dust3r teacher: %d of %d mapping frames have no acceptable partner and get no targets",
                len(frames) - len(in_pairs),
                len(frames),
            )
        # Process pairs so that frames complete early, then free their estimates.
        pairs.sort(key=lambda p: (max(p), min(p)))
        last_use = {}
        for n, (i, j) in enumerate(pairs):
            last_use[i] = last_use[j] = n
        predict = self._predictor or self._network_predictor()
        cams = {i: target_camera(frames[i], c.max_side) for i in in_pairs}
        estimates: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {i: [] for i in in_pairs}
        statuses: Counter = Counter()
        self.pair_reports = []
        no_targets = 0
        views: dict[int, PairView] = {}
        chunk = 4 * c.batch_size
        with make_progress() as bar:
            task = bar.add_task("dust3r teacher pairs", total=len(pairs), info="")
            for start in range(0, len(pairs), chunk):
                batch = pairs[start : start + chunk]
                needed = {i for p in batch for i in p}
                views = {i: v for i, v in views.items() if i in needed}
                for i in sorted(needed - set(views)):
                    views[i] = prepare_view(i, frames[i], c.image_size)
                preds = predict([(views[i], views[j]) for i, j in batch])
                if len(preds) != len(batch):
                    raise SlocalError(f"the DUSt3R network returned {len(preds)} predictions for {len(batch)} pairs")
                for (i, j), pred in zip(batch, preds):
                    status = self._add_pair(views[i], views[j], pred, cams, estimates)
                    statuses[status] += 1
                    bar.advance(task)
                bar.update(task, info=" ".join(f"{k}={v}" for k, v in sorted(statuses.items())))
                done = start + len(batch)
                for f in [f for f, last in last_use.items() if last < done]:
                    del last_use[f]
                    result = self._finish(frames[f], cams[f], estimates.pop(f))
                    if result is None:
                        no_targets += 1
                        continue
                    yield result
        log.info(
            "dust3r teacher: %d pairs (%s); %d of %d mapping frames without targets",
            len(pairs),
            ", ".join(f"{statuses[s]} {s}" for s in PAIR_STATUSES),
            no_targets + len(frames) - len(in_pairs),
            len(frames),
        )
        skipped = len(pairs) - statuses["ok"]
        if skipped:
            log.warning(
                "dust3r teacher: %d of %d pairs skipped "
                "(%d degenerate baseline, %d inconsistent with the known poses, %d failed)",
                skipped, len(pairs), statuses["degenerate"], statuses["inconsistent"], statuses["failed"],
            )

    def _add_pair(self, v1: PairView, v2: PairView, pred, cams: dict, estimates: dict) -> str:
        c = self.config
        cam1_from_cam2 = v1.frame.cam_from_world @ v2.frame.world_from_cam
        for name, arr, view in (("pts3d_1", pred.pts3d_1, v1), ("pts3d_2", pred.pts3d_2, v2)):
            if arr.shape[:2] != (view.camera.height, view.camera.width):
                raise SlocalError(
                    f"network output {name} is {arr.shape[:2]}, expected the processed image size of {view.frame.name}"
                )
        alignment = align_pair(pred.pts3d_2, pred.conf_2, v2.camera, cam1_from_cam2, c)
        self.pair_reports.append(PairReport(v1.frame.name, v2.frame.name, alignment))
        if alignment.status != "ok":
            log.debug("pair %s - %s %s: %s", v1.frame.name, v2.frame.name, alignment.status, alignment)
            return alignment.status
        depth_1, depth_2 = pair_depths(pred.pts3d_1, pred.pts3d_2, alignment.scale, cam1_from_cam2)
        for view, depth, conf in ((v1, depth_1, pred.conf_1), (v2, depth_2, pred.conf_2)):
            valid = (conf >= c.min_conf) & np.isfinite(depth) & (depth >= c.min_depth) & (depth <= c.max_depth)
            (d_t, c_t), ok = resample_to(
                cams[view.index], view.camera, [depth, conf.astype(np.float64)], valid, c.resample, c.fusion_tolerance
            )
            # float32 halves what waits in memory until the frame's last pair is done
            estimates[view.index].append((d_t.astype(np.float32), c_t.astype(np.float32), ok))
        return "ok"

    def _finish(self, frame: Frame, camera: Camera, est: list) -> FrameTargets | None:
        if not est:
            return None
        depth = np.stack([e[0] for e in est]).astype(np.float64)
        conf = np.stack([e[1] for e in est]).astype(np.float64)
        valid = np.stack([e[2] for e in est])
        t = frame_targets(frame, camera, depth, conf, valid, self.config.fusion_tolerance, self.config.scale_tolerance)
        return t if t.num_valid else None
