"""DUSt3R bench baseline: retrieval, scale, pose (with an oracle network), the real pipeline on the tiny fixture net."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.dust3r_scene import Oracle, pose, write_scene
from slocal.bench.dust3r_baseline import Dust3rBaseline, Dust3rBaselineConfig, thumbnail
from slocal.data import load_scene
from slocal.errors import SlocalError
from slocal.geometry import Camera, pixel_centers, pose_error
from slocal.io import read_image
from slocal.teach.dust3r import Dust3rConfig

CAM = Camera(64, 48, fx=50.0, fy=50.0, cx=32.0, cy=24.0)


def room(tmp_path: Path):
    mapping = [(f"map{i}", pose([0.12 * i - 0.4, 0.02 * (i % 2), 0.05 * i], yaw_deg=4 * np.sin(i))) for i in range(6)]
    query = [("q0", pose([-0.1, 0.03, 0.12], yaw_deg=-6, pitch_deg=3)), ("q1", pose([0.25, -0.02, 0.2], yaw_deg=8))]
    return write_scene(tmp_path / "scene", mapping, query, CAM)


def test_retrieval_uses_image_content(tmp_path):
    scene = room(tmp_path)
    base = Dust3rBaseline(scene, Oracle(), Dust3rBaselineConfig(image_size=64))
    rng = np.random.default_rng(1)
    for k in range(len(scene.mapping)):
        rgb = read_image(scene.mapping[k].image_path).astype(np.int16)
        noisy = np.clip(rgb + rng.normal(0, 20, rgb.shape), 0, 255).astype(np.uint8)
        assert base.retrieve(noisy) == k
    t = thumbnail(rgb.astype(np.uint8), (32, 24))
    assert t.shape == (768,) and abs(t.mean()) < 1e-6 and np.linalg.norm(t) == pytest.approx(1.0)


@pytest.mark.parametrize("noise", [0.0, 0.003])
def test_oracle_pose_with_pair_scale(tmp_path, noise):
    """Exact (or 3 mm noisy) DUSt3R outputs with a random scale per pair: the pose comes out right."""
    scene = room(tmp_path)
    oracle = Oracle(noise=noise)
    base = Dust3rBaseline(scene, oracle, Dust3rBaselineConfig(image_size=64, min_triangulation_deg=1.0))
    assert base.map_mb > 0 and not base.timing_only
    for q in scene.query:
        oracle.query_pose = q.world_from_cam
        result, ms = base.localize(read_image(q.image_path), q.camera)
        assert result.success
        dt, dr = pose_error(result.cam_from_world, q.cam_from_world)
        if noise == 0:
            assert dt < 1e-3 and dr < 0.01, (dt, dr)
        else:
            assert dt < 0.01 and dr < 0.1, (dt, dr)  # measured 0.3 mm, 0.01 deg
        assert set(ms) == {"retrieval", "preprocess", "network", "scale", "pnp"}
        # (mapping frame, query) and (mapping frame, its scale partner), one batch
        (m1, qv), (m2, p) = oracle.calls[-2:]
        assert qv == "<query>" and m1 == m2 and p != m1 and p.startswith("map")


def test_oracle_pose_with_depth_scale(tiny_twelve_scenes):
    """scale='depth' on the 12Scenes fixture: a plane at z = 2 m, cameras translating along x."""
    scene = load_scene(tiny_twelve_scenes, "apt0/tiny")

    def plane(camera, T):
        uv = pixel_centers(camera.width, camera.height).reshape(-1, 2)
        rays = camera.rays(uv) @ T[:3, :3].T
        t = (2.0 - T[2, 3]) / rays[:, 2]
        return (T[:3, 3] + t[:, None] * rays).reshape(camera.height, camera.width, 3)

    oracle = Oracle(render=plane)
    base = Dust3rBaseline(scene, oracle, Dust3rBaselineConfig(image_size=64, scale="depth"))
    for q in scene.query:
        oracle.query_pose = q.world_from_cam
        result, _ = base.localize(read_image(q.image_path), q.camera)
        dt, dr = pose_error(result.cam_from_world, q.cam_from_world)
        assert result.success and dt < 1e-3 and dr < 0.01
    assert len(oracle.calls) == len(scene.query)  # no second pair needed


def test_failed_scale_is_a_failed_query(tmp_path):
    scene = room(tmp_path)
    oracle = Oracle()

    def mirrored(pairs):  # the scale pair comes back mirrored: negative scale, not aligned
        preds = oracle(pairs)
        p = preds[1]
        preds[1] = type(p)(p.pts3d_1, p.conf_1, -p.pts3d_2, p.conf_2)
        return preds

    base = Dust3rBaseline(scene, mirrored, Dust3rBaselineConfig(image_size=64))
    q = scene.query[0]
    oracle.query_pose = q.world_from_cam
    result, ms = base.localize(read_image(q.image_path), q.camera)
    assert not result.success and result.cam_from_world is None and "pnp" in ms


def write_fixture_checkpoint(fixtures: Path, folder: Path) -> Path:
    meta = json.loads((fixtures / "small_dpt_config.json").read_text())
    dpt = meta["dpt_head_override"]
    kwargs = {
        **meta["model_kwargs"],
        "dpt_feature_dim": dpt["feature_dim"],
        "dpt_last_dim": dpt["last_dim"],
        "dpt_layer_dims": dpt["layer_dims"],
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(kwargs))
    torch.save(
        torch.load(fixtures / "small_dpt_state_dict.pt", map_location="cpu", weights_only=True),
        folder / "pytorch_model.bin",
    )
    return folder


LOOSE = Dust3rBaselineConfig(
    image_size=96, min_conf=1.0, max_residual_deg=180.0, min_triangulation_deg=0.0, min_scale_points=1
)


def test_fixture_network_pipeline(dust3r_fixtures, tiny_twelve_scenes, tmp_path):
    """Random weights: the poses are garbage, but the pipeline runs end to end and reports its costs."""
    scene = load_scene(tiny_twelve_scenes, "apt0/tiny")
    ckpt = write_fixture_checkpoint(dust3r_fixtures, tmp_path / "ckpt")
    base = Dust3rBaseline.build(scene, ckpt, "cpu", LOOSE)
    assert not base.timing_only
    weights_mb = (ckpt / "pytorch_model.bin").stat().st_size / 2**20
    images_mb = sum(f.image_path.stat().st_size for f in scene.mapping) / 2**20
    assert base.map_mb == pytest.approx(
        weights_mb + images_mb + (ckpt / "config.json").stat().st_size / 2**20 + base.thumbs.nbytes / 2**20
    )
    q = scene.query[0]
    result, ms = base.localize(read_image(q.image_path), q.camera)
    assert result.num_correspondences > 0
    assert all(v >= 0 for v in ms.values()) and ms["network"] > 0


def test_timing_only_without_checkpoint(tiny_twelve_scenes):
    scene = load_scene(tiny_twelve_scenes, "apt0/tiny")
    tiny = Dust3rConfig(
        pos_embed="RoPE100",
        head_type="linear",
        enc_embed_dim=32,
        enc_depth=1,
        enc_num_heads=2,
        dec_embed_dim=32,
        dec_depth=1,
        dec_num_heads=2,
    )
    base = Dust3rBaseline.build(scene, None, "cpu", replace(LOOSE, warmup=False), random_config=tiny)
    assert base.timing_only and "timings only" in base.timing_note
    from slocal.teach.dust3r import Dust3rNet

    params_mb = sum(p.numel() * 4 for p in Dust3rNet(tiny.natural(), init_weights=False).parameters()) / 2**20
    images_mb = sum(f.image_path.stat().st_size for f in scene.mapping) / 2**20
    assert base.map_mb == pytest.approx(params_mb + images_mb + base.thumbs.nbytes / 2**20)
    q = scene.query[1]
    _, ms = base.localize(read_image(q.image_path), q.camera)
    assert ms["network"] > 0 and ms["pnp"] > 0  # PnP is timed even when the random scale fails


def test_bad_inputs(tiny_twelve_scenes, tmp_path):
    scene = load_scene(tiny_twelve_scenes, "apt0/tiny")
    with pytest.raises(SlocalError, match="checkpoint not found") as err:
        Dust3rBaseline.build(scene, tmp_path / "missing.pth", "cpu", LOOSE)
    assert "naver/dust3r" in str(err.value)
    with pytest.raises(SlocalError, match="scale must be one of"):
        Dust3rBaselineConfig(scale="guess")
    no_depth = write_scene(tmp_path / "s", [("a", pose([0, 0, 0])), ("b", pose([0.3, 0, 0]))], [], CAM)
    with pytest.raises(SlocalError, match="needs depth"):
        Dust3rBaseline(no_depth, Oracle(), Dust3rBaselineConfig(scale="depth"))
