"""The mapping stages' own logic on a hand-written COLMAP database: the starting focal length from image pairs."""

from __future__ import annotations

import numpy as np
import pycolmap
import pytest

from helpers.epipolar import fundamental, random_motion
from slocal.capture.sfm import SELF_CALIBRATION_MIN_INLIERS, CameraGroup, self_calibrate

W, H, FOCAL = 640, 480, 500.0
K = np.array([[FOCAL, 0, W / 2], [0, FOCAL, H / 2], [0, 0, 1.0]])
GENERAL = pycolmap.TwoViewGeometryConfiguration.UNCALIBRATED
PLANAR = pycolmap.TwoViewGeometryConfiguration.PLANAR_OR_PANORAMIC


def write_database(path, groups: dict[str, tuple[int, object, int]]) -> dict[str, CameraGroup]:
    """One camera per group (``label: (images, pair config, inliers)``), pairs of consecutive images."""
    rng = np.random.default_rng(0)
    out = {}
    with pycolmap.Database.open(path) as db:
        for label, (n, config, inliers) in groups.items():
            default = 1.2 * max(W, H)
            camera_id = db.write_camera(pycolmap.Camera.create_from_model_name(0, "SIMPLE_RADIAL", default, W, H))
            names = [f"{label}/{i:03d}.jpg" for i in range(n)]
            ids = [db.write_image(pycolmap.Image(name=name, camera_id=camera_id)) for name in names]
            for a, b in zip(ids, ids[1:]):
                geometry = pycolmap.TwoViewGeometry()
                geometry.config, geometry.F = config, fundamental(K, *random_motion(rng))
                geometry.inlier_matches = np.tile(np.arange(inliers, dtype=np.uint32)[:, None], (1, 2))
                db.write_two_view_geometry(a, b, geometry)
            out[label] = CameraGroup(tuple(names), W, H, default, "default", label)
    return out


def test_a_camera_without_focal_length_starts_at_its_pairs_estimate(tmp_path):
    db = tmp_path / "database.db"
    groups = write_database(
        db,
        {
            "video": (12, GENERAL, 80),
            "planar": (12, PLANAR, 80),  # a wall filmed head-on: no unique F, nothing to estimate from
            "weak": (12, GENERAL, SELF_CALIBRATION_MIN_INLIERS - 1),
            "short": (5, GENERAL, 80),  # four pairs, fewer than the minimum
        },
    )
    exif = CameraGroup(groups["video"].names, W, H, 480.0, "exif-35mm", "photos")

    out = {g.label: g for g in self_calibrate(db, [*groups.values()])}
    assert out["video"].focal_source == "two-view" and out["video"].focal_pairs == 11
    assert out["video"].focal_px == pytest.approx(FOCAL, rel=0.006)
    for label in ("planar", "weak", "short"):
        assert out[label] == groups[label]  # COLMAP's default, untouched
    # The estimate is the database camera's starting value, still without a prior (the mapper refines it).
    with pycolmap.Database.open(db) as d:
        cameras = {c.camera_id: c for c in d.read_all_cameras()}
        focal = {label: cameras[d.read_image_with_name(g.names[0]).camera_id] for label, g in groups.items()}
    assert focal["video"].focal_length == pytest.approx(out["video"].focal_px)
    assert not focal["video"].has_prior_focal_length
    assert focal["planar"].focal_length == pytest.approx(1.2 * W)
    # A focal length from the file is kept as it is.
    assert self_calibrate(db, [exif]) == [exif]
