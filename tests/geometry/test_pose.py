import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from slocal.errors import SlocalError
from slocal.geometry import invert, pose_error, qvec_to_rotmat, rotmat_to_qvec, to_homogeneous, transform_points
from slocal.geometry.pose import angle_deg, check_rigid, orthonormalize


def random_pose(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return to_homogeneous(Rotation.random(random_state=seed).as_matrix(), rng.normal(size=3))


def test_invert_round_trip():
    T = random_pose(1)
    np.testing.assert_allclose(invert(T) @ T, np.eye(4), atol=1e-12)
    pts = np.random.default_rng(2).normal(size=(10, 3))
    np.testing.assert_allclose(transform_points(invert(T), transform_points(T, pts)), pts, atol=1e-12)


def test_transform_points_matches_the_matrix_formula():
    T = random_pose(4)
    pts = np.random.default_rng(5).normal(scale=3.0, size=(2000, 6))[:, ::2]  # strided: not contiguous
    expected = pts @ T[:3, :3].T + T[:3, 3]
    out = transform_points(T, pts)
    assert out.dtype == np.float64 and out.shape == (2000, 3)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(transform_points(T[:3], pts), expected, rtol=0, atol=1e-12)  # 3x4 works too
    # float32 points and a float32 transform stay float32, as numpy's own product would
    out32 = transform_points(T.astype(np.float32), pts.astype(np.float32))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, expected, rtol=0, atol=1e-5)
    assert transform_points(T, np.zeros((0, 3))).shape == (0, 3)


def test_pose_error_known_offsets():
    cam_from_world = random_pose(3)
    world_from_cam = invert(cam_from_world)
    # Move the camera centre 5 cm along world x and rotate it 2 degrees about its own y axis.
    moved = world_from_cam.copy()
    moved[:3, 3] += [0.05, 0, 0]
    moved[:3, :3] = moved[:3, :3] @ Rotation.from_euler("y", 2, degrees=True).as_matrix()
    t_err, r_err = pose_error(invert(moved), cam_from_world)
    assert t_err == pytest.approx(0.05, abs=1e-12)
    assert r_err == pytest.approx(2.0, abs=1e-9)
    assert pose_error(cam_from_world, cam_from_world) == pytest.approx((0.0, 0.0), abs=1e-6)


def test_quaternion_round_trip_colmap_order():
    R = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    q = rotmat_to_qvec(R)
    np.testing.assert_allclose(q, [np.sqrt(0.5), 0, 0, np.sqrt(0.5)], atol=1e-12)
    np.testing.assert_allclose(qvec_to_rotmat(q), R, atol=1e-12)
    with pytest.raises(SlocalError):
        qvec_to_rotmat([0, 0, 0, 0])


def test_check_rigid_and_orthonormalize():
    T = random_pose(4)
    assert check_rigid(T) is None
    bad = T.copy()
    bad[0, 0] = np.inf
    assert "INF" in check_rigid(bad)
    skew = T.copy()
    skew[:3, :3] *= 1.1
    assert "orthonormal" in check_rigid(skew)
    noisy = T.copy()
    noisy[:3, :3] += 1e-4
    fixed = orthonormalize(noisy)
    assert check_rigid(fixed, tol=1e-9) is None
    assert pose_error(fixed, T)[1] < 0.05


def test_angle_deg_broadcasts_and_is_accurate_for_small_angles():
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([[0.0, 2.0, 0.0], [-3.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    np.testing.assert_allclose(angle_deg(a, b), [90.0, 180.0, 45.0])
    # 1e-7 rad: arccos of the dot product would give 0 (cos rounds to 1) or ~1.2e-6 deg.
    tiny = np.array([[1.0, 1e-7, 0.0]])
    np.testing.assert_allclose(angle_deg(a, tiny), np.degrees(1e-7), rtol=1e-6)
