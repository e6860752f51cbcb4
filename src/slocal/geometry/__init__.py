"""Pinhole cameras, rigid poses and pose errors."""

from slocal.geometry.camera import Camera, pixel_centers
from slocal.geometry.pose import (
    invert,
    pose_error,
    qvec_to_rotmat,
    rotmat_to_qvec,
    to_homogeneous,
    transform_points,
)

__all__ = [
    "Camera",
    "invert",
    "pixel_centers",
    "pose_error",
    "qvec_to_rotmat",
    "rotmat_to_qvec",
    "to_homogeneous",
    "transform_points",
]
