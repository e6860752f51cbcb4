"""Geometric verification of SIFT matches against the *known* relative poses (nothing is estimated)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from slocal.data.colmap import DETERMINISTIC_THREADS
from slocal.data.scene import Frame
from slocal.progress import make_progress
from slocal.teach.sfm.config import SfmTeacherConfig

# pycolmap is imported inside the functions that use it: it loads large native libraries
# that the depth teacher, distillation and the localizer never need.

_MATCH_BLOCK = 64  # pairs per pycolmap matching call, so progress can be shown


def known_pose_geometry(frame_1: Frame, frame_2: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Known relative pose (4, 4) cam2_from_cam1, essential and fundamental matrices (x2^T F x1 = 0).

    pycolmap's E has a unit-length baseline; E and F are defined up to scale and
    the Sampson error does not depend on it.
    """
    import pycolmap

    rel = frame_2.cam_from_world @ frame_1.world_from_cam
    E = np.asarray(pycolmap.essential_matrix_from_pose(pycolmap.Rigid3d(rel[:3, :])), np.float64)
    F = np.linalg.inv(frame_2.camera.K).T @ E @ np.linalg.inv(frame_1.camera.K)
    return rel, E, F


def sampson_error(F_33: np.ndarray, uv1_N2: np.ndarray, uv2_N2: np.ndarray) -> np.ndarray:
    """First-order geometric error (pixels) of correspondences under ``F_33`` (x2^T F x1 = 0)."""
    import pycolmap

    if len(uv1_N2) == 0:
        return np.zeros(0)
    squared = pycolmap.compute_squared_sampson_error(
        np.asarray(uv1_N2, np.float64), np.asarray(uv2_N2, np.float64), np.asarray(F_33, np.float64)
    )
    return np.sqrt(np.asarray(squared, np.float64))


def match_and_verify(
    db_path: Path,
    frames: Sequence[Frame],
    names: Sequence[str],
    keypoints: dict[int, np.ndarray],
    pairs: Sequence[tuple[int, int]],
    config: SfmTeacherConfig,
    workdir: Path,
) -> tuple[int, int, int]:
    """pycolmap pair matching, then verification against the known relative poses.

    Returns:
        (raw matches, verified matches, pairs kept).
    """
    import pycolmap

    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = DETERMINISTIC_THREADS
    matching.use_gpu = config.use_gpu
    # Verified below with the known relative poses instead of an estimated E/F.
    matching.skip_geometric_verification = True
    device = pycolmap.Device.cuda if config.use_gpu else pycolmap.Device.cpu
    pairs_path = workdir / "pairs.txt"
    with make_progress() as progress:
        task = progress.add_task("sfm: matching", total=len(pairs), info="")
        for start in range(0, len(pairs), _MATCH_BLOCK):
            block = pairs[start : start + _MATCH_BLOCK]
            pairs_path.write_text("".join(f"{names[i]} {names[j]}\n" for i, j in block))
            pycolmap.match_image_pairs(
                db_path, matching, pycolmap.ImportedPairingOptions(match_list_path=str(pairs_path)), device=device
            )
            progress.advance(task, len(block))
    pairs_path.write_text("".join(f"{names[i]} {names[j]}\n" for i, j in pairs))

    raw = verified = kept = 0
    db = pycolmap.Database.open(db_path)
    try:
        for i, j in pairs:
            id1, id2 = i + 1, j + 1
            if not db.exists_matches(id1, id2):
                continue
            matches = np.asarray(db.read_matches(id1, id2), dtype=np.uint32).reshape(-1, 2)
            raw += len(matches)
            if len(matches) == 0:
                continue
            rel, E, F = known_pose_geometry(frames[i], frames[j])
            uv1 = keypoints[id1][matches[:, 0], :2].astype(np.float64)
            uv2 = keypoints[id2][matches[:, 1], :2].astype(np.float64)
            err = sampson_error(F, uv1, uv2)
            inliers = matches[err <= config.max_reproj_error_px]
            if len(inliers) < config.min_pair_matches:
                continue
            geometry = pycolmap.TwoViewGeometry()
            geometry.config = pycolmap.TwoViewGeometryConfiguration.CALIBRATED
            geometry.E = E
            geometry.F = F
            geometry.cam2_from_cam1 = pycolmap.Rigid3d(rel[:3, :])
            geometry.inlier_matches = np.ascontiguousarray(inliers)
            db.write_two_view_geometry(id1, id2, geometry)
            verified += len(inliers)
            kept += 1
    finally:
        db.close()
    return raw, verified, kept
