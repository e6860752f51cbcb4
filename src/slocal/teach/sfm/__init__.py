"""The SfM teacher: SIFT points triangulated with the frames' known poses held fixed.

Pipeline (``build_sfm_map``):

1. SIFT on every mapping image (pycolmap's CPU extractor, longer side at most
   ``sift_max_side``), written into a COLMAP database together with the known
   pinhole cameras, one trivial rig and frame per image and the known poses.
2. Image pairs chosen from the known poses only (``select_pairs``): similar
   viewing direction, nearby centres, overlapping frusta; ranked so that pairs
   with a useful triangulation angle come first. Never exhaustive.
3. pycolmap's pair matching (mutual nearest neighbours with a ratio test) on a
   pairs list, then geometric verification with the *known* relative pose:
   matches far from their epipolar line are dropped. Nothing is estimated, so
   low-parallax or planar pairs are kept as well as any other.
4. pycolmap point triangulation from the known poses (``fix_existing_frames``,
   intrinsics fixed): only the 3D points are optimised, never the poses.

Targets (``SfmTeacher``) are sparse: every kept observation writes its 3D point
into the target-grid cell that contains the keypoint; everything else is
invalid. A point is kept when its track spans at least ``min_track_length``
images and its mean reprojection error is at most ``max_reproj_error_px``; an
observation is kept when its own reprojection error is within that bound too.

Confidence of an observation of a point with track length ``L`` and
triangulation angle ``a`` (the largest angle between two rays of its track),
whose own reprojection error is ``e`` pixels::

    conf = (1 - 0.5 ** (L - 1)) * min(1, a / a_ref) / (1 + (e / s) ** 2)

with ``a_ref = conf_tri_angle_deg`` and ``s = max_reproj_error_px / 2``. It
grows with the track (0.5 for two views, 0.75 for three, ~0.94 for five), with
the angle up to ``a_ref`` (depth uncertainty falls roughly as 1 / a; on
redkitchen points under 3 deg are ~10 cm off the depth surface, points over
12 deg ~1 cm) and halves when the observation is off by ``s`` pixels. When
several keypoints fall in one cell, the most confident wins.

Keypoints use COLMAP's pixel convention, which is slocal's
(``slocal.geometry.camera``), so no half-pixel shift appears anywhere.

Modules: ``config``, ``map`` (database, matching, triangulation), ``verify``
(known-pose verification), ``tracks`` (filters and confidence), ``teacher``
(rasterised targets); SIFT itself is ``slocal.teach.features`` and the pair
selection ``slocal.teach.pairs``.
"""

from slocal.teach.sfm.config import SfmTeacherConfig
from slocal.teach.sfm.map import SfmMap, build_sfm_map
from slocal.teach.sfm.teacher import SfmTeacher, sparse_targets
from slocal.teach.sfm.tracks import Observations, kept_observations, observation_confidence
from slocal.teach.sfm.verify import known_pose_geometry, match_and_verify, sampson_error

__all__ = [
    "Observations",
    "SfmMap",
    "SfmTeacher",
    "SfmTeacherConfig",
    "build_sfm_map",
    "kept_observations",
    "known_pose_geometry",
    "match_and_verify",
    "observation_confidence",
    "sampson_error",
    "sparse_targets",
]
