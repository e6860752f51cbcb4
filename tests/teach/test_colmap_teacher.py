import numpy as np
import pycolmap
import pytest

from helpers.colmap_room import OPENCV_DISTORTION, write_room_colmap
from slocal.data import load_scene
from slocal.data.synth import SynthConfig, SynthWorld
from slocal.errors import SlocalError
from slocal.geometry.pose import transform_points
from slocal.teach import default_teacher, ensure_targets, make_teacher
from slocal.teach.colmap_teacher import ColmapTeacherConfig, mapping_observations


@pytest.fixture(scope="module", params=[None, OPENCV_DISTORTION], ids=["pinhole-sizes", "opencv"])
def room(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("colmap")
    written = write_room_colmap(root / "data" / "room", n_mapping=6, n_query=2, distortion=request.param)
    scene = load_scene(root / "data", "room", runs_root=root / "runs")
    return written, scene, root


def test_targets_lie_on_the_room_surfaces_and_in_their_cells(room):
    written, scene, root = room
    assert default_teacher(scene) == "colmap"
    targets = ensure_targets(scene, make_teacher("colmap", snap_to_cell_center=False), root / "runs")
    assert targets.stats["frames"] >= len(scene.mapping) - 1 and targets.stats["points"] > 100
    world = SynthWorld(SynthConfig(mapping_frames=6, query_frames=2, texels_per_metre=100.0))
    frames = {f.name: f for f in scene.mapping}
    for t in targets.frames:
        frame = frames[t.name]
        rows, cols = np.nonzero(t.valid_HW)
        xyz = t.coords_HW3[rows, cols].astype(np.float64)
        # In its cell: the keypoint was mapped into the undistorted image correctly.
        uv, _ = t.camera.project(transform_points(frame.cam_from_world, xyz))
        assert np.all(np.abs(uv[:, 0] - (cols + 0.5)) <= 1.5) and np.all(np.abs(uv[:, 1] - (rows + 0.5)) <= 1.5)
        # On the surface: the rendered depth at that pixel, in metres, matches.
        depth_m = world.render_depth(t.camera, written.world_from_cam[t.name])[rows, cols]
        z_m = transform_points(frame.cam_from_world, xyz)[:, 2] * written.metres_per_unit
        assert np.median(np.abs(z_m - depth_m) / depth_m) < 0.02
        assert np.all(t.conf_HW[t.valid_HW] > 0)


def test_queries_never_give_targets_or_track_length(room):
    written, scene, _ = room
    obs = mapping_observations(scene, ColmapTeacherConfig())
    assert set(obs) <= {f.name for f in scene.mapping}
    rec = pycolmap.Reconstruction(scene.extra["model_dir"])
    mapping_ids = {scene.extra["image_ids"][f.name] for f in scene.mapping}
    for o in obs.values():
        for pid, length in zip(o.point3D_id, o.track_length):
            images = {e.image_id for e in rec.points3D[int(pid)].track.elements}
            assert length == len(images & mapping_ids) >= 2


def test_refuses_scenes_without_a_model(tiny_twelve_scenes):
    scene = load_scene(tiny_twelve_scenes, "apt0/tiny")
    with pytest.raises(SlocalError, match="colmap teacher needs a COLMAP scene"):
        list(make_teacher("colmap").teach(scene))
