"""The COLMAP teacher: a COLMAP model's own 3D points as sparse targets, no feature extraction.

A user who brings a COLMAP reconstruction already has triangulated points and
their tracks. This teacher turns them into targets directly:

- Only *mapping* images count. Observations in query images (COLMAP registers
  every photo it is given) are dropped before anything else, so a point's track
  length, triangulation angle and the targets themselves come from mapping
  images only, and a query never contributes a target.
- A point is kept when at least ``min_track_length`` mapping images see it,
  their rays span at least ``min_tri_angle_deg`` and its reprojection error in
  each kept observation is within ``max_reproj_error_px``. The error is
  recomputed with the model's own (possibly distorted) camera, not read from
  ``points3D`` (whose error includes the query observations).
- Keypoints live in the original, possibly distorted image; they are mapped
  into the undistorted image the scene loader gives the frame (ray through the
  original camera, projected with the frame's pinhole camera).
- Confidence is the SfM teacher's ``observation_confidence``: it grows with the
  track length and the triangulation angle and falls with the reprojection
  error; the grid is filled by ``sparse_targets`` (most confident per cell).

Coordinates are in the model's units (``Scene.metres_per_unit`` says how many metres one is).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict
from typing import Annotated

import numpy as np
from pydantic import Field

from slocal.config import config_dataclass
from slocal.data.colmap import is_pinhole
from slocal.data.scene import Frame, Scene
from slocal.errors import SlocalError
from slocal.geometry.pose import transform_points
from slocal.progress import progress_bar
from slocal.teach.sfm.teacher import sparse_targets
from slocal.teach.sfm.tracks import Observations
from slocal.teach.targets import FrameTargets

log = logging.getLogger(__name__)


@config_dataclass
class ColmapTeacherConfig:
    """Settings of the COLMAP teacher.

    Attributes:
        max_side: longer side of the target grid in pixels.
        min_track_length: mapping images a point must be seen in (2 or more).
        max_reproj_error_px: largest reprojection error of a kept observation (original image pixels).
        min_tri_angle_deg: smallest angle between two mapping rays of a kept point.
        conf_tri_angle_deg: triangulation angle from which the confidence stops growing.
        snap_to_cell_center: move each target onto the ray of its cell centre at the point's depth.
    """

    max_side: Annotated[int, Field(ge=8)] = 320
    min_track_length: Annotated[int, Field(ge=2)] = 2
    max_reproj_error_px: Annotated[float, Field(gt=0)] = 4.0
    min_tri_angle_deg: Annotated[float, Field(ge=0)] = 1.0
    conf_tri_angle_deg: Annotated[float, Field(gt=0)] = 10.0
    snap_to_cell_center: bool = True


def _to_frame_pixels(frame: Frame, camera, uv_N2: np.ndarray) -> np.ndarray:
    """Keypoints of the original image -> pixels of the frame's (undistorted) image."""
    if is_pinhole(camera):
        return uv_N2
    xy = np.asarray(camera.cam_from_img(uv_N2), np.float64)
    c = frame.camera
    return np.stack([c.fx * xy[:, 0] + c.cx, c.fy * xy[:, 1] + c.cy], axis=1)


def mapping_observations(scene: Scene, config: ColmapTeacherConfig) -> dict[str, Observations]:
    """Kept observations of the model's points in each mapping frame (by frame name)."""
    import pycolmap

    if scene.format != "colmap" or "model_dir" not in scene.extra:
        raise SlocalError(f"the colmap teacher needs a COLMAP scene; {scene.id} is {scene.format}", scene.root)
    rec = pycolmap.Reconstruction(scene.extra["model_dir"])
    ids = scene.extra["image_ids"]
    mapping = {ids[f.name]: f for f in scene.mapping}
    centres = {i: f.world_from_cam[:3, 3] for i, f in mapping.items()}

    per_image: dict[int, list[tuple[int, int]]] = {}  # image id -> [(point index, point2D idx)]
    xyz, lengths, angles, point_ids = [], [], [], []
    for pid, point in rec.points3D.items():
        elements = [(e.image_id, e.point2D_idx) for e in point.track.elements if e.image_id in mapping]
        images = sorted({i for i, _ in elements})
        if len(images) < config.min_track_length:
            continue
        p = np.asarray(point.xyz, np.float64)
        rays = np.stack([centres[i] for i in images]) - p
        rays /= np.maximum(np.linalg.norm(rays, axis=1, keepdims=True), 1e-12)
        angle = float(np.degrees(np.arccos(np.clip((rays @ rays.T).min(), -1.0, 1.0))))
        if angle < config.min_tri_angle_deg:
            continue
        k = len(xyz)
        xyz.append(p)
        lengths.append(len(images))
        angles.append(angle)
        point_ids.append(pid)
        for image_id, p2d in elements:
            per_image.setdefault(image_id, []).append((k, p2d))
    out: dict[str, Observations] = {}
    if not xyz:
        return out
    xyz_a, lengths_a, angles_a, ids_a = (
        np.array(xyz),
        np.array(lengths),
        np.array(angles),
        np.array(point_ids, np.int64),
    )
    for image_id, items in per_image.items():
        image = rec.image(image_id)
        camera = rec.camera(image.camera_id)
        frame = mapping[image_id]
        pts = np.array([k for k, _ in items], np.int64)
        p2d = np.array([j for _, j in items], np.int64)
        uv = np.array([image.points2D[j].xy for j in p2d], np.float64).reshape(-1, 2)
        cam_from_world = frame.cam_from_world
        p_cam = transform_points(cam_from_world, xyz_a[pts])
        front = p_cam[:, 2] > 0
        err = np.full(len(pts), np.inf)
        if front.any():
            proj = np.asarray(camera.img_from_cam(p_cam[front]), np.float64)
            err[front] = np.linalg.norm(proj - uv[front], axis=1)
        ok = err <= config.max_reproj_error_px
        if not ok.any():
            continue
        pts, p2d, uv, err = pts[ok], p2d[ok], uv[ok], err[ok]
        uv_frame = _to_frame_pixels(frame, camera, uv)
        out[frame.name] = Observations.of_points(p2d, uv_frame, err, pts, ids_a, xyz_a, lengths_a, angles_a, config)
    return out


class ColmapTeacher:
    """Sparse scene coordinates from a COLMAP model's own points and tracks (mapping images only)."""

    name = "colmap"

    def __init__(self, config: ColmapTeacherConfig = ColmapTeacherConfig()):
        self.config = config

    def settings(self) -> dict:
        return asdict(self.config)

    def teach(self, scene: Scene) -> Iterator[FrameTargets]:
        c = self.config
        observations = mapping_observations(scene, c)
        without = [f.name for f in scene.mapping if f.name not in observations]
        log.info(
            "colmap %s: %d observations of kept points; %d of %d mapping frames have none",
            scene.id,
            sum(len(o) for o in observations.values()),
            len(without),
            len(scene.mapping),
        )
        for frame in progress_bar(scene.mapping, "colmap: targets"):
            yield sparse_targets(frame, observations.get(frame.name), c.max_side, c.snap_to_cell_center)
