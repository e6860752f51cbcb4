"""Image pairs chosen from the known poses only: frustum overlap, baseline, viewing angle.

Two selectors share the frustum sampling and the two-way visible fraction:

* ``matching_pairs`` (the SfM teacher and the SIFT map): every image is matched
  with its ``num_neighbors`` best partners, scored by overlap times the
  triangulation angle at the nominal depth. Never exhaustive. Lengths are in
  metres and converted with the scene's scale; for a scene in unknown units (a
  COLMAP model) the distance limit is dropped and the frustum test tries a
  range of depths relative to the camera spacing (``nominal_depths``), so the
  selection does not depend on the model's arbitrary scale. Photo collections
  (wide baselines, few images) are covered: a frame left with fewer than
  ``min_partners`` pairs takes its best partners by frustum overlap alone, up
  to ``coverage_view_angle_deg``.
* ``rank_partners`` / ``partner_pairs`` (the DUSt3R teacher and baseline): the
  nearest cameras within a viewing-angle limit, scored by overlap times
  baseline; each frame takes a budget of pairs with mutually distant partners.

Settings are read structurally (the ``Protocol`` classes), so each teacher's
config dataclass serves as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from scipy.spatial import cKDTree

from slocal.data.scene import Frame
from slocal.geometry.camera import visible_fraction
from slocal.geometry.pose import angle_deg, transform_points

#: sample grid (columns, rows) of the SfM frustum test.
MATCHING_GRID = (4, 4)
#: sample grid (columns, rows) of the DUSt3R overlap estimate.
PARTNER_GRID = (8, 6)


class MatchingSettings(Protocol):
    """What ``matching_pairs`` reads (``SfmTeacherConfig`` has it)."""

    num_neighbors: int
    max_view_angle_deg: float
    max_distance_m: float
    min_overlap: float
    nominal_depth_m: float
    target_tri_angle_deg: float
    min_partners: int
    coverage_view_angle_deg: float


class PartnerSettings(Protocol):
    """What ``rank_partners`` reads (``Dust3rTeacherConfig`` and the DUSt3R baseline's config have it)."""

    min_baseline: float
    target_baseline: float
    max_angle_deg: float
    min_overlap: float
    overlap_depths: tuple[float, ...]
    candidate_pool: int


class PartnerPairSettings(PartnerSettings, Protocol):
    """What ``partner_pairs`` reads besides the ranking settings (``Dust3rTeacherConfig`` has it)."""

    pairs_per_frame: int
    symmetrize: bool


def frustum_samples(frame: Frame, depths: Sequence[float], grid: tuple[int, int]) -> np.ndarray:
    """World points on the rays of a ``grid`` (columns, rows) of cell centres at each depth: (len(depths) * cols *
    rows, 3)."""
    cam = frame.camera
    cols, rows = grid
    uv = np.stack(
        np.meshgrid((np.arange(cols) + 0.5) * cam.width / cols, (np.arange(rows) + 0.5) * cam.height / rows), -1
    ).reshape(-1, 2)
    rays = cam.rays(uv)
    return transform_points(frame.world_from_cam, np.concatenate([rays * d for d in depths]))


def _pose_arrays(frames: Sequence[Frame]) -> tuple[np.ndarray, np.ndarray]:
    cam_from_world = np.stack([f.cam_from_world for f in frames])
    intrinsics = np.array(
        [[f.camera.fx, f.camera.fy, f.camera.cx, f.camera.cy, f.camera.width, f.camera.height] for f in frames]
    )
    return cam_from_world, intrinsics


def two_way_overlap(
    samples_NS3: np.ndarray, cam_from_world_N44: np.ndarray, intrinsics_N6: np.ndarray, i: int, js: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fractions of frame i's samples that each frame j sees, and of each j's samples that frame i sees: (M,), (M,)."""
    m = len(js)
    forward = visible_fraction(
        np.broadcast_to(samples_NS3[i], (m, *samples_NS3[i].shape)), cam_from_world_N44[js], intrinsics_N6[js]
    )
    backward = visible_fraction(
        samples_NS3[js], np.broadcast_to(cam_from_world_N44[i], (m, 4, 4)), np.broadcast_to(intrinsics_N6[i], (m, 6))
    )
    return forward, backward


# --------------------------------------------------------------------------- SfM matching pairs


#: nominal depths tried for a scene of unknown scale, in units of the median nearest-camera distance.
UNSCALED_DEPTHS = (0.5, 1.0, 2.0, 4.0, 8.0)


def nominal_depths(
    frames: Sequence[Frame], config: MatchingSettings, metres_per_unit: float | None
) -> tuple[float, ...]:
    """The scene depths the frustum test assumes, in scene units.

    ``nominal_depth_m`` converted with the scene's scale; for unknown units a
    range relative to the capture's own camera spacing (``UNSCALED_DEPTHS``
    times the median distance from a camera to its nearest neighbour), since
    a COLMAP model's unit says nothing about how far the scene is.
    """
    if metres_per_unit is not None:
        return (config.nominal_depth_m / metres_per_unit,)
    centres = np.stack([f.world_from_cam[:3, 3] for f in frames])
    dist = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.diag(np.full(len(frames), np.inf))
    spacing = float(np.median(dist.min(1))) if len(frames) > 1 else 1.0
    spacing = spacing if spacing > 0 and math.isfinite(spacing) else 1.0
    return tuple(spacing * k for k in UNSCALED_DEPTHS)


def matching_pair_scores(
    frames: Sequence[Frame], config: MatchingSettings, metres_per_unit: float | None = 1.0, limits: bool = True
) -> np.ndarray:
    """Symmetric (N, N) pair scores from the known poses; 0 where a pair fails a threshold.

    ``score = overlap * min(1, triangulation angle / target_tri_angle_deg)``:
    overlap is the smaller of the two fractions of frustum sample points (at
    0.5x, 1x and 2x the nominal depth) that the other camera sees; the
    triangulation angle is the mean of the angles the two centres subtend at
    the nominal-depth point on either optical axis. With several nominal
    depths (unknown scale, ``nominal_depths``) a pair scores its best depth.

    Args:
        frames: the mapping frames.
        config: the settings (lengths in metres).
        metres_per_unit: the scene's scale; None (unknown units): no distance
            limit and a range of nominal depths.
        limits: apply ``max_view_angle_deg``, the distance limit and ``min_overlap``;
            without them (the coverage pass) only ``coverage_view_angle_deg`` applies.
    """
    n = len(frames)
    world_from_cam = np.stack([f.world_from_cam for f in frames])
    cam_from_world, intrinsics = _pose_arrays(frames)
    centres, axes = world_from_cam[:, :3, 3], world_from_cam[:, :3, 2]
    max_distance = config.max_distance_m / metres_per_unit if metres_per_unit is not None else math.inf
    view_angle = np.degrees(np.arccos(np.clip(axes @ axes.T, -1.0, 1.0)))
    dist = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    if limits:
        close = (view_angle <= config.max_view_angle_deg) & (dist <= max_distance)
    else:
        close = view_angle <= config.coverage_view_angle_deg
    candidate = np.triu(close, k=1)
    scores = np.zeros((n, n))
    for d in nominal_depths(frames, config, metres_per_unit):
        samples = np.stack([frustum_samples(f, (0.5 * d, d, 2 * d), MATCHING_GRID) for f in frames])
        focus = centres + d * axes
        for i in range(n):
            js = np.flatnonzero(candidate[i])
            if not len(js):
                continue
            ov_ij, ov_ji = two_way_overlap(samples, cam_from_world, intrinsics, i, js)
            overlap = np.minimum(ov_ij, ov_ji)
            tri_i = angle_deg(centres[i] - focus[i], centres[js] - focus[i])
            tri_j = angle_deg(centres[i] - focus[js], centres[js] - focus[js])
            tri = 0.5 * (tri_i + tri_j)
            s = overlap * np.minimum(1.0, tri / config.target_tri_angle_deg)
            if limits:
                s[overlap < config.min_overlap] = 0.0
            scores[i, js] = np.maximum(scores[i, js], s)
    return scores + scores.T


def matching_pairs(
    frames: Sequence[Frame], config: MatchingSettings, metres_per_unit: float | None = 1.0
) -> list[tuple[int, int]]:
    """Image pairs to match: the ``num_neighbors`` best-scoring partners of every frame.

    A frame left with fewer than ``min_partners`` pairs (a wide-baseline photo)
    then takes its best partners by the coverage scores (no distance limit, no
    overlap floor, view angle up to ``coverage_view_angle_deg``).

    Args:
        metres_per_unit: the scene's scale (None: unknown units; see ``matching_pair_scores``).

    Returns:
        Sorted unique (i, j) index pairs into ``frames`` with i < j.
    """
    scores = matching_pair_scores(frames, config, metres_per_unit)
    pairs: set[tuple[int, int]] = set()
    degree = np.zeros(len(frames), int)

    def add(i: int, j: int) -> None:
        pair = (min(i, j), max(i, j))
        if pair not in pairs:
            pairs.add(pair)
            degree[i] += 1
            degree[j] += 1

    for i in range(len(frames)):
        order = np.argsort(-scores[i], kind="stable")[: config.num_neighbors]
        for j in order:
            if scores[i, j] > 0:
                add(i, int(j))
    needy = np.flatnonzero(degree < min(config.min_partners, len(frames) - 1))
    if len(needy):
        relaxed = matching_pair_scores(frames, config, metres_per_unit, limits=False)
        for i in needy:
            for j in np.argsort(-relaxed[i], kind="stable"):
                if degree[i] >= config.min_partners or relaxed[i, j] <= 0:
                    break
                add(int(i), int(j))
    return sorted(pairs)


# --------------------------------------------------------------------------- DUSt3R partners


def rank_partners(frames: Sequence[Frame], config: PartnerSettings) -> list[list[tuple[int, float]]]:
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
    cam_from_world, intrinsics = _pose_arrays(frames)
    samples = np.stack([frustum_samples(f, config.overlap_depths, PARTNER_GRID) for f in frames])
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
        forward, backward = two_way_overlap(samples, cam_from_world, intrinsics, i, cand)
        overlap = 0.5 * (forward + backward)
        score = overlap * np.minimum(1.0, baseline / config.target_baseline)
        ok = overlap >= config.min_overlap
        order = np.argsort(-score[ok], kind="stable")
        ranked.append([(int(j), float(s)) for j, s in zip(cand[ok][order], score[ok][order])])
    return ranked


def partner_pairs(frames: Sequence[Frame], config: PartnerPairSettings) -> list[tuple[int, int]]:
    """Pairs (view 1, view 2) of indices into ``frames`` from ``rank_partners``.

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
