"""The mapping buffer: exact pass geometry, memory handling, and ACE-style mapping on the tiny scene."""

from __future__ import annotations

import shutil
from collections import namedtuple
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from helpers.distill_fixtures import tiny_buffer_train
from slocal.data.synth import SynthConfig, SynthWorld, trajectory
from slocal.distill.buffer import (
    FeatureBuffer,
    allocate_features,
    build_buffer,
    pass_camera,
    pass_targets,
    render_pass,
    warp_matrix,
)
from slocal.distill.config import AceStudentConfig
from slocal.distill.encoder import DenseEncoder
from slocal.distill.model_file import load_student, read_model_payload
from slocal.distill.novel_views import (
    MIN_PROXY_POINTS,
    SplatPoints,
    fill_holes,
    is_dense,
    proxy_targets,
    random_view,
    render_points,
    render_view,
    sparse_pass_targets,
    view_neighbours,
)
from slocal.distill.trainer import train_student
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera, pixel_centers
from slocal.geometry.pose import invert, transform_points
from slocal.teach.targets import FrameTargets

TINY_ACE = AceStudentConfig(
    name="tiny-ace",
    encoder="efficientnet-lite0",
    max_side=128,
    size_multiple=32,
    head_width=64,
    head_layers=3,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
)


def _view(index: int = 60):
    config = SynthConfig(color_size=(160, 128), depth_size=(160, 128), focal=130.0, seed=5)
    world_from_cam = trajectory(config, "mapping")[index]
    camera = config.color_camera
    depth = SynthWorld(config).render_depth(camera, world_from_cam)
    uv = pixel_centers(camera.width, camera.height).reshape(-1, 2)
    coords = transform_points(world_from_cam, camera.backproject(uv, depth.reshape(-1))).reshape(*depth.shape, 3)
    valid = np.isfinite(depth) & (depth > 0)
    return (
        FrameTargets("v", camera, coords.astype(np.float32), valid.astype(np.float32), valid),
        camera,
        invert(world_from_cam),
    )


@pytest.mark.parametrize("scale,angle", [(1.0, 0.0), (1.4, 12.0), (0.7, -15.0)])
def test_pass_targets_reproject_onto_their_cells(scale, angle):
    """Targets of an augmented pass, projected with the pass's camera, land on the cell centres."""
    targets, camera, cam_from_world = _view()
    # The network camera is anisotropic (fx != fy), as after resizing 640x480 to 320x256.
    net = camera.scaled(160, 120)
    centre = np.array([0.3, -0.2, 1.0])
    A = warp_matrix(net, scale, angle)
    uv = pixel_centers(net.width, net.height, 8).reshape(-1, 2)
    rel, valid, inside, weight = pass_targets(targets, net, A, uv, centre, 1.0)
    assert valid.sum() > 0.3 * len(uv) and (valid <= inside).all() and (weight[valid] == 1.0).all()
    K, pose = pass_camera(net, cam_from_world, scale, angle, centre)
    p = rel[valid].astype(np.float64) @ pose[:, :3].T.astype(np.float64) + pose[:, 3]
    proj = p[:, :2] / p[:, 2:] * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
    err = np.linalg.norm(proj - uv[valid], axis=1)
    # float32 targets and bilinear blending leave ~1e-3 px; a half-pixel shift would show as 0.5.
    assert np.median(err) < 5e-3 and np.quantile(err, 0.9) < 2e-2, np.quantile(err, [0.5, 0.9, 1.0])


def test_render_view_without_motion_gives_back_the_image_and_targets():
    targets, camera, cam_from_world = _view()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (camera.height, camera.width, 3), dtype=np.uint8)
    image, coords, valid, conf = render_view(targets, rgb, camera, cam_from_world)
    assert (valid == targets.valid_HW).all()
    assert (image[valid] == rgb[valid]).all()
    np.testing.assert_array_equal(coords[valid], targets.coords_HW3[valid])
    assert np.isnan(coords[~valid]).all() and (conf[~valid] == 0).all()


def test_render_view_puts_every_target_at_its_projection_in_the_new_camera():
    """A moved camera: each valid pixel's world point projects into that pixel, or a neighbour (crack filling)."""
    targets, camera, cam_from_world = _view()
    rgb = np.full((camera.height, camera.width, 3), 128, np.uint8)
    moved = random_view(np.random.default_rng(1), 0.3, 10.0) @ cam_from_world
    image, coords, valid, _ = render_view(targets, rgb, camera, moved)
    assert 0.3 < valid.mean() < 1.0
    p = coords[valid].astype(np.float64) @ moved[:3, :3].T + moved[:3, 3]
    uv = p[:, :2] / p[:, 2:] * [camera.fx, camera.fy] + [camera.cx, camera.cy]
    rows, cols = np.nonzero(valid)
    off = np.abs(np.floor(uv) - np.stack([cols, rows], 1)).sum(1)
    assert off.max() <= 1 and (off == 0).mean() > 0.8
    assert (image == 128).all()  # holes are filled from known pixels only


def test_neighbours_fill_a_novel_view_where_the_frame_alone_leaves_holes():
    """Splatting two frames of the room: more of a view between them is supervised, and still exactly."""
    a, camera, a_cam_from_world = _view(60)
    b, _, b_cam_from_world = _view(75)
    between = random_view(np.random.default_rng(3), 0.05, 3.0) @ b_cam_from_world
    rgb = np.full((camera.height, camera.width, 3), 90, np.uint8)
    alone = render_points(SplatPoints.of_frame(a, rgb), camera, between)
    both = render_points(
        SplatPoints.concat([SplatPoints.of_frame(a, rgb), SplatPoints.of_frame(b, rgb + 60)]), camera, between
    )
    assert both[2].mean() > alone[2].mean() + 0.1, (alone[2].mean(), both[2].mean())
    coords, valid = both[1], both[2]
    p = coords[valid].astype(np.float64) @ between[:3, :3].T + between[:3, 3]
    uv = p[:, :2] / p[:, 2:] * [camera.fx, camera.fy] + [camera.cx, camera.cy]
    rows, cols = np.nonzero(valid)
    off = np.abs(np.floor(uv) - np.stack([cols, rows], 1)).sum(1)
    assert off.max() <= 1 and (off == 0).mean() > 0.8
    # Frame b is nearer the view, so it owns most pixels: its colour shows where both see the surface.
    assert (both[0][valid] == 150).mean() > 0.5


def test_render_points_keeps_the_nearest_point_and_fills_a_crack_from_the_nearer_neighbour():
    """Hand-placed points in a 4x3 camera at the origin (pixel (c, r) covers [c, c + 1) x [r, r + 1))."""
    camera = Camera(4, 3, 1.0, 1.0, 0.0, 0.0)

    def at(col: float, row: float, z: float) -> list[float]:  # the point seen at pixel (col, row), depth z
        return [col * z, row * z, z]

    points = np.array(
        [
            at(0.5, 0.5, 2.0),
            at(0.5, 0.5, 1.0),  # pixel (0, 0): the nearer one (1) wins
            at(2.5, 0.5, 3.0),
            at(2.5, 2.5, 1.5),  # pixels (2, 0) and (2, 2): pixel (2, 1) is a crack between them
            at(5.5, 0.5, 1.0),
            [0.5, 0.5, -1.0],
        ],  # right of the image, behind the camera: never drawn
        np.float32,
    )
    colours = np.arange(6, dtype=np.uint8)[:, None].repeat(3, 1) * 40
    splat = SplatPoints(points, colours, np.linspace(0.5, 1.0, 6, dtype=np.float32), np.ones(6, bool))
    image, coords, valid, conf = render_points(splat, camera, np.eye(4))
    # Which point each pixel shows: drawn at (0, 0), (2, 0) and (2, 2); every other pixel with a drawn
    # 4-neighbour takes the nearest of them ((1, 0): point 1 at 1 m, not point 2 at 3 m; (2, 1): point 3).
    owner = np.array([[1, 1, 2, 2], [1, -1, 3, -1], [-1, 3, 3, 3]])
    np.testing.assert_array_equal(valid, owner >= 0)
    np.testing.assert_array_equal(coords[valid], points[owner[valid]])
    np.testing.assert_array_equal(conf[valid], splat.conf_M[owner[valid]])
    np.testing.assert_array_equal(image[valid][:, 0], colours[owner[valid], 0])
    assert np.isnan(coords[~valid]).all() and (conf[~valid] == 0).all()
    holes = image[~valid][:, 0]
    assert ((holes >= 40) & (holes <= 120)).all()  # filled from drawn pixels only (160, 200: the dropped points)


def test_view_neighbours_rank_by_centre_distance_and_viewing_direction():
    def cam(x: float, yaw_deg: float) -> np.ndarray:
        T = np.eye(4)
        T[:3, :3] = cv2.Rodrigues(np.array([0.0, np.radians(yaw_deg), 0.0]))[0]
        T[0, 3] = x
        return T

    candidates = np.stack([cam(0.3, 0.0), cam(0.05, 180.0), cam(0.1, 10.0), cam(-0.5, 0.0)])
    # The camera 5 cm away but looking back is no neighbour; 10 cm at 10 deg beats 30 cm at 0 deg.
    assert view_neighbours(cam(0.0, 0.0), candidates, 3).tolist() == [2, 0, 3]
    assert view_neighbours(cam(0.0, 0.0), candidates, 10).tolist() == [2, 0, 3, 1]


def _sparse(targets: FrameTargets, keep_every: int) -> FrameTargets:
    """Every ``keep_every``-th valid target of a dense map, as a sparse teacher would give."""
    valid = np.zeros_like(targets.valid_HW)
    valid.reshape(-1)[np.flatnonzero(targets.valid_HW)[::keep_every]] = True
    coords = np.where(valid[..., None], targets.coords_HW3, np.nan).astype(np.float32)
    return FrameTargets("sparse", targets.camera, coords, valid.astype(np.float32), valid)


@pytest.mark.parametrize("scale,angle", [(1.0, 0.0), (1.3, 10.0)])
def test_sparse_pass_targets_put_each_point_on_its_cell_centre_ray(scale, angle):
    targets, camera, cam_from_world = _view()
    sparse = _sparse(targets, 97)
    net = camera.scaled(160, 120)
    centre = np.array([0.3, -0.2, 1.0])
    K, pose = pass_camera(net, cam_from_world, scale, angle, centre)
    uv = pixel_centers(net.width, net.height, 8).reshape(-1, 2)
    pts, conf = sparse.coords_HW3[sparse.valid_HW], sparse.conf_HW[sparse.valid_HW]
    rel, valid, weight = sparse_pass_targets(pts, conf, K, pose, uv, (15, 20), centre, 2.0)
    # Far more supervised cells than bilinear sampling at the cell centres finds.
    _, sampled, _, _ = pass_targets(sparse, net, warp_matrix(net, scale, angle), uv, centre, 1.0)
    assert valid.sum() > 3 * sampled.sum() and valid.sum() <= sparse.num_valid
    assert (weight[valid] == 0.5).all() and (weight[~valid] == 0).all()
    p = rel[valid].astype(np.float64) @ pose[:, :3].T.astype(np.float64) + pose[:, 3]
    proj = p[:, :2] / p[:, 2:] * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
    assert np.abs(proj - uv[valid]).max() < 1e-3  # on the cell centre's ray
    # ... at the depth of a point that projects into that cell.
    q = (pts.astype(np.float64) - centre) @ pose[:, :3].T.astype(np.float64) + pose[:, 3]
    q_uv = q[:, :2] / q[:, 2:] * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
    q_cell = np.floor(q_uv[:, 1] / 8) * 20 + np.floor(q_uv[:, 0] / 8)
    for cell, z in zip(np.flatnonzero(valid)[:50], p[:50, 2]):
        assert np.isclose(q[q_cell == cell, 2], z, atol=1e-4).any()


def test_proxy_surface_interpolates_sparse_depths_and_renders_only_real_targets():
    targets, camera, cam_from_world = _view()
    sparse = _sparse(targets, 53)
    proxy = proxy_targets(sparse, cam_from_world)
    assert proxy.valid_HW.all()
    np.testing.assert_allclose(proxy.coords_HW3[sparse.valid_HW], sparse.coords_HW3[sparse.valid_HW], atol=1e-5)
    # The room's walls are smooth: interpolated depths stay close to the true ones away from edges.
    depth = lambda c: c.reshape(-1, 3).astype(np.float64) @ cam_from_world[2, :3] + cam_from_world[2, 3]  # noqa: E731
    true_z, proxy_z = depth(targets.coords_HW3), depth(proxy.coords_HW3)
    ok = targets.valid_HW.reshape(-1)
    assert np.median(np.abs(proxy_z[ok] - true_z[ok]) / true_z[ok]) < 0.05
    rgb = np.full((camera.height, camera.width, 3), 90, np.uint8)
    _, coords, valid, _ = render_view(proxy, rgb, camera, cam_from_world, sparse.valid_HW)
    assert valid.sum() == sparse.num_valid  # no motion: every real target wins its own pixel, no other pixel is valid
    np.testing.assert_array_equal(coords[valid], sparse.coords_HW3[sparse.valid_HW])


def test_fill_holes_keeps_known_pixels_and_fills_from_the_nearest_ones():
    img = np.zeros((37, 50, 3), np.float32)
    img[:, :25] = 10.0
    img[:, 25:] = 200.0
    known = np.ones((37, 50), bool)
    known[10:20, 5:15] = False  # inside the dark half
    known[:, 40:] = False  # the bright edge
    out = fill_holes(np.where(known[..., None], img, -1.0).astype(np.float32), known)
    np.testing.assert_array_equal(out[known], img[known])
    assert np.abs(out[10:20, 7:13] - 10.0).max() < 1e-3
    assert np.abs(out[:, 42:] - 200.0).max() < 1e-3
    assert fill_holes(img, np.zeros((37, 50), bool)) is img  # nothing known: nothing to fill from


def test_render_pass_samples_the_image_where_the_warp_says():
    H, W = 96, 128
    y, x = np.mgrid[0:H, 0:W] + 0.5
    img = np.stack([128 + 100 * np.sin(x / 9.0), 128 + 100 * np.cos(y / 7.0), 128 + 60 * np.sin((x + y) / 11.0)], -1)
    img = img.astype(np.uint8)
    cam = Camera(W, H, 110.0, 100.0, 60.0, 50.0)
    A = warp_matrix(cam, 1.25, 10.0)
    out = render_pass(img, cam, A)
    uv = pixel_centers(W, H).reshape(-1, 2)
    c = np.array([cam.cx, cam.cy])
    src = (uv - c) @ np.linalg.inv(A).T + c
    ok = (src[:, 0] > 2) & (src[:, 0] < W - 2) & (src[:, 1] > 2) & (src[:, 1] < H - 2)
    expected = cv2.remap(
        img,
        (src[:, 0] - 0.5).astype(np.float32).reshape(H, W),
        (src[:, 1] - 0.5).astype(np.float32).reshape(H, W),
        cv2.INTER_LINEAR,
    )
    diff = np.abs(out.reshape(-1, 3).astype(int) - expected.reshape(-1, 3).astype(int))[ok]
    assert diff.max() <= 2, diff.max()


def test_buffer_spills_to_disk_and_refuses_what_does_not_fit(tmp_path, monkeypatch):
    arr, path = allocate_features((4, 10, 8), max_gb=1e-9, spill_path=tmp_path / "buf.npy")
    assert path == tmp_path / "buf.npy" and isinstance(arr, np.memmap) and arr.shape == (4, 10, 8)
    arr, path = allocate_features((4, 10, 8), max_gb=1.0, spill_path=tmp_path / "b2.npy")
    assert path is None and not isinstance(arr, np.memmap)
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10, 10, 10))
    with pytest.raises(SlocalError, match=r"needs .* GB.*buffer_passes"):
        allocate_features((4, 10, 8), max_gb=1e-9, spill_path=tmp_path / "b3.npy")


def _head_state(path):
    return read_model_payload(path)["state_dict"]


def _mapping_errors(student, scene, targets) -> tuple[float, float]:
    """Mean cell error (m) of ``student`` on four mapping frames, and that of predicting the scene centre."""
    errors = []
    for frame in scene.mapping[:4]:
        out = student.predict(cv2.cvtColor(cv2.imread(str(frame.image_path)), cv2.COLOR_BGR2RGB), frame.camera)
        assert out.coords_hw3.shape == (96 // 8, 128 // 8, 3) and np.isfinite(out.coords_hw3).all()
        t = targets.by_name()[frame.name]
        uv = pixel_centers(out.camera.width, out.camera.height, 8).reshape(-1, 2) * (t.camera.width / out.camera.width)
        target, _, ok = t.sample(uv)
        pred = out.coords_hw3.reshape(-1, 3)[ok]
        errors.append(
            (
                np.linalg.norm(pred - target[ok], axis=1).mean(),
                np.linalg.norm(student.centre - target[ok], axis=1).mean(),
            )
        )
    trained, centre_only = np.mean(errors, axis=0)
    return float(trained), float(centre_only)


def test_ace_mapping_learns_stores_only_the_head_and_resumes_exactly(tiny_scene, tiny_targets, tmp_path):
    cfg = tiny_buffer_train(iterations=60, batch_cells=512, buffer_passes=2, lr=3e-3, val_frames=2, reproj_weight=0.002)
    result = train_student(tiny_scene, tiny_targets, TINY_ACE, cfg, tmp_path / "a.pt", device="cpu")
    payload = read_model_payload(tmp_path / "a.pt")
    assert not any(k.startswith("encoder.") for k in payload["state_dict"])
    assert payload["encoder"]["name"] == "efficientnet-lite0" and result.file_mb < 1.0
    assert payload["train"]["recipe"] == "buffer" and payload["train"]["buffer_passes"] == 2 * 10
    student = load_student(tmp_path / "a.pt", precision="fp32")
    assert list(student.module._ort._sessions) == [(1, 96, 128)]  # made at load, at the network's input size
    trained, centre_only = _mapping_errors(student, tiny_scene, tiny_targets)
    assert trained < 0.5 * centre_only, (trained, centre_only)
    assert list(student.module._ort._sessions) == [(1, 96, 128)]  # every query ran in that session

    # 30 + resume 30 == 60 straight, bit for bit.
    short = tiny_buffer_train(
        iterations=60,
        batch_cells=512,
        buffer_passes=2,
        lr=3e-3,
        val_frames=2,
        reproj_weight=0.002,
        checkpoint_every_s=0.0,
        val_every_s=0.0,
    )
    train_student(tiny_scene, tiny_targets, TINY_ACE, short, tmp_path / "b.pt", device="cpu", stop_after=30)
    resumed = train_student(tiny_scene, tiny_targets, TINY_ACE, short, tmp_path / "b.pt", device="cpu", resume=True)
    assert resumed.resumed_from == 30 and resumed.iterations == 60
    a, b = _head_state(tmp_path / "a.pt"), _head_state(tmp_path / "b.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ace_mapping_trains_in_bf16_when_asked(tiny_scene, tiny_targets, tmp_path):
    """``precision: bf16`` (what ``auto`` picks on CPUs with native bf16) trains the head under autocast and learns.

    Same run as the fp32 test above; bf16's coarser steps may cost precision, not the learning itself.
    """
    cfg = tiny_buffer_train(
        iterations=60, batch_cells=512, buffer_passes=2, lr=3e-3, val_frames=2, reproj_weight=0.002, precision="bf16"
    )
    result = train_student(tiny_scene, tiny_targets, TINY_ACE, cfg, tmp_path / "a.pt", device="cpu")
    assert result.precision == "bf16" and read_model_payload(tmp_path / "a.pt")["train"]["precision"] == "bf16"
    train_student(tiny_scene, tiny_targets, TINY_ACE, replace(cfg, precision="fp32"), tmp_path / "b.pt", device="cpu")
    head, head_fp32 = _head_state(tmp_path / "a.pt"), _head_state(tmp_path / "b.pt")
    assert all(v.dtype == torch.float32 for v in head.values())  # autocast: fp32 weights, bf16 matmuls
    # Same seed and cells: only the arithmetic differs, so equal weights would mean autocast never ran.
    assert not torch.equal(head["final.weight"], head_fp32["final.weight"])
    trained, centre_only = _mapping_errors(load_student(tmp_path / "a.pt", precision="fp32"), tiny_scene, tiny_targets)
    assert trained < 0.5 * centre_only, (trained, centre_only)


def test_channel_stats_estimate_each_channels_mean_and_spread():
    rng = np.random.default_rng(0)
    P, N, C = 40, 300, 6
    mean_C, std_C = np.array([0, 1, -2, 5, 0.5, 3.0]), np.array([1, 0.1, 4, 2, 0.5, 8.0])
    feat = (rng.normal(size=(P, N, C)) * std_C + mean_C).astype(np.float16)
    buffer = FeatureBuffer(
        image_size=(8 * 20, 8 * 15),
        feat_PNC=feat,
        coords_PN3=np.zeros((P, N, 3), np.float32),
        valid_PN=np.ones((P, N), bool),
        inside_PN=np.ones((P, N), bool),
        weight_PN=np.ones((P, N), np.float32),
        K_P33=np.tile(np.eye(3, dtype=np.float32), (P, 1, 1)),
        cam_from_world_P34=np.zeros((P, 3, 4), np.float32),
        frame_P=np.zeros(P, np.int64),
        frame_names=("a",),
        uv_N2=np.zeros((N, 2), np.float32),
    )
    m, s = buffer.channel_stats(4096, seed=1)
    assert m.shape == s.shape == (C,) and m.dtype == s.dtype == np.float32
    # 4 096 draws: the mean within 4 standard errors, the spread within 10 %.
    assert np.all(np.abs(m - mean_C) < 4 * std_C / 64), m
    assert np.allclose(s, std_C, rtol=0.1), s
    assert np.array_equal(buffer.channel_stats(4096, seed=1)[0], m)  # seeded


def test_ace_mapping_with_standardized_input_stores_the_buffer_statistics_and_learns(
    tiny_scene, tiny_targets, tmp_path
):
    cfg = tiny_buffer_train(
        iterations=60, batch_cells=512, buffer_passes=2, lr=3e-3, val_frames=2, standardize_input=True
    )
    train_student(tiny_scene, tiny_targets, TINY_ACE, cfg, tmp_path / "a.pt", device="cpu")
    head = _head_state(tmp_path / "a.pt")
    # The fused lite0 features are far from zero-mean, unit-spread: the statistics are not the identity.
    assert head["feat_shift"].abs().max() > 0.1 and (head["feat_scale"] - 1).abs().max() > 0.1
    assert torch.all(head["feat_scale"] > 0)
    student = load_student(tmp_path / "a.pt", precision="fp32")
    assert torch.equal(student.module.feat_scale, head["feat_scale"])
    trained, centre_only = _mapping_errors(student, tiny_scene, tiny_targets)
    assert trained < 0.5 * centre_only, (trained, centre_only)


@pytest.mark.cuda
def test_buffer_encodes_on_the_gpu_what_onnxruntime_encodes_on_the_cpu(tiny_scene, tiny_targets, tmp_path):
    """The encoder's device encodes (torch on CUDA, onnxruntime on the CPU): same passes, features within TF32 noise."""
    cfg = tiny_buffer_train(buffer_passes=2)
    frames, by_name = tiny_scene.mapping[:3], tiny_targets.by_name()
    encoder = DenseEncoder(TINY_ACE.encoder, levels=tuple(TINY_ACE.encoder_levels))
    cpu, gpu = (
        build_buffer(
            frames,
            by_name,
            encoder.to(dev),
            (128, 96),
            np.zeros(3),
            cfg,
            0,
            tmp_path / f"{dev}.npy",
            TINY_ACE.mean,
            TINY_ACE.std,
        )
        for dev in ("cpu", "cuda")
    )
    assert np.array_equal(cpu.coords_PN3, gpu.coords_PN3) and np.array_equal(cpu.K_P33, gpu.K_P33)  # same augmentation
    a, b = cpu.feat_PNC.astype(np.float32), gpu.feat_PNC.astype(np.float32)
    assert a.std() > 0.1 and not np.array_equal(a, b)  # real features, and really computed twice
    assert np.abs(a - b).max() < 0.02 * np.abs(a).max(), np.abs(a - b).max()


@pytest.mark.cuda
def test_ace_mapping_learns_on_the_gpu_and_its_model_loads_on_either_device(tiny_scene, tiny_targets, tmp_path):
    cfg = tiny_buffer_train(iterations=60, batch_cells=512, buffer_passes=2, lr=3e-3, val_frames=2, reproj_weight=0.002)
    result = train_student(tiny_scene, tiny_targets, TINY_ACE, cfg, tmp_path / "a.pt", device="cuda")
    assert result.iterations == 60 and result.precision == "fp32"
    on_gpu = load_student(tmp_path / "a.pt", device="cuda", precision="fp32")
    trained, centre_only = _mapping_errors(on_gpu, tiny_scene, tiny_targets)
    assert trained < 0.5 * centre_only, (trained, centre_only)
    on_cpu_trained, _ = _mapping_errors(
        load_student(tmp_path / "a.pt", device="cpu", precision="fp32"), tiny_scene, tiny_targets
    )
    assert abs(on_cpu_trained - trained) < 0.02 * trained, (on_cpu_trained, trained)


def test_buffer_is_the_same_in_any_scene_unit(tiny_scene, tiny_targets, tmp_path):
    """The tiny scene in units of 0.25 m (poses and targets x4) with metres_per_unit 0.25 gives the metric
    scene's buffer: the same novel views (view_translation and the neighbour distance are metres), features,
    cells, and targets x4. Read as units, the same settings render other views."""
    k = 4.0
    cfg = tiny_buffer_train(buffer_passes=4, view_passes=3, view_translation=0.3, view_rotation=10.0, view_neighbours=1)
    frames, by_name = list(tiny_scene.mapping[:3]), tiny_targets.by_name()
    scaled_frames = []
    for f in frames:
        world_from_cam = f.world_from_cam.copy()
        world_from_cam[:3, 3] *= k
        scaled_frames.append(replace(f, world_from_cam=world_from_cam))
    scaled_targets = {
        name: FrameTargets(t.name, t.camera, t.coords_HW3 * np.float32(k), t.conf_HW, t.valid_HW)
        for name, t in by_name.items()
    }
    encoder = DenseEncoder(TINY_ACE.encoder, levels=tuple(TINY_ACE.encoder_levels))
    centre = np.array([0.1, -0.2, 1.5])

    def buffer(frames, targets, centre, metres_per_unit, name):
        return build_buffer(
            frames,
            targets,
            encoder,
            (128, 96),
            centre,
            cfg,
            0,
            tmp_path / name,
            TINY_ACE.mean,
            TINY_ACE.std,
            metres_per_unit=metres_per_unit,
        )

    metric = buffer(frames, by_name, centre, 1.0, "m.npy")
    units = buffer(scaled_frames, scaled_targets, k * centre, 1 / k, "u.npy")
    assert metric.valid_PN.sum() > 0.3 * metric.valid_PN.size
    assert np.mean(metric.valid_PN != units.valid_PN) < 0.002
    both = metric.valid_PN & units.valid_PN
    assert np.allclose(units.coords_PN3[both], k * metric.coords_PN3[both], atol=1e-3)
    assert np.allclose(units.cam_from_world_P34[..., 3], k * metric.cam_from_world_P34[..., 3], atol=1e-4)
    assert np.allclose(units.feat_PNC.astype(np.float32), metric.feat_PNC.astype(np.float32), atol=0.05)
    # Without the scale the unit scene's novel views move 4x less (the augmented passes themselves are equal).
    wrong = buffer(scaled_frames, scaled_targets, k * centre, 1.0, "w.npy")
    views = np.arange(metric.num_passes) % cfg.buffer_passes >= cfg.buffer_passes - cfg.view_passes
    moved = np.abs(wrong.cam_from_world_P34[views] - units.cam_from_world_P34[views]).max(axis=(1, 2))
    assert np.all(moved > 1e-3) and np.allclose(wrong.cam_from_world_P34[~views], units.cam_from_world_P34[~views])


def test_sparse_frames_views_splat_their_neighbours_only_when_asked(tiny_scene, tiny_targets, tmp_path):
    """Sparsely taught frames: with ``view_neighbours_sparse`` their novel views gain supervised cells from the
    neighbours, each still a teacher point (on its cell centre's ray, at a real point's depth), never a point of
    the interpolated surfaces; the other passes and every camera stay as they were."""
    frames = list(tiny_scene.mapping[:4])
    sparse = {f.name: _sparse(tiny_targets.by_name()[f.name], 100) for f in frames}
    assert all(t.num_valid >= MIN_PROXY_POINTS and not is_dense(t) for t in sparse.values())
    encoder = DenseEncoder(TINY_ACE.encoder, levels=tuple(TINY_ACE.encoder_levels))
    centre = np.array([0.1, -0.2, 1.5])

    def buffer(flag: bool, name: str) -> FeatureBuffer:
        cfg = tiny_buffer_train(
            buffer_passes=4,
            view_passes=3,
            view_translation=0.3,
            view_rotation=10.0,
            view_neighbours=2,
            view_neighbours_sparse=flag,
        )
        return build_buffer(
            frames, sparse, encoder, (256, 192), centre, cfg, 0, tmp_path / name, TINY_ACE.mean, TINY_ACE.std
        )

    alone, with_neighbours = buffer(False, "a.npy"), buffer(True, "n.npy")
    views = np.arange(alone.num_passes) % 4 >= 1
    np.testing.assert_array_equal(alone.cam_from_world_P34, with_neighbours.cam_from_world_P34)
    for field in ("feat_PNC", "coords_PN3", "valid_PN", "weight_PN"):
        np.testing.assert_array_equal(getattr(alone, field)[~views], getattr(with_neighbours, field)[~views])
    assert with_neighbours.valid_PN[views].sum() > 1.25 * alone.valid_PN[views].sum(), (
        alone.valid_PN[views].sum(),
        with_neighbours.valid_PN[views].sum(),
    )
    points = np.concatenate([t.coords_HW3[t.valid_HW] for t in sparse.values()]).astype(np.float64) - centre
    for p in np.flatnonzero(views):
        K, pose = with_neighbours.K_P33[p].astype(np.float64), with_neighbours.cam_from_world_P34[p].astype(np.float64)
        valid = with_neighbours.valid_PN[p]
        cam = with_neighbours.coords_PN3[p][valid].astype(np.float64) @ pose[:, :3].T + pose[:, 3]
        uv = cam[:, :2] / cam[:, 2:] * [K[0, 0], K[1, 1]] + K[:2, 2]
        assert np.abs(uv - with_neighbours.uv_N2[valid]).max() < 1e-2
        q = points @ pose[:, :3].T + pose[:, 3]
        q_uv = q[:, :2] / q[:, 2:] * [K[0, 0], K[1, 1]] + K[:2, 2]
        q_cell = np.floor(q_uv[:, 1] / 8) * 32 + np.floor(q_uv[:, 0] / 8)
        for cell, z in zip(np.flatnonzero(valid), cam[:, 2]):
            assert np.isclose(q[q_cell == cell, 2], z, atol=1e-4).any()
