import numpy as np
import pytest

from slocal.data import list_scenes, load_scene
from slocal.errors import SlocalError
from slocal.geometry import pose_error


@pytest.mark.realdata
def test_real_redkitchen(seven_scenes_mini):
    scene = load_scene(seven_scenes_mini, "redkitchen")
    assert scene.format == "7scenes"
    assert (len(scene.mapping), len(scene.query)) == (125, 25)
    assert scene.mapping[0].name == "seq-01/frame-000000"
    assert scene.query[0].image_path.suffix == ".jpg"
    cam, depth_cam = scene.mapping[0].camera, scene.mapping[0].depth_camera
    # camera-intrinsics.txt is the depth camera; colour keeps the customary f = 525.
    assert (depth_cam.fx, depth_cam.fy, depth_cam.cx, depth_cam.cy) == (585, 585, 320, 240)
    assert (cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height) == (525, 525, 320, 240, 640, 480)
    depth = scene.mapping[0].read_depth()
    assert depth.shape == (480, 640) and 0.3 < np.median(depth[depth > 0]) < 4.0
    # Consecutive mapping frames (4 frames apart) move by centimetres, not metres.
    t, r = pose_error(scene.mapping[1].cam_from_world, scene.mapping[0].cam_from_world)
    assert 0.001 < t < 0.3 and r < 20


@pytest.mark.realdata
def test_list_scenes_json_fields(seven_scenes_mini):
    rows = {row["scene"]: row for row in list_scenes(seven_scenes_mini)}
    assert rows["redkitchen"] == {
        "scene": "redkitchen",
        "format": "7scenes",
        "mapping": 125,
        "query": 25,
        "skipped": 0,
        "depth": True,
        "metres_per_unit": 1.0,
        "path": str(seven_scenes_mini / "redkitchen"),
    }
    # The held-out-trajectory split of the same recording: queries on a stretch never mapped.
    assert rows["redkitchen-split"] == {
        "scene": "redkitchen-split",
        "format": "7scenes",
        "mapping": 100,
        "query": 20,
        "skipped": 0,
        "depth": True,
        "metres_per_unit": 1.0,
        "path": str(seven_scenes_mini / "redkitchen-split"),
    }


def _tiny_seven(root, with_intrinsics=True):
    import cv2

    scene = root / "chess"
    for seq in ("seq-01", "seq-02"):
        (scene / seq).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(scene / seq / f"frame-{i:06d}.color.png"), np.zeros((48, 64, 3), np.uint8))
            cv2.imwrite(str(scene / seq / f"frame-{i:06d}.depth.png"), np.full((48, 64), 65535, np.uint16))
            (scene / seq / f"frame-{i:06d}.pose.txt").write_text("1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    (scene / "TrainSplit.txt").write_text("sequence1\n")
    (scene / "TestSplit.txt").write_text("sequence2\n")
    if with_intrinsics:
        (scene / "camera-intrinsics.txt").write_text("50 0 32\n0 50 24\n0 0 1\n")
    return scene


def test_colour_intrinsics_file_overrides_default(tmp_path):
    scene_dir = _tiny_seven(tmp_path)
    (scene_dir / "color-intrinsics.txt").write_text("40 0 31\n0 41 23\n0 0 1\n")
    frame = load_scene(tmp_path, "chess").mapping[0]
    assert (frame.camera.fx, frame.camera.fy, frame.camera.cx, frame.camera.cy) == (40, 41, 31, 23)
    assert frame.depth_camera.fx == 50


def test_png_defaults_and_invalid_depth_value(tmp_path):
    _tiny_seven(tmp_path, with_intrinsics=False)
    scene = load_scene(tmp_path, "chess")
    assert scene.mapping[0].camera.fx == 525.0 and scene.mapping[0].depth_camera.fx == 585.0
    assert (scene.mapping[0].read_depth() == 0).all()  # 65535 marks invalid depth


def test_split_errors(tmp_path):
    scene = _tiny_seven(tmp_path)
    (scene / "TestSplit.txt").write_text("sequence9\n")
    with pytest.raises(SlocalError, match="seq-09: sequence folder"):
        load_scene(tmp_path, "chess")
    (scene / "TestSplit.txt").write_text("seq two\n")
    with pytest.raises(SlocalError, match="TestSplit.txt: expected lines"):
        load_scene(tmp_path, "chess")


def test_unknown_folder_and_format(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SlocalError, match="not a scene folder"):
        load_scene(tmp_path, "empty")
    with pytest.raises(SlocalError, match="not found under data root"):
        load_scene(tmp_path, "missing")
    _tiny_seven(tmp_path)
    with pytest.raises(SlocalError, match="unknown format"):
        load_scene(tmp_path, "chess", fmt="nerf")
