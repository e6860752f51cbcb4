"""Z-buffered splatting of camera-frame points into an image grid.

Used to render a depth camera's measurements into a colour camera that sits
elsewhere on the same rig, and a fused surface into any camera. Each point
lands on the pixel that contains its projection (pixel ``(i, j)`` covers
``[j, j + 1) x [i, i + 1)``, centre at ``x + 0.5``); where several land on one
pixel the nearest wins, so a foreground edge hides what lies behind it.
"""

from __future__ import annotations

import numpy as np

from slocal.geometry.camera import Camera


def splat_nearest(camera: Camera, points_cam_N3: np.ndarray, values_NC: np.ndarray | None = None):
    """Render points into ``camera`` keeping the nearest point per pixel.

    Args:
        camera: the target camera (its pixel grid).
        points_cam_N3: (N, 3) points in the target camera's frame (z forward).
        values_NC: optional (N, C) values carried with each point (e.g. world coordinates).

    Returns:
        depth_HW float32 (0 where nothing landed), index_HW int64 (the winning
        point's row in ``points_cam_N3``, -1 where nothing landed) and, when
        ``values_NC`` is given, values_HWC float32 (NaN where nothing landed).
    """
    p = np.asarray(points_cam_N3, np.float64).reshape(-1, 3)
    H, W = camera.height, camera.width
    uv, z = camera.project(p)
    with np.errstate(invalid="ignore"):
        ok = (z > 0) & np.isfinite(uv).all(1)
        cols = np.floor(uv[:, 0]).astype(np.int64, copy=False)
        rows = np.floor(uv[:, 1]).astype(np.int64, copy=False)
    ok &= (cols >= 0) & (cols < W) & (rows >= 0) & (rows < H)
    idx = np.flatnonzero(ok)
    pix = rows[idx] * W + cols[idx]
    # Sort by pixel, then by depth: the first entry of each pixel's run is the nearest point.
    order = np.lexsort((z[idx], pix))
    pix, idx = pix[order], idx[order]
    first = np.ones(len(pix), bool)
    first[1:] = pix[1:] != pix[:-1]
    pix, idx = pix[first], idx[first]
    depth = np.zeros(H * W, np.float32)
    depth[pix] = z[idx]
    index = np.full(H * W, -1, np.int64)
    index[pix] = idx
    depth, index = depth.reshape(H, W), index.reshape(H, W)
    if values_NC is None:
        return depth, index
    values = np.asarray(values_NC).reshape(len(p), -1)
    out = np.full((H * W, values.shape[1]), np.nan, np.float32)
    out[pix] = values[idx]
    return depth, index, out.reshape(H, W, -1)
