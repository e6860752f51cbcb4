"""Verification against the known relative poses (pycolmap E and Sampson error)."""

import numpy as np

from slocal.geometry import transform_points
from slocal.teach.sfm import known_pose_geometry, sampson_error


def test_sampson_error_is_zero_for_true_correspondences(synth_scene):
    a, b = synth_scene.mapping[0], synth_scene.mapping[1]
    rng = np.random.default_rng(0)
    uv = rng.uniform([0, 0], [320, 240], (50, 2))
    world = transform_points(a.world_from_cam, a.camera.backproject(uv, rng.uniform(1, 4, 50)))
    uv_b, _ = b.camera.project(transform_points(b.cam_from_world, world))
    _, _, F = known_pose_geometry(a, b)
    assert np.max(sampson_error(F, uv, uv_b)) < 1e-6
    # 3 px off the epipolar line in image b: Sampson shares the 3 px between both images'
    # epipolar gradients, 3 |l_b| / sqrt(|l_b|^2 + |l_a|^2) with l_b = F x_a, l_a = F^T x_b.
    l_b = np.concatenate([uv, np.ones((50, 1))], 1) @ F.T
    moved = uv_b + 3.0 * l_b[:, :2] / np.linalg.norm(l_b[:, :2], axis=1, keepdims=True)
    l_a = np.concatenate([moved, np.ones((50, 1))], 1) @ F
    n_b, n_a = np.linalg.norm(l_b[:, :2], axis=1), np.linalg.norm(l_a[:, :2], axis=1)
    np.testing.assert_allclose(sampson_error(F, uv, moved), 3.0 * n_b / np.hypot(n_b, n_a), rtol=1e-6)
