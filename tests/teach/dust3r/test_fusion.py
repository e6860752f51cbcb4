"""Resampling pair estimates onto the target grid and fusing them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slocal.geometry import Camera, pixel_centers
from slocal.teach.dust3r.fusion import fuse_estimates, harmonize_scales, resample_to

# ----------------------------------------------------------------------------- resampling and fusion


def test_resample_through_resize_and_crop():
    frame_cam = Camera(80, 64, 60.0, 60.0, 41.0, 30.5)
    proc = frame_cam.scaled(64, 51).cropped(0, 1, 64, 48)  # what preprocess_image does at size 64
    target = frame_cam.scaled_to_max_side(40)
    uv_p = pixel_centers(proc.width, proc.height)
    # a map that is affine in image coordinates: bilinear reproduces it exactly
    lin = 0.3 * uv_p[..., 0] - 0.2 * uv_p[..., 1] + 5.0
    valid = np.ones(lin.shape, bool)
    (got,), ok = resample_to(target, proc, [lin], valid, "bilinear")
    uv_t = pixel_centers(target.width, target.height).reshape(-1, 2)
    uv_in_p, _ = proc.project(target.rays(uv_t))
    want = (0.3 * uv_in_p[:, 0] - 0.2 * uv_in_p[:, 1] + 5.0).reshape(got.shape)
    inner = ok & (uv_in_p[:, 1].reshape(got.shape) > 0.5) & (uv_in_p[:, 1].reshape(got.shape) < proc.height - 0.5)
    assert inner.sum() > 0.8 * got.size
    np.testing.assert_allclose(got[inner], want[inner], atol=1e-9)
    # nearest: the source pixel containing the mapped centre; outside the crop is invalid
    (near,), ok_n = resample_to(target, proc, [lin], valid, "nearest")
    inside = (uv_in_p[:, 1] >= 0) & (uv_in_p[:, 1] < proc.height)
    assert np.array_equal(ok_n.reshape(-1), inside)
    cols, rows = np.floor(uv_in_p[inside]).astype(int).T
    np.testing.assert_allclose(near.reshape(-1)[inside], lin[rows, cols])
    # invalid source pixels never leak
    valid[:, :32] = False
    (_, ok_b) = resample_to(target, proc, [lin], valid, "bilinear")
    assert not ok_b[:, : target.width // 2 - 1].any()
    # across a depth edge bilinear takes the nearest sample instead of an in-between value
    step = np.where(uv_p[..., 0] < 30.3, 1.0, 3.0)
    (soft,), _ = resample_to(target, proc, [step], np.ones(step.shape, bool), "bilinear")
    (guarded,), _ = resample_to(target, proc, [step], np.ones(step.shape, bool), "bilinear", edge_tolerance=0.05)
    (step_near,), _ = resample_to(target, proc, [step], np.ones(step.shape, bool), "nearest")
    edge = (soft > 1 + 1e-9) & (soft < 3 - 1e-9)
    assert edge.any()
    np.testing.assert_array_equal(guarded[edge], step_near[edge])
    np.testing.assert_array_equal(guarded[~edge & np.isfinite(soft)], soft[~edge & np.isfinite(soft)])


def test_fusion_weights_by_confidence_and_rejects_outliers():
    e = math.e
    depth = np.array([2.0, 2.1, 3.0, 2.05]).reshape(4, 1, 1)
    conf = np.array([e**3, e**1, e**2, 1.0]).reshape(4, 1, 1)
    valid = np.array([True, True, True, False]).reshape(4, 1, 1)
    d, c, ok = fuse_estimates(depth, conf, valid, tolerance=0.06)
    assert ok.all()
    # 3.0 disagrees with the weighted median (2.0); the rest is averaged with log(conf) weights 3 and 1
    assert d[0, 0] == pytest.approx((3 * 2.0 + 1 * 2.1) / 4)
    assert c[0, 0] == pytest.approx((e**3 + e) / 2)
    # the more confident of two disagreeing estimates wins; a tie is rejected
    d2, _, ok2 = fuse_estimates(
        np.array([1.0, 2.0]).reshape(2, 1, 1), np.array([e, e**4]).reshape(2, 1, 1), np.ones((2, 1, 1), bool), 0.05
    )
    assert ok2.all() and d2[0, 0] == pytest.approx(2.0)
    _, c3, ok3 = fuse_estimates(
        np.array([1.0, 2.0]).reshape(2, 1, 1), np.full((2, 1, 1), e), np.ones((2, 1, 1), bool), 0.05
    )
    assert not ok3.any() and c3[0, 0] == 0
    # no estimate at all
    _, _, ok4 = fuse_estimates(depth, conf, np.zeros_like(valid), 0.05)
    assert not ok4.any()


def test_fusion_brings_pair_scales_to_their_consensus():
    rng = np.random.default_rng(3)
    base = rng.uniform(1.0, 4.0, (24, 32))
    factors = np.array([1.0, 1.12, 0.93, 1.7])  # the last pair's scale went wrong
    depth = base[None] * factors[:, None, None]
    valid = np.ones(depth.shape, bool)
    valid[1, :, :10] = False  # partial overlaps are fine
    conf = np.full(depth.shape, math.e**2)
    got, keep = harmonize_scales(depth, valid, scale_tolerance=0.3)
    assert keep.tolist() == [True, True, True, False]
    # brought to the median scale of the estimates that agree
    ref = np.median(factors[:3])
    np.testing.assert_allclose((factors * got)[keep], ref, rtol=1e-9)
    d, _, ok = fuse_estimates(depth, conf, valid, tolerance=0.05, scale_tolerance=0.3)
    assert ok.all()
    np.testing.assert_allclose(d, base * ref, rtol=1e-9)
    # without the consensus the scattered scales leave no majority in most pixels
    _, _, ok_raw = fuse_estimates(depth, conf, valid, tolerance=0.05)
    assert ok_raw.mean() < 0.5
