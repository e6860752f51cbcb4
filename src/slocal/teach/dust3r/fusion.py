"""Per-frame fusion of the aligned pair estimates (see ``docs/dust3r_teacher.md``, step 4).

Each pair's view is resampled onto the frame's target grid, the pair scales are
harmonised, and a confidence-weighted median consensus on depth along the known
pixel rays gives the frame's targets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from slocal.data.scene import Frame
from slocal.geometry.camera import Camera, pixel_centers
from slocal.geometry.pose import transform_points
from slocal.teach.targets import FrameTargets

RESAMPLING = ("nearest", "bilinear")


def resample_to(
    target: Camera,
    source: Camera,
    maps: Sequence[np.ndarray],
    valid_HW: np.ndarray,
    mode: str = "nearest",
    edge_tolerance: float | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Sample maps of the ``source`` pixel grid at the pixel centres of ``target``.

    Both cameras must share the optical centre and orientation (a resize and
    crop of the same image); image coordinates follow :mod:`slocal.geometry.camera`.

    Args:
        target: camera of the output grid.
        source: camera of ``maps`` (H_s, W_s).
        maps: (H_s, W_s) arrays.
        valid_HW: (H_s, W_s) bool; invalid source pixels never contribute.
        mode: ``nearest`` (the source pixel containing the point), or ``bilinear``
            (valid only where every contributing neighbour is).
        edge_tolerance: bilinear only: where the contributing neighbours of
            ``maps[0]`` (a depth) differ by more than this relative amount, the
            nearest sample is taken instead, so depth edges get no in-between points.

    Returns:
        the resampled maps (H_t, W_t) float64 and their validity.
    """
    uv_t = pixel_centers(target.width, target.height).reshape(-1, 2)
    uv_s, _ = source.project(target.rays(uv_t))
    Hs, Ws = valid_HW.shape
    shape = (target.height, target.width)
    col = np.floor(uv_s[:, 0]).astype(np.int64)
    row = np.floor(uv_s[:, 1]).astype(np.int64)
    inside = (col >= 0) & (col < Ws) & (row >= 0) & (row < Hs)
    near_ok = np.zeros(len(uv_t), bool)
    near_ok[inside] = valid_HW[row[inside], col[inside]]
    nearest = []
    for m in maps:
        v = np.full(len(uv_t), np.nan)
        v[near_ok] = m[row[near_ok], col[near_ok]]
        nearest.append(v)
    if mode == "nearest":
        return [v.reshape(shape) for v in nearest], near_ok.reshape(shape)
    if mode != "bilinear":
        raise ValueError(f"unknown resampling mode {mode!r}")
    x = uv_s[:, 0] - 0.5
    y = uv_s[:, 1] - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    corners = [(0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)]
    ok = np.isfinite(x) & np.isfinite(y)
    acc = [np.zeros(len(uv_t)) for _ in maps]
    lo, hi = np.full(len(uv_t), np.inf), np.full(len(uv_t), -np.inf)
    for dx, dy, wk in corners:
        cc, rr = x0 + dx, y0 + dy
        inside_k = (cc >= 0) & (cc < Ws) & (rr >= 0) & (rr < Hs)
        contributes = wk > 1e-12
        vk = np.zeros(len(uv_t), bool)
        vk[inside_k] = valid_HW[rr[inside_k], cc[inside_k]]
        ok &= vk | ~contributes
        use = vk & contributes
        for a, m in zip(acc, maps):
            a[use] += wk[use] * m[rr[use], cc[use]]
        first = maps[0][rr[use], cc[use]]
        lo[use] = np.minimum(lo[use], first)
        hi[use] = np.maximum(hi[use], first)
    if edge_tolerance is not None:
        with np.errstate(invalid="ignore"):
            edge = ok & (hi - lo > edge_tolerance * np.abs(lo))
        for a, v in zip(acc, nearest):
            a[edge] = v[edge]
        ok = (ok & ~edge) | (edge & near_ok)
    out = []
    for a in acc:
        a[~ok] = np.nan
        out.append(a.reshape(shape))
    return out, ok.reshape(shape)


def estimate_weights(conf_KHW: np.ndarray, valid_KHW: np.ndarray) -> np.ndarray:
    """Fusion weights ``log(conf)`` (a confidence of exactly 1 still counts a little), 0 where invalid."""
    return np.where(valid_KHW, np.maximum(np.log(np.maximum(conf_KHW, 1.0)), 1e-6), 0.0)


def harmonize_scales(
    depth_KHW: np.ndarray, valid_KHW: np.ndarray, scale_tolerance: float, min_common: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Relative scale of each of a frame's estimates, and which agree with the others.

    For every two estimates with at least ``min_common`` common pixels, the
    median log depth ratio is measured; per-estimate log scales ``x_k`` solve
    ``x_k - x_l = ratio_kl`` in the least-squares sense, relative to their
    median. Estimates further than ``log(1 + scale_tolerance)`` from the median
    (or linked to no other estimate while others are linked) are dropped, and
    the median of the others is the common scale.

    Returns:
        factors_K that bring each estimate to the median scale, and keep_K (bool).
    """
    K = len(depth_KHW)
    if K == 1:
        return np.ones(1), np.ones(1, bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_d = np.where(valid_KHW & (depth_KHW > 0), np.log(depth_KHW), np.nan).reshape(K, -1)
    rows, rhs = [], []
    linked = np.zeros(K, bool)
    for k in range(K):
        for m in range(k + 1, K):
            common = np.isfinite(log_d[k]) & np.isfinite(log_d[m])
            if common.sum() < min_common:
                continue
            row = np.zeros(K)
            row[k], row[m] = 1.0, -1.0
            rows.append(row)
            rhs.append(float(np.median(log_d[k, common] - log_d[m, common])))
            linked[k] = linked[m] = True
    if not rows:
        return np.ones(K), np.ones(K, bool)
    # the gauge: unlinked estimates keep log scale 0 (least-norm solution)
    x = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    ref = float(np.median(x[linked]))
    keep = linked & (np.abs(x - ref) <= math.log1p(scale_tolerance))
    if keep.any():
        # the reference again without the estimates just dropped
        ref = float(np.median(x[keep]))
    factors = np.where(linked, np.exp(ref - x), 1.0)
    return factors, keep


def fuse_estimates(
    depth_KHW: np.ndarray,
    conf_KHW: np.ndarray,
    valid_KHW: np.ndarray,
    tolerance: float,
    scale_tolerance: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fuse K depth estimates per pixel (module docstring, step 5).

    Args:
        depth_KHW: metric depths along the pixel rays.
        conf_KHW: network confidences (>= 1) of the estimates.
        valid_KHW: which estimates exist.
        tolerance: relative depth difference within which estimates agree with the consensus.
        scale_tolerance: if given, first bring the estimates to their median scale
            (:func:`harmonize_scales`), dropping those further off than this.

    Returns:
        depth_HW (NaN where invalid), conf_HW (0 where invalid), valid_HW.
    """
    valid = valid_KHW & np.isfinite(depth_KHW) & np.isfinite(conf_KHW)
    if scale_tolerance is not None:
        factors, keep = harmonize_scales(depth_KHW, valid, scale_tolerance)
        depth_KHW = depth_KHW * factors[:, None, None]
        valid = valid & keep[:, None, None]
    w = estimate_weights(conf_KHW, valid)
    d = np.where(valid, depth_KHW, np.inf)
    order = np.argsort(d, axis=0)
    d_sorted = np.take_along_axis(d, order, 0)
    w_sorted = np.take_along_axis(w, order, 0)
    total = w_sorted.sum(0)
    cum = np.cumsum(w_sorted, axis=0)
    median_idx = np.argmax(cum >= 0.5 * total[None], axis=0)
    median = np.take_along_axis(d_sorted, median_idx[None], 0)[0]
    agree = valid & (np.abs(depth_KHW - median[None]) <= tolerance * median[None])
    w_in = np.where(agree, w, 0.0)
    s = w_in.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        depth = (np.where(agree, depth_KHW, 0.0) * w_in).sum(0) / s
        conf = np.where(agree, conf_KHW, 0.0).sum(0) / agree.sum(0)
    ok = (total > 0) & (s > 0.5 * total) & np.isfinite(depth)
    return np.where(ok, depth, np.nan), np.where(ok, conf, 0.0), ok


def frame_targets(
    frame: Frame,
    camera: Camera,
    depth_KHW: np.ndarray,
    conf_KHW: np.ndarray,
    valid_KHW: np.ndarray,
    tolerance: float,
    scale_tolerance: float | None = None,
) -> FrameTargets:
    """Fused targets of one frame: the fused depth along each pixel's known ray, in the world."""
    depth, conf, ok = fuse_estimates(depth_KHW, conf_KHW, valid_KHW, tolerance, scale_tolerance)
    uv = pixel_centers(camera.width, camera.height).reshape(-1, 2)
    pts = camera.backproject(uv, np.where(ok, depth, 0.0).reshape(-1))
    coords = transform_points(frame.world_from_cam, pts).astype(np.float32)
    coords[~ok.reshape(-1)] = np.nan
    return FrameTargets(frame.name, camera, coords.reshape(camera.height, camera.width, 3), conf.astype(np.float32), ok)
