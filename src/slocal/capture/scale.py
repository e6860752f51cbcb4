"""Metres per model unit of a reconstruction: given, from a measured distance, or from a metric source.

A reconstruction from images alone has no scale. The sources, in the order
``slocal map`` takes them:

- ``given``: ``--metres-per-unit``;
- ``distance``: the measured distance between two images' camera centres
  (``scale_from_distance``), e.g. two photos taken a tape-measured step apart;
- ``depth``: a source scene with registered depth (7-Scenes, 12Scenes): the
  median ratio of sensor depth to model depth over the model's observations
  (``scale_from_depth``);
- ``poses``: a source scene with metric poses but no depth: the scale of the
  similarity fitted over the camera centres (``fit_similarity``).

``fit_similarity_with_offset`` fits that similarity jointly with a constant
offset of the mapped camera in the reference camera's frame (7-Scenes' poses
are the depth camera's, a few centimetres from the colour camera that was mapped).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from slocal.data.scene import Frame
from slocal.errors import SlocalError

SOURCES = ("unknown", "given", "distance", "depth", "poses")


@dataclass(frozen=True)
class Similarity:
    """``dst = scale * R @ src + t``, optionally with the reference camera's offset (see module docstring).

    Attributes:
        scale, R_33, t_3: the similarity (scale: metres per model unit when dst is metric).
        offset_3: mapped camera centre in the reference camera's frame (zeros without the offset fit).
    """

    scale: float
    R_33: np.ndarray
    t_3: np.ndarray
    offset_3: np.ndarray

    def apply(self, points_N3: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(points_N3, np.float64) @ self.R_33.T + self.t_3


def fit_similarity(src_N3: np.ndarray, dst_N3: np.ndarray) -> Similarity:
    """Least-squares similarity mapping ``src`` onto ``dst`` (pycolmap's ``estimate_sim3d``, Umeyama).

    Raises:
        SlocalError: fewer than 3 points, or a degenerate (collinear) set.
    """
    import pycolmap

    src, dst = np.asarray(src_N3, np.float64), np.asarray(dst_N3, np.float64)
    if len(src) < 3:
        raise SlocalError(f"a similarity needs at least 3 camera centres, got {len(src)}")
    sim = pycolmap.estimate_sim3d(src, dst)
    if sim is None or not np.isfinite(sim.scale) or sim.scale <= 0:
        raise SlocalError("cannot fit a similarity to these camera centres (collinear or coincident)")
    return Similarity(float(sim.scale), np.asarray(sim.rotation.matrix()), np.asarray(sim.translation), np.zeros(3))


def fit_similarity_with_offset(
    centres_N3: np.ndarray, world_from_cam_N44: np.ndarray, iterations: int = 200, tol: float = 1e-10
) -> Similarity:
    """Similarity from model camera centres to reference poses, with a constant camera-frame offset.

    Minimises ``sum_i |s R c_i + t - (T_i + R_i o)|^2`` over ``s, R, t, o`` by
    alternating the closed-form similarity (given ``o``) and the mean offset
    (given the similarity): each step lowers the same least-squares cost.

    Args:
        centres_N3: mapped camera centres (model units).
        world_from_cam_N44: the reference poses of the same images (metric).
    """
    T = np.asarray(world_from_cam_N44, np.float64)
    R_i, t_i = T[:, :3, :3], T[:, :3, 3]
    offset = np.zeros(3)
    sim = fit_similarity(centres_N3, t_i)
    last = math.inf
    for _ in range(iterations):
        sim = fit_similarity(centres_N3, t_i + R_i @ offset)
        residual_N3 = sim.apply(centres_N3) - t_i
        offset = np.einsum("nji,nj->i", R_i, residual_N3) / len(R_i)  # mean of R_i^T (s R c_i + t - T_i)
        cost = float(np.sum((residual_N3 - R_i @ offset) ** 2))
        if last - cost <= tol * max(cost, 1e-12):
            break
        last = cost
    return Similarity(sim.scale, sim.R_33, sim.t_3, offset)


def scale_from_distance(centre_a_3: np.ndarray, centre_b_3: np.ndarray, metres: float) -> float:
    """Metres per unit from the measured distance between two camera centres.

    Raises:
        SlocalError: a non-positive distance, or the two centres coincide in the model.
    """
    if not (math.isfinite(metres) and metres > 0):
        raise SlocalError(f"the measured distance must be a positive number of metres, got {metres}")
    units = float(np.linalg.norm(np.asarray(centre_a_3, np.float64) - np.asarray(centre_b_3, np.float64)))
    if units < 1e-9:
        raise SlocalError("the two images' camera centres coincide in the model; pick two images taken apart")
    return metres / units


def scale_from_depth(rec, frames: Sequence[Frame], names: Sequence[str]) -> tuple[float, int, float]:
    """Metres per unit as the median ratio of sensor depth to model depth at the model's observations.

    Args:
        rec: the pycolmap reconstruction.
        frames: the source frames (with depth) of the images ``names`` (same order).
        names: image names in the model.

    Returns:
        ``(metres per unit, observations used, relative spread)``: the spread is the
        median absolute deviation of the ratios divided by their median.

    Raises:
        SlocalError: no observation has a valid sensor depth.
    """
    ratios = []
    by_name = {image.name: image for image in rec.images.values() if image.has_pose}
    for name, frame in zip(names, frames):
        image = by_name.get(name)
        if image is None or not frame.has_depth:
            continue
        points = [(p.xy, p.point3D_id) for p in image.points2D if p.has_point3D()]
        if not points:
            continue
        uv = np.array([xy for xy, _ in points], np.float64)
        xyz = np.array([rec.point3D(pid).xyz for _, pid in points], np.float64)
        M = np.asarray(image.cam_from_world().matrix())
        z = xyz @ M[:3, :3].T[:, 2] + M[2, 3]
        # The ray of each keypoint through the mapped (possibly distorted) camera, into the depth image.
        rays = np.asarray(rec.camera(image.camera_id).cam_from_img(uv), np.float64)
        uv_d, _ = frame.depth_camera.project(np.column_stack([rays, np.ones(len(rays))]))
        depth = frame.read_depth()
        h, w = depth.shape
        ok = np.isfinite(uv_d).all(axis=1) & (z > 0)
        cols = np.floor(np.where(ok, uv_d[:, 0], -1)).astype(np.int64)
        rows = np.floor(np.where(ok, uv_d[:, 1], -1)).astype(np.int64)
        ok &= (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
        d = np.zeros(len(z))
        d[ok] = depth[rows[ok], cols[ok]]
        ok &= d > 0
        ratios.append(d[ok] / z[ok])
    values = np.concatenate(ratios) if ratios else np.zeros(0)
    if len(values) == 0:
        raise SlocalError("no observation of the model has a valid sensor depth: cannot scale it from depth")
    median = float(np.median(values))
    spread = float(np.median(np.abs(values - median)) / median)
    return median, int(len(values)), spread
