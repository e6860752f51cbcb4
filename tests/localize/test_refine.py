"""Flow refinement: a perturbed pose comes back to the truth through the nearest keyframe's targets."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from helpers.student_standin import OracleStudent, random_pose
from slocal.data import load_scene
from slocal.data.synth import SynthConfig, render_scene
from slocal.errors import SlocalError
from slocal.geometry import Camera, invert, pose_error, to_homogeneous
from slocal.io import read_image
from slocal.localize.localizer import Localizer
from slocal.localize.refine import FlowRefineConfig, FlowRefiner, Keyframe, Refinement, keyframe, student_refiner
from slocal.teach.depth import DepthTeacher
from slocal.teach.frame_targets import FrameTargets
from slocal.teach.targets import TargetSet


@pytest.fixture(scope="module")
def room_keyframes(tmp_path_factory):
    """The procedural room (12 mapping frames, 3 queries), its keyframes from exact depth targets."""
    root = tmp_path_factory.mktemp("refine_room")
    render_scene(root / "room", SynthConfig(mapping_frames=12, query_frames=3, seed=4))
    scene = load_scene(root, "room")
    config = FlowRefineConfig()
    frames = {f.name: f for f in scene.mapping}
    keyframes = [
        keyframe(frames[t.name], read_image(frames[t.name].image_path), t, config) for t in DepthTeacher().teach(scene)
    ]
    return scene, keyframes


def perturbed(cam_from_world: np.ndarray, metres: float, degrees: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=3)
    direction = rng.normal(size=3)
    R = Rotation.from_rotvec(np.radians(degrees) * axis / np.linalg.norm(axis)).as_matrix()
    world_from_cam = invert(cam_from_world)
    world_from_cam[:3, 3] += metres * direction / np.linalg.norm(direction)
    world_from_cam[:3, :3] = world_from_cam[:3, :3] @ R
    return invert(world_from_cam)


def test_a_perturbed_pose_is_pulled_back_to_the_true_one(room_keyframes):
    scene, keyframes = room_keyframes
    refiner = FlowRefiner(keyframes)
    for i, query in enumerate(scene.query):
        start = perturbed(query.cam_from_world, 0.03, 1.0, seed=i)
        t0, r0 = pose_error(start, query.cam_from_world)
        assert t0 == pytest.approx(0.03) and r0 == pytest.approx(1.0, abs=1e-6)
        result = refiner.refine(read_image(query.image_path), query.camera, start)
        assert result.success and result.num_inliers >= 200, result
        assert len(result.keyframes) == 1
        t, r = pose_error(result.cam_from_world, query.cam_from_world)
        assert t < 0.005 and r < 0.2, (query.name, t, r)


def test_the_nearest_keyframe_in_the_viewing_direction_is_chosen():
    def frame(name: str, x: float, yaw_deg: float) -> Keyframe:
        R = Rotation.from_euler("y", yaw_deg, degrees=True).as_matrix()
        cam_from_world = invert(to_homogeneous(R, np.array([x, 0.0, 0.0])))
        return Keyframe(
            name,
            cam_from_world,
            Camera(32, 24, 30, 30, 16, 12),
            np.zeros((24, 32), np.uint8),
            np.zeros((4, 2)),
            np.zeros((4, 3)),
        )

    keyframes = [
        frame("far", 1.0, 0.0),
        frame("near-turned", 0.1, 90.0),
        frame("near", 0.3, 10.0),
        frame("mid", 0.6, -5.0),
    ]
    pose = invert(to_homogeneous(np.eye(3), np.zeros(3)))
    refiner = FlowRefiner(keyframes, FlowRefineConfig(keyframes=2, max_view_angle_deg=30.0))
    assert [k.name for k in refiner.nearest(pose)] == ["near", "mid"]
    refiner = FlowRefiner(keyframes, FlowRefineConfig(keyframes=3, max_view_angle_deg=120.0))
    assert [k.name for k in refiner.nearest(pose)] == ["near-turned", "near", "mid"]


def test_no_keyframe_in_view_leaves_the_pose_unrefined(room_keyframes):
    scene, keyframes = room_keyframes
    query = scene.query[0]
    turned = to_homogeneous(Rotation.from_euler("x", 180, degrees=True).as_matrix(), np.zeros(3)) @ query.cam_from_world
    result = FlowRefiner(keyframes).refine(read_image(query.image_path), query.camera, turned)
    assert not result.success and result.cam_from_world is None and result.keyframes == ()


class FixedRefiner:
    def __init__(self, refinement: Refinement):
        self.refinement = refinement
        self.calls = 0

    def refine(self, rgb_HW3, camera, cam_from_world):
        self.calls += 1
        return self.refinement


@pytest.mark.parametrize("succeeds", [True, False])
def test_the_localizer_takes_a_refined_pose_only_when_the_refinement_succeeds(succeeds):
    student = OracleStudent()
    student.cam_from_world = random_pose(3)
    camera = Camera(160, 120, 140.0, 140.0, 80.0, 60.0)
    elsewhere = random_pose(4)
    refiner = FixedRefiner(Refinement(elsewhere if succeeds else None, succeeds, 500, 400 if succeeds else 3, ("k",)))
    loc = Localizer(student, refiner=refiner).localize(np.zeros((120, 160, 3), np.uint8), camera)
    assert loc.success and refiner.calls == 1 and "refine" in loc.ms
    assert loc.refined is succeeds
    expected = elsewhere if succeeds else student.cam_from_world
    t, r = pose_error(loc.cam_from_world, expected)
    assert t < 1e-6 and r < 1e-4


def test_a_student_without_its_teacher_cannot_be_refined(room_keyframes):
    scene, _ = room_keyframes
    with pytest.raises(SlocalError, match="needs the student's model.pt"):
        student_refiner(scene, OracleStudent(), "/nonexistent")


def test_frames_without_targets_are_refused_naming_the_targets(room_keyframes, tmp_path):
    scene, _ = room_keyframes
    frame = scene.mapping[0]
    camera = frame.camera.scaled(16, 12)
    empty = FrameTargets(
        frame.name,
        camera,
        np.full((12, 16, 3), np.nan, np.float32),
        np.zeros((12, 16), np.float32),
        np.zeros((12, 16), bool),
    )
    targets = TargetSet("depth", {}, tmp_path / "targets", (empty,), {})
    with pytest.raises(SlocalError, match="none of the 12 frames has depth targets") as info:
        FlowRefiner.from_targets(scene.mapping, targets)
    assert str(tmp_path / "targets") in str(info.value)
