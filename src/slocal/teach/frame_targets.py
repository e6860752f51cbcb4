"""One frame's targets: world coordinates, confidence and validity on a target camera's pixel grid.

Target pixel ``(i, j)`` is the pixel centre ``(j + 0.5, i + 0.5)`` of ``FrameTargets.camera``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slocal.geometry.camera import Camera


@dataclass(frozen=True, eq=False)
class FrameTargets:
    """Targets of one mapping frame.

    Attributes:
        name: the frame's name in the scene.
        camera: camera of the target grid (the frame's camera rescaled).
        coords_HW3: float32 world coordinates in metres (NaN where invalid).
        conf_HW: float32 confidence, > 0 where valid, higher is better.
        valid_HW: bool mask of usable targets.
    """

    name: str
    camera: Camera
    coords_HW3: np.ndarray
    conf_HW: np.ndarray
    valid_HW: np.ndarray

    def __post_init__(self) -> None:
        H, W = self.camera.height, self.camera.width
        if self.coords_HW3.shape != (H, W, 3) or self.conf_HW.shape != (H, W) or self.valid_HW.shape != (H, W):
            raise ValueError(
                f"targets of {self.name}: shapes {self.coords_HW3.shape}, {self.conf_HW.shape}, "
                f"{self.valid_HW.shape} do not match the {W}x{H} camera"
            )

    @property
    def num_valid(self) -> int:
        return int(self.valid_HW.sum())

    def sample(
        self, xy_N2: np.ndarray, origin_3: np.ndarray | None = None, edge_ratio: float = 0.1
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Targets at arbitrary image points of ``camera`` (e.g. the centres of a student's cells).

        Bilinear over the valid ones of the four pixels around each point (pixel
        ``(i, j)`` sits at ``(j + 0.5, i + 0.5)``), so a stride-8 cell centre
        ``8j + 4`` gets the target *at* ``8j + 4``, not at the centre of the pixel
        it falls in. Where the valid neighbours straddle a depth edge, blending
        would invent a point in mid-air: the most heavily weighted neighbour is
        taken instead. An edge is where the neighbours' distances from the
        camera centre ``origin_3`` differ by more than ``edge_ratio`` (relative,
        so a wall seen at a grazing angle is not an edge); without the centre,
        where they lie more than 5 cm apart.

        Args:
            xy_N2: (N, 2) image coordinates in ``camera``.
            origin_3: the camera centre, in the frame of ``coords_HW3``.
            edge_ratio: relative depth jump that makes an edge.

        Returns:
            coords_N3 float32 (NaN where invalid), conf_N float32, valid_N bool.
        """
        return sample_target_maps(self.coords_HW3, self.conf_HW, self.valid_HW, xy_N2, origin_3, edge_ratio)


def sample_target_maps(
    coords_HW3: np.ndarray,
    conf_HW: np.ndarray,
    valid_HW: np.ndarray,
    xy_N2: np.ndarray,
    origin_3: np.ndarray | None = None,
    edge_ratio: float = 0.1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``FrameTargets.sample`` on bare maps (coordinates in any frame, e.g. relative to the scene centre)."""
    H, W = valid_HW.shape
    xy = np.asarray(xy_N2, np.float64).reshape(-1, 2)
    n = len(xy)
    u, v = xy[:, 0] - 0.5, xy[:, 1] - 0.5
    j0, i0 = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    a, b = u - j0, v - i0
    cols = np.stack([j0, j0 + 1, j0, j0 + 1], 1)
    rows = np.stack([i0, i0, i0 + 1, i0 + 1], 1)
    w = np.stack([(1 - a) * (1 - b), a * (1 - b), (1 - a) * b, a * b], 1)
    inside = (cols >= 0) & (cols < W) & (rows >= 0) & (rows < H)
    cc, rr = np.clip(cols, 0, W - 1), np.clip(rows, 0, H - 1)
    ok = inside & valid_HW[rr, cc] & (w > 0)
    w = np.where(ok, w, 0.0)
    total = w.sum(1)
    valid = total > 0
    pts = np.where(ok[..., None], coords_HW3[rr, cc].astype(np.float64), 0.0)
    conf = np.where(ok, conf_HW[rr, cc].astype(np.float64), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (w[..., None] * pts).sum(1) / total[:, None]
        conf_mean = (w * conf).sum(1) / total
    if origin_3 is not None:
        dist = np.linalg.norm(pts - np.asarray(origin_3, np.float64), axis=2)
        near = np.where(ok, dist, np.inf).min(1)
        far = np.where(ok, dist, 0.0).max(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            edge = valid & (far > near * (1.0 + edge_ratio))
    else:
        spread = np.where(ok, np.linalg.norm(pts - mean[:, None], axis=2), 0.0).max(1)
        edge = valid & (spread > 0.025)
    if edge.any():
        best = np.argmax(w[edge], axis=1)
        mean[edge] = pts[edge, best]
        conf_mean[edge] = conf[edge, best]
    coords = np.full((n, 3), np.nan, np.float32)
    coords[valid] = mean[valid]
    conf_out = np.where(valid, conf_mean, 0.0).astype(np.float32)
    return coords, conf_out, valid
