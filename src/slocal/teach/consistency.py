"""How well a teacher's targets agree across views, measured without ground truth.

A student that regresses one coordinate per pixel can only be as consistent as its teacher: if
frame A says a surface point is at X and frame B, looking at the same point, says X + 3 cm, the
student learns something in between and every pose it solves inherits the disagreement.

For sampled target pixels of each mapping frame, the target ``X_i`` is projected into a few
overlapping mapping frames ``j`` (through their poses and target cameras) and compared with the
target that frame gives there, ``X_j`` (bilinear over its valid neighbours; ``FrameTargets.sample``).
Where ``X_j`` lies clearly in front of ``X_i`` along frame j's ray (more than ``occlusion_ratio``
of the depth), j sees another surface, and the pair is counted as occluded, not as a
disagreement. The distances ``|X_i - X_j|`` of the rest make the report: median and the share
within 1 / 2 / 5 cm (in centi-units, 0.01 model units, for a scene without a metric scale).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from slocal.data.scene import Scene
from slocal.teach.frame_targets import FrameTargets

THRESHOLDS = (1, 2, 5)


def _project(cam_from_world_44: np.ndarray, camera, points_N3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = points_N3 @ cam_from_world_44[:3, :3].T + cam_from_world_44[:3, 3]
    uv, z = camera.project(p)
    with np.errstate(invalid="ignore"):
        inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < camera.width) & (uv[:, 1] >= 0) & (uv[:, 1] < camera.height)
    return uv, np.where(inside, z, np.nan)


def partner_targets(
    points_N3: np.ndarray, partner: FrameTargets, cam_from_world_44: np.ndarray, occlusion_ratio: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a partner frame's targets say at the reprojection of world points.

    Args:
        points_N3: world points (one frame's targets).
        partner: the partner frame's targets.
        cam_from_world_44: the partner's pose.
        occlusion_ratio: relative depth gap beyond which the partner sees another surface.

    Returns:
        x_N3 float64, the partner's targets there (NaN where it has none); compared_N, where the
        point projects into the partner's image, in front of it, onto a target; occluded_N, the
        compared points whose partner target lies clearly in front (another surface, not a
        disagreement).
    """
    uv, z = _project(cam_from_world_44, partner.camera, points_N3)
    seen = np.isfinite(z)
    R, t = cam_from_world_44[:3, :3], cam_from_world_44[:3, 3]
    x_s, _, valid = partner.sample(uv[seen], origin_3=-R.T @ t)
    x = np.full((len(points_N3), 3), np.nan)
    x[seen] = x_s
    compared = np.zeros(len(points_N3), bool)
    compared[seen] = valid
    with np.errstate(invalid="ignore"):
        occluded = compared & ((x @ R.T + t)[:, 2] < z * (1.0 - occlusion_ratio))
    return x, compared, occluded


@dataclass(frozen=True)
class PairComparison:
    """Sampled targets of frame ``i`` against what an overlapping frame ``j`` gives at their reprojection.

    Attributes:
        i, j: indices into the compared target sets.
        points_N3: frame i's sampled targets (world, float64).
        pixels_N: their flat pixel indices in frame i's target image.
        partner_N3: frame j's targets at the reprojection (NaN where it has none).
        same_N: compared and not occluded: the two targets should be one surface point.
        occluded: compared points where j sees another surface in front.
        compared: points that met one of j's targets.
    """

    i: int
    j: int
    points_N3: np.ndarray
    pixels_N: np.ndarray
    partner_N3: np.ndarray
    same_N: np.ndarray
    occluded: int
    compared: int


def compare_pairs(
    scene: Scene,
    frames: tuple[FrameTargets, ...],
    samples_per_frame: int = 1000,
    partners: int = 4,
    min_overlap: float = 0.3,
    occlusion_ratio: float = 0.1,
    seed: int = 0,
) -> Iterator[PairComparison]:
    """Each mapping frame's sampled targets against up to ``partners`` overlapping frames (seeded draws).

    ``frames`` must all be mapping frames of ``scene``; see ``multiview_consistency`` for the arguments.
    """
    rng = np.random.default_rng(seed)
    poses = {f.name: f.cam_from_world for f in scene.mapping}
    samples = []
    for t in frames:
        idx = np.flatnonzero(t.valid_HW.ravel())
        pick = rng.choice(idx, size=min(samples_per_frame, idx.size), replace=False)
        samples.append((pick, t.coords_HW3.reshape(-1, 3)[pick].astype(np.float64)))

    for i, (pick, pts) in enumerate(samples):
        if not len(pts):
            continue
        overlap = np.zeros(len(frames))
        for j, t_j in enumerate(frames):
            if j != i:
                overlap[j] = np.isfinite(_project(poses[t_j.name], t_j.camera, pts)[1]).mean()
        candidates = np.flatnonzero(overlap >= min_overlap)
        for j in rng.permutation(candidates)[:partners]:
            t_j = frames[j]
            x_j, valid, front = partner_targets(pts, t_j, poses[t_j.name], occlusion_ratio)
            yield PairComparison(int(i), int(j), pts, pick, x_j, valid & ~front, int(front.sum()), int(valid.sum()))


def multiview_consistency(
    scene: Scene,
    frames: tuple[FrameTargets, ...],
    samples_per_frame: int = 1000,
    partners: int = 4,
    min_overlap: float = 0.3,
    occlusion_ratio: float = 0.1,
    seed: int = 0,
) -> dict:
    """Multi-view consistency of a target set.

    Args:
        scene: the scene (poses of the mapping frames, scale).
        frames: the targets, one per mapping frame they label.
        samples_per_frame: target pixels sampled per frame (seeded).
        partners: overlapping frames each frame is compared with, drawn at random among those that
            see at least ``min_overlap`` of its sampled points.
        min_overlap: see ``partners``.
        occlusion_ratio: relative depth gap beyond which the other frame sees another surface.
        seed: seed of the pixel and partner draws.

    Returns:
        ``unit`` ("cm", or "cu" = 0.01 model units), ``median``, ``within_1``/``_2``/``_5`` (% of
        compared points), ``points_compared``, ``pairs``, ``occluded_pct``, ``labelled_pct`` (% of
        target pixels with a target).
    """
    names = {f.name for f in scene.mapping}
    frames = tuple(t for t in frames if t.name in names)
    metres = scene.metres_per_unit
    to_centi = 100.0 * (metres if metres is not None else 1.0)
    labelled = sum(t.num_valid for t in frames)
    pixels = sum(t.valid_HW.size for t in frames)
    report = {
        "unit": "cm" if metres is not None else "cu",
        "labelled_pct": 100.0 * labelled / max(pixels, 1),
        "pairs": 0,
        "points_compared": 0,
    }
    if len(frames) < 2:
        return report
    distances, occluded, compared = [], 0, 0
    for pair in compare_pairs(scene, frames, samples_per_frame, partners, min_overlap, occlusion_ratio, seed):
        occluded += pair.occluded
        compared += pair.compared
        distances.append(np.linalg.norm(pair.partner_N3[pair.same_N] - pair.points_N3[pair.same_N], axis=1))
        report["pairs"] += 1
    d = np.concatenate(distances) * to_centi if distances else np.zeros(0)
    report["points_compared"] = int(d.size)
    report["occluded_pct"] = 100.0 * occluded / max(compared, 1)
    if d.size:
        report["median"] = float(np.median(d))
        for k in THRESHOLDS:
            report[f"within_{k}"] = float(np.mean(d < k) * 100)
    return report
