"""The SfM teacher: sparse targets."""

import dataclasses

import numpy as np
import pytest

from slocal.geometry import Camera, transform_points
from slocal.teach import ensure_targets, make_teacher
from slocal.teach.sfm import Observations, sparse_targets


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
        point2D_idx=np.arange(n),
        uv_N2=uv,
        point3D_id=np.arange(n),
        xyz_N3=xyz,
        track_length=np.full(n, 3),
        tri_angle_deg=np.full(n, 20.0),
        reproj_error=np.zeros(n),
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


def test_wide_baseline_photo_collection_in_model_units(tmp_path):
    """12 photos ~45 deg and ~1.5 m apart, per-image cameras, a COLMAP model 4x the metric size.

    Every photo that shares points with others (in the model's own tracks) gets SfM targets;
    with metric pair limits read in model units only a pair or two would be matched.
    """
    import pycolmap

    from helpers.colmap_room import write_room_colmap
    from slocal.data import load_scene

    write_room_colmap(
        tmp_path / "data" / "room",
        n_mapping=12,
        n_query=1,
        metres_per_unit=0.25,
        sizes=((320, 240), (320, 236), (300, 240)),
        texels_per_metre=200.0,
    )
    scene = load_scene(tmp_path / "data", "room")
    assert scene.metres_per_unit is None
    targets = {t.name: t for t in make_teacher("sfm").teach(scene)}
    rec = pycolmap.Reconstruction(scene.extra["model_dir"])
    mapping_ids = {scene.extra["image_ids"][f.name]: f.name for f in scene.mapping}
    shares = {name: 0 for name in mapping_ids.values()}
    for p in rec.points3D.values():
        seen = {e.image_id for e in p.track.elements if e.image_id in mapping_ids}
        if len(seen) >= 2:
            for i in seen:
                shares[mapping_ids[i]] += 1
    covisible = [name for name, n in shares.items() if n >= 50]
    assert len(covisible) >= 10
    assert all(targets[name].num_valid > 0 for name in covisible), {n: targets[n].num_valid for n in covisible}
