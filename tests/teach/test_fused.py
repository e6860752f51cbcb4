"""The fused teacher: one TSDF surface of all mapping frames' depth, rendered into each colour camera."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from slocal.data import load_scene
from slocal.data.rig import DepthRegistration, apply_depth_registration
from slocal.data.synth import SynthConfig, SynthWorld, render_scene
from slocal.errors import SlocalError
from slocal.geometry.camera import pixel_centers
from slocal.geometry.pose import transform_points
from slocal.io import write_depth_png
from slocal.teach import ensure_targets, make_teacher
from slocal.teach.consistency import multiview_consistency
from slocal.teach.fused import FusedTeacherConfig, fuse_depth, fused_frame_targets
from slocal.teach.targets import target_camera

CONFIG = SynthConfig(mapping_frames=20, query_frames=2, seed=3)


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    root = tmp_path_factory.mktemp("fused")
    render_scene(root / "room", CONFIG)
    return load_scene(root, "room")


@pytest.fixture(scope="module")
def world():
    return SynthWorld(CONFIG)


def true_coords(world, frame, camera) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates of the true surface at the pixel centres of ``camera`` and its z-depth."""
    z = world.render_depth(camera, frame.world_from_cam)
    uv = pixel_centers(camera.width, camera.height).reshape(-1, 2)
    pts = transform_points(frame.world_from_cam, camera.backproject(uv, z.reshape(-1)))
    return pts.reshape(camera.height, camera.width, 3), z


def errors_mm(world, scene, frames) -> np.ndarray:
    out = []
    for frame, t in zip(scene.mapping, frames):
        truth, _ = true_coords(world, frame, t.camera)
        out.append(np.linalg.norm(t.coords_HW3 - truth, axis=-1)[t.valid_HW] * 1000)
    return np.concatenate(out)


def test_fused_targets_lie_on_the_true_surface_and_agree_across_views(room, world, tmp_path):
    depth = ensure_targets(room, make_teacher("depth"), tmp_path / "runs")
    fused = ensure_targets(room, make_teacher("fused"), tmp_path / "runs")
    assert fused.stats["frames"] == len(room.mapping)
    e_fused, e_depth = errors_mm(world, room, fused.frames), errors_mm(world, room, depth.frames)
    # The room's depth is exact up to mm quantisation, read at half the colour resolution: the
    # depth teacher's nearest-neighbour targets are ~2 mm off; the fused surface interpolates.
    assert np.median(e_fused) < 1.5 and np.percentile(e_fused, 90) < 5.0
    assert np.median(e_fused) <= np.median(e_depth)
    # Per pixel, close to the depth teacher's wherever both label it.
    d = np.concatenate(
        [
            np.linalg.norm(a.coords_HW3 - b.coords_HW3, axis=-1)[a.valid_HW & b.valid_HW]
            for a, b in zip(fused.frames, depth.frames)
        ]
    )
    assert np.median(d) < 0.003 and np.mean(d < 0.01) > 0.95
    assert fused.stats["points"] > 0.9 * depth.stats["points"]
    c_fused, c_depth = fused.stats["consistency"], depth.stats["consistency"]
    assert c_fused["median"] <= c_depth["median"] and c_fused["within_1"] >= c_depth["within_1"]


def noisy_frame_scene(scene, folder, k: int, offset_m: float):
    """The room with mapping frame ``k``'s depth pushed back by ``offset_m`` on its central third."""
    frame = scene.mapping[k]
    depth = frame.read_depth()
    H, W = depth.shape
    patch = np.zeros((H, W), bool)
    patch[H // 3 : 2 * H // 3, W // 3 : 2 * W // 3] = True
    noisy = np.where(patch & (depth > 0), depth + offset_m, depth)
    path = folder / "noisy.depth.png"
    write_depth_png(path, np.round(noisy / frame.depth_scale).astype(np.uint16))
    mapping = list(scene.mapping)
    mapping[k] = replace(frame, depth_path=path)
    return replace(scene, mapping=tuple(mapping)), patch


def test_a_frame_with_wrong_depth_does_not_move_the_fused_target(room, world, tmp_path):
    k = 10
    scene, patch = noisy_frame_scene(room, tmp_path, k, 0.05)
    frame = scene.mapping[k]
    config = FusedTeacherConfig()
    camera = target_camera(frame, config.max_side)
    truth, z_true = true_coords(world, frame, camera)
    # Target pixels whose depth pixel is in the patch (the depth camera is the colour one scaled).
    uv = pixel_centers(camera.width, camera.height) * (patch.shape[1] / camera.width)
    in_patch = patch[uv[..., 1].astype(int), uv[..., 0].astype(int)]

    depth_targets = next(t for t in make_teacher("depth").teach(scene) if t.name == frame.name)
    moved = np.linalg.norm(depth_targets.coords_HW3 - truth, axis=-1)[in_patch & depth_targets.valid_HW]
    assert np.median(moved) > 0.045

    raycaster = fuse_depth(scene, config).raycaster()
    z, _ = raycaster.render(camera, frame.world_from_cam)
    surface_error = np.median(np.abs(z - z_true)[in_patch & (z > 0)])
    assert surface_error < 0.003
    # Why two passes: in one, the wrong frame drags the surface towards its own depth.
    z_one, _ = (
        fuse_depth(scene, replace(config, reject_outliers=False)).raycaster().render(camera, frame.world_from_cam)
    )
    assert np.median(np.abs(z_one - z_true)[in_patch & (z_one > 0)]) > 2 * surface_error
    targets, _ = fused_frame_targets(frame, raycaster, 1.0, config)
    error = np.linalg.norm(targets.coords_HW3 - truth, axis=-1)[in_patch & targets.valid_HW]
    assert error.size > 0 and np.percentile(error, 90) < 0.005
    # With an agreement tolerance below the 5 cm, the frame's own depth disagrees there: left out.
    strict = replace(config, agree_abs=0.02, agree_rel=0.0)
    targets, counts = fused_frame_targets(frame, raycaster, 1.0, strict)
    assert targets.valid_HW[in_patch].mean() < 0.1 and counts["disagree"] > 0.8 * in_patch.sum()
    assert targets.valid_HW[~in_patch].mean() > 0.9


def test_targets_go_through_pixel_centres(tiny_twelve_scenes, tmp_path):
    """The plane at z = 2 m: every fused target on it, on the ray of its pixel centre (x + 0.5)."""
    scene = load_scene(tiny_twelve_scenes, "apt0/tiny")
    targets = ensure_targets(scene, make_teacher("fused", max_side=32), tmp_path / "runs")
    centres = pixel_centers(32, 24).reshape(-1, 2)
    for t, frame in zip(targets.frames, scene.mapping):
        assert t.camera.size == (32, 24) and t.valid_HW.mean() > 0.9
        assert np.all(t.conf_HW[t.valid_HW] == 1.0)
        np.testing.assert_allclose(t.coords_HW3[t.valid_HW][:, 2], 2.0, atol=1e-4)
        uv, _ = t.camera.project(transform_points(frame.cam_from_world, t.coords_HW3.reshape(-1, 3)))
        ok = t.valid_HW.reshape(-1)
        np.testing.assert_allclose(uv[ok], centres[ok], atol=1e-3)


def test_fused_surface_honours_the_rig(room, world, tmp_path):
    """Depth from a camera 3 cm beside and behind the colour one, fused through the registration: on the surface."""
    cam_from_depth = np.eye(4)
    cam_from_depth[:3, :3] = Rotation.from_rotvec(np.radians([0.3, -0.4, 0.2])).as_matrix()
    cam_from_depth[:3, 3] = [0.03, -0.005, 0.03]
    mapping = []
    for f in room.mapping[:10]:
        depth = world.render_depth(f.depth_camera, f.world_from_cam @ cam_from_depth)
        path = tmp_path / f"{f.name.replace('/', '_')}.depth.png"
        write_depth_png(path, np.clip(np.round(depth / f.depth_scale), 0, 65535).astype(np.uint16))
        mapping.append(replace(f, depth_path=path))
    rig = replace(room, mapping=tuple(mapping), extra={"depth_registered": False, "poses_of": "colour"})
    registered = apply_depth_registration(rig, DepthRegistration(cam_from_depth, poses_of="colour", source="test"))
    right = tuple(make_teacher("fused", reject_outliers=False).teach(registered))
    wrong = tuple(make_teacher("fused", reject_outliers=False).teach(rig))
    e_right, e_wrong = errors_mm(world, registered, right), errors_mm(world, rig, wrong)
    assert np.median(e_right) < 1.5 and np.median(e_wrong) > 10


def test_consistency_metric_prefers_fused_on_noisy_depth(room, tmp_path):
    """With one frame's depth wrong, the depth teacher's targets disagree across views; the fused ones do not."""
    scene, _ = noisy_frame_scene(room, tmp_path, 10, 0.05)
    depth = tuple(make_teacher("depth").teach(scene))
    fused = tuple(make_teacher("fused").teach(scene))
    c_depth, c_fused = multiview_consistency(scene, depth), multiview_consistency(scene, fused)
    assert c_fused["within_2"] > c_depth["within_2"]


def test_fused_teacher_settings_are_checked_and_need_depth(room):
    with pytest.raises(SlocalError, match="sdf_trunc"):
        FusedTeacherConfig(voxel_size=0.02, sdf_trunc=0.01)
    with pytest.raises(SlocalError, match="no option"):
        make_teacher("fused", voxel=0.01)
    no_depth = replace(room, mapping=tuple(replace(f, depth_path=None) for f in room.mapping))
    with pytest.raises(SlocalError, match="needs depth"):
        list(make_teacher("fused").teach(no_depth))


@pytest.mark.realdata
def test_real_fused_targets_exist_and_agree(seven_scenes_mini, tmp_path):
    """A handful of redkitchen-gap frames: fused targets label most pixels and agree across views."""
    scene = load_scene(seven_scenes_mini, "redkitchen-gap")
    sub = replace(scene, mapping=scene.mapping[:8], query=scene.query[:1])
    fused = ensure_targets(sub, make_teacher("fused"), tmp_path / "runs")
    assert fused.stats["frames"] == 8
    c = fused.stats["consistency"]
    assert c["labelled_pct"] > 70 and c["median"] < 1.0 and c["within_2"] > 90
