import cv2
import numpy as np
import pycolmap
import pytest
from scipy.spatial.transform import Rotation

from helpers.colmap_room import OPENCV_DISTORTION, write_room_colmap
from slocal.data import detect_format, load_scene
from slocal.data.synth import SynthConfig, SynthWorld
from slocal.errors import SlocalError
from slocal.geometry import pose_error
from slocal.io import read_image


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


def test_distorted_camera_needs_a_runs_folder(tmp_path):
    write_colmap_scene(tmp_path / "office", model="SIMPLE_RADIAL", params=(50.0, 32.0, 24.0, 0.1))
    with pytest.raises(SlocalError, match="SIMPLE_RADIAL.*has distortion; undistorting needs a runs folder"):
        load_scene(tmp_path, "office")
    scene = load_scene(tmp_path, "office", runs_root=tmp_path / "runs")
    assert all(f.image_path.is_relative_to(tmp_path / "runs" / "office" / "undistorted") for f in scene.mapping)


def test_camera_pycolmap_cannot_undistort_is_refused_with_reason(tmp_path):
    write_colmap_scene(tmp_path / "office", model="EQUIRECTANGULAR", params=(64.0, 48.0))
    with pytest.raises(
        SlocalError,
        match=r"cameras: camera 1: pycolmap cannot undistort the EQUIRECTANGULAR camera model \(.*Perspective",
    ):
        load_scene(tmp_path, "office", runs_root=tmp_path / "runs")


def test_per_image_cameras_of_different_sizes_and_scale_file(tmp_path):
    room = write_room_colmap(tmp_path / "data" / "room", n_mapping=4, n_query=2)
    scene = load_scene(tmp_path / "data", "room")
    assert scene.metres_per_unit is None and scene.units == "units"
    sizes = {f.camera.size for f in scene.mapping + scene.query}
    assert sizes == {(128, 96), (120, 96), (128, 100)}
    assert [f.name for f in scene.query] == list(room.query_names)
    for f in scene.mapping:  # poses are in model units
        centre_m = room.world_from_cam[f.name][:3, 3]
        assert np.allclose(f.world_from_cam[:3, 3] * room.metres_per_unit, centre_m, atol=1e-9)
    (room.root / "scale.txt").write_text("0.5\n")
    assert load_scene(tmp_path / "data", "room").metres_per_unit == 0.5
    assert load_scene(tmp_path / "data", "room", metres_per_unit=2.0).metres_per_unit == 2.0
    (room.root / "scale.txt").write_text("half a metre\n")
    with pytest.raises(SlocalError, match="scale.txt: line 1: expected one positive number"):
        load_scene(tmp_path / "data", "room")


def test_opencv_images_are_undistorted_into_the_cache(tmp_path):
    room = write_room_colmap(tmp_path / "data" / "room", n_mapping=3, n_query=1, distortion=OPENCV_DISTORTION)
    scene = load_scene(tmp_path / "data", "room", runs_root=tmp_path / "runs")
    world = SynthWorld(SynthConfig(mapping_frames=3, query_frames=1, texels_per_metre=100.0))
    for f in scene.mapping:
        rgb = read_image(f.image_path)
        assert (rgb.shape[1], rgb.shape[0]) == f.camera.size
        # The undistorted image is what a pinhole with the frame's camera sees.
        ref, _ = world.render_color(f.camera, room.world_from_cam[f.name])
        # Blurred, so that JPEG noise and texture aliasing do not dominate; a 1-pixel
        # misalignment must cost more than what is left at the right alignment.
        ref = cv2.GaussianBlur(np.clip(ref * 255.0, 0, 255), (0, 0), 1.5)
        got = cv2.GaussianBlur(rgb.astype(np.float64), (0, 0), 1.5)
        h, w = rgb.shape[:2]
        crop = np.s_[h // 8 : -h // 8, w // 8 : -w // 8]
        err = np.abs(got - ref)[crop].mean()
        err_shifted = np.abs(np.roll(got, 1, axis=1) - ref)[crop].mean()
        assert err < 3.5 and err < 0.6 * err_shifted, (err, err_shifted)
    # Cached: a second load reads the same files without rewriting them.
    stamps = {f.image_path: f.image_path.stat().st_mtime_ns for f in scene.mapping}
    again = load_scene(tmp_path / "data", "room", runs_root=tmp_path / "runs")
    assert {f.image_path: f.image_path.stat().st_mtime_ns for f in again.mapping} == stamps
    assert again.fingerprint == scene.fingerprint


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
