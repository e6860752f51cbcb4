"""Track filtering and confidence: which triangulated observations become targets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slocal.geometry.pose import transform_points
from slocal.teach.sfm.config import SfmTeacherConfig
from slocal.teach.sfm.map import SfmMap


@dataclass(frozen=True, eq=False)
class Observations:
    """The kept observations of one image.

    Attributes:
        point2D_idx: int64 (N,) keypoint indices in the image.
        uv_N2: float64 keypoint coordinates (pixel convention of ``slocal.geometry.camera``).
        point3D_id: int64 (N,) ids of the observed points.
        xyz_N3: float64 world coordinates of the points.
        track_length: int64 (N,) images seeing each point.
        tri_angle_deg: float64 (N,) largest angle between two rays of each point's track.
        reproj_error: float64 (N,) this observation's reprojection error in pixels.
        conf: float32 (N,) confidence (see the module docstring).
    """

    point2D_idx: np.ndarray
    uv_N2: np.ndarray
    point3D_id: np.ndarray
    xyz_N3: np.ndarray
    track_length: np.ndarray
    tri_angle_deg: np.ndarray
    reproj_error: np.ndarray
    conf: np.ndarray

    def __len__(self) -> int:
        return len(self.point2D_idx)

    @classmethod
    def of_points(
        cls,
        point2D_idx: np.ndarray,
        uv_N2: np.ndarray,
        reproj_error: np.ndarray,
        pts: np.ndarray,
        point3D_id: np.ndarray,
        xyz_N3: np.ndarray,
        track_length: np.ndarray,
        tri_angle_deg: np.ndarray,
        config: SfmTeacherConfig,
    ) -> Observations:
        """The observations of points ``pts`` (indices into the per-point arrays that follow), with their confidence."""
        length, angle = track_length[pts], tri_angle_deg[pts]
        conf = observation_confidence(length, angle, reproj_error, config)
        return cls(point2D_idx, uv_N2, point3D_id[pts], xyz_N3[pts], length, angle, reproj_error, conf)


def observation_confidence(
    track_length: np.ndarray, tri_angle_deg: np.ndarray, reproj_error_px: np.ndarray, config: SfmTeacherConfig
) -> np.ndarray:
    """``(1 - 0.5 ** (L - 1)) * min(1, a / a_ref) / (1 + (e / s) ** 2)`` (float32; see the module docstring)."""
    s = 0.5 * config.max_reproj_error_px
    track = 1.0 - 0.5 ** (np.asarray(track_length, np.float64) - 1.0)
    angle = np.minimum(1.0, np.asarray(tri_angle_deg, np.float64) / config.conf_tri_angle_deg)
    return (track * angle / (1.0 + (np.asarray(reproj_error_px) / s) ** 2)).astype(np.float32)


def _max_ray_angle_deg(xyz_3: np.ndarray, centres_L3: np.ndarray) -> float:
    rays = centres_L3 - xyz_3
    rays /= np.maximum(np.linalg.norm(rays, axis=1, keepdims=True), 1e-12)
    return float(np.degrees(np.arccos(np.clip((rays @ rays.T).min(), -1.0, 1.0))))


def kept_observations(sfm_map: SfmMap, config: SfmTeacherConfig) -> dict[int, Observations]:
    """Observations that pass the track, angle and reprojection filters, per image id."""
    rec = sfm_map.reconstruction
    centres = {i + 1: f.world_from_cam[:3, 3] for i, f in enumerate(sfm_map.frames)}
    point_ids, xyz, errors, lengths, angles, el_point, el_image, el_p2d = [], [], [], [], [], [], [], []
    for k, (pid, point) in enumerate(rec.points3D.items()):
        elements = point.track.elements
        images = sorted({e.image_id for e in elements})
        point_ids.append(pid)
        xyz.append(point.xyz)
        errors.append(point.error)
        lengths.append(len(images))
        angles.append(_max_ray_angle_deg(np.asarray(point.xyz, np.float64), np.stack([centres[i] for i in images])))
        for e in elements:
            el_point.append(k)
            el_image.append(e.image_id)
            el_p2d.append(e.point2D_idx)
    if not point_ids:
        return {}
    point_ids_a = np.asarray(point_ids, np.int64)
    xyz_a = np.asarray(xyz, np.float64).reshape(-1, 3)
    lengths_a = np.asarray(lengths, np.int64)
    angles_a = np.asarray(angles, np.float64)
    good_point = (
        (lengths_a >= config.min_track_length)
        & (np.asarray(errors) <= config.max_reproj_error_px)
        & (angles_a >= config.min_tri_angle_deg)
    )
    el_point_a = np.asarray(el_point, np.int64)
    el_image_a = np.asarray(el_image, np.int64)
    el_p2d_a = np.asarray(el_p2d, np.int64)
    keep = good_point[el_point_a]
    el_point_a, el_image_a, el_p2d_a = el_point_a[keep], el_image_a[keep], el_p2d_a[keep]

    out: dict[int, Observations] = {}
    for image_id in np.unique(el_image_a):
        sel = el_image_a == image_id
        p2d = el_p2d_a[sel]
        pts = el_point_a[sel]
        frame = sfm_map.frame(int(image_id))
        uv = sfm_map.keypoints[int(image_id)][p2d, :2].astype(np.float64)
        proj, z = frame.camera.project(transform_points(frame.cam_from_world, xyz_a[pts]))
        err = np.linalg.norm(proj - uv, axis=1)
        ok = (z > 0) & np.isfinite(err) & (err <= config.max_reproj_error_px)
        if not ok.any():
            continue
        pts, p2d, uv, err = pts[ok], p2d[ok], uv[ok], err[ok]
        out[int(image_id)] = Observations.of_points(p2d, uv, err, pts, point_ids_a, xyz_a, lengths_a, angles_a, config)
    return out
