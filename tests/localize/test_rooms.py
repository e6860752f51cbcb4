"""Localizing in a home of rooms: the room by inliers, one encoder pass per query, rooms ranked first."""

import shutil

import numpy as np
import pytest

from helpers.rooms_home import HOME, ROOMS
from helpers.student_standin import OracleStudent
from slocal.data import load_scene
from slocal.errors import SlocalError
from slocal.geometry.pnp import DENSE_PNP, PnpConfig
from slocal.io import read_image
from slocal.localize.localizer import Localizer
from slocal.localize.rooms import CHECK_POINTS, RoomHead, RoomLocalizer, home_rooms, load_rooms, rooms_in_runs


@pytest.fixture(scope="module")
def home(tiny_home):
    data, runs = tiny_home
    scenes = {room: load_scene(data, room) for room in ROOMS}
    return data, runs, scenes, load_rooms(home_rooms(data, runs, HOME))


pytestmark = pytest.mark.slow  # the tiny home's students: about 20 s to distill on 2 idle cores, once per session


def _queries(scenes, split="query"):
    """(room, rgb, camera) of each room's query frames, or of every 8th mapping frame (``split="mapping"``)."""
    frames = {room: scene.query if split == "query" else scene.mapping[::8] for room, scene in scenes.items()}
    return [(room, read_image(f.image_path), f.camera) for room, fs in frames.items() for f in fs]


def test_each_query_is_placed_in_its_room_with_one_encoder_pass(home):
    data, runs, scenes, localizer = home
    assert localizer.rooms == list(ROOMS) and len(localizer.encoders) == 1
    encoder = next(iter(localizer.encoders.values()))
    queries = _queries(scenes)
    single = {room: Localizer(model) for room, model in localizer.models.items()}
    calls = encoder.calls
    for room, rgb, camera in queries:
        loc = localizer.localize(rgb, camera)
        assert loc.room == room and loc.success, (room, loc.room_inliers)
        # The pose is the full RANSAC in the chosen room: what that room's own localizer gives (its
        # coordinates from the fused session rather than encoder + head sessions: equal to ~1e-3).
        one = single[room].localize(rgb, camera)
        np.testing.assert_allclose(loc.cam_from_world, one.cam_from_world, atol=1e-2)
        assert abs(loc.num_inliers - one.num_inliers) <= 0.02 * one.num_inliers
        assert max(loc.room_inliers.values()) <= CHECK_POINTS
        # Both rooms were checked; the right one has clearly more inliers (about twice, for these tiny students).
        assert set(loc.room_inliers) == set(ROOMS) and loc.room_ratio >= 1.4, loc.room_inliers
        assert loc.room_ratio == pytest.approx(loc.room_inliers[room] / max(min(loc.room_inliers.values()), 1))
        assert loc.ms["network"] == pytest.approx(loc.ms["encoder"] + loc.ms["heads"])
        assert loc.ms["total"] >= loc.ms["network"] + loc.ms["ransac"]
    assert encoder.calls - calls == len(queries)  # one encoder pass per query, not one per room


def test_a_room_head_on_shared_features_predicts_what_the_whole_student_does(home):
    data, runs, scenes, localizer = home
    encoder = next(iter(localizer.encoders.values()))
    frame = scenes["home/living"].query[0]
    rgb = read_image(frame.image_path)
    feat, net_camera = encoder(rgb, frame.camera)
    for student in localizer.models.values():
        head = RoomHead(student)
        assert head._ort is not None  # on CPU the head runs through onnxruntime, as the whole student does
        shared = head(feat, net_camera)
        whole = student.predict(rgb, frame.camera)
        assert shared.camera == whole.camera and shared.coords_hw3.shape == whole.coords_hw3.shape
        np.testing.assert_allclose(shared.coords_hw3, whole.coords_hw3, atol=2e-3, rtol=1e-4)
        # The room check runs an ace head on some cells only: the same coordinates there.
        assert head.per_cell
        idx = np.array([0, 5, 17, whole.coords_hw3.shape[0] * whole.coords_hw3.shape[1] - 1])
        some = whole.coords_hw3.reshape(-1, 3)[idx]
        np.testing.assert_allclose(head.cells(feat, idx), some, atol=2e-3, rtol=1e-4)
        # The rest of the grid around them: the whole prediction again.
        rest = head.rest(feat, net_camera, idx, head.cells(feat, idx))
        assert rest.camera == whole.camera and rest.stride == whole.stride
        np.testing.assert_allclose(rest.coords_hw3, whole.coords_hw3, atol=2e-3, rtol=1e-4)
        # And through torch (the path off CPU): the same coordinates.
        head._ort = None
        np.testing.assert_allclose(head(feat, net_camera).coords_hw3, whole.coords_hw3, atol=2e-3, rtol=1e-4)
        np.testing.assert_allclose(head.cells(feat, idx), some, atol=2e-3, rtol=1e-4)


def test_ranked_rooms_check_only_the_likeliest_unless_unsure(home, monkeypatch):
    """With more rooms than candidates, rooms are ranked by descriptor and only the top ones checked."""
    data, runs, scenes, two_rooms = home
    # A third room with the kitchen's student but another look: its descriptor is far from any query's.
    models = {**two_rooms.models, "home/attic": two_rooms.models["home/kitchen"]}
    localizer = RoomLocalizer(models, candidates=2)
    localizer.describe_from_scenes(scenes, frames=8)
    channels = next(iter(localizer.descriptors.values())).shape[1]
    localizer.descriptors["home/attic"] = -np.ones((1, channels), np.float32) / np.sqrt(channels)
    heads, full = [], []
    real_cells, real_head = RoomHead.cells, RoomHead.__call__
    monkeypatch.setattr(RoomHead, "cells", lambda self, *a: heads.append(self.student) or real_cells(self, *a))
    monkeypatch.setattr(RoomHead, "__call__", lambda self, *a: full.append(self.student) or real_head(self, *a))
    encoder = next(iter(localizer.encoders.values()))
    assert encoder.calls == 2 * 8  # the descriptors: 8 mapping images of each described room
    # Mapping images: the rooms' students know them well, so the first two checks are sure.
    queries = _queries(scenes, "mapping")
    for room, rgb, camera in queries:
        heads.clear(), full.clear()
        loc = localizer.localize(rgb, camera)
        assert loc.room == room and set(loc.room_inliers) == set(ROOMS), loc.room_inliers
        # The two checked rooms' heads on the check's cells (here the whole 16 x 12 grid: nothing is
        # left for the chosen room's head to run on); the attic's head never ran, no head on the grid.
        assert len(heads) == 2 and loc.room_ratio >= localizer.sure_ratio and full == []
    assert encoder.calls == 2 * 8 + len(queries)
    # Unsure (a ratio no check reaches): every room is checked, the right one still wins.
    localizer.sure_ratio = 1e6
    room, rgb, camera = queries[0]
    loc = localizer.localize(rgb, camera)
    assert loc.room == room and set(loc.room_inliers) == {*ROOMS, "home/attic"}


def test_missing_student_names_the_room_and_the_distill_command(tiny_home, tmp_path):
    data, runs = tiny_home
    partial = tmp_path / "runs"
    shutil.copytree(runs / "home" / "kitchen", partial / "home" / "kitchen")
    with pytest.raises(SlocalError) as info:
        home_rooms(data, partial, HOME)
    text = str(info.value)
    assert "1 of the 2 rooms of home have no ace student" in text and "\n" not in text
    assert "room home/living: run `slocal distill --scene home/living --student ace`" in text
    # Without the data root's folder, the rooms are those with a student under the runs folder.
    assert rooms_in_runs(partial, HOME) == ["home/kitchen"]
    assert [r.scene_id for r in home_rooms(tmp_path / "nodata", runs, HOME)] == list(ROOMS)
    assert home_rooms(data, runs, "home/kitchen") == []  # a scene, not a home


def test_each_room_is_solved_at_its_students_threshold():
    class Precise(OracleStudent):
        ransac_threshold_px = 20.0

    rooms = RoomLocalizer({"home/a": Precise(scene_id="home/a"), "home/b": OracleStudent(scene_id="home/b")})
    assert rooms.pnp_for("home/a").threshold_px == 20.0
    assert rooms.pnp_for("home/b") is DENSE_PNP
    overridden = RoomLocalizer({"home/a": Precise(scene_id="home/a")}, ransac_points=0, ransac_threshold_px=12.0)
    assert (overridden.pnp_for("home/a").threshold_px, overridden.pnp_for("home/a").ransac_points) == (12.0, None)
    fixed = PnpConfig(threshold_px=8.0)
    assert RoomLocalizer({"home/a": Precise(scene_id="home/a")}, pnp_config=fixed).pnp_for("home/a") is fixed
