"""The colour-depth rig estimate on the procedural room: identity when registered, an injected offset recovered."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from slocal.data import load_scene
from slocal.data.rig import DepthRegistration, apply_depth_registration
from slocal.data.synth import SynthConfig, render_scene
from slocal.data.synth.world import SynthWorld
from slocal.errors import SlocalError
from slocal.geometry.pose import pose_error
from slocal.io import write_depth_png
from slocal.teach.rig import ensure_depth_registration, estimate_depth_registration, registered_scene

CONFIG = SynthConfig(mapping_frames=24, query_frames=3, seed=5)
# A Kinect-like rig: the depth camera 2.5 cm to the side, a little up and back, turned 0.6 degrees.
CAM_FROM_DEPTH = np.eye(4)
CAM_FROM_DEPTH[:3, :3] = Rotation.from_rotvec(np.radians([0.2, -0.5, 0.3])).as_matrix()
CAM_FROM_DEPTH[:3, 3] = [0.025, -0.004, 0.006]


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    root = tmp_path_factory.mktemp("rig")
    render_scene(root / "room", CONFIG)
    return root, load_scene(root, "room")


def offset_rig_scene(scene, folder, poses_of: str):
    """The room as a rig whose depth camera sits at ``CAM_FROM_DEPTH``: depth re-rendered from there.

    ``poses_of="depth"`` stores the depth camera's poses, as 7-Scenes does.
    """
    world = SynthWorld(CONFIG)
    folder.mkdir(parents=True, exist_ok=True)

    def convert(frames):
        out = []
        for f in frames:
            world_from_depth = f.world_from_cam @ CAM_FROM_DEPTH
            depth = world.render_depth(f.depth_camera, world_from_depth)
            path = folder / f"{f.name.replace('/', '_')}.depth.png"
            write_depth_png(path, np.clip(np.round(depth / f.depth_scale), 0, 65535).astype(np.uint16))
            pose = world_from_depth if poses_of == "depth" else f.world_from_cam
            out.append(replace(f, depth_path=path, world_from_cam=pose))
        return tuple(out)

    extra = {"depth_registered": False, "poses_of": poses_of}
    return replace(scene, mapping=convert(scene.mapping), query=convert(scene.query), extra=extra)


def rig_error(reg: DepthRegistration, truth: np.ndarray) -> tuple[float, float]:
    """(mm, deg) between an estimated ``cam_from_depth`` and the truth."""
    t_m, r_deg = pose_error(reg.cam_from_depth, truth)
    return t_m * 1000, r_deg


@pytest.fixture(scope="module")
def depth_pose_rig(room, tmp_path_factory):
    """The room as a 7-Scenes-like rig (depth camera's poses stored), its rig estimated once, cached."""
    _, scene = room
    rig = offset_rig_scene(scene, tmp_path_factory.mktemp("rig-depth"), "depth")
    runs = tmp_path_factory.mktemp("runs")
    return rig, runs, ensure_depth_registration(rig, runs)


@pytest.mark.slow
def test_registered_room_comes_out_at_identity(room):
    _, scene = room
    reg = estimate_depth_registration(replace(scene, extra={"depth_registered": False, "poses_of": "colour"}))
    mm, deg = rig_error(reg, np.eye(4))
    assert mm < 2.0 and deg < 0.1
    assert abs(reg.depth_scale - 1.0) < 2e-3
    assert reg.stats["after"]["median_px"] < 0.3


@pytest.mark.slow
def test_injected_offset_is_recovered(room, depth_pose_rig):
    _, scene = room
    rig, _, reg = depth_pose_rig
    mm, deg = rig_error(reg, CAM_FROM_DEPTH)
    assert mm < 2.0 and deg < 0.1, (reg.translation_cm, reg.rotation_deg)
    assert abs(reg.depth_scale - 1.0) < 2e-3
    assert reg.stats["after"]["median_px"] < min(0.3, reg.stats["before"]["median_px"])
    # One solve per start scale on a subset of the pairs; the refined one is the cheapest start's.
    starts = reg.stats["starts"]
    assert [s["start_scale"] for s in starts] == [0.9, 1.0, 1.1]
    assert all(np.isfinite(s["cost"]) and s["cost"] >= 0 for s in starts)

    registered = apply_depth_registration(rig, reg)
    assert registered.extra["poses_of"] == "colour"
    # The stored depth-camera poses become the colour camera's, queries included.
    for f_reg, f_true in zip(registered.query, scene.query):
        t_m, r_deg = pose_error(f_reg.cam_from_world, f_true.cam_from_world)
        assert t_m < 2e-3 and r_deg < 0.1
    # Depth rendered through the rig into the colour camera matches the colour camera's own depth.
    f_true = scene.mapping[0]
    z_true = f_true.depth_at(f_true.camera)
    z_rig = registered.mapping[0].depth_at(f_true.camera)
    both = (z_true > 0) & (z_rig > 0)
    assert both.mean() > 0.8
    assert np.median(np.abs(z_true[both] - z_rig[both])) < 0.005


@pytest.mark.slow
def test_the_estimate_is_cached_and_applied(depth_pose_rig):
    rig, runs, first = depth_pose_rig
    cached = list((runs / rig.id / "rig").glob("depth-*.json"))
    assert len(cached) == 1
    again = ensure_depth_registration(rig, runs)
    np.testing.assert_array_equal(first.cam_from_depth, again.cam_from_depth)
    out = registered_scene(rig, runs)
    assert out.extra["depth_registration"]["source"] == "estimated"
    assert all(f.cam_from_depth is not None for f in out.mapping)


def test_apply_refuses_the_wrong_pose_convention(room):
    _, scene = room
    reg = DepthRegistration(CAM_FROM_DEPTH, 1.0, "depth")
    with pytest.raises(SlocalError, match="poses of the depth camera"):
        apply_depth_registration(scene, reg)
    with pytest.raises(SlocalError, match="not a rigid transform"):
        DepthRegistration(np.diag([1.0, 1.0, 2.0, 1.0]))


def test_registered_scene_modes(room, tmp_path):
    root, scene = room
    # The room's depth is registered: auto leaves it alone and estimates nothing.
    assert registered_scene(scene, tmp_path / "runs") is scene
    assert not (tmp_path / "runs").exists()
    with pytest.raises(SlocalError, match="unknown depth registration mode"):
        registered_scene(scene, tmp_path / "runs", mode="sometimes")


def test_another_rig_changes_the_fingerprint_that_keys_the_teachers_cache(room):
    # With the colour camera's poses a rig moves no pose: only the depth geometry tells two rigs apart, and
    # targets cached under a fingerprint that ignored it were reused after the rig was estimated anew.
    _, scene = room
    colour = replace(scene, extra={"depth_registered": False, "poses_of": "colour"})
    a = apply_depth_registration(colour, DepthRegistration(CAM_FROM_DEPTH, 1.0, "colour"))
    b = apply_depth_registration(colour, DepthRegistration(CAM_FROM_DEPTH, 0.98, "colour"))
    moved = CAM_FROM_DEPTH.copy()
    moved[2, 3] += 0.01
    c = apply_depth_registration(colour, DepthRegistration(moved, 1.0, "colour"))
    assert [f.world_from_cam.tolist() for f in a.mapping] == [f.world_from_cam.tolist() for f in colour.mapping]
    assert len({colour.fingerprint, a.fingerprint, b.fingerprint, c.fingerprint}) == 4
    assert (
        a.fingerprint == apply_depth_registration(colour, DepthRegistration(CAM_FROM_DEPTH, 1.0, "colour")).fingerprint
    )


def test_a_given_rig_is_applied_and_nothing_is_estimated(room, tmp_path):
    _, scene = room
    rig = offset_rig_scene(scene, tmp_path / "depth", "depth")
    given = DepthRegistration(CAM_FROM_DEPTH, 1.0, "depth", "file rig.json")
    runs = tmp_path / "runs"
    out = registered_scene(rig, runs, given)
    assert not runs.exists()  # no estimate, no cache
    assert out.extra["depth_registration"]["source"] == "file rig.json"
    assert out.fingerprint == apply_depth_registration(rig, given).fingerprint
    # The depth camera's poses become the colour camera's: the room's own poses.
    for f_reg, f_true in zip(out.query, scene.query):
        t_m, r_deg = pose_error(f_reg.cam_from_world, f_true.cam_from_world)
        assert t_m < 1e-9 and r_deg < 1e-4
    # Giving the same rig again is a no-op; another one, or a rig for a scene without depth, is refused.
    assert registered_scene(out, runs, DepthRegistration(CAM_FROM_DEPTH, 1.0, "depth")) is out
    with pytest.raises(SlocalError, match="already went through another colour-depth rig"):
        registered_scene(out, runs, DepthRegistration(CAM_FROM_DEPTH, 0.98, "depth"))
    no_depth = replace(rig, mapping=tuple(replace(f, depth_path=None) for f in rig.mapping))
    with pytest.raises(SlocalError, match="no rig to apply"):
        registered_scene(no_depth, runs, given)
