import dataclasses

import numpy as np
import pytest
from scipy.stats import spearmanr

from slocal.data import load_scene
from slocal.data.synth import SynthConfig, render_scene
from slocal.errors import SlocalError
from slocal.geometry import Camera, transform_points
from slocal.teach import ensure_targets, make_teacher
from slocal.teach.sfm import (
    Observations,
    SfmTeacherConfig,
    build_sfm_map,
    kept_observations,
    observation_confidence,
    pair_scores,
    sampson_error,
    select_pairs,
    sparse_targets,
)

# The procedural room at its default 320x240: enough texture for SIFT, 30 views on two loops.
SYNTH = SynthConfig(mapping_frames=30, query_frames=2, seed=3)


@pytest.fixture(scope="module")
def synth_scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("sfm") / "data"
    return render_scene(root / "room", SYNTH).scene


@pytest.fixture(scope="module")
def synth_map(synth_scene, tmp_path_factory):
    return build_sfm_map(synth_scene, SfmTeacherConfig(), tmp_path_factory.mktemp("sfm_work"))


def test_pairs_come_from_pose_neighbours_only(synth_scene):
    config = SfmTeacherConfig()
    frames = synth_scene.mapping
    pairs = select_pairs(frames, config)
    n = len(frames)
    assert 0 < len(pairs) <= n * config.num_neighbors and len(pairs) < n * (n - 1) // 2 / 3
    assert all(i < j for i, j in pairs) and len(set(pairs)) == len(pairs)
    scores = pair_scores(frames, config)
    np.testing.assert_allclose(scores, scores.T)
    for i, j in pairs:
        assert scores[i, j] > 0
        axis_i, axis_j = frames[i].world_from_cam[:3, 2], frames[j].world_from_cam[:3, 2]
        assert np.degrees(np.arccos(np.clip(axis_i @ axis_j, -1, 1))) <= config.max_view_angle_deg + 1e-9
    # Every frame gets a partner: the trajectory is two loops around the room.
    assert {i for p in pairs for i in p} == set(range(n))


def test_poses_are_held_fixed(synth_scene, synth_map):
    rec = synth_map.reconstruction
    assert rec.num_reg_images() == len(synth_scene.mapping)
    for frame in synth_scene.mapping:
        image = rec.image(synth_map.image_ids[frame.name])
        T = np.eye(4)
        T[:3] = image.cam_from_world().matrix()
        np.testing.assert_allclose(T, frame.cam_from_world, atol=1e-12)
        assert image.camera.model_name == "PINHOLE"
        np.testing.assert_allclose(image.camera.params, [frame.camera.fx, frame.camera.fy, frame.camera.cx, frame.camera.cy])


def test_triangulated_points_lie_on_the_rendered_surfaces(synth_scene, synth_map):
    config = SfmTeacherConfig()
    assert synth_map.stats["points3D"] > 2000 and synth_map.stats["mean_reproj_error_px"] < 0.5
    obs = kept_observations(synth_map, config)
    assert len(obs) == len(synth_scene.mapping)
    errors = []
    for image_id, o in obs.items():
        frame = synth_map.frame(image_id)
        assert np.all(o.track_length >= config.min_track_length) and np.all(o.reproj_error <= config.max_reproj_error_px)
        assert np.all(o.tri_angle_deg >= config.min_tri_angle_deg)
        # Depth of the point in this camera vs the ray-cast depth at the keypoint (nearest depth pixel).
        z = transform_points(frame.cam_from_world, o.xyz_N3)[:, 2]
        depth = frame.read_depth()
        sx, sy = frame.depth_camera.width / frame.camera.width, frame.depth_camera.height / frame.camera.height
        d = depth[np.floor(o.uv_N2[:, 1] * sy).astype(int), np.floor(o.uv_N2[:, 0] * sx).astype(int)]
        errors.append(np.abs(z - d)[d > 0])
    errors = np.concatenate(errors)
    # Depth edges make a few nearest-pixel comparisons wrong; the bulk is millimetres.
    assert np.median(errors) < 0.01 and np.mean(errors < 0.05) > 0.9


def test_teacher_targets_against_depth(synth_scene, tmp_path):
    targets = ensure_targets(synth_scene, make_teacher("sfm"), tmp_path / "runs")
    stats = targets.stats
    assert stats["frames"] == len(synth_scene.mapping) and stats["skipped_frames"] == 0
    assert stats["points"] > 5000
    assert stats["median_error_cm"] < 2.0 and stats["within_5cm"] > 90.0
    for t in targets.frames:
        frame = synth_scene.frame(t.name)
        assert t.camera.size == (320, 240)
        assert np.all(t.conf_HW[t.valid_HW] > 0) and np.all(t.conf_HW[~t.valid_HW] == 0)
        assert np.all(np.isnan(t.coords_HW3[~t.valid_HW]))
        # Snapped targets project onto their cell centres.
        rows, cols = np.nonzero(t.valid_HW)
        uv, z = t.camera.project(transform_points(frame.cam_from_world, t.coords_HW3[rows, cols].astype(np.float64)))
        np.testing.assert_allclose(uv, np.stack([cols + 0.5, rows + 0.5], 1), atol=2e-3)
        assert np.all(z > 0)


def test_rgb_only_scene(synth_scene, tmp_path):
    """No depth anywhere: the teacher still works; only the comparison with depth is missing."""
    frames = tuple(dataclasses.replace(f, depth_path=None, depth_camera=None) for f in synth_scene.mapping)
    rgb_only = dataclasses.replace(synth_scene, mapping=frames)
    assert not rgb_only.has_depth
    targets = ensure_targets(rgb_only, make_teacher("sfm", num_neighbors=3, max_features=1024), tmp_path / "runs")
    assert targets.stats["frames"] >= 25 and targets.stats["points"] > 2000
    assert "median_error_cm" not in targets.stats


def _frame(scene, camera):
    return dataclasses.replace(scene.mapping[0], camera=camera)


def test_sparse_targets_cells_and_conflicts(synth_scene):
    frame = _frame(synth_scene, Camera(64, 48, 60.0, 60.0, 32.0, 24.0))
    # Target grid 32x24: full-resolution pixel x lands in cell floor(x / 2).
    uv = np.array([[0.2, 0.2], [10.9, 7.5], [11.5, 6.1], [63.99, 47.99], [64.0, 10.0], [-0.1, 3.0]])
    z = np.array([1.0, 2.0, 3.0, 4.0, 1.0, 1.0])
    xyz = transform_points(frame.world_from_cam, frame.camera.backproject(uv, z))
    n = len(uv)
    obs = Observations(
        point2D_idx=np.arange(n), uv_N2=uv, point3D_id=np.arange(n), xyz_N3=xyz,
        track_length=np.full(n, 3), tri_angle_deg=np.full(n, 20.0), reproj_error=np.zeros(n),
        conf=np.array([0.5, 0.2, 0.9, 0.7, 1.0, 1.0], np.float32),
    )
    t = sparse_targets(frame, obs, max_side=32, snap_to_cell_center=False)
    assert t.camera.size == (32, 24)
    assert set(zip(*np.nonzero(t.valid_HW))) == {(0, 0), (3, 5), (23, 31)}
    # Keypoints 1 and 2 share cell (row 3, col 5): the more confident one (2) wins.
    np.testing.assert_allclose(t.coords_HW3[3, 5], xyz[2], rtol=1e-6)
    assert t.conf_HW[3, 5] == pytest.approx(0.9)
    np.testing.assert_allclose(t.coords_HW3[0, 0], xyz[0], rtol=1e-6)
    # Snapping keeps the depth and moves the point onto the cell centre's ray.
    snapped = sparse_targets(frame, obs, max_side=32, snap_to_cell_center=True)
    cam_pts = transform_points(frame.cam_from_world, snapped.coords_HW3[3, 5][None].astype(np.float64))
    assert cam_pts[0, 2] == pytest.approx(3.0, rel=1e-6)
    uv_cell, _ = snapped.camera.project(cam_pts)
    np.testing.assert_allclose(uv_cell[0], [5.5, 3.5], atol=1e-4)
    empty = sparse_targets(frame, None, max_side=32)
    assert empty.num_valid == 0


def test_confidence_grows_with_track_and_angle_and_falls_with_error():
    c = SfmTeacherConfig()
    conf = observation_confidence(np.array([2, 3, 5, 3, 3, 3]), np.array([15, 15, 15, 5, 30, 15]), np.array([0, 0, 0, 0, 0, 2.0]), c)
    assert conf[0] == pytest.approx(0.5) and conf[1] == pytest.approx(0.75)
    assert conf[0] < conf[1] < conf[2] < 1.0
    assert conf[3] == pytest.approx(0.75 / 3) and conf[4] == pytest.approx(0.75)
    assert conf[5] == pytest.approx(0.375)  # off by s = max_reproj_error_px / 2 halves it


def test_sampson_error_is_zero_for_true_correspondences(synth_scene):
    from slocal.teach.sfm import _fundamental

    a, b = synth_scene.mapping[0], synth_scene.mapping[1]
    rng = np.random.default_rng(0)
    uv = rng.uniform([0, 0], [320, 240], (50, 2))
    world = transform_points(a.world_from_cam, a.camera.backproject(uv, rng.uniform(1, 4, 50)))
    uv_b, _ = b.camera.project(transform_points(b.cam_from_world, world))
    _, _, F = _fundamental(a, b)
    assert np.max(sampson_error(F, uv, uv_b)) < 1e-6
    # 3 px off the epipolar line in image b: Sampson shares the 3 px between both images'
    # epipolar gradients, 3 |l_b| / sqrt(|l_b|^2 + |l_a|^2) with l_b = F x_a, l_a = F^T x_b.
    l_b = np.concatenate([uv, np.ones((50, 1))], 1) @ F.T
    moved = uv_b + 3.0 * l_b[:, :2] / np.linalg.norm(l_b[:, :2], axis=1, keepdims=True)
    l_a = np.concatenate([moved, np.ones((50, 1))], 1) @ F
    n_b, n_a = np.linalg.norm(l_b[:, :2], axis=1), np.linalg.norm(l_a[:, :2], axis=1)
    np.testing.assert_allclose(sampson_error(F, uv, moved), 3.0 * n_b / np.hypot(n_b, n_a), rtol=1e-6)


def test_bad_scenes_are_refused(synth_scene, tmp_path):
    one = dataclasses.replace(synth_scene, mapping=synth_scene.mapping[:1])
    with pytest.raises(SlocalError, match="at least 2 mapping frames"):
        build_sfm_map(one, SfmTeacherConfig(), tmp_path / "a")
    # Two cameras looking in opposite directions share nothing.
    a = synth_scene.mapping[0]
    flip = a.world_from_cam.copy()
    flip[:3, :3] = flip[:3, :3] @ np.diag([-1.0, 1.0, -1.0])
    b = dataclasses.replace(synth_scene.mapping[1], world_from_cam=flip)
    apart = dataclasses.replace(synth_scene, mapping=(a, b))
    with pytest.raises(SlocalError, match="no two mapping frames overlap"):
        build_sfm_map(apart, SfmTeacherConfig(), tmp_path / "b")
    with pytest.raises(SlocalError, match="min_track_length"):
        SfmTeacherConfig(min_track_length=1)


@pytest.mark.realdata
def test_real_map_with_fixed_poses(seven_scenes_mini, tmp_path):
    """10 redkitchen frames with reduced SIFT: a consistent map in well under a minute."""
    scene = load_scene(seven_scenes_mini, "redkitchen")
    sub = dataclasses.replace(scene, mapping=scene.mapping[0:30:3], query=scene.query[:1])
    config = SfmTeacherConfig(max_features=1024, num_neighbors=6)
    sfm_map = build_sfm_map(sub, config, tmp_path / "work")
    assert sfm_map.stats["points3D"] > 200 and sfm_map.stats["mean_reproj_error_px"] < 2.0
    obs = kept_observations(sfm_map, config)
    assert len(obs) == 10
    z_map, z_depth = [], []
    for image_id, o in obs.items():
        frame = sfm_map.frame(image_id)
        T = np.eye(4)
        T[:3] = sfm_map.reconstruction.image(image_id).cam_from_world().matrix()
        np.testing.assert_allclose(T, frame.cam_from_world, atol=1e-12)
        d = frame.read_depth()[np.floor(o.uv_N2[:, 1]).astype(int), np.floor(o.uv_N2[:, 0]).astype(int)]
        z_map.append(transform_points(frame.cam_from_world, o.xyz_N3)[d > 0, 2])
        z_depth.append(d[d > 0])
    z_map, z_depth = np.concatenate(z_map), np.concatenate(z_depth)
    # The data's colour intrinsics (f = 585) do not fit its colour images (SfM refines f to ~520),
    # so triangulated depth comes out ~10% too far; the depth ordering must still agree.
    assert abs(np.median(z_map / z_depth) - 1.0) < 0.2
    assert spearmanr(z_map, z_depth)[0] > 0.8
