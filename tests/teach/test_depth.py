import numpy as np
import pytest

from slocal.data import load_scene
from slocal.errors import SlocalError
from slocal.geometry import invert, transform_points
from slocal.teach import ensure_targets, make_teacher


def test_depth_targets_lie_on_the_known_plane(tiny_twelve_scenes, tmp_path):
    scene = load_scene(tiny_twelve_scenes, "apt0/tiny")
    targets = ensure_targets(scene, make_teacher("depth", max_side=32), tmp_path / "runs")
    assert targets.stats["frames"] == 4 and targets.stats["median_error_cm"] == 0.0
    for t, frame in zip(targets.frames, scene.mapping):
        assert t.camera.size == (32, 24) and t.valid_HW.all()
        # The plane is at z = 2 m in every camera, and the cameras only translate along x.
        np.testing.assert_allclose(t.coords_HW3[..., 2], 2.0, atol=1e-6)
        cam_pts = transform_points(invert(frame.world_from_cam), t.coords_HW3.reshape(-1, 3))
        uv, _ = t.camera.project(cam_pts)
        centres = np.stack(np.meshgrid(np.arange(32) + 0.5, np.arange(24) + 0.5), -1).reshape(-1, 2)
        np.testing.assert_allclose(uv, centres, atol=1e-4)


def test_no_valid_targets_is_an_error(tiny_twelve_scenes, tmp_path):
    scene = load_scene(tiny_twelve_scenes, "apt0/tiny")
    with pytest.raises(SlocalError, match="produced no valid targets"):
        ensure_targets(scene, make_teacher("depth", max_side=32, max_depth=1.5), tmp_path / "runs")


@pytest.mark.realdata
def test_real_depth_targets_agree_across_frames(seven_scenes_mini, tmp_path):
    """Back-project frame A's targets into frame B: its depth agrees to about a centimetre."""
    scene = load_scene(seven_scenes_mini, "redkitchen")
    sub = type(scene)(scene.id, scene.root, scene.format, scene.mapping[:2], scene.query[:1])
    targets = ensure_targets(sub, make_teacher("depth", max_side=160), tmp_path / "runs")
    a, b = targets.frames
    frame_b = sub.mapping[1]
    pts = a.coords_HW3[a.valid_HW]
    uv, z = b.camera.project(transform_points(frame_b.cam_from_world, pts))
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < b.camera.width) & (uv[:, 1] >= 0) & (uv[:, 1] < b.camera.height)
    depth_b = frame_b.depth_at(b.camera)
    d = depth_b[uv[inside, 1].astype(int), uv[inside, 0].astype(int)]
    ok = d > 0
    assert np.median(np.abs(d[ok] - z[inside][ok])) < 0.02
