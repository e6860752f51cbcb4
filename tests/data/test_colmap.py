import numpy as np
import pycolmap
import pytest
from scipy.spatial.transform import Rotation

from slocal.data import detect_format, load_scene
from slocal.errors import SlocalError
from slocal.geometry import pose_error


def write_colmap_scene(root, model="PINHOLE", params=(50.0, 52.0, 32.0, 24.0), n=3, binary=True):
    """Write a tiny COLMAP model with known poses plus its images; returns the GT cam_from_world list."""
    import cv2

    (root / "images").mkdir(parents=True)
    rec = pycolmap.Reconstruction()
    cam = pycolmap.Camera.create_from_model_name(1, model, 50.0, 64, 48)
    cam.params = list(params)
    rec.add_camera_with_trivial_rig(cam)
    poses = []
    for i in range(n):
        R = Rotation.from_euler("xyz", [0.1 * i, -0.05 * i, 0.02], degrees=False).as_matrix()
        t = np.array([0.1 * i, 0.0, 0.5])
        M = np.hstack([R, t[:, None]])
        poses.append(np.vstack([M, [0, 0, 0, 1]]))
        image = pycolmap.Image(name=f"img{i}.png", camera_id=1, image_id=i + 1)
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(M))
        cv2.imwrite(str(root / "images" / f"img{i}.png"), np.zeros((48, 64, 3), np.uint8))
    out = root / "sparse" / "0"
    out.mkdir(parents=True)
    rec.write_binary(str(out)) if binary else rec.write_text(str(out))
    return poses


@pytest.mark.parametrize("binary", [True, False])
def test_poses_and_intrinsics_round_trip(tmp_path, binary):
    gt = write_colmap_scene(tmp_path / "office", binary=binary)
    (tmp_path / "office" / "queries.txt").write_text("img2.png\n")
    assert detect_format(tmp_path / "office") == "colmap"
    scene = load_scene(tmp_path, "office")
    assert scene.format == "colmap" and not scene.has_depth
    assert [f.name for f in scene.mapping] == ["img0.png", "img1.png"]
    assert [f.name for f in scene.query] == ["img2.png"]
    cam = scene.mapping[0].camera
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (50.0, 52.0, 32.0, 24.0)
    for frame, T in zip(scene.mapping + scene.query, gt):
        t_err, r_err = pose_error(frame.cam_from_world, T)
        assert t_err < 1e-9 and r_err < 1e-5


def test_distorted_camera_refused(tmp_path):
    write_colmap_scene(tmp_path / "office", model="SIMPLE_RADIAL", params=(50.0, 32.0, 24.0, 0.1))
    with pytest.raises(SlocalError, match="distorted model SIMPLE_RADIAL.*undistort"):
        load_scene(tmp_path, "office")


def test_zero_distortion_is_a_pinhole(tmp_path):
    write_colmap_scene(tmp_path / "office", model="SIMPLE_RADIAL", params=(50.0, 32.0, 24.0, 0.0))
    assert load_scene(tmp_path, "office").mapping[0].camera.fx == 50.0


def test_unregistered_query_and_missing_image(tmp_path):
    write_colmap_scene(tmp_path / "office")
    (tmp_path / "office" / "queries.txt").write_text("nope.png\n")
    with pytest.raises(SlocalError, match="queries.txt: 1 query image"):
        load_scene(tmp_path, "office")
    (tmp_path / "office" / "queries.txt").unlink()
    (tmp_path / "office" / "images" / "img1.png").unlink()
    with pytest.raises(SlocalError, match="img1.png: image img1.png of the COLMAP model is missing"):
        load_scene(tmp_path, "office")
