"""pycolmap's structure from motion, one function per stage: SIFT, matching, reconstruction.

Every stage is COLMAP's own code (the same as ``colmap feature_extractor``,
``matches_importer`` and ``mapper`` / ``global_mapper``); slocal only chooses
the cameras, the pairs and the model to keep, and cuts the long calls into
chunks so each stage shows a progress bar.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from slocal.data.colmap import DETERMINISTIC_THREADS, colmap_quiet
from slocal.errors import SlocalError
from slocal.geometry.calibration import focal_from_fundamentals
from slocal.progress import make_progress

# pycolmap is imported in the functions: it loads large native libraries.

log = logging.getLogger(__name__)

MAPPERS = ("incremental", "global")
CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
# Images per feature-extraction call and pairs per matching call: small enough for a live progress
# bar, large enough that COLMAP's thread start-up per call stays negligible.
EXTRACT_CHUNK = 8
MATCH_CHUNK = 200
# A starting focal length from two-view geometry needs this many of a camera's verified pairs with a
# general (not planar, not rotation-only) geometry, each with this many inlier matches.
SELF_CALIBRATION_MIN_PAIRS = 8
SELF_CALIBRATION_MIN_INLIERS = 50


@dataclass(frozen=True)
class CameraGroup:
    """Images that share one camera (one video, or photos of one size and focal length).

    Attributes:
        names: image names relative to the images folder.
        width, height: image size.
        focal_px: starting focal length.
        focal_source: where it came from (``exif-35mm``, ``exif-focal-plane``, ``scene intrinsics``,
            ``default``, or ``two-view``: estimated from the group's own image pairs, ``self_calibrate``).
        label: what the group is, for the summary.
        focal_pairs: ``two-view``: the image pairs it was estimated from.
    """

    names: tuple[str, ...]
    width: int
    height: int
    focal_px: float
    focal_source: str
    label: str
    focal_pairs: int = 0

    @property
    def prior(self) -> bool:
        """Whether COLMAP may trust the starting focal length (it came from the file, not a guess)."""
        return self.focal_source not in ("default", "two-view")


def extract_features(
    database: Path,
    images_dir: Path,
    groups: Sequence[CameraGroup],
    camera_model: str,
    max_side: int,
    max_features: int,
) -> dict[str, int]:
    """SIFT features of every image into ``database``, one camera per group.

    Returns:
        Keypoints per image name.

    Raises:
        SlocalError: an unknown camera model, or an image COLMAP could not read.
    """
    import pycolmap

    if camera_model not in CAMERA_MODELS:
        raise SlocalError(f"unknown camera model {camera_model!r}; expected one of {', '.join(CAMERA_MODELS)}")
    options = pycolmap.FeatureExtractionOptions()
    options.max_image_size = max_side
    options.sift.max_num_features = max_features
    options.use_gpu = False
    total = sum(len(g.names) for g in groups)
    with make_progress() as progress, colmap_quiet():
        task = progress.add_task("map: SIFT features", total=total, info="")
        for group in groups:
            camera = pycolmap.Camera.create_from_model_name(0, camera_model, group.focal_px, group.width, group.height)
            reader = pycolmap.ImageReaderOptions()
            reader.camera_model = camera_model
            reader.camera_params = camera.params_to_string()
            for start in range(0, len(group.names), EXTRACT_CHUNK):
                chunk = list(group.names[start : start + EXTRACT_CHUNK])
                pycolmap.extract_features(
                    database,
                    images_dir,
                    image_names=chunk,
                    camera_mode=pycolmap.CameraMode.SINGLE,
                    reader_options=reader,
                    extraction_options=options,
                    device=pycolmap.Device.cpu,
                )
                if reader.existing_camera_id < 0:
                    # The group's camera now exists: later chunks share it.
                    with pycolmap.Database.open(database) as db:
                        image = db.read_image_with_name(chunk[0])
                        if image is None:
                            raise SlocalError("COLMAP could not read this image", images_dir / chunk[0])
                        cam = db.read_camera(image.camera_id)
                        if not group.prior:
                            # camera_params marks the focal length as known; a default one is not.
                            cam.has_prior_focal_length = False
                            db.update_camera(cam)
                    reader.existing_camera_id = image.camera_id
                progress.advance(task, len(chunk))
    keypoints: dict[str, int] = {}
    with pycolmap.Database.open(database) as db:
        by_name = {image.name: image for image in db.read_all_images()}
        for group in groups:
            for name in group.names:
                if name not in by_name or not db.exists_keypoints(by_name[name].image_id):
                    raise SlocalError("COLMAP could not read this image", images_dir / name)
                keypoints[name] = int(db.num_keypoints_for_image(by_name[name].image_id))
    return keypoints


def read_descriptors(database: Path, names: Sequence[str]) -> list[np.ndarray]:
    """uint8 (N_i, 128) SIFT descriptors of each named image."""
    import pycolmap

    with pycolmap.Database.open(database) as db:
        ids = {image.name: image.image_id for image in db.read_all_images()}
        return [np.asarray(db.read_descriptors(ids[n]).data, np.uint8).reshape(-1, 128) for n in names]


def match_pairs(database: Path, pairs: Sequence[tuple[str, str]], work_dir: Path, seed: int) -> int:
    """Match and geometrically verify the named image pairs; returns the number of verified pairs.

    ``seed`` seeds the verification's RANSAC: COLMAP's default (-1) draws a new seed per run, and one
    pair more or less verified can change which images the mapper registers.
    """
    import pycolmap

    work_dir.mkdir(parents=True, exist_ok=True)
    matching = pycolmap.FeatureMatchingOptions()
    matching.use_gpu = False
    matching.num_threads = DETERMINISTIC_THREADS  # threaded matching dropped matches at random
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.random_seed = seed
    with make_progress() as progress, colmap_quiet():
        task = progress.add_task("map: matching pairs", total=len(pairs), info="")
        for start in range(0, len(pairs), MATCH_CHUNK):
            chunk = pairs[start : start + MATCH_CHUNK]
            listing = work_dir / "pairs.txt"
            listing.write_text("".join(f"{a} {b}\n" for a, b in chunk))
            pairing = pycolmap.ImportedPairingOptions()
            pairing.match_list_path = listing
            pycolmap.match_image_pairs(
                database,
                matching_options=matching,
                pairing_options=pairing,
                verification_options=verification,
                device=pycolmap.Device.cpu,
            )
            progress.advance(task, len(chunk))
    return verified_pairs(database)


def verified_pairs(database: Path) -> int:
    """Image pairs with a two-view geometry COLMAP accepted (calibrated, uncalibrated, planar, ...)."""
    import pycolmap

    bad = {pycolmap.TwoViewGeometryConfiguration.UNDEFINED, pycolmap.TwoViewGeometryConfiguration.DEGENERATE}
    with pycolmap.Database.open(database) as db:
        _, geometries = db.read_two_view_geometries()
    return sum(1 for g in geometries if g.config not in bad and len(g.inlier_matches) > 0)


def self_calibrate(database: Path, groups: Sequence[CameraGroup]) -> list[CameraGroup]:
    """Starting focal lengths, from their own verified image pairs, of the cameras that came without one.

    A video, or a photo without EXIF, starts at COLMAP's default of 1.2 x its longer side (a
    45-degree field of view, narrower than most phones'), which the mapper then refines. Started
    that far off, an incremental reconstruction can settle on a wrong focal length and a bent
    model (seen on the procedural room's walk-through video: one mapper seed in 40 bent it by
    30 cm; started at the two-view estimate, none did). The estimate is
    ``geometry.calibration.focal_from_fundamentals`` over the camera's verified pairs with a
    general geometry; it is written into the database as the starting value, still refined by the
    mapper (no prior). A camera with too few such pairs keeps the default.

    Returns:
        The groups, with the estimated focal lengths (``focal_source="two-view"``).
    """
    import pycolmap

    general = (pycolmap.TwoViewGeometryConfiguration.CALIBRATED, pycolmap.TwoViewGeometryConfiguration.UNCALIBRATED)
    out = []
    with pycolmap.Database.open(database) as db:
        images = db.read_all_images()
        camera_of = {image.name: image.camera_id for image in images}
        id_camera = {image.image_id: image.camera_id for image in images}
        # One pass over the pairs: each camera's usable fundamental matrices (both images its own).
        F_of: dict[int, list[np.ndarray]] = {}
        for pair_id, g in zip(*db.read_two_view_geometries()):
            if g.config not in general or len(g.inlier_matches) < SELF_CALIBRATION_MIN_INLIERS:
                continue
            a, b = (id_camera[i] for i in pycolmap.pair_id_to_image_pair(pair_id))
            if a == b:
                F_of.setdefault(a, []).append(np.asarray(g.F))
        for group in groups:
            if group.focal_source != "default":
                out.append(group)
                continue
            camera_id = camera_of[group.names[0]]
            F = F_of.get(camera_id, [])
            estimate = focal_from_fundamentals(np.stack(F), group.width, group.height) if F else None
            if estimate is None or len(F) < SELF_CALIBRATION_MIN_PAIRS or estimate.at_bound:
                log.info(
                    "map: %s: %d image pairs with a general geometry, too few for a focal length of its own; "
                    "it starts at COLMAP's default %.1f px",
                    group.label,
                    len(F),
                    group.focal_px,
                )
                out.append(group)
                continue
            camera = db.read_camera(camera_id)
            for index in camera.focal_length_idxs():
                camera.params[index] = estimate.focal_px
            db.update_camera(camera)
            log.info(
                "map: %s: starting focal length %.1f px from %d image pairs (COLMAP's default: %.1f px)",
                group.label,
                estimate.focal_px,
                estimate.pairs,
                group.focal_px,
            )
            out.append(replace(group, focal_px=estimate.focal_px, focal_source="two-view", focal_pairs=estimate.pairs))
    return out


def reconstruct(database: Path, images_dir: Path, out_dir: Path, mapper: str, n_images: int, seed: int):
    """Run COLMAP's incremental or global mapper; returns the model with the most registered images, or None."""
    import pycolmap

    if mapper not in MAPPERS:
        raise SlocalError(f"unknown mapper {mapper!r}; expected one of {', '.join(MAPPERS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with make_progress() as progress, colmap_quiet():
        if mapper == "incremental":
            task = progress.add_task("map: incremental mapping", total=n_images, info="")
            options = pycolmap.IncrementalPipelineOptions()
            options.random_seed = seed
            options.mapper.random_seed = seed
            models = pycolmap.incremental_mapping(
                database,
                images_dir,
                out_dir,
                options=options,
                initial_image_pair_callback=lambda: progress.advance(task, 2),
                next_image_callback=lambda: progress.advance(task, 1),
            )
        else:
            progress.add_task("map: global mapping (rotation averaging, positioning, BA)", total=None, info="")
            options = pycolmap.GlobalPipelineOptions()
            options.random_seed = seed
            options.mapper.random_seed = seed
            models = pycolmap.global_mapping(database, images_dir, out_dir, options=options)
    if not models:
        return None
    return max(models.values(), key=lambda rec: (rec.num_reg_images(), rec.num_points3D()))


def model_stats(rec) -> dict:
    """Registered images, points, mean track length and mean reprojection error (pixels) of a model."""
    return {
        "registered_images": int(rec.num_reg_images()),
        "points3D": int(rec.num_points3D()),
        "mean_track_length": round(float(rec.compute_mean_track_length()), 3),
        "mean_reprojection_error_px": round(float(rec.compute_mean_reprojection_error()), 3),
        "mean_observations_per_image": round(float(rec.compute_mean_observations_per_reg_image()), 1),
        "cameras": [
            {
                "model": cam.model.name,
                "size": [int(cam.width), int(cam.height)],
                "params": [round(float(p), 6) for p in cam.params],
            }
            for cam in rec.cameras.values()
        ],
    }
