import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from slocal.errors import SlocalError
from slocal.geometry import Camera, invert, pose_error, to_homogeneous, transform_points
from slocal.geometry.pnp import PnpConfig, solve_pnp


def scene_points(n, seed=0):
    rng = np.random.default_rng(seed)
    cam = Camera(320, 240, 290.0, 292.0, 161.0, 119.0)
    cam_from_world = to_homogeneous(Rotation.random(random_state=seed).as_matrix(), rng.normal(size=3))
    uv = rng.uniform([0, 0], [320, 240], size=(n, 2))
    pts_cam = cam.backproject(uv, rng.uniform(0.5, 4.0, n))
    return cam, cam_from_world, uv, transform_points(invert(cam_from_world), pts_cam)


def test_exact_correspondences_recover_pose():
    cam, gt, uv, xyz = scene_points(300)
    res = solve_pnp(uv, xyz, cam)
    assert res.success and res.num_inliers == 300
    t, r = pose_error(res.cam_from_world, gt)
    assert t < 1e-6 and r < 1e-4


def test_outliers_are_rejected():
    cam, gt, uv, xyz = scene_points(400, seed=1)
    rng = np.random.default_rng(5)
    xyz[:200] += rng.normal(scale=0.5, size=(200, 3))  # 50 % gross outliers
    res = solve_pnp(uv, xyz, cam)
    assert res.success
    assert res.inlier_mask[200:].mean() > 0.99 and res.inlier_mask[:200].mean() < 0.1
    t, r = pose_error(res.cam_from_world, gt)
    # Outliers that happen to fall inside the threshold bias the refinement slightly.
    assert t < 1e-3 and r < 0.05


def test_transposed_or_flat_points_are_refused():
    """(2, N) / (3, N) would flatten into scrambled (N, 2) / (N, 3) of equal length: refused, not solved."""
    cam, _, uv, xyz = scene_points(60)
    with pytest.raises(ValueError, match=r"\(N, 2\) image points.*\(2, 60\) and \(3, 60\)"):
        solve_pnp(uv.T, xyz.T, cam)
    with pytest.raises(ValueError, match=r"got \(120,\) and \(60, 3\)"):
        solve_pnp(uv.reshape(-1), xyz, cam)
    with pytest.raises(ValueError, match="60 image points but 59 world points"):
        solve_pnp(uv, xyz[:59], cam)


def test_too_few_points_is_a_reported_failure():
    cam, _, uv, xyz = scene_points(10)
    res = solve_pnp(uv, xyz, cam, PnpConfig(min_inliers=20))
    assert not res.success and res.cam_from_world is None and res.num_correspondences == 10
    xyz[:] = np.nan
    assert not solve_pnp(uv, xyz, cam).success


def test_threshold_scales_with_width():
    assert PnpConfig(threshold_px=10).threshold_for(Camera(320, 240, 1, 1, 0, 0)) == pytest.approx(5.0)


def test_ransac_on_a_subset_then_refined_on_all_matches():
    cam, gt, uv, xyz = scene_points(1200, seed=2)
    rng = np.random.default_rng(6)
    xyz[:600] += rng.normal(scale=0.5, size=(600, 3))  # 50 % gross outliers
    uv_noisy = uv + rng.normal(scale=1.0, size=uv.shape)  # 1 px noise on every match
    sub = solve_pnp(uv_noisy, xyz, cam, PnpConfig(ransac_points=100, max_iterations=500))
    full = solve_pnp(uv_noisy, xyz, cam, PnpConfig(max_iterations=500))
    # The inliers are counted on every match, not only the 100 RANSAC saw.
    assert sub.success and sub.num_correspondences == 1200
    assert sub.inlier_mask[600:].mean() > 0.99 and sub.inlier_mask[:600].mean() < 0.1
    # poselib's local optimisation and final refinement then run on all matches from the subset's
    # pose: it ends where RANSAC on all matches does, with the same inliers.
    np.testing.assert_allclose(sub.cam_from_world, full.cam_from_world, atol=1e-7)
    np.testing.assert_array_equal(sub.inlier_mask, full.inlier_mask)
    t_sub, r_sub = pose_error(sub.cam_from_world, gt)
    # RANSAC on 100 matches alone (no refinement on all) leaves a pose about sqrt(6) times worse.
    alone = solve_pnp(uv_noisy[::12], xyz[::12], cam, PnpConfig(max_iterations=500))
    assert pose_error(alone.cam_from_world, gt)[1] > r_sub


def test_final_refinement_with_a_tighter_loss_keeps_exact_poses():
    cam, gt, uv, xyz = scene_points(300, seed=3)
    res = solve_pnp(uv, xyz, cam, PnpConfig(refine_px=2.0))
    assert res.success and res.num_inliers == 300
    t, r = pose_error(res.cam_from_world, gt)
    assert t < 1e-6 and r < 1e-4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ransac_points": 3}, "PnpConfig: ransac_points must be >= 4, got 3"),
        ({"refine_px": 0.0}, "PnpConfig: refine_px must be > 0, got 0.0"),
        ({"threshold_px": -1.0}, "PnpConfig: threshold_px must be > 0, got -1.0"),
        ({"threshold_px": "wide"}, "PnpConfig, key 'threshold_px': expected float, got 'wide'"),
        ({"thresold_px": 5.0}, "PnpConfig: unknown key 'thresold_px'; known: threshold_px, min_inliers"),
    ],
)
def test_bad_settings_are_refused_naming_the_field_the_value_and_the_rule(kwargs, message):
    with pytest.raises(SlocalError) as info:
        PnpConfig(**kwargs)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)
