"""Pinhole camera model.

Pixel convention (the one place it is defined for all of slocal): image
coordinates are continuous, with the origin at the top-left *corner* of the
top-left pixel. Pixel ``(col, row)`` covers ``[col, col + 1) x [row, row + 1)``
and its centre is at ``(col + 0.5, row + 0.5)``. This is COLMAP's convention;
``cx, cy`` are expressed in it, and rescaling an image by ``s`` maps every
coordinate ``x`` to ``s * x`` exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from slocal.errors import SlocalError


@dataclass(frozen=True)
class Camera:
    """A pinhole camera without distortion.

    Attributes:
        width, height: image size in pixels.
        fx, fy: focal lengths in pixels.
        cx, cy: principal point, in the continuous convention of this module.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        values = (self.fx, self.fy, self.cx, self.cy)
        if self.width <= 0 or self.height <= 0:
            raise SlocalError(f"camera size must be positive, got {self.width}x{self.height}")
        if not all(math.isfinite(v) for v in values) or self.fx <= 0 or self.fy <= 0:
            raise SlocalError(f"invalid camera intrinsics fx={self.fx} fy={self.fy} cx={self.cx} cy={self.cy}")

    @classmethod
    def from_K(cls, K_33: np.ndarray, width: int, height: int) -> Camera:
        """Build from a 3x3 intrinsic matrix (zero skew)."""
        K_33 = np.asarray(K_33, dtype=np.float64)
        return cls(int(width), int(height), float(K_33[0, 0]), float(K_33[1, 1]), float(K_33[0, 2]), float(K_33[1, 2]))

    @property
    def K(self) -> np.ndarray:
        """The 3x3 intrinsic matrix (float64)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.width, self.height

    def scaled(self, width: int, height: int) -> Camera:
        """The same camera for the image resized to ``width`` x ``height``."""
        sx, sy = width / self.width, height / self.height
        return Camera(int(width), int(height), self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy)

    def scaled_to_max_side(self, max_side: int) -> Camera:
        """Rescale so the longer side is ``max_side`` (rounded, aspect kept)."""
        s = max_side / max(self.width, self.height)
        return self.scaled(max(1, round(self.width * s)), max(1, round(self.height * s)))

    def cropped(self, x0: int, y0: int, width: int, height: int) -> Camera:
        """The camera of the crop ``[x0, x0 + width) x [y0, y0 + height)``."""
        return replace(self, width=int(width), height=int(height), cx=self.cx - x0, cy=self.cy - y0)

    def project(self, points_cam_N3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project camera-frame points.

        Args:
            points_cam_N3: (N, 3) points in the camera frame (z forward).

        Returns:
            uv_N2: (N, 2) image coordinates, and depth_N: (N,) z values.
            Points with z <= 0 get NaN coordinates.
        """
        p = np.asarray(points_cam_N3, dtype=np.float64)
        z = p[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.fx * p[:, 0] / z + self.cx
            v = self.fy * p[:, 1] / z + self.cy
        uv = np.stack([u, v], axis=1)
        uv[z <= 0] = np.nan
        return uv, z

    def backproject(self, uv_N2: np.ndarray, depth_N: np.ndarray) -> np.ndarray:
        """Lift image coordinates with z-depth to camera-frame points.

        Args:
            uv_N2: (N, 2) image coordinates.
            depth_N: (N,) z values in metres.

        Returns:
            (N, 3) camera-frame points.
        """
        uv = np.asarray(uv_N2, dtype=np.float64)
        d = np.asarray(depth_N, dtype=np.float64)
        x = (uv[:, 0] - self.cx) / self.fx * d
        y = (uv[:, 1] - self.cy) / self.fy * d
        return np.stack([x, y, d], axis=1)

    def rays(self, uv_N2: np.ndarray) -> np.ndarray:
        """Camera-frame ray directions with z = 1 for image coordinates ``uv_N2``."""
        return self.backproject(uv_N2, np.ones(len(uv_N2)))

    def to_dict(self) -> dict[str, float | int]:
        return {"width": self.width, "height": self.height, "fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy}

    @classmethod
    def from_dict(cls, d: dict) -> Camera:
        return cls(int(d["width"]), int(d["height"]), float(d["fx"]), float(d["fy"]), float(d["cx"]), float(d["cy"]))


def pixel_centers(width: int, height: int, stride: int = 1) -> np.ndarray:
    """Centres of the cells of a stride grid, in image coordinates.

    Cell ``(i, j)`` of a stride-``s`` grid covers pixels ``[s*j, s*j + s)`` by
    ``[s*i, s*i + s)``; its centre is ``(s*j + s/2, s*i + s/2)``. With ``s = 1``
    this is the pixel centre ``(j + 0.5, i + 0.5)``.

    Returns:
        float64 array (H // stride, W // stride, 2) of (x, y).
    """
    xs = np.arange(width // stride) * stride + stride / 2.0
    ys = np.arange(height // stride) * stride + stride / 2.0
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx, gy], axis=-1)


def visible_fraction(points_MS3: np.ndarray, cam_from_world_M44: np.ndarray, intrinsics_M6: np.ndarray) -> np.ndarray:
    """Fraction of each row's world points that camera m sees (in front, inside the image).

    Args:
        points_MS3: (M, S, 3) world points, one set per camera.
        cam_from_world_M44: (M, 4, 4) poses.
        intrinsics_M6: (M, 6) rows of (fx, fy, cx, cy, width, height).

    Returns:
        (M,) fractions in [0, 1].
    """
    p = np.einsum("mab,msb->msa", cam_from_world_M44[:, :3, :3], points_MS3) + cam_from_world_M44[:, None, :3, 3]
    fx, fy, cx, cy, w, h = (intrinsics_M6[:, k : k + 1] for k in range(6))
    z = p[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = fx * p[..., 0] / z + cx
        v = fy * p[..., 1] / z + cy
        inside = (z > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    return inside.mean(axis=1)
