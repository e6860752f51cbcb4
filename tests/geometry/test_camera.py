import numpy as np
import pytest

from slocal.errors import SlocalError
from slocal.geometry import Camera, pixel_centers


@pytest.fixture
def cam() -> Camera:
    return Camera(640, 480, 585.0, 580.0, 320.5, 241.0)


def test_project_backproject_round_trip(cam):
    rng = np.random.default_rng(0)
    uv = rng.uniform([0, 0], [640, 480], size=(100, 2))
    depth = rng.uniform(0.3, 5.0, size=100)
    pts = cam.backproject(uv, depth)
    uv2, z = cam.project(pts)
    np.testing.assert_allclose(uv2, uv, atol=1e-9)
    np.testing.assert_allclose(z, depth)


def test_principal_point_projects_optical_axis(cam):
    uv, _ = cam.project(np.array([[0.0, 0.0, 2.0]]))
    np.testing.assert_allclose(uv[0], [cam.cx, cam.cy])


def test_points_behind_camera_are_nan(cam):
    uv, _ = cam.project(np.array([[0.1, 0.2, -1.0], [0.1, 0.2, 1.0]]))
    assert np.isnan(uv[0]).all() and np.isfinite(uv[1]).all()


def test_scaling_maps_coordinates_exactly(cam):
    half = cam.scaled(320, 240)
    pt = np.array([[0.3, -0.2, 1.7]])
    uv_full, _ = cam.project(pt)
    uv_half, _ = half.project(pt)
    np.testing.assert_allclose(uv_half, uv_full * 0.5)
    # The image centre stays the image centre under the pixel-corner convention.
    assert Camera(640, 480, 500, 500, 320, 240).scaled(64, 48).cx == 32.0


def test_scaled_to_max_side_and_crop(cam):
    small = cam.scaled_to_max_side(320)
    assert small.size == (320, 240)
    crop = cam.cropped(10, 20, 600, 400)
    pt = np.array([[0.3, -0.2, 1.7]])
    np.testing.assert_allclose(crop.project(pt)[0], cam.project(pt)[0] - [10, 20])


def test_pixel_centres():
    c = pixel_centers(4, 2)
    assert c.shape == (2, 4, 2)
    np.testing.assert_array_equal(c[0, 0], [0.5, 0.5])
    np.testing.assert_array_equal(c[1, 3], [3.5, 1.5])
    s = pixel_centers(16, 8, stride=8)
    np.testing.assert_array_equal(s[0, 1], [12.0, 4.0])
    assert s.shape == (1, 2, 2)


def test_K_and_dict_round_trip(cam):
    assert Camera.from_K(cam.K, cam.width, cam.height) == cam
    assert Camera.from_dict(cam.to_dict()) == cam


@pytest.mark.parametrize("bad", [dict(fx=0.0), dict(fy=float("inf")), dict(cx=float("nan")), dict(width=0)])
def test_invalid_intrinsics_rejected(bad):
    args = dict(width=640, height=480, fx=500.0, fy=500.0, cx=320.0, cy=240.0) | bad
    with pytest.raises(SlocalError):
        Camera(**args)


def test_visible_fraction():
    from slocal.geometry.camera import visible_fraction

    cam = Camera(64, 48, 50.0, 50.0, 32.0, 24.0)
    # In front and inside, in front but outside the image, behind the camera.
    pts = np.array([[[0.0, 0.0, 2.0], [5.0, 0.0, 1.0], [0.0, 0.0, -1.0], [0.1, 0.1, 1.0]]])
    intr = np.array([[cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height]])
    np.testing.assert_allclose(visible_fraction(pts, np.eye(4)[None], intr), [0.5])
