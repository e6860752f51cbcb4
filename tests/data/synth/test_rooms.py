"""The second room layout: another room (size, floor plan, furniture, lights, textures), not the demo room reseeded."""

import numpy as np
import pytest

from slocal.data.synth import ROOMS, SynthConfig, SynthWorld, render_scene, trajectory
from slocal.data.synth.config import CAMERA_CLEARANCE, FURNITURE_BAND
from slocal.errors import SlocalError
from slocal.io import read_image

SMALL = dict(
    mapping_frames=6, query_frames=2, color_size=(128, 96), depth_size=(64, 48), focal=104.0, texels_per_metre=60.0
)


def test_room_defaults_come_from_the_layout():
    demo = SynthConfig()
    assert demo.room == 1 and demo.room_size == (5.5, 4.5, 2.6) and demo.num_boxes == 8
    living = SynthConfig(room=2)
    assert living.room_size == ROOMS[2].size == (7.2, 4.0, 2.9) and living.num_boxes == 12
    # An explicit size or count still wins over the layout's.
    assert SynthConfig(room=2, room_size=(6, 5, 3), num_boxes=3).room_size == (6.0, 5.0, 3.0)
    assert SynthConfig(room=2, num_boxes=3).num_boxes == 3
    with pytest.raises(SlocalError, match="unknown room layout 7"):
        SynthConfig(room=7)


def test_room_streams_keep_the_demo_room_seeds():
    # Room 1 draws from [seed, stream] exactly as before rooms existed (the demo's files stay bit-identical).
    a = SynthConfig(seed=3).rng(4, 10).random(4)
    np.testing.assert_array_equal(a, np.random.default_rng([3, 4, 10]).random(4))
    b = SynthConfig(seed=3, room=2).rng(4, 10).random(4)
    assert not np.allclose(a, b)


def test_second_room_has_pillars_more_boxes_and_three_lights():
    demo, living = (
        SynthWorld(SynthConfig(texels_per_metre=20.0)),
        SynthWorld(SynthConfig(room=2, texels_per_metre=20.0)),
    )
    assert [s.kind for s in demo.solids[1:]] == ["box"] * 8 and len(demo.lights_L3) == 2
    kinds = [s.kind for s in living.solids[1:]]
    assert kinds == ["wall", "wall"] + ["box"] * 12 and len(living.lights_L3) == 3
    W, D, H = living.config.room_size
    for pillar in living.solids[1:3]:
        z0, z1 = pillar.center_3[2] - pillar.half_3[2], pillar.center_3[2] + pillar.half_3[2]
        assert z0 == pytest.approx(0.0) and z1 == pytest.approx(H)
        # Flush against a wall and no deeper than the band the cameras never enter.
        corners = np.array([[sx, sy] for sx in (-1, 1) for sy in (-1, 1)]) * pillar.half_3[:2]
        xy = corners @ pillar.R_33[:2, :2].T + pillar.center_3[:2]
        gaps = np.array([xy[:, 0].min(), W - xy[:, 0].max(), xy[:, 1].min(), D - xy[:, 1].max()])
        assert gaps.min() == pytest.approx(0.0, abs=1e-9) and 2 * pillar.half_3[1] <= FURNITURE_BAND
    # Every camera of both trajectories keeps clear of the furniture band (so of the pillars too).
    margin = FURNITURE_BAND + CAMERA_CLEARANCE * 0.5
    for split in ("mapping", "query"):
        for pose in trajectory(living.config, split):
            x, y, _ = pose[:3, 3]
            assert min(x, W - x, y, D - y) > margin


def test_a_camera_ray_at_a_pillar_hits_the_pillar_not_the_wall_behind_it():
    world = SynthWorld(SynthConfig(room=2, texels_per_metre=20.0))
    pillar = world.solids[1]
    W, D, H = world.config.room_size
    origin = np.array([[pillar.center_3[0], D / 2, 1.2]])
    towards = np.array([[0.0, np.sign(pillar.center_3[1] - D / 2), 0.0]])
    t, face = world.cast(origin, towards)
    assert world.faces[int(face[0])].solid == 1
    # The pillar's front face, not the wall: the hit is its depth short of the wall.
    assert t[0] == pytest.approx(abs(pillar.center_3[1] - D / 2) - pillar.half_3[1], abs=1e-9)


def test_two_rooms_render_differently_with_the_same_seed(tmp_path):
    one = render_scene(tmp_path / "home" / "kitchen", SynthConfig(**SMALL))
    two = render_scene(tmp_path / "home" / "living", SynthConfig(**SMALL, room=2))
    assert (one.mapping, one.query) == (two.mapping, two.query) == (6, 2)
    for a, b in zip(one.scene.mapping, two.scene.mapping):
        rgb_a, rgb_b = read_image(a.image_path).astype(int), read_image(b.image_path).astype(int)
        assert np.abs(rgb_a - rgb_b).mean() > 20
        depth = b.read_depth()
        assert depth.min() > 0.3 and depth.max() < 9.0
    # The trajectories differ too: the rooms have other shapes.
    centres_a = np.array([f.world_from_cam[:3, 3] for f in one.scene.mapping])
    centres_b = np.array([f.world_from_cam[:3, 3] for f in two.scene.mapping])
    assert np.ptp(centres_b[:, 0]) > np.ptp(centres_a[:, 0]) + 0.5
