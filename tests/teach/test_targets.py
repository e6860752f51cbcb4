import numpy as np
import pytest

from slocal.data import load_scene
from slocal.data.synth import SynthConfig, SynthWorld, trajectory
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera, pixel_centers
from slocal.geometry.pnp import PnpConfig, solve_pnp
from slocal.geometry.pose import invert, pose_error, transform_points
from slocal.teach import ensure_targets, load_targets, make_teacher
from slocal.teach.targets import FrameTargets


class CountingTeacher:
    """Depth teacher that counts its runs and can corrupt one frame's coordinates."""

    name = "counting"

    def __init__(self, offset=0.0, max_side=32):
        self.inner = make_teacher("depth", max_side=max_side)
        self.offset = offset
        self.runs = 0

    def settings(self):
        return {"offset": self.offset, **self.inner.settings()}

    def teach(self, scene):
        self.runs += 1
        for t in self.inner.teach(scene):
            yield FrameTargets(t.name, t.camera, t.coords_HW3 + np.float32(self.offset), t.conf_HW, t.valid_HW)


def test_cache_reuse_rebuild_and_overwrite(tiny_twelve_scenes, tmp_path):
    scene = load_scene(tiny_twelve_scenes, "apt0/tiny")
    runs = tmp_path / "runs"
    teacher = CountingTeacher()
    first = ensure_targets(scene, teacher, runs)
    second = ensure_targets(scene, teacher, runs)
    assert teacher.runs == 1 and second.directory == first.directory
    np.testing.assert_array_equal(second.frames[0].coords_HW3, first.frames[0].coords_HW3)
    assert first.directory.parent == runs / "apt0/tiny/targets"
    ensure_targets(scene, teacher, runs, overwrite=True)
    assert teacher.runs == 2
    other = ensure_targets(scene, CountingTeacher(offset=0.03), runs)
    assert other.directory != first.directory
    # 3 cm off everywhere: the comparison against depth sees it.
    assert other.stats["median_error_cm"] == pytest.approx(3 * np.sqrt(3), rel=1e-3)
    assert other.stats["within_5cm"] == 0.0


def test_interrupted_cache_is_rebuilt(tiny_twelve_scenes, tmp_path):
    scene = load_scene(tiny_twelve_scenes, "apt0/tiny")
    teacher = CountingTeacher()
    ts = ensure_targets(scene, teacher, tmp_path / "runs")
    (ts.directory / "index.json").unlink()  # as if killed before the index was written
    ensure_targets(scene, teacher, tmp_path / "runs")
    assert teacher.runs == 2
    (ts.directory / "frames" / "000001.npz").unlink()
    with pytest.raises(SlocalError, match="000001.npz: target file missing"):
        load_targets(ts.directory)


def test_frame_targets_shape_check():
    from slocal.geometry import Camera

    cam = Camera(4, 3, 1, 1, 2, 1.5)
    with pytest.raises(ValueError, match="do not match"):
        FrameTargets("x", cam, np.zeros((3, 4, 3), np.float32), np.zeros((3, 4), np.float32), np.zeros((4, 3), bool))


# --------------------------------------------------------------------------- sampling at exact points


def _room_targets(size=(320, 240), focal=260.0):
    """Exact targets of one view of the procedural room: ray-cast depth at every pixel centre."""
    config = SynthConfig(color_size=size, depth_size=size, focal=focal, seed=3)
    world = SynthWorld(config)
    world_from_cam = trajectory(config, "mapping")[40]
    camera = config.color_camera
    depth_HW = world.render_depth(camera, world_from_cam)
    uv = pixel_centers(camera.width, camera.height).reshape(-1, 2)
    coords = transform_points(world_from_cam, camera.backproject(uv, depth_HW.reshape(-1))).reshape(*depth_HW.shape, 3)
    valid = np.isfinite(depth_HW) & (depth_HW > 0)
    targets = FrameTargets("view", camera, coords.astype(np.float32), valid.astype(np.float32), valid)
    return targets, camera, invert(world_from_cam), world


def test_sample_at_pixel_centres_returns_the_pixels():
    targets, camera, _, _ = _room_targets(size=(64, 48), focal=52.0)
    uv = pixel_centers(camera.width, camera.height).reshape(-1, 2)
    coords, conf, valid = targets.sample(uv)
    assert valid.all()
    np.testing.assert_array_equal(coords, targets.coords_HW3.reshape(-1, 3))
    np.testing.assert_array_equal(conf, 1.0)


def test_sample_skips_invalid_neighbours_and_keeps_edges_sharp():
    coords = np.zeros((2, 2, 3), np.float32)
    coords[:, 1, 2] = 5.0  # right column 5 m behind the left one: a depth edge
    valid = np.ones((2, 2), bool)
    valid[0, 0] = False
    t = FrameTargets("edge", Camera(2, 2, 2.0, 2.0, 1.0, 1.0), coords, np.ones((2, 2), np.float32), valid)
    # Between all four pixel centres: three valid neighbours, straddling the edge -> the heaviest one, not a blend.
    out, _, ok = t.sample(np.array([[0.9, 1.0]]))
    assert ok[0] and out[0, 2] in (0.0, 5.0)
    # The same with the camera centre known: 5 m behind vs 1 m away is a relative jump too.
    out, _, ok = t.sample(np.array([[0.9, 1.0]]), origin_3=np.array([0.0, 0.0, -1.0]))
    assert ok[0] and out[0, 2] in (0.0, 5.0)
    # A plane seen obliquely is no edge: neighbours 2 % apart in depth blend.
    plane = np.zeros((2, 2, 3), np.float32)
    plane[:, :, 0] = [[0.0, 0.1], [0.0, 0.1]]
    plane[:, :, 2] = [[2.0, 2.04], [2.0, 2.04]]
    tp = FrameTargets(
        "plane", Camera(2, 2, 2.0, 2.0, 1.0, 1.0), plane, np.ones((2, 2), np.float32), np.ones((2, 2), bool)
    )
    out, _, ok = tp.sample(np.array([[1.0, 1.0]]), origin_3=np.zeros(3))
    np.testing.assert_allclose(out[0], [0.05, 0.0, 2.02], atol=1e-6)
    # Outside the grid: nothing.
    _, _, ok = t.sample(np.array([[-3.0, 0.5]]))
    assert not ok[0]


def test_exact_cell_targets_give_an_unbiased_pose():
    """A perfect student (targets from the ground truth at the cell centres) recovers the pose exactly.

    Sampling the target pixel a cell centre falls in (``floor``) shifts every
    target by half a pixel; that alone biases the pose by about 0.1 degrees.
    """
    targets, camera, cam_from_world, _ = _room_targets()
    uv = pixel_centers(camera.width, camera.height, 8).reshape(-1, 2)
    config = PnpConfig(threshold_px=1.0)

    coords, _, valid = targets.sample(uv, origin_3=invert(cam_from_world)[:3, 3])
    result = solve_pnp(uv[valid], coords[valid], camera, config)
    dt, dr = pose_error(result.cam_from_world, cam_from_world)
    assert dt < 1e-4 and dr < 0.01

    cols, rows = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    shifted = targets.coords_HW3[rows, cols]
    ok = targets.valid_HW[rows, cols]
    result = solve_pnp(uv[ok], shifted[ok], camera, PnpConfig(threshold_px=4.0))
    _, dr_floor = pose_error(result.cam_from_world, cam_from_world)
    assert dr_floor > 5 * dr and dr_floor > 0.02
