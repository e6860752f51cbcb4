"""Pair selection from the known poses: SfM matching pairs and DUSt3R partners."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from helpers.dust3r_scene import make_frame, pose
from slocal.data.synth import SynthConfig, trajectory
from slocal.geometry import Camera
from slocal.teach.dust3r.teacher import Dust3rTeacherConfig
from slocal.teach.pairs import matching_pair_scores, matching_pairs, partner_pairs, rank_partners
from slocal.teach.sfm import SfmTeacherConfig

CAM = Camera(64, 48, fx=50.0, fy=50.0, cx=32.0, cy=24.0)


def config(ckpt, **kw) -> Dust3rTeacherConfig:
    return Dust3rTeacherConfig(checkpoint=str(ckpt), **kw)


# ----------------------------------------------------------------------------- SfM matching pairs


def test_pairs_come_from_pose_neighbours_only():
    # The SfM teacher's test scene (tests/teach/sfm): the procedural room's trajectory, poses only.
    synth = SynthConfig(mapping_frames=30, query_frames=2, seed=3)
    frames = [make_frame(f"m{i:02d}", T, synth.color_camera) for i, T in enumerate(trajectory(synth, "mapping"))]
    config = SfmTeacherConfig(min_partners=0)  # the pose-neighbour pass alone; coverage is tested below
    pairs = matching_pairs(frames, config)
    n = len(frames)
    assert 0 < len(pairs) <= n * config.num_neighbors and len(pairs) < n * (n - 1) // 2 / 3
    assert all(i < j for i, j in pairs) and len(set(pairs)) == len(pairs)
    scores = matching_pair_scores(frames, config)
    np.testing.assert_allclose(scores, scores.T)
    for i, j in pairs:
        assert scores[i, j] > 0
        axis_i, axis_j = frames[i].world_from_cam[:3, 2], frames[j].world_from_cam[:3, 2]
        assert np.degrees(np.arccos(np.clip(axis_i @ axis_j, -1, 1))) <= config.max_view_angle_deg + 1e-9
    # Every frame gets a partner.
    assert {i for p in pairs for i in p} == set(range(n))
    # The coverage pass only adds partners to frames that have fewer than min_partners.
    covered = matching_pairs(frames, replace(config, min_partners=3))
    strict_degree = np.bincount(np.array(pairs).ravel(), minlength=n)
    assert set(pairs) <= set(covered)
    for i, j in set(covered) - set(pairs):
        assert min(strict_degree[i], strict_degree[j]) < 3


# ----------------------------------------------------------------------------- DUSt3R partners


def trajectory_frames():
    """20 frames along x looking at the back wall, near-duplicates of frame 5, two looking backwards, one far away."""
    frames = [make_frame(f"m{i:02d}", pose([0.1 * i - 1.0, 0, 0], yaw_deg=3 * math.sin(i)), CAM) for i in range(20)]
    frames += [make_frame(f"dup{k}", pose([-0.5 + 0.005 * (k + 1), 0, 0]), CAM) for k in range(3)]
    frames += [make_frame(f"back{k}", pose([0.3 * k, 0, 0.2], yaw_deg=180), CAM) for k in range(2)]
    frames += [make_frame("far", pose([9.0, 0, 0]), CAM)]
    return frames


def test_pair_selection_respects_counts_baselines_and_overlap(fake_ckpt):
    frames = trajectory_frames()
    cfg = config(fake_ckpt, pairs_per_frame=3)
    pairs = partner_pairs(frames, cfg)
    n, k = len(frames), cfg.pairs_per_frame
    assert len(pairs) <= n * k and len(pairs) < n * (n - 1) / 2
    assert len({frozenset(p) for p in pairs}) == len(pairs)  # each unordered pair once
    degree = np.zeros(n, int)
    for i, j in pairs:
        degree[i] += 1
        degree[j] += 1
        a, b = frames[i].world_from_cam, frames[j].world_from_cam
        assert np.linalg.norm(a[:3, 3] - b[:3, 3]) >= cfg.min_baseline
        assert a[:3, 2] @ b[:3, 2] >= math.cos(math.radians(cfg.max_angle_deg))
    names = [f.name for f in frames]
    assert degree.max() <= 2 * k
    assert (degree[:20] >= k).all()  # every trajectory frame gets its pairs
    assert degree[names.index("far")] == 0  # no overlap with anything
    back = {names.index("back0"), names.index("back1")}
    assert all((i in back) == (j in back) for i, j in pairs)  # backwards-looking frames only pair with each other
    # the preferred baseline: trajectory partners are mostly >= 0.2 m apart (spacing is 0.1 m)
    base = [
        np.linalg.norm(frames[i].world_from_cam[:3, 3] - frames[j].world_from_cam[:3, 3])
        for i, j in pairs
        if max(i, j) < 20
    ]
    assert np.median(base) >= 0.2
    assert len(partner_pairs(frames, replace(cfg, symmetrize=True))) == 2 * len(pairs)


def test_partner_ranking_prefers_overlap(fake_ckpt):
    ref = make_frame("ref", pose([0, 0, 0]), CAM)
    same_dir = make_frame("same", pose([0.3, 0, 0]), CAM)
    turned = make_frame("turned", pose([-0.3, 0, 0], yaw_deg=-35), CAM)
    near_dup = make_frame("dup", pose([0.01, 0, 0]), CAM)
    ranked = rank_partners([ref, same_dir, turned, near_dup], config(fake_ckpt))
    order = [j for j, _ in ranked[0]]
    assert order[0] == 1 and 3 not in order  # overlapping frame first, near-duplicate never


def _scaled(frames, factor):
    out = []
    for f in frames:
        T = f.world_from_cam.copy()
        T[:3, 3] *= factor
        out.append(replace(f, world_from_cam=T))
    return out


def test_unknown_scale_pairs_do_not_depend_on_the_model_unit():
    # Wide-baseline photos (12 frames on a 5 m loop, ~45 deg apart), as a COLMAP model in arbitrary units.
    synth = SynthConfig(mapping_frames=12, query_frames=1, seed=0)
    frames = [make_frame(f"p{i:02d}", T, synth.color_camera) for i, T in enumerate(trajectory(synth, "mapping"))]
    cfg = SfmTeacherConfig()
    pairs = matching_pairs(frames, cfg, metres_per_unit=None)
    assert matching_pairs(_scaled(frames, 7.3), cfg, metres_per_unit=None) == pairs
    assert matching_pairs(_scaled(frames, 0.05), cfg, metres_per_unit=None) == pairs
    # Metric lengths are converted with a known scale: the same scene in centimetres pairs as in metres.
    assert matching_pairs(_scaled(frames, 100.0), cfg, metres_per_unit=0.01) == matching_pairs(frames, cfg)
    # Every photo has min_partners partners, or all those whose frusta overlap its own at all.
    degree = np.bincount(np.array(pairs).ravel(), minlength=len(frames))
    relaxed = matching_pair_scores(frames, cfg, metres_per_unit=None, limits=False)
    assert np.all(degree >= np.minimum(cfg.min_partners, (relaxed > 0).sum(1))), degree
    assert degree.min() >= 2
    # Read as metres, a model 4x too large leaves most photos alone: what the scale-free selection fixes.
    blind = matching_pairs(_scaled(frames, 4.0), replace(cfg, min_partners=0))
    assert len(blind) < len(pairs) / 2
