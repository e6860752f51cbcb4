"""Settings of the SfM teacher (``SfmTeacherConfig``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from pydantic import Field

from slocal.config import config_dataclass

# Part of every cache key built on the SfM map (the SfM teacher's targets, the SIFT baseline's map). 2: matching and
# triangulation on one thread, reproducible (``slocal.data.colmap.DETERMINISTIC_THREADS``).
SFM_MAP_VERSION = 2


@config_dataclass
class SfmTeacherConfig:
    """Settings of the SfM teacher (and of the SIFT map the ``sift`` baseline reuses).

    Attributes:
        max_side: longer side of the target grid in pixels.
        sift_max_side: images are downscaled so their longer side is at most this for SIFT.
        max_features: keep at most this many keypoints per image (the largest-scale ones).
        num_neighbors: pose neighbours matched per image.
        max_view_angle_deg: largest angle between the optical axes of a pair.
        max_distance_m: largest distance between the camera centres of a pair (scaled by
            the scene's metres per unit; no limit when the scale is unknown).
        min_overlap: smallest fraction of either frustum's sample points visible in the other.
        nominal_depth_m: scene depth assumed by the frustum test (sampled at 0.5x, 1x, 2x);
            for a scene of unknown scale a range relative to the camera spacing is tried
            (``slocal.teach.pairs.nominal_depths``).
        target_tri_angle_deg: pairs whose triangulation angle at the nominal depth
            reaches this rank first; smaller angles are penalised linearly.
        min_partners: a frame with fewer pairs than this takes its best partners by
            frustum overlap alone (wide-baseline photo collections).
        coverage_view_angle_deg: largest angle between the optical axes of such a coverage pair.
        min_pair_matches: verified matches needed to keep a pair.
        min_track_length: images a 3D point must be seen in (2 or more).
        max_reproj_error_px: largest reprojection error of a point and of an
            observation, also the epipolar threshold of the verification.
        min_tri_angle_deg: smallest triangulation angle of a point.
        conf_tri_angle_deg: triangulation angle from which the confidence stops growing.
        snap_to_cell_center: move each target onto the ray of its cell centre at
            the point's depth, so the target is the coordinate of the cell centre
            (the keypoint lies up to half a cell away).
        num_threads: CPU threads for SIFT extraction (does not change the targets). Matching and
            triangulation run on one thread whatever this says: with more, pycolmap's matching
            is not reproducible (``slocal.data.colmap.DETERMINISTIC_THREADS``).
        use_gpu: run SIFT extraction and matching on CUDA (off by default).
    """

    max_side: Annotated[int, Field(ge=8)] = 320
    sift_max_side: Annotated[int, Field(ge=32)] = 1024
    max_features: Annotated[int, Field(ge=16)] = 4096
    num_neighbors: Annotated[int, Field(ge=1)] = 10
    max_view_angle_deg: float = 45.0
    max_distance_m: float = 3.0
    min_overlap: Annotated[float, Field(ge=0, le=1)] = 0.3
    nominal_depth_m: Annotated[float, Field(gt=0)] = 2.0
    target_tri_angle_deg: float = 5.0
    min_partners: Annotated[int, Field(ge=0)] = 3
    coverage_view_angle_deg: Annotated[float, Field(gt=0, le=180)] = 90.0
    min_pair_matches: int = 15
    min_track_length: Annotated[int, Field(ge=2)] = 3
    max_reproj_error_px: Annotated[float, Field(gt=0)] = 4.0
    min_tri_angle_deg: float = 3.0
    conf_tri_angle_deg: float = 15.0
    snap_to_cell_center: bool = True
    num_threads: int = 2
    use_gpu: bool = False

    def map_settings(self) -> dict:
        """The settings that change the SfM map (everything but the target grid and threads), and its version."""
        d = asdict(self)
        for key in ("max_side", "snap_to_cell_center", "conf_tri_angle_deg", "num_threads"):
            d.pop(key)
        return {**d, "map_version": SFM_MAP_VERSION}
