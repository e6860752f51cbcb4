import numpy as np
import pycolmap
import pytest
from scipy.spatial.transform import Rotation

from helpers.colmap_room import write_room_colmap
from slocal.capture.scale import fit_similarity, fit_similarity_with_offset, scale_from_depth, scale_from_distance
from slocal.data.scene import Frame
from slocal.data.synth import SynthConfig, SynthWorld
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera
from slocal.geometry.pose import to_homogeneous
from slocal.io import write_depth_png


def test_scale_from_a_measured_distance():
    assert scale_from_distance(np.array([1.0, 0, 0]), np.array([1.0, 2.0, 0]), 0.5) == pytest.approx(0.25)
    with pytest.raises(SlocalError, match="coincide"):
        scale_from_distance(np.zeros(3), np.zeros(3), 1.0)
    with pytest.raises(SlocalError, match="positive"):
        scale_from_distance(np.zeros(3), np.ones(3), -1.0)


def _model_of(world_from_cam, offset_3, scale, R_33, t_3):
    """Model-frame centres of cameras at T_i + R_i o, for a model with metric = scale * R @ model + t."""
    metric = np.array([T[:3, 3] + T[:3, :3] @ offset_3 for T in world_from_cam])
    return (metric - t_3) @ R_33 / scale


def test_fit_similarity_recovers_scale_and_with_offset_the_offset():
    rng = np.random.default_rng(0)
    rot = Rotation.from_rotvec(rng.normal(0, 0.6, (40, 3))).as_matrix()
    poses = np.array([to_homogeneous(R, rng.uniform(-1, 1, 3)) for R in rot])
    R_s, t_s, s = Rotation.from_rotvec([0.3, -0.2, 1.0]).as_matrix(), np.array([0.5, -1.0, 2.0]), 0.17
    offset = np.array([0.025, -0.01, 0.004])
    centres = _model_of(poses, offset, s, R_s, t_s)

    fit = fit_similarity_with_offset(centres, poses)
    assert fit.scale == pytest.approx(s, rel=1e-6)
    np.testing.assert_allclose(fit.offset_3, offset, atol=1e-7)
    np.testing.assert_allclose(fit.R_33, R_s, atol=1e-7)
    # Without the offset the fit is close but not exact.
    plain = fit_similarity(centres, poses[:, :3, 3])
    assert np.median(np.linalg.norm(plain.apply(centres) - poses[:, :3, 3], axis=1)) > 0.005
    # With no offset both agree.
    centres0 = _model_of(poses, np.zeros(3), s, R_s, t_s)
    assert fit_similarity(centres0, poses[:, :3, 3]).scale == pytest.approx(s, rel=1e-9)
    np.testing.assert_allclose(fit_similarity_with_offset(centres0, poses).offset_3, 0.0, atol=1e-8)


def test_fit_similarity_needs_three_centres():
    with pytest.raises(SlocalError, match="at least 3"):
        fit_similarity(np.zeros((2, 3)), np.zeros((2, 3)))


def test_scale_from_depth_recovers_the_model_scale(tmp_path):
    # A COLMAP model of the room in its own units (0.5 m per unit) and a depth image for each mapping image.
    room = write_room_colmap(tmp_path / "room", n_mapping=4, n_query=1, metres_per_unit=0.5)
    rec = pycolmap.Reconstruction(str(room.root / "sparse" / "0"))
    world = SynthWorld(SynthConfig(mapping_frames=4, query_frames=1, seed=0, texels_per_metre=100.0))
    names, frames = [], []
    for image in rec.images.values():
        cam = rec.camera(image.camera_id)
        camera = Camera(cam.width, cam.height, *cam.params)
        depth_camera = camera.scaled(cam.width // 2, cam.height // 2)
        pose = room.world_from_cam[image.name]
        depth = world.render_depth(depth_camera, pose)
        path = tmp_path / f"{image.image_id}.depth.png"
        write_depth_png(path, np.round(np.nan_to_num(depth) * 1000).astype(np.uint16))
        frames.append(Frame(image.name, room.root / "images" / image.name, camera, pose, path, depth_camera))
        names.append(image.name)
    scale, n, spread = scale_from_depth(rec, frames, names)
    assert scale == pytest.approx(0.5, rel=0.01) and n > 100 and spread < 0.05
    # Without depth there is nothing to measure.
    bare = [Frame(f.name, f.image_path, f.camera, f.world_from_cam) for f in frames]
    with pytest.raises(SlocalError, match="no observation"):
        scale_from_depth(rec, bare, names)
