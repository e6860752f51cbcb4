"""Plane-sweep stereo of one reference view against posed source views (ZNCC, best-K aggregation).

The dense core of the MVS teacher (``teach/mvs.py``): fronto-parallel planes in the reference camera,
uniform in inverse depth, each source warped onto every plane by its homography, windowed ZNCC, the
best ``best_views`` sources' scores averaged, and the peak kept with a sub-plane parabola fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from slocal.data.scene import Frame
from slocal.geometry.camera import Camera, pixel_centers
from slocal.io import read_image
from slocal.teach.targets import target_camera


class SweepSettings(Protocol):
    """The settings ``plane_sweep`` reads (``MvsTeacherConfig`` has them)."""

    window: int
    num_depths: int
    best_views: int
    min_ncc: float
    min_texture: float


@dataclass(frozen=True, eq=False)
class View:
    """One mapping frame as the sweep sees it: grey image on the target grid and its geometry."""

    frame: Frame
    camera: Camera
    gray_HW: np.ndarray  # float32, 0-255
    cam_from_world: np.ndarray


def load_view(frame: Frame, max_side: int) -> View:
    camera = target_camera(frame, max_side)
    rgb = read_image(frame.image_path)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if (gray.shape[1], gray.shape[0]) != camera.size:
        gray = cv2.resize(gray, camera.size, interpolation=cv2.INTER_AREA)
    return View(frame, camera, gray.astype(np.float32), frame.cam_from_world)


def scaled_view(view: View, factor: int) -> View:
    """The view on a grid ``factor`` times smaller (area-averaged image)."""
    cam = view.camera
    camera = cam.scaled(max(cam.width // factor, 8), max(cam.height // factor, 8))
    gray = cv2.resize(view.gray_HW, camera.size, interpolation=cv2.INTER_AREA)
    return View(view.frame, camera, gray, view.cam_from_world)


def _cv_homography(H_33: np.ndarray) -> np.ndarray:
    """A homography between continuous image coordinates (centre at x + 0.5) in OpenCV's (centre at x)."""
    shift = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    unshift = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    return unshift @ H_33 @ shift


@dataclass(frozen=True, eq=False)
class SweepResult:
    """One frame's plane-sweep depth (0 where none) and its aggregated ZNCC score."""

    depth_HW: np.ndarray
    score_HW: np.ndarray


class _Zncc:
    """ZNCC of the reference image with warped source images over a ``window`` square (box filters)."""

    def __init__(self, ref_HW: np.ndarray, window: int, min_texture: float):
        self.box = (window, window)
        self.ref = ref_HW
        self.mean_r = self._box(ref_HW)
        var_r = self._box(ref_HW * ref_HW) - self.mean_r * self.mean_r
        self.textured = var_r > min_texture**2
        self.inv_std_r = 1.0 / np.sqrt(np.maximum(var_r, 1e-6))

    def _box(self, image: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(image, -1, self.box, borderType=cv2.BORDER_REFLECT)

    def __call__(self, warped_HW: np.ndarray, inside_HW: np.ndarray) -> np.ndarray:
        # OpenCV's element-wise arithmetic: about twice numpy's speed on these small float32 images.
        mean_s = self._box(warped_HW)
        var_s = cv2.subtract(self._box(cv2.multiply(warped_HW, warped_HW)), cv2.multiply(mean_s, mean_s))
        cov = cv2.subtract(self._box(cv2.multiply(warped_HW, self.ref)), cv2.multiply(mean_s, self.mean_r))
        score = cv2.divide(cv2.multiply(cov, self.inv_std_r), cv2.sqrt(cv2.max(var_s, 1e-6)))
        score[~inside_HW] = -1.0
        return score


class _BestViews:
    """Mean of the ``keep`` best of ``n`` per-pixel scores (the worst ones, occluded views, do not vote)."""

    def __init__(self, shape: tuple[int, int], n: int, keep: int):
        self.keep = min(keep, n)
        self.total = np.zeros(shape, np.float32)
        # The n - keep smallest scores so far, sorted (an insertion network: no sort over a stacked axis).
        self.worst = [np.full(shape, np.inf, np.float32) for _ in range(n - self.keep)]

    def add(self, score: np.ndarray) -> None:
        self.total += score
        for q, w in enumerate(self.worst):
            self.worst[q] = np.minimum(w, score)
            score = np.maximum(w, score)

    def mean(self) -> np.ndarray:
        total = self.total
        for w in self.worst:
            total = total - w
        return total / self.keep


def _peak(volume_DHW: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Best index per pixel, its score, a sub-step offset in [-0.5, 0.5] (parabola through the neighbours) and
    ``interior`` (False, offset 0, where the best is the first or last hypothesis).
    """
    D, H, W = volume_DHW.shape
    best = np.argmax(volume_DHW, axis=0)
    rows, cols = np.indices((H, W))
    s0 = volume_DHW[best, rows, cols]
    lo = volume_DHW[np.maximum(best - 1, 0), rows, cols]
    hi = volume_DHW[np.minimum(best + 1, D - 1), rows, cols]
    denom = lo - 2 * s0 + hi
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(denom < 0, 0.5 * (lo - hi) / denom, 0.0)
    interior = (best > 0) & (best < D - 1)
    offset = np.clip(np.where(interior, offset, 0.0), -0.5, 0.5)
    return best, s0, offset, interior


def plane_sweep(ref: View, sources: Sequence[View], near: float, far: float, config: SweepSettings) -> SweepResult:
    """Depth of ``ref`` by a fronto-parallel plane sweep over ``sources`` (ZNCC, best-views aggregation)."""
    cam = ref.camera
    H, W = cam.height, cam.width
    zncc = _Zncc(ref.gray_HW, config.window, config.min_texture)
    inv_depths = np.linspace(1.0 / near, 1.0 / far, config.num_depths)  # near to far
    Kr_inv = np.linalg.inv(cam.K)
    uv = pixel_centers(W, H).reshape(-1, 2)
    rays = np.c_[uv, np.ones(len(uv))] @ Kr_inv.T  # (P, 3), z = 1
    prepared = []
    for src in sources:
        src_from_ref = src.cam_from_world @ ref.frame.world_from_cam
        Rm, t = src_from_ref[:3, :3], src_from_ref[:3, 3]
        # z in the source of the point at depth d on each ray is d * (R[2] . ray) + t_z.
        z_dir = (rays @ Rm[2]).reshape(H, W).astype(np.float32)
        prepared.append((src, Rm, t, src.camera.K, z_dir))

    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    kernel = np.ones((config.window + 2, config.window + 2), np.uint8)  # the window and a pixel around it
    volume = np.empty((config.num_depths, H, W), np.float32)
    for d_idx, inv_d in enumerate(inv_depths):
        agg = _BestViews((H, W), len(sources), config.best_views)
        for src, Rm, t, Ks, z_dir in prepared:
            Hs = _cv_homography(Ks @ (Rm + np.outer(t, [0.0, 0.0, inv_d])) @ Kr_inv)  # src pixel from ref pixel
            # Outside the source reads as -1 (grey levels are >= 0); a window must lie wholly inside, clear of
            # the pixels that interpolation mixed with the border.
            warped = cv2.warpPerspective(
                src.gray_HW, Hs, (W, H), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=-1.0
            )
            inside = cv2.erode((warped >= 0).view(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE).view(bool)
            inside &= z_dir > -t[2] * inv_d
            agg.add(zncc(warped, inside))
        volume[d_idx] = agg.mean()

    best, s0, offset, interior = _peak(volume)
    step = inv_depths[1] - inv_depths[0]
    inv = inv_depths[best] + offset * step
    ok = interior & zncc.textured & (s0 >= config.min_ncc) & (inv > 0)
    depth = np.where(ok, 1.0 / np.where(ok, inv, 1.0), 0.0).astype(np.float32)
    return SweepResult(depth, np.where(ok, s0, 0.0).astype(np.float32))
