import numpy as np
import pytest

from slocal.data import load_scene
from slocal.data.twelve_scenes import read_split
from slocal.errors import SlocalError


def test_loads_splits_cameras_and_depth(tiny_twelve_scenes):
    scene = load_scene(tiny_twelve_scenes, "apt0/tiny")
    assert scene.format == "12scenes"
    assert [f.name for f in scene.query] == ["frame-000000", "frame-000001"]
    assert len(scene.mapping) == 4 and scene.has_depth
    frame = scene.mapping[0]
    assert frame.camera.size == (64, 48) and frame.depth_camera.size == (32, 24)
    depth = frame.read_depth()
    assert depth.shape == (24, 32) and np.allclose(depth, 2.0)
    # Depth resampled on the colour grid through the intrinsics (same optical centre).
    assert np.allclose(frame.depth_at(frame.camera), 2.0)
    np.testing.assert_allclose(frame.world_from_cam[0, 3], 0.2)


def test_inf_pose_is_skipped_and_counted(tiny_twelve_scenes, caplog):
    pose = tiny_twelve_scenes / "apt0/tiny/data/frame-000003.pose.txt"
    pose.write_text("INF INF INF INF\n" * 4)
    scene = load_scene(tiny_twelve_scenes, "apt0/tiny")
    assert scene.skipped == 1 and len(scene.mapping) == 3
    assert "skipped 1" in caplog.text


def test_read_split_rejects_inconsistent_counts(tmp_path):
    p = tmp_path / "split.txt"
    p.write_text("sequence0 [frames=3]  [start=0 ; end=1]\n")
    with pytest.raises(SlocalError, match="frames=3 disagrees"):
        read_split(p)
    p.write_text("")
    with pytest.raises(SlocalError, match="no sequence"):
        read_split(p)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: (r / "data/frame-000002.pose.txt").write_text("1 0 0\n"), "frame-000002.pose.txt: expected 4x4"),
        (lambda r: (r / "data/frame-000002.pose.txt").write_text("1 0 0 0 0 2 0 0 0 0 1 0 0 0 0 1"), "not orthonormal"),
        (lambda r: (r / "data/frame-000002.pose.txt").write_text("a b c d " * 4), "malformed matrix"),
        (lambda r: (r / "data/frame-000002.color.jpg").unlink(), "frame-000002.color.jpg: colour image"),
        (lambda r: (r / "split.txt").write_text("garbage\n"), "split.txt: line 1"),
        (lambda r: (r / "split.txt").unlink(), "split.txt: split file not found"),
        (lambda r: (r / "info.txt").write_text("m_colorWidth = 64\n"), "info.txt: missing key"),
        (lambda r: (r / "info.txt").write_text("no equals sign\n"), "info.txt: line 1 is not"),
        (
            lambda r: (r / "split.txt").write_text("sequence0 [frames=6]  [start=0 ; end=5]\n"),
            "no mapping frame",
        ),
    ],
)
def test_bad_input_names_the_file(tiny_twelve_scenes, edit, message):
    edit(tiny_twelve_scenes / "apt0/tiny")
    with pytest.raises(SlocalError, match=message):
        load_scene(tiny_twelve_scenes, "apt0/tiny")


def test_wrong_depth_size_and_corrupt_depth(tiny_twelve_scenes):
    import cv2

    root = tiny_twelve_scenes / "apt0/tiny/data"
    cv2.imwrite(str(root / "frame-000002.depth.png"), np.zeros((10, 10), np.uint16))
    scene = load_scene(tiny_twelve_scenes, "apt0/tiny")
    with pytest.raises(SlocalError, match=r"frame-000002.depth.png: depth is 10x10, expected 32x24"):
        scene.mapping[0].read_depth()
    (root / "frame-000003.depth.png").write_bytes(b"not a png")
    with pytest.raises(SlocalError, match=r"frame-000003.depth.png: cannot decode"):
        scene.mapping[1].read_depth()
