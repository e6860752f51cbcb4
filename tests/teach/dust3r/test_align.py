"""Scale alignment of DUSt3R pairs to the known poses."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.dust3r_scene import dust3r_prediction, pose, render_world
from slocal.geometry import Camera, invert, transform_points
from slocal.teach.dust3r.align import align_pair, pair_depths
from slocal.teach.dust3r.inference import PairPrediction
from slocal.teach.dust3r.teacher import Dust3rTeacherConfig

CAM = Camera(64, 48, fx=50.0, fy=50.0, cx=32.0, cy=24.0)


def config(ckpt, **kw) -> Dust3rTeacherConfig:
    return Dust3rTeacherConfig(checkpoint=str(ckpt), **kw)


def world_from_pair(pred: PairPrediction, scale: float, T1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Aligned world points of both views (scaled, then camera 1's known pose)."""
    return (
        transform_points(T1, scale * pred.pts3d_1.reshape(-1, 3).astype(np.float64)),
        transform_points(T1, scale * pred.pts3d_2.reshape(-1, 3).astype(np.float64)),
    )


# ----------------------------------------------------------------------------- alignment


@pytest.mark.parametrize("method", ["rays", "centre"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alignment_recovers_world_points_noise_free(fake_ckpt, method, seed):
    rng = np.random.default_rng(seed)
    T1 = pose(rng.uniform(-0.5, 0.5, 3), yaw_deg=rng.uniform(-20, 20), pitch_deg=rng.uniform(-10, 10))
    T2 = pose(T1[:3, 3] + rng.uniform(-0.3, 0.3, 3), yaw_deg=rng.uniform(-20, 20), pitch_deg=rng.uniform(-10, 10))
    cam2 = Camera(48, 64, fx=45.0, fy=46.0, cx=23.0, cy=33.0)  # another camera, portrait
    true_scale = float(np.exp(rng.uniform(np.log(0.05), np.log(20.0))))
    pred = dust3r_prediction(CAM, T1, cam2, T2, true_scale)
    al = align_pair(pred.pts3d_2, pred.conf_2, cam2, invert(T1) @ T2, config(fake_ckpt, alignment=method))
    assert al.status == "ok"
    assert al.scale == pytest.approx(true_scale, rel=1e-6)
    assert al.residual_deg < 1e-3
    assert np.linalg.norm(al.centre_2) == pytest.approx(np.linalg.norm(T2[:3, 3] - T1[:3, 3]), rel=1e-6)
    w1, w2 = world_from_pair(pred, al.scale, T1)
    err = max(
        np.abs(w1 - render_world(CAM, T1).reshape(-1, 3)).max(),
        np.abs(w2 - render_world(cam2, T2).reshape(-1, 3)).max(),
    )
    assert err < 1e-3  # float32 point maps: measured 2.7e-7 m
    # the per-frame depths (view 2 moved into its own camera) are the true z-depths
    d1, d2 = pair_depths(pred.pts3d_1, pred.pts3d_2, al.scale, invert(T1) @ T2)
    z2 = transform_points(invert(T2), render_world(cam2, T2).reshape(-1, 3))[:, 2].reshape(d2.shape)
    np.testing.assert_allclose(d2, z2, atol=1e-4)


@pytest.mark.parametrize("method", ["rays", "centre"])
def test_alignment_with_noise_and_outliers(fake_ckpt, method):
    rng = np.random.default_rng(7)
    T1, T2 = pose([0, 0, 0], yaw_deg=5), pose([0.3, -0.05, 0.1], yaw_deg=-8)
    true_scale, sigma = 0.4, 0.01
    pred = dust3r_prediction(CAM, T1, CAM, T2, true_scale)
    metric_2 = pred.pts3d_2.astype(np.float64) * true_scale
    noisy = metric_2 + rng.normal(0, sigma, metric_2.shape)
    outliers = rng.random(metric_2.shape[:2]) < 0.15
    noisy[outliers] += rng.normal(0, 0.5, (int(outliers.sum()), 3))
    conf = np.exp(rng.uniform(1.2, 3.0, outliers.shape)).astype(np.float32)
    al = align_pair(
        (noisy / true_scale).astype(np.float32), conf, CAM, invert(T1) @ T2, config(fake_ckpt, alignment=method)
    )
    assert al.status == "ok"
    rel = abs(al.scale / true_scale - 1)
    assert rel < 0.01, rel
    # metric error of view 2's aligned points vs the truth stays at the noise level (inliers)
    err = np.linalg.norm(noisy[~outliers] * al.scale / true_scale - metric_2[~outliers], axis=1)
    assert np.median(err) < 2 * sigma


def test_degenerate_inconsistent_and_failed_pairs(fake_ckpt):
    cfg = config(fake_ckpt)
    T1 = pose([0, 0, 0])
    # 2 mm baseline: scale unobservable -> degenerate
    T2 = pose([0.002, 0, 0], yaw_deg=3)
    pred = dust3r_prediction(CAM, T1, CAM, T2, 1.0)
    assert align_pair(pred.pts3d_2, pred.conf_2, CAM, invert(T1) @ T2, cfg).status == "degenerate"
    # view 2 rotated by 30 degrees against the known relative pose -> inconsistent
    # (smaller yaw errors are partly absorbed by the scale: the two are confounded at small parallax)
    T2 = pose([0.3, 0, 0])
    pred = dust3r_prediction(CAM, T1, CAM, T2, 1.0)
    R = pose([0, 0, 0], yaw_deg=30)[:3, :3]
    rotated = (pred.pts3d_2.reshape(-1, 3) @ R.T).reshape(pred.pts3d_2.shape)
    al = align_pair(rotated, pred.conf_2, CAM, invert(T1) @ T2, cfg)
    assert al.status == "inconsistent" and al.residual_deg > cfg.max_residual_deg
    # a mirrored prediction needs a negative scale -> failed
    assert align_pair(-pred.pts3d_2, pred.conf_2, CAM, invert(T1) @ T2, cfg).status == "failed"
    # nothing confident -> failed
    low = np.ones_like(pred.conf_2)
    assert align_pair(pred.pts3d_2, low, CAM, invert(T1) @ T2, cfg).status == "failed"
