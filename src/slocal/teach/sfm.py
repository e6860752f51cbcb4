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
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from slocal.data.scene import Frame, Scene
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera, visible_fraction
from slocal.geometry.pose import transform_points
from slocal.io import read_image
from slocal.progress import make_progress, progress_bar
from slocal.teach.targets import FrameTargets, target_camera

log = logging.getLogger(__name__)

_MATCH_BLOCK = 64  # pairs per pycolmap matching call, so progress can be shown


@dataclass(frozen=True)
class SfmTeacherConfig:
    """Settings of the SfM teacher (and of the SIFT map the ``sift`` baseline reuses).

    Attributes:
        max_side: longer side of the target grid in pixels.
        sift_max_side: images are downscaled so their longer side is at most this for SIFT.
        max_features: keep at most this many keypoints per image (the largest-scale ones).
        num_neighbors: pose neighbours matched per image.
        max_view_angle_deg: largest angle between the optical axes of a pair.
        max_distance_m: largest distance between the camera centres of a pair.
        min_overlap: smallest fraction of either frustum's sample points visible in the other.
        nominal_depth_m: scene depth assumed by the frustum test (sampled at 0.5x, 1x, 2x).
        target_tri_angle_deg: pairs whose triangulation angle at the nominal depth
            reaches this rank first; smaller angles are penalised linearly.
        min_pair_matches: verified matches needed to keep a pair.
        min_track_length: images a 3D point must be seen in (2 or more).
        max_reproj_error_px: largest reprojection error of a point and of an
            observation, also the epipolar threshold of the verification.
        min_tri_angle_deg: smallest triangulation angle of a point.
        conf_tri_angle_deg: triangulation angle from which the confidence stops growing.
        snap_to_cell_center: move each target onto the ray of its cell centre at
            the point's depth, so the target is the coordinate of the cell centre
            (the keypoint lies up to half a cell away).
        num_threads: CPU threads for pycolmap (does not change the targets).
        use_gpu: run SIFT extraction and matching on CUDA (off by default).
    """

    max_side: int = 320
    sift_max_side: int = 1024
    max_features: int = 4096
    num_neighbors: int = 10
    max_view_angle_deg: float = 45.0
    max_distance_m: float = 3.0
    min_overlap: float = 0.3
    nominal_depth_m: float = 2.0
    target_tri_angle_deg: float = 5.0
    min_pair_matches: int = 15
    min_track_length: int = 3
    max_reproj_error_px: float = 4.0
    min_tri_angle_deg: float = 3.0
    conf_tri_angle_deg: float = 15.0
    snap_to_cell_center: bool = True
    num_threads: int = 2
    use_gpu: bool = False

    def __post_init__(self) -> None:
        if self.min_track_length < 2:
            raise SlocalError(f"min_track_length must be at least 2, got {self.min_track_length}")
        if self.num_neighbors < 1 or self.max_features < 16 or self.sift_max_side < 32 or self.max_side < 8:
            raise SlocalError(
                f"invalid SfM settings: num_neighbors={self.num_neighbors}, max_features={self.max_features}, "
                f"sift_max_side={self.sift_max_side}, max_side={self.max_side}"
            )
        if self.max_reproj_error_px <= 0 or self.nominal_depth_m <= 0 or not 0 <= self.min_overlap <= 1:
            raise SlocalError(
                f"invalid SfM settings: max_reproj_error_px={self.max_reproj_error_px}, "
                f"nominal_depth_m={self.nominal_depth_m}, min_overlap={self.min_overlap}"
            )

    def map_settings(self) -> dict:
        """The settings that change the SfM map (everything but the target grid and threads)."""
        d = asdict(self)
        for key in ("max_side", "snap_to_cell_center", "conf_tri_angle_deg", "num_threads"):
            d.pop(key)
        return d


# ---------------------------------------------------------------------------
# SIFT


class SiftExtractor:
    """pycolmap SIFT at a bounded resolution, keypoints in the input image's coordinates.

    Args:
        max_side: the image is downscaled (area interpolation) so its longer side is at most this.
        max_features: keep at most this many keypoints, the largest-scale ones.
        num_threads: CPU threads.
        use_gpu: use pycolmap's CUDA SIFT.
    """

    def __init__(self, max_side: int, max_features: int, num_threads: int = 2, use_gpu: bool = False):
        import pycolmap

        if use_gpu and not pycolmap.has_cuda:
            raise SlocalError("use_gpu=True but this pycolmap was built without CUDA")
        options = pycolmap.FeatureExtractionOptions()
        options.num_threads = num_threads
        options.use_gpu = use_gpu
        options.sift.max_num_features = max_features
        self.max_side = max_side
        self.max_features = max_features
        with colmap_quiet():
            self._extractor = pycolmap.FeatureExtractor.create(
                options, pycolmap.Device.cuda if use_gpu else pycolmap.Device.cpu
            )

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Extract SIFT.

        Args:
            image: uint8 (H, W, 3) RGB or (H, W) grey.

        Returns:
            keypoints_N4: float32 (x, y, scale, orientation), x and y in the
            input's pixel convention (``slocal.geometry.camera``), scale in input pixels.
            descriptors_N128: uint8 SIFT descriptors (COLMAP's quantisation).
        """
        import pycolmap

        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        grey = np.ascontiguousarray(grey, dtype=np.uint8)
        H, W = grey.shape
        scale = min(1.0, self.max_side / max(H, W))
        if scale < 1.0:
            w, h = max(1, round(W * scale)), max(1, round(H * scale))
            grey = cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA)
        else:
            w, h = W, H
        keypoints, descriptors = self._extractor.extract_from_uint8_array(grey)
        kp = pycolmap.keypoints_to_matrix(keypoints).astype(np.float32).reshape(-1, 4)
        desc = np.asarray(descriptors.data, dtype=np.uint8).reshape(-1, 128)
        # Corner-origin coordinates scale exactly with the image size.
        kp[:, 0] *= W / w
        kp[:, 1] *= H / h
        kp[:, 2] *= W / w
        if len(kp) > self.max_features:
            keep = np.sort(np.argsort(-kp[:, 2], kind="stable")[: self.max_features])
            kp, desc = kp[keep], desc[keep]
        return np.ascontiguousarray(kp), np.ascontiguousarray(desc)


def descriptors_to_float(desc_NC: np.ndarray) -> np.ndarray:
    """Quantised SIFT descriptors -> float32 unit vectors (for dot-product matching)."""
    d = desc_NC.astype(np.float32)
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    return d / np.maximum(norm, 1e-6)


@contextmanager
def colmap_quiet() -> Iterator[None]:
    """Silence COLMAP's INFO logging (glog on stderr) unless slocal logs at DEBUG."""
    import pycolmap

    old = pycolmap.logging.minloglevel
    if not log.isEnabledFor(logging.DEBUG):
        pycolmap.logging.minloglevel = max(old, int(pycolmap.logging.Level.WARNING.value))
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = old


# ---------------------------------------------------------------------------
# Pairs from the known poses


def _frustum_samples(frame: Frame, depth_m: float, n: int = 4) -> np.ndarray:
    """World points on an n x n pixel grid at 0.5x, 1x and 2x ``depth_m``: (3 n^2, 3)."""
    cam = frame.camera
    xs = (np.arange(n) + 0.5) / n * cam.width
    ys = (np.arange(n) + 0.5) / n * cam.height
    uv = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    pts = np.concatenate([cam.backproject(uv, np.full(len(uv), d)) for d in (0.5 * depth_m, depth_m, 2 * depth_m)])
    return transform_points(frame.world_from_cam, pts)


def pair_scores(frames: Sequence[Frame], config: SfmTeacherConfig) -> np.ndarray:
    """Symmetric (N, N) pair scores from the known poses; 0 where a pair fails a threshold.

    ``score = overlap * min(1, triangulation angle / target_tri_angle_deg)``:
    overlap is the smaller of the two fractions of frustum sample points (at
    0.5x, 1x and 2x the nominal depth) that the other camera sees; the
    triangulation angle is the mean of the angles the two centres subtend at
    the nominal-depth point on either optical axis.
    """
    n = len(frames)
    world_from_cam = np.stack([f.world_from_cam for f in frames])
    cam_from_world = np.stack([f.cam_from_world for f in frames])
    intrinsics = np.array(
        [[f.camera.fx, f.camera.fy, f.camera.cx, f.camera.cy, f.camera.width, f.camera.height] for f in frames]
    )
    centres, axes = world_from_cam[:, :3, 3], world_from_cam[:, :3, 2]
    cos_view = np.clip(axes @ axes.T, -1.0, 1.0)
    dist = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    close = (np.degrees(np.arccos(cos_view)) <= config.max_view_angle_deg) & (dist <= config.max_distance_m)
    candidate = np.triu(close, k=1)
    samples = np.stack([_frustum_samples(f, config.nominal_depth_m) for f in frames])
    focus = centres + config.nominal_depth_m * axes
    scores = np.zeros((n, n))
    for i in range(n):
        js = np.flatnonzero(candidate[i])
        if not len(js):
            continue
        m = len(js)
        ov_ij = visible_fraction(np.broadcast_to(samples[i], (m, *samples[i].shape)), cam_from_world[js], intrinsics[js])
        ov_ji = visible_fraction(
            samples[js], np.broadcast_to(cam_from_world[i], (m, 4, 4)), np.broadcast_to(intrinsics[i], (m, 6))
        )
        overlap = np.minimum(ov_ij, ov_ji)
        tri_i = _angle_deg(centres[i] - focus[i], centres[js] - focus[i])
        tri_j = _angle_deg(centres[i] - focus[js], centres[js] - focus[js])
        tri = 0.5 * (tri_i + tri_j)
        s = overlap * np.minimum(1.0, tri / config.target_tri_angle_deg)
        s[overlap < config.min_overlap] = 0.0
        scores[i, js] = s
    return scores + scores.T


def _angle_deg(a_N3: np.ndarray, b_N3: np.ndarray) -> np.ndarray:
    """Angle between row vectors (broadcast), degrees."""
    a, b = np.broadcast_arrays(np.atleast_2d(a_N3), np.atleast_2d(b_N3))
    cos = np.sum(a * b, -1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def select_pairs(frames: Sequence[Frame], config: SfmTeacherConfig) -> list[tuple[int, int]]:
    """Image pairs to match: the ``num_neighbors`` best-scoring partners of every frame.

    Returns:
        Sorted unique (i, j) index pairs into ``frames`` with i < j.
    """
    scores = pair_scores(frames, config)
    pairs: set[tuple[int, int]] = set()
    for i in range(len(frames)):
        order = np.argsort(-scores[i], kind="stable")[: config.num_neighbors]
        for j in order:
            if scores[i, j] > 0:
                pairs.add((min(i, int(j)), max(i, int(j))))
    return sorted(pairs)


# ---------------------------------------------------------------------------
# The map


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


def _fundamental(frame_1: Frame, frame_2: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Known relative pose (4, 4) cam2_from_cam1, essential and fundamental matrices (x2^T F x1 = 0)."""
    rel = frame_2.cam_from_world @ frame_1.world_from_cam
    R, t = rel[:3, :3], rel[:3, 3]
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    E = tx @ R
    F = np.linalg.inv(frame_2.camera.K).T @ E @ np.linalg.inv(frame_1.camera.K)
    return rel, E, F


def sampson_error(F_33: np.ndarray, uv1_N2: np.ndarray, uv2_N2: np.ndarray) -> np.ndarray:
    """First-order geometric error (pixels) of correspondences under ``F_33`` (x2^T F x1 = 0)."""
    x1 = np.concatenate([uv1_N2, np.ones((len(uv1_N2), 1))], 1)
    x2 = np.concatenate([uv2_N2, np.ones((len(uv2_N2), 1))], 1)
    Fx1 = x1 @ F_33.T
    Ftx2 = x2 @ F_33
    num = np.sum(x2 * Fx1, 1) ** 2
    den = Fx1[:, 0] ** 2 + Fx1[:, 1] ** 2 + Ftx2[:, 0] ** 2 + Ftx2[:, 1] ** 2
    return np.sqrt(num / np.maximum(den, 1e-300))


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
        raise SlocalError(f"scene {scene.id}: the SfM map needs at least 2 mapping frames, got {len(frames)}", scene.root)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "database.db"
    for stale in (db_path, workdir / "database.db-wal", workdir / "database.db-shm"):
        if stale.exists():
            stale.unlink()
    image_root, names = _image_names(scene)

    pairs = select_pairs(frames, config)
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
                        f"image is {rgb.shape[1]}x{rgb.shape[0]} but its camera is {frame.camera.width}x{frame.camera.height}",
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

        raw, verified, kept_pairs = _match_and_verify(db_path, frames, names, keypoints, pairs, config, workdir)
        log.info(
            "sfm %s: %d raw matches, %d consistent with the known poses, %d/%d pairs kept",
            scene.id, raw, verified, kept_pairs, len(pairs),
        )
        if kept_pairs == 0:
            raise SlocalError(
                f"scene {scene.id}: no image pair has {config.min_pair_matches} matches consistent with the poses", scene.root
            )

        before = {i: rec.image(i).cam_from_world().matrix().copy() for i in rec.reg_image_ids()}
        log.info("sfm %s: triangulating with the known poses fixed", scene.id)
        rec = pycolmap.triangulate_points(
            rec, db_path, image_root, workdir / "sparse", clear_points=True,
            options=_triangulation_options(config), refine_intrinsics=False,
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
        scene.id, stats["points3D"], stats["mean_track_length"], stats["mean_reproj_error_px"],
    )
    image_ids = {f.name: i + 1 for i, f in enumerate(frames)}
    return SfmMap(rec, frames, image_ids, keypoints, db_path, stats)


def _triangulation_options(config: SfmTeacherConfig):
    import pycolmap

    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = config.num_threads
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
    mapper.num_threads = config.num_threads
    mapper.random_seed = 0
    return opts


def _match_and_verify(
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
    matching.num_threads = config.num_threads
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
            rel, E, F = _fundamental(frames[i], frames[j])
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


# ---------------------------------------------------------------------------
# Observations and targets


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
        out[int(image_id)] = Observations(
            point2D_idx=p2d,
            uv_N2=uv,
            point3D_id=point_ids_a[pts],
            xyz_N3=xyz_a[pts],
            track_length=lengths_a[pts],
            tri_angle_deg=angles_a[pts],
            reproj_error=err,
            conf=observation_confidence(lengths_a[pts], angles_a[pts], err, config),
        )
    return out


def sparse_targets(frame: Frame, obs: Observations | None, max_side: int, snap_to_cell_center: bool = True) -> FrameTargets:
    """Write observations into the frame's target grid (one per cell, the most confident).

    Args:
        frame: the mapping frame.
        obs: its kept observations (None = no target at all).
        max_side: longer side of the target grid.
        snap_to_cell_center: replace each point by the point at the same depth on
            the ray of its cell centre.
    """
    camera = target_camera(frame, max_side)
    H, W = camera.height, camera.width
    coords = np.full((H, W, 3), np.nan, np.float32)
    conf = np.zeros((H, W), np.float32)
    valid = np.zeros((H, W), bool)
    if obs is None or len(obs) == 0:
        return FrameTargets(frame.name, camera, coords, conf, valid)
    sx, sy = W / frame.camera.width, H / frame.camera.height
    cols = np.floor(obs.uv_N2[:, 0] * sx).astype(np.int64)
    rows = np.floor(obs.uv_N2[:, 1] * sy).astype(np.int64)
    inside = (cols >= 0) & (cols < W) & (rows >= 0) & (rows < H)
    cell = rows * W + cols
    # Most confident first within each cell; np.unique keeps the first occurrence.
    order = np.lexsort((-obs.conf, cell))
    order = order[inside[order]]
    _, first = np.unique(cell[order], return_index=True)
    pick = order[first]
    r, c = rows[pick], cols[pick]
    xyz = obs.xyz_N3[pick]
    if snap_to_cell_center:
        z = transform_points(frame.cam_from_world, xyz)[:, 2]
        centres = np.stack([c + 0.5, r + 0.5], 1)
        xyz = transform_points(frame.world_from_cam, camera.backproject(centres, z))
    coords[r, c] = xyz.astype(np.float32)
    conf[r, c] = obs.conf[pick]
    valid[r, c] = True
    return FrameTargets(frame.name, camera, coords, conf, valid)


@contextmanager
def _work_folder(workdir: Path | None) -> Iterator[Path]:
    if workdir is not None:
        yield Path(workdir)
        return
    with tempfile.TemporaryDirectory(prefix="slocal-sfm-") as tmp:
        yield Path(tmp)


class SfmTeacher:
    """Sparse scene coordinates from SIFT points triangulated with the known poses.

    Args:
        config: the settings.
        workdir: where the COLMAP database and model go; a temporary folder
            (deleted afterwards) when None.
    """

    name = "sfm"

    def __init__(self, config: SfmTeacherConfig = SfmTeacherConfig(), workdir: str | Path | None = None):
        self.config = config
        self.workdir = Path(workdir) if workdir is not None else None

    def settings(self) -> dict:
        d = asdict(self.config)
        d.pop("num_threads")
        return d

    def teach(self, scene: Scene) -> Iterator[FrameTargets]:
        c = self.config
        with _work_folder(self.workdir) as work:
            sfm_map = build_sfm_map(scene, c, work)
            observations = kept_observations(sfm_map, c)
            num_obs = sum(len(o) for o in observations.values())
            without = sum(1 for i in sfm_map.image_ids.values() if i not in observations)
            log.info(
                "sfm %s: %d observations of kept points; %d of %d frames have none",
                scene.id, num_obs, without, len(sfm_map.frames),
            )
            for frame in progress_bar(sfm_map.frames, "sfm: targets"):
                obs = observations.get(sfm_map.image_ids[frame.name])
                yield sparse_targets(frame, obs, c.max_side, c.snap_to_cell_center)
