"""Targets confirmed by other views: a per-frame teacher's multi-view check and fusion.

A per-frame teacher (RGB-D depth) labels each mapping frame on its own, so its errors (depth noise,
flying pixels at depth edges, a colour-depth registration that is off by a little) differ from
frame to frame, and a student that sees one surface from several frames learns their average
disagreement. Here each frame's targets are checked against a few overlapping mapping frames with
a baseline (``pairs.rank_partners`` from the known poses; a near-duplicate neighbour of the same
video shares a frame's errors and confirms nothing): target ``X_i`` is projected into partner
``j`` and compared with ``X_j``, the target ``j`` gives there (``FrameTargets.sample``). The
partner *agrees* when ``|X_i - X_j|`` is within the tolerance, sees *another surface* when
``X_j`` lies clearly in front along its ray (occluded: no vote), and disagrees otherwise; the
comparison is the one ``consistency.multiview_consistency`` measures (``partner_targets``). A pixel
is kept when at least ``min_views`` partners agree, and moved along its own pixel's ray to the mean
range of its own and the agreeing targets (their components along that ray): the depth noise
averages down while the target stays on its frame's pixel, whose ray the pose fixes exactly (a 3D
mean would pull it off the ray, and the novel views splatted from the targets, and the
reprojection finish, rely on the pixel). Targets that no partner sees are kept as they are, as are
frames without a partner (nothing can check them). With ``drop_disputed=False`` the disputed
targets are kept too, unchanged: only the confirmed ones are averaged; with ``average=False`` the
confirmed ones stay as they are: only the disputed ones go (the two separate what the averaging
does from what removing targets does).

This is the cross-check of the MVS teacher (``mvs.cross_check``) done on 3D targets instead of
depth maps, so it applies to any teacher's targets.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from slocal.data.scene import Scene
from slocal.progress import progress_bar
from slocal.teach.consistency import partner_targets
from slocal.teach.frame_targets import FrameTargets
from slocal.teach.pairs import rank_partners

logger = logging.getLogger(__name__)

#: how agreeing targets are merged; part of a checked teacher's settings (its targets' cache key).
CROSS_CHECK_RULE = "mean-range-along-ray"


@dataclass(frozen=True)
class PartnerRanking:
    """What ``pairs.rank_partners`` reads (metres): partners at least 5 cm away, axes within 45°, 30 cm baselines first.

    Module constants, not options: they only decide which overlapping frames are asked, and the
    tolerance and vote count are what a user tunes.
    """

    min_baseline: float = 0.05
    target_baseline: float = 0.3
    max_angle_deg: float = 45.0
    min_overlap: float = 0.3
    overlap_depths: tuple[float, ...] = (1.0, 2.0, 4.0)
    candidate_pool: int = 32


def choose_partners(scene: Scene, names: Sequence[str], partners: int) -> list[list[int]]:
    """Up to ``partners`` overlapping frames per frame (indices into ``names``), mutually ``min_baseline`` apart."""
    by_name = {f.name: f for f in scene.mapping}
    frames = [by_name[n] for n in names]
    metres, base = scene.metres_per_unit or 1.0, PartnerRanking()
    # rank_partners compares its lengths with the poses', which are in scene units.
    ranking = PartnerRanking(
        min_baseline=base.min_baseline / metres,
        target_baseline=base.target_baseline / metres,
        overlap_depths=tuple(d / metres for d in base.overlap_depths),
    )
    centres = np.stack([f.world_from_cam[:3, 3] for f in frames]) if frames else np.zeros((0, 3))
    chosen: list[list[int]] = []
    for candidates in rank_partners(frames, ranking):
        mine: list[int] = []
        for j, _ in candidates:
            if len(mine) == partners:
                break
            if mine and np.linalg.norm(centres[mine] - centres[j], axis=1).min() < ranking.min_baseline:
                continue
            mine.append(j)
        chosen.append(mine)
    return chosen


def cross_check(
    scene: Scene,
    frames: Sequence[FrameTargets],
    min_views: int = 1,
    partners: int = 4,
    tolerance_m: float = 0.02,
    occlusion_ratio: float = 0.1,
    drop_disputed: bool = True,
    average: bool = True,
) -> tuple[list[FrameTargets], dict]:
    """Keep the targets that ``min_views`` partners confirm, each moved along its ray to their mean range.

    Args:
        scene: the scene (mapping poses, scale).
        frames: one per mapping frame, targets in scene units.
        min_views: agreeing partners a kept target needs.
        partners: overlapping frames each frame is checked against.
        tolerance_m: largest distance between agreeing targets, metres (scene units without a scale).
        occlusion_ratio: a partner whose target lies this much (relative depth) in front of the
            point sees another surface and does not vote.
        drop_disputed: remove the targets that partners see but too few confirm; False keeps
            them as they are.
        average: move the confirmed targets to the mean range; False keeps them as they are.

    Returns:
        The checked targets (same frames, same order) and stats: ``kept_pct`` (% of the valid
        targets kept), ``confirmed_pct`` (% of the valid targets confirmed and averaged),
        ``unchecked_frames`` (frames without a partner, kept as they were), ``unseen_pct`` (% of
        the valid targets no partner saw, kept as they were), ``mean_shift_mm``
        (mean move of a kept target of a checked frame).
    """
    by_name = {f.name: f for f in scene.mapping}
    tolerance = tolerance_m / (scene.metres_per_unit or 1.0)
    to_mm = 1000.0 * (scene.metres_per_unit or 1.0)
    chosen = choose_partners(scene, [t.name for t in frames], partners)
    out: list[FrameTargets] = []
    valid_in = kept = kept_checked = unchecked = unseen_n = confirmed_n = 0
    shift_sum = 0.0
    for i, t in enumerate(progress_bar(frames, "cross-check")):
        valid_in += t.num_valid
        if not chosen[i]:
            unchecked += 1
            kept += t.num_valid
            out.append(t)
            continue
        rows, cols = np.nonzero(t.valid_HW)
        x_i = t.coords_HW3[rows, cols].astype(np.float64)
        centre = by_name[t.name].world_from_cam[:3, 3]
        range_i = np.linalg.norm(x_i - centre, axis=1)
        ray = (x_i - centre) / range_i[:, None]
        total = range_i.copy()
        agree = np.zeros(len(x_i), np.int64)
        votes = np.zeros(len(x_i), np.int64)
        for j in chosen[i]:
            t_j = frames[j]
            x_j, compared, occluded = partner_targets(x_i, t_j, by_name[t_j.name].cam_from_world, occlusion_ratio)
            vote = compared & ~occluded
            with np.errstate(invalid="ignore"):
                ok = vote & (np.linalg.norm(x_j - x_i, axis=1) <= tolerance)
            votes += vote
            agree += ok
            total[ok] += np.einsum("nk,nk->n", x_j[ok] - centre, ray[ok])
        unseen = votes == 0
        confirmed = agree >= min_views
        keep = confirmed | unseen | (not drop_disputed)
        unseen_n += int(unseen.sum())
        confirmed_n += int(confirmed.sum())
        moved = confirmed & average
        merged = x_i.copy()  # a target not averaged stays bit for bit what its frame said
        merged[moved] = centre + ray[moved] * (total[moved] / (agree[moved] + 1))[:, None]
        kept_xyz, kept_rows, kept_cols, n_kept = merged[keep], rows[keep], cols[keep], int(keep.sum())
        shift_sum += float(np.linalg.norm(kept_xyz - x_i[keep], axis=1).sum())
        coords = np.full_like(t.coords_HW3, np.nan)
        coords[kept_rows, kept_cols] = kept_xyz.astype(np.float32)
        valid_HW = np.zeros_like(t.valid_HW)
        valid_HW[kept_rows, kept_cols] = True
        conf = np.where(valid_HW, t.conf_HW, 0.0).astype(np.float32)
        kept += n_kept
        kept_checked += n_kept
        out.append(FrameTargets(t.name, t.camera, coords, conf, valid_HW))
    stats = {
        "kept_pct": 100.0 * kept / max(valid_in, 1),
        "confirmed_pct": 100.0 * confirmed_n / max(valid_in, 1),
        "unchecked_frames": unchecked,
        "unseen_pct": 100.0 * unseen_n / max(valid_in, 1),
        "mean_shift_mm": to_mm * shift_sum / max(kept_checked, 1),
    }
    logger.info(
        "cross-check: %.1f %% of the targets kept (confirmed by %d of up to %d partners within %.1f cm, "
        "or seen by none; moved %.1f mm on average); %d frames without a partner kept as they were",
        stats["kept_pct"],
        min_views,
        partners,
        100 * tolerance_m,
        stats["mean_shift_mm"],
        unchecked,
    )
    return out, stats
