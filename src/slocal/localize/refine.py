"""Finish a student's pose with dense optical flow to the nearest mapping images.

A student's pose is good to a few centimetres and tenths of a degree; what is left off the mapping
trajectory is a pull towards the training views (docs/lab-book.md, twentieth session). A mapping
frame's teacher targets agree with that frame's own image, so matching the query to the nearest
mapping images and carrying their targets across gives 2D-3D matches the student never had to
learn:

1. keyframes: each mapping frame's grey image at ``FlowRefineConfig.width`` and its valid targets
   (at most ``max_points``, evenly spread);
2. the ``keyframes`` mapping frames nearest the student's camera centre, among those viewing
   within ``max_view_angle_deg`` of it;
3. the query is warped into each keyframe's view by the homography that takes the keyframe's
   targets, projected with the student's pose, onto their keyframe pixels: the flow then only
   has to find what the student got wrong (a few pixels), not the whole change of viewpoint;
4. DIS optical flow from the keyframe to the warped query and back; a target whose round trip
   lands within ``max_fb_px`` of where it started keeps its match;
5. PnP-RANSAC on those matches at ``threshold_px``; the refined pose replaces the student's when
   it has ``min_inliers``.

Image coordinates follow ``slocal.geometry.camera`` (pixel centres at ``x + 0.5``); OpenCV's
arrays are indexed by pixel, so points go to ``x - 0.5`` on the way in and back on the way out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import cv2
import numpy as np
from pydantic import Field

from slocal.config import config_dataclass
from slocal.data.scene import Frame, Scene
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera
from slocal.geometry.pnp import PnpConfig, solve_pnp
from slocal.geometry.pose import transform_points
from slocal.io import read_image
from slocal.progress import progress_bar
from slocal.teach import ensure_targets, make_teacher, non_default_settings
from slocal.teach.frame_targets import FrameTargets
from slocal.teach.targets import TargetSet

log = logging.getLogger(__name__)

# OpenCV's DIS presets (Kroeger et al., ECCV 2016): "medium" runs down to full resolution with
# variational refinement; the faster ones stop at half resolution.
DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


@config_dataclass
class FlowRefineConfig:
    """Settings of the flow refinement.

    Attributes:
        width: width in pixels of the grey images the flow runs on (keyframes and query).
        keyframes: mapping images the query is matched to.
        max_view_angle_deg: a keyframe's viewing direction differs from the student's by at most this.
        max_points: targets kept per keyframe (evenly spread over the valid ones).
        preset: OpenCV DIS preset.
        max_fb_px: largest forward-backward flow disagreement of a kept match (pixels at ``width``).
        threshold_px: RANSAC inlier threshold (pixels at 640 px width, as ``PnpConfig``).
        min_inliers: fewer inliers keep the student's pose.
    """

    width: Annotated[int, Field(ge=32)] = 320
    keyframes: Annotated[int, Field(ge=1)] = 1
    max_view_angle_deg: Annotated[float, Field(gt=0, le=180)] = 30.0
    max_points: Annotated[int, Field(ge=4)] = 4000
    preset: Literal["ultrafast", "fast", "medium"] = "medium"
    max_fb_px: Annotated[float, Field(gt=0)] = 1.0
    threshold_px: Annotated[float, Field(gt=0)] = 4.0
    min_inliers: Annotated[int, Field(ge=4)] = 50


@dataclass(frozen=True, eq=False)
class Keyframe:
    """A mapping image as the refinement uses it.

    Attributes:
        name: the frame's name in the scene.
        cam_from_world: (4, 4) pose of the mapping frame.
        camera: the camera of ``gray_HW``.
        gray_HW: uint8 grey image at the refinement's width.
        uv_N2: image coordinates in ``camera`` of the frame's targets.
        xyz_N3: their world coordinates (float64).
    """

    name: str
    cam_from_world: np.ndarray
    camera: Camera
    gray_HW: np.ndarray
    uv_N2: np.ndarray
    xyz_N3: np.ndarray

    @property
    def centre(self) -> np.ndarray:
        R, t = self.cam_from_world[:3, :3], self.cam_from_world[:3, 3]
        return -R.T @ t


@dataclass(frozen=True, eq=False)
class Refinement:
    """The outcome of one refinement.

    Attributes:
        cam_from_world: (4, 4) refined pose, or None when it failed.
        success: the refined pose has ``min_inliers``.
        num_matches: flow matches given to RANSAC.
        num_inliers: RANSAC inliers among them.
        keyframes: names of the mapping images matched.
    """

    cam_from_world: np.ndarray | None
    success: bool
    num_matches: int
    num_inliers: int
    keyframes: tuple[str, ...]


def gray_at_width(rgb_HW3: np.ndarray, width: int) -> np.ndarray:
    """A uint8 grey image of ``width`` pixels with the aspect of ``rgb_HW3``."""
    gray = cv2.cvtColor(rgb_HW3, cv2.COLOR_RGB2GRAY)
    height = max(1, round(gray.shape[0] * width / gray.shape[1]))
    return cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)


def keyframe(frame: Frame, rgb_HW3: np.ndarray, targets: FrameTargets, config: FlowRefineConfig) -> Keyframe | None:
    """A mapping frame's keyframe from its image and ``FrameTargets`` (None without valid targets)."""
    gray = gray_at_width(rgb_HW3, config.width)
    camera = frame.camera.scaled(gray.shape[1], gray.shape[0])
    rows, cols = np.nonzero(targets.valid_HW)
    if len(rows) < 4:
        return None
    if len(rows) > config.max_points:
        keep = np.linspace(0, len(rows) - 1, config.max_points).round().astype(np.int64)
        rows, cols = rows[keep], cols[keep]
    sx, sy = camera.width / targets.camera.width, camera.height / targets.camera.height
    uv = np.stack([(cols + 0.5) * sx, (rows + 0.5) * sy], axis=1)
    xyz = targets.coords_HW3[rows, cols].astype(np.float64)
    return Keyframe(frame.name, frame.cam_from_world, camera, gray, uv, xyz)


def _sample(flow_HW2: np.ndarray, index_N2: np.ndarray) -> np.ndarray:
    """Bilinear flow at pixel-index coordinates (NaN outside the image)."""
    p = index_N2.astype(np.float32).reshape(-1, 1, 2)
    out = cv2.remap(
        flow_HW2, p[..., 0], p[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan
    )
    return out.reshape(-1, 2).astype(np.float64)


class FlowRefiner:
    """Refines poses against a scene's keyframes (see the module docstring).

    Args:
        keyframes: the mapping images to match queries to.
        config: the refinement's settings.
        seed: RANSAC seed.
    """

    def __init__(self, keyframes: Sequence[Keyframe], config: FlowRefineConfig = FlowRefineConfig(), seed: int = 0):
        if not keyframes:
            raise ValueError("a flow refiner needs at least one keyframe")
        self.keyframes = tuple(keyframes)
        self.config = config
        self.pnp = PnpConfig(threshold_px=config.threshold_px, min_inliers=config.min_inliers, seed=seed)
        self._centres_K3 = np.stack([k.centre for k in self.keyframes])
        self._axes_K3 = np.stack([k.cam_from_world[2, :3] for k in self.keyframes])  # viewing directions
        # DIS keeps buffers between calls: one instance per direction.
        self._dis = [cv2.DISOpticalFlow_create(DIS_PRESETS[config.preset]) for _ in range(2)]

    @classmethod
    def from_targets(
        cls, frames: Sequence[Frame], targets: TargetSet, config: FlowRefineConfig = FlowRefineConfig()
    ) -> FlowRefiner:
        """Keyframes of the ``frames`` a target set labels (each image read once).

        Raises:
            SlocalError: naming the file, when a mapping image cannot be read; naming the targets'
                folder, when none of the frames has targets.
        """
        by_name = targets.by_name()
        labelled = [f for f in frames if f.name in by_name]
        keyframes = []
        for frame in progress_bar(labelled, "flow refinement: keyframes"):
            k = keyframe(frame, read_image(frame.image_path), by_name[frame.name], config)
            if k is not None:
                keyframes.append(k)
        if not keyframes:
            raise SlocalError(
                f"none of the {len(frames)} frames has {targets.teacher} targets to refine with", targets.directory
            )
        log.info(
            "flow refinement: %d keyframes of %d frames (%s teacher)", len(keyframes), len(frames), targets.teacher
        )
        return cls(keyframes, config)

    def nearest(self, cam_from_world: np.ndarray) -> list[Keyframe]:
        """The ``config.keyframes`` keyframes nearest a pose's centre, viewing within the angle."""
        R, t = cam_from_world[:3, :3], cam_from_world[:3, 3]
        cos = self._axes_K3 @ R[2]
        ok = np.flatnonzero(cos >= np.cos(np.radians(self.config.max_view_angle_deg)))
        distance = np.linalg.norm(self._centres_K3[ok] - (-R.T @ t), axis=1)
        return [self.keyframes[i] for i in ok[np.argsort(distance, kind="stable")[: self.config.keyframes]]]

    def refine(self, rgb_HW3: np.ndarray, camera: Camera, cam_from_world: np.ndarray) -> Refinement:
        """Refine ``cam_from_world`` of an image.

        Args:
            rgb_HW3: uint8 RGB image.
            camera: its intrinsics at the image's size.
            cam_from_world: (4, 4) the pose to refine (the student's).
        """
        gray = gray_at_width(rgb_HW3, self.config.width)
        query = camera.scaled(gray.shape[1], gray.shape[0])
        uv_all, xyz_all, used = [], [], []
        for k in self.nearest(cam_from_world):
            uv, xyz = self._matches(gray, query, cam_from_world, k)
            if len(uv):
                uv_all.append(uv)
                xyz_all.append(xyz)
                used.append(k.name)
        if not uv_all:
            return Refinement(None, False, 0, 0, tuple(used))
        uv, xyz = np.concatenate(uv_all), np.concatenate(xyz_all)
        scale = np.array([camera.width / query.width, camera.height / query.height])
        result = solve_pnp(uv * scale, xyz, camera, self.pnp)
        return Refinement(result.cam_from_world, result.success, len(uv), result.num_inliers, tuple(used))

    def _matches(
        self, gray_HW: np.ndarray, query: Camera, cam_from_world: np.ndarray, k: Keyframe
    ) -> tuple[np.ndarray, np.ndarray]:
        """Query image coordinates (in ``query``) and world points of one keyframe's flow matches."""
        projected, _ = query.project(transform_points(cam_from_world, k.xyz_N3))
        front = np.isfinite(projected).all(1)
        if front.sum() < 4:
            return np.empty((0, 2)), np.empty((0, 3))
        # Least squares, not RANSAC: the points come from one pose, only parallax departs from a homography.
        query_to_key, _ = cv2.findHomography(projected[front] - 0.5, k.uv_N2[front] - 0.5, 0)
        if query_to_key is None or not np.isfinite(query_to_key).all():
            return np.empty((0, 2)), np.empty((0, 3))
        height, width = k.gray_HW.shape
        warped = cv2.warpPerspective(gray_HW, query_to_key, (width, height), flags=cv2.INTER_LINEAR)
        forward = self._dis[0].calc(k.gray_HW, warped, None)
        backward = self._dis[1].calc(warped, k.gray_HW, None)
        start = k.uv_N2 - 0.5
        moved = start + _sample(forward, start)
        back = moved + _sample(backward, moved)
        ok = np.isfinite(back).all(1) & (np.linalg.norm(back - start, axis=1) < self.config.max_fb_px)
        ok &= (moved[:, 0] >= 0) & (moved[:, 1] >= 0) & (moved[:, 0] <= width - 1) & (moved[:, 1] <= height - 1)
        if not ok.any():
            return np.empty((0, 2)), np.empty((0, 3))
        in_query = cv2.perspectiveTransform(moved[ok].reshape(-1, 1, 2), np.linalg.inv(query_to_key)).reshape(-1, 2)
        inside = (
            (in_query[:, 0] >= 0)
            & (in_query[:, 1] >= 0)
            & (in_query[:, 0] <= query.width - 1)
            & (in_query[:, 1] <= query.height - 1)
        )
        return in_query[inside] + 0.5, k.xyz_N3[ok][inside]


def student_refiner(
    scene: Scene,
    model,
    runs_root: str | Path,
    config: FlowRefineConfig = FlowRefineConfig(),
    options: dict | None = None,
) -> FlowRefiner:
    """The refiner of a student: keyframes from the targets its teacher gave the scene's mapping frames.

    Args:
        scene: the scene as the student was trained on it (its depth registration applied).
        model: a student that records its ``teacher`` (and ``teacher_settings``).
        runs_root: the runs folder caching the targets (computed there if missing).
        options: the teacher's options where the model records no settings (an older file).

    Raises:
        SlocalError: the model records no teacher, or no settings and ``options`` is None (an ONNX export).
    """
    teacher = getattr(model, "teacher", "") or ""
    settings = getattr(model, "teacher_settings", None) or {}
    if not teacher or (not settings and options is None):
        raise SlocalError(
            "the flow refinement needs the student's model.pt, which records its teacher and that teacher's "
            f"settings (this {type(model).__name__} does not)"
        )
    learned = non_default_settings(teacher, settings) if settings else dict(options or {})
    targets = ensure_targets(scene, make_teacher(teacher, **learned), runs_root)
    return FlowRefiner.from_targets(scene.mapping, targets, config)
