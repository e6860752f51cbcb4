import numpy as np
import pytest

from slocal.data import load_scene
from slocal.errors import SlocalError
from slocal.geometry import invert, transform_points
from slocal.io import write_depth_png
from slocal.teach import ensure_targets, make_teacher
from slocal.teach.depth import DepthTeacher, DepthTeacherConfig, smooth_depth


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


def test_smoothing_takes_the_quantisation_off_a_slanted_plane():
    # A plane receding from 1.5 to 2 m across the image, read in 2 cm steps as a structured-light sensor would.
    H, W = 60, 80
    truth = np.tile(np.linspace(1.5, 2.0, W, dtype=np.float32), (H, 1))
    read = np.round(truth / 0.02) * 0.02
    smoothed = smooth_depth(read, 9, 0.03)
    inner = (slice(4, -4), slice(4, -4))  # where the window is not cut by the image border
    raw_err = np.abs(read - truth)[inner].mean()
    assert raw_err > 0.004
    assert np.abs(smoothed - truth)[inner].mean() < 0.3 * raw_err


def test_smoothing_keeps_edges_and_invalid_pixels():
    depth = np.full((20, 30), 1.0, np.float32)
    depth[:, 15:] = 2.0  # another surface, 1 m behind
    depth[5:8, 3:6] = 0.0  # no reading
    out = smooth_depth(depth, 7, 0.03)
    np.testing.assert_array_equal(out, depth)


def test_the_depth_teacher_smooths_each_frame_when_asked(tiny_twelve_scenes, tmp_path):
    scene = load_scene(tiny_twelve_scenes, "apt0/tiny")
    rng = np.random.default_rng(3)
    for frame in scene.mapping:  # the plane at 2 m, read with 2 cm of noise
        write_depth_png(frame.depth_path, (2000 + rng.normal(0, 20, (24, 32))).round().astype(np.uint16))
    z = {}
    for smooth_px in (0, 5):
        targets = ensure_targets(scene, make_teacher("depth", max_side=32, smooth_px=smooth_px), tmp_path / "runs")
        z[smooth_px] = np.concatenate([t.coords_HW3[..., 2][t.valid_HW] for t in targets.frames])
    assert 0.015 < z[0].std() < 0.025
    assert z[5].std() < 0.4 * z[0].std()
    assert abs(z[5].mean() - 2.0) < 0.002


def test_smoothing_settings_reach_the_cache_key_only_when_on():
    assert not any(k.startswith("smooth") for k in DepthTeacher().settings())
    on = DepthTeacher(DepthTeacherConfig(smooth_px=15)).settings()
    assert on["smooth_px"] == 15 and on["smooth_range"] == 0.03
    with pytest.raises(SlocalError, match="smooth_px must be odd"):
        DepthTeacherConfig(smooth_px=4)


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
