"""The SIFT map: database with the known cameras and poses, matching, fixed-pose triangulation."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slocal.data.colmap import DETERMINISTIC_THREADS
from slocal.data.scene import Frame, Scene
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera
from slocal.io import read_image
from slocal.progress import progress_bar
from slocal.teach.features import SiftExtractor, colmap_quiet
from slocal.teach.pairs import matching_pairs
from slocal.teach.sfm.config import SfmTeacherConfig
from slocal.teach.sfm.verify import match_and_verify

# pycolmap is imported inside the functions that use it: it loads large native libraries
# that the depth teacher, distillation and the localizer never need.

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SfmMap:
    """A SIFT map triangulated from known poses.

    Attributes:
        reconstruction: the pycolmap model (image ``i + 1`` is mapping frame ``i``).
        frames: the mapping frames, in image-id order.
        image_ids: frame name -> pycolmap image id.
        keypoints: image id -> float32 (N, 4) keypoints (x, y, scale, orientation).
        database_path: the COLMAP database with keypoints, descriptors and matches.
        stats: counts (pairs, matches, points, ...).
    """

    reconstruction: object
    frames: tuple[Frame, ...]
    image_ids: dict[str, int]
    keypoints: dict[int, np.ndarray]
    database_path: Path
    stats: dict = field(default_factory=dict)

    def frame(self, image_id: int) -> Frame:
        return self.frames[image_id - 1]


def _image_names(scene: Scene) -> tuple[Path, list[str]]:
    """Common image folder and each mapping image's path relative to it."""
    paths = [f.image_path.resolve() for f in scene.mapping]
    root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    names = [p.relative_to(root).as_posix() for p in paths]
    if len(set(names)) != len(names):
        raise SlocalError(f"scene {scene.id}: several mapping frames use the same image file", scene.root)
    bad = next((n for n in names if any(c.isspace() for c in n)), None)
    if bad is not None:
        raise SlocalError(
            f"scene {scene.id}: image path {bad!r} contains white space (COLMAP pair lists cannot hold it)", root
        )
    return root, names


def _pinhole(camera: Camera, camera_id: int):
    import pycolmap

    return pycolmap.Camera(
        model="PINHOLE",
        width=camera.width,
        height=camera.height,
        params=[camera.fx, camera.fy, camera.cx, camera.cy],
        camera_id=camera_id,
    )


def build_sfm_map(scene: Scene, config: SfmTeacherConfig, workdir: str | Path) -> SfmMap:
    """SIFT, pose-neighbour matching and fixed-pose triangulation of the mapping frames.

    Args:
        scene: the scene; only ``scene.mapping`` is used (frames' cameras must be pinholes).
        config: the settings.
        workdir: folder for ``database.db`` and ``sparse/`` (created; an old database is replaced).

    Raises:
        SlocalError: fewer than two mapping frames, no overlapping pair, or nothing triangulated.
    """
    import pycolmap

    frames = tuple(scene.mapping)
    if len(frames) < 2:
        raise SlocalError(
            f"scene {scene.id}: the SfM map needs at least 2 mapping frames, got {len(frames)}", scene.root
        )
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "database.db"
    for stale in (db_path, workdir / "database.db-wal", workdir / "database.db-shm"):
        if stale.exists():
            stale.unlink()
    image_root, names = _image_names(scene)

    pairs = matching_pairs(frames, config, scene.metres_per_unit)
    if not pairs:
        raise SlocalError(
            f"scene {scene.id}: no two mapping frames overlap (view angle <= {config.max_view_angle_deg} deg, "
            f"distance <= {config.max_distance_m} m, frustum overlap >= {config.min_overlap})",
            scene.root,
        )
    log.info("sfm %s: %d mapping frames, %d pose-neighbour pairs", scene.id, len(frames), len(pairs))

    rec = pycolmap.Reconstruction()
    camera_ids: dict[Camera, int] = {}
    keypoints: dict[int, np.ndarray] = {}
    extractor = SiftExtractor(config.sift_max_side, config.max_features, config.num_threads, config.use_gpu)

    with colmap_quiet():
        db = pycolmap.Database.open(db_path)
        try:
            for idx, frame in enumerate(progress_bar(frames, "sfm: SIFT")):
                image_id = idx + 1
                if frame.camera not in camera_ids:
                    camera_ids[frame.camera] = len(camera_ids) + 1
                    cam = _pinhole(frame.camera, camera_ids[frame.camera])
                    rec.add_camera_with_trivial_rig(cam)
                    db.write_camera(cam, use_camera_id=True)
                    db.write_rig(rec.rig(cam.camera_id), use_rig_id=True)
                image = pycolmap.Image(name=names[idx], camera_id=camera_ids[frame.camera], image_id=image_id)
                rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(frame.cam_from_world[:3, :]))
                db.write_frame(rec.frame(image_id), use_frame_id=True)
                db.write_image(rec.image(image_id), use_image_id=True)
                rgb = read_image(frame.image_path)
                if (rgb.shape[1], rgb.shape[0]) != frame.camera.size:
                    raise SlocalError(
                        f"image is {rgb.shape[1]}x{rgb.shape[0]} but its camera is "
                        f"{frame.camera.width}x{frame.camera.height}",
                        frame.image_path,
                    )
                kp, desc = extractor(rgb)
                keypoints[image_id] = kp
                db.write_keypoints(image_id, kp)
                db.write_descriptors(image_id, pycolmap.FeatureDescriptors(pycolmap.FeatureExtractorType.SIFT, desc))
        finally:
            db.close()
        num_keypoints = int(sum(len(k) for k in keypoints.values()))
        log.info("sfm %s: %d keypoints (%.0f per image)", scene.id, num_keypoints, num_keypoints / len(frames))

        raw, verified, kept_pairs = match_and_verify(db_path, frames, names, keypoints, pairs, config, workdir)
        log.info(
            "sfm %s: %d raw matches, %d consistent with the known poses, %d/%d pairs kept",
            scene.id,
            raw,
            verified,
            kept_pairs,
            len(pairs),
        )
        if kept_pairs == 0:
            raise SlocalError(
                f"scene {scene.id}: no image pair has {config.min_pair_matches} matches consistent with the poses",
                scene.root,
            )

        before = {i: rec.image(i).cam_from_world().matrix().copy() for i in rec.reg_image_ids()}
        log.info("sfm %s: triangulating with the known poses fixed", scene.id)
        rec = pycolmap.triangulate_points(
            rec,
            db_path,
            image_root,
            workdir / "sparse",
            clear_points=True,
            options=_triangulation_options(config),
            refine_intrinsics=False,
        )
    moved = max(float(np.abs(rec.image(i).cam_from_world().matrix() - T).max()) for i, T in before.items())
    if moved > 1e-9:
        raise RuntimeError(f"pycolmap moved a fixed pose by {moved:g} during triangulation")
    if rec.num_points3D() == 0:
        raise SlocalError(f"scene {scene.id}: no 3D point could be triangulated", scene.root)
    stats = {
        "frames": len(frames),
        "pairs": len(pairs),
        "verified_pairs": kept_pairs,
        "keypoints": num_keypoints,
        "raw_matches": raw,
        "verified_matches": verified,
        "points3D": int(rec.num_points3D()),
        "mean_track_length": float(rec.compute_mean_track_length()),
        "mean_reproj_error_px": float(rec.compute_mean_reprojection_error()),
    }
    log.info(
        "sfm %s: %d points, mean track length %.2f, mean reprojection error %.2f px",
        scene.id,
        stats["points3D"],
        stats["mean_track_length"],
        stats["mean_reproj_error_px"],
    )
    image_ids = {f.name: i + 1 for i, f in enumerate(frames)}
    return SfmMap(rec, frames, image_ids, keypoints, db_path, stats)


def _triangulation_options(config: SfmTeacherConfig):
    import pycolmap

    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = DETERMINISTIC_THREADS
    opts.random_seed = 0
    opts.ba_use_gpu = False
    opts.extract_colors = True
    tri = opts.triangulation
    tri.min_angle = config.min_tri_angle_deg
    tri.ignore_two_view_tracks = config.min_track_length >= 3
    tri.merge_max_reproj_error = config.max_reproj_error_px
    tri.complete_max_reproj_error = config.max_reproj_error_px
    tri.random_seed = 0
    mapper = opts.mapper
    mapper.filter_max_reproj_error = config.max_reproj_error_px
    mapper.filter_min_tri_angle = config.min_tri_angle_deg
    mapper.num_threads = DETERMINISTIC_THREADS
    mapper.random_seed = 0
    return opts
