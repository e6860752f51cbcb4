"""The MVS teacher: dense depth from the posed mapping photos (plane-sweep stereo, CPU), anchored by sparse points.

For photos without depth (a COLMAP model, or any posed scene whose depth is ignored), the sparse
teachers label about 1 % of the pixels. This teacher labels most textured pixels:

1. **Neighbours.** Each mapping frame takes ``num_neighbors`` source frames ranked by
   ``slocal.teach.pairs.matching_pair_scores`` (frustum overlap times triangulation angle, from the
   poses only). The nominal depth of that ranking is the sparse points' median depth where the
   scene has them, so the ranking does not depend on a COLMAP model's arbitrary unit.
2. **Plane sweep.** On the frame's target grid (``target_camera``; pixel centres at x + 0.5), fronto-
   parallel planes uniform in inverse depth over the range the frame's sparse points span (widened
   by ``depth_margin``). A frame without points first sweeps the configured metric range (or, for a
   scene without scale, a range relative to the camera spacing) on 4x smaller images and takes the
   range of what it finds. Each source image is warped onto the reference through the
   plane's homography and compared by ZNCC over a ``window`` square; the cost of a plane is the mean
   of the ``best_views`` best sources (an occluded source does not vote). Winner-take-all, then a
   parabola through the neighbouring planes gives the sub-plane depth. Pixels whose window has no
   texture, or whose best score is below ``min_ncc``, are left out.
3. **Cross-check and fusion.** A depth is kept only where at least ``min_consistent_views`` source
   frames agree: the point, projected into the source, read back from the source's own depth map
   and projected back into the reference, lands within ``max_reproj_px`` of where it started and
   within ``max_rel_depth`` of its depth (the forward-backward check of COLMAP's fusion). The kept
   depth is the mean of the reference's and the agreeing views' depths. This runs
   ``fusion_rounds`` times, each round on the previous round's fused maps: the frames' depths of
   one surface converge (on colmap-redkitchen the multi-view consistency goes from 3.4 to 1.1
   centi-units over three rounds, and the error against the sensor depth and the sparse points
   drops too, so it removes noise rather than hiding it).
4. **Anchors.** The frame's observed sparse points (a COLMAP model's own points and observations,
   mapping images only, as the ``colmap`` teacher reads them) check the dense depth: their median
   relative disagreement sets the scale of the tolerance (``anchor_tolerance`` times it, at least
   ``max_rel_depth``); where the dense depth disagrees with an observed point by more, the point is
   trusted: its cell takes the point and the dense pixels around it that disagree with it are
   dropped. (Adding the points where the dense map has none was measured: +0.6 % of the pixels,
   and a worse consistency, the points being snapped to cell centres; not done.)

Confidence: the fraction of source frames that agree times the best ZNCC score (in (0, 1]);
a sparse anchor keeps the ``colmap`` teacher's confidence. Coordinates are in the scene's units.

Why hand-written: pycolmap's PatchMatch stereo needs CUDA, and OpenCV's rectified stereo (SGBM)
assumes a camera translating sideways, which a walk through a room is not (the epipole falls in
the image when it moves forward). A plane sweep handles any relative pose and more than two views;
the heavy parts (warps, box filters) are OpenCV calls.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from slocal.config import config_dataclass
from slocal.data.scene import Frame, Scene
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera, pixel_centers
from slocal.geometry.pose import transform_points
from slocal.progress import progress_bar
from slocal.teach.colmap_teacher import ColmapTeacherConfig, mapping_observations
from slocal.teach.frame_targets import FrameTargets
from slocal.teach.pairs import matching_pair_scores
from slocal.teach.plane_sweep import SweepResult, View, load_view, plane_sweep, scaled_view
from slocal.teach.sfm.tracks import Observations

log = logging.getLogger(__name__)

ANCHORS = ("auto", "colmap", "none")


@config_dataclass
class MvsTeacherConfig:
    """Settings of the MVS teacher.

    Attributes:
        max_side: longer side of the target grid in pixels (the sweep runs on it).
        num_neighbors: source frames per reference frame.
        max_view_angle_deg: largest angle between the optical axes of a reference and a source.
        max_distance_m: largest distance between their centres (scene scale; none when unknown).
        min_overlap: smallest fraction of either frustum's samples the other sees.
        nominal_depth_m: scene depth the neighbour ranking assumes when the scene has a scale and
            no sparse points (else the points' median depth).
        target_tri_angle_deg: sources whose triangulation angle reaches this rank first.
        min_partners: a frame with fewer sources than this takes its best ones by overlap alone.
        coverage_view_angle_deg: largest axis angle of such a fallback source.
        window: side of the ZNCC window in target pixels (odd).
        num_depths: planes of the sweep.
        min_depth_m, max_depth_m: sweep range for a metric scene without sparse points.
        depth_margin: the range the frame's sparse points span (2nd to 98th percentile) is widened
            by this factor on either side (near / margin, far * margin).
        best_views: sources whose costs make a plane's cost (the best ones).
        min_ncc: smallest aggregated ZNCC score of a kept depth.
        min_texture: smallest grey-level standard deviation (0-255 scale) of a reference window.
        min_consistent_views: source frames that must agree with a kept depth.
        max_reproj_px: forward-backward reprojection tolerance in target pixels.
        max_rel_depth: relative depth tolerance of the cross-check.
        fusion_rounds: rounds of cross-check and fusion; each round checks and averages the previous
            round's fused maps, so the frames' depths converge on one surface.
        anchors: ``auto`` (a COLMAP scene's own points; none elsewhere), ``colmap`` or ``none``.
        anchor_tolerance: an anchor disagrees when its relative depth error exceeds this times the
            median relative error of all anchors (and ``max_rel_depth``).
        anchor_radius_px: around a disagreeing anchor, dense pixels that disagree with it within
            this radius are dropped.
    """

    max_side: Annotated[int, Field(ge=16)] = 320
    num_neighbors: Annotated[int, Field(ge=1)] = 6
    max_view_angle_deg: float = 45.0
    max_distance_m: float = 3.0
    min_overlap: float = 0.3
    nominal_depth_m: Annotated[float, Field(gt=0)] = 2.0
    target_tri_angle_deg: float = 8.0
    min_partners: int = 2
    coverage_view_angle_deg: float = 60.0
    window: Annotated[int, Field(ge=3)] = 7
    num_depths: Annotated[int, Field(ge=3)] = 128
    min_depth_m: Annotated[float, Field(gt=0)] = 0.2
    max_depth_m: Annotated[float, Field(gt=0)] = 10.0
    depth_margin: Annotated[float, Field(ge=1)] = 1.25
    best_views: Annotated[int, Field(ge=1)] = 4
    min_ncc: float = 0.5
    min_texture: float = 2.0
    min_consistent_views: Annotated[int, Field(ge=1)] = 2
    max_reproj_px: Annotated[float, Field(gt=0)] = 1.0
    max_rel_depth: Annotated[float, Field(gt=0)] = 0.02
    fusion_rounds: Annotated[int, Field(ge=1)] = 3
    anchors: Literal["auto", "colmap", "none"] = "auto"
    anchor_tolerance: Annotated[float, Field(gt=0)] = 3.0
    anchor_radius_px: int = 2

    def __post_init__(self) -> None:
        if self.window % 2 == 0:
            raise SlocalError(f"MvsTeacherConfig: window must be odd, got {self.window}")
        if self.min_depth_m >= self.max_depth_m:
            raise SlocalError(
                f"MvsTeacherConfig: min_depth_m={self.min_depth_m} must lie below max_depth_m={self.max_depth_m}"
            )
        if max(self.best_views, self.min_consistent_views) > self.num_neighbors:
            raise SlocalError(
                f"MvsTeacherConfig: best_views={self.best_views} and min_consistent_views="
                f"{self.min_consistent_views} must not exceed num_neighbors={self.num_neighbors}"
            )


# --------------------------------------------------------------------------- inputs
def anchor_observations(scene: Scene, mode: str) -> dict[str, Observations]:
    """The sparse points each mapping frame observes (by frame name), as the anchors of its depth."""
    use = mode == "colmap" or (mode == "auto" and scene.format == "colmap" and "model_dir" in scene.extra)
    if not use:
        return {}
    return mapping_observations(scene, ColmapTeacherConfig())


def anchor_depths(frame: Frame, obs: Observations) -> np.ndarray:
    """Depth (z in the frame's camera) of each observed point."""
    return transform_points(frame.cam_from_world, obs.xyz_N3)[:, 2]


def choose_neighbors(
    frames: Sequence[Frame], config: MvsTeacherConfig, metres_per_unit: float | None, median_depth: float | None
) -> list[list[int]]:
    """The source frames of every frame (indices into ``frames``), best first.

    ``median_depth`` (scene units, from the sparse points) replaces the nominal depth: the ranking
    then runs as if the scene had a scale that puts ``nominal_depth_m`` at the points' median depth.
    """
    scale = metres_per_unit
    if median_depth is not None and median_depth > 0:
        scale = config.nominal_depth_m / median_depth
    scores = matching_pair_scores(frames, config, scale)  # the config has the ranking's settings
    relaxed = None
    out = []
    for i in range(len(frames)):
        order = [int(j) for j in np.argsort(-scores[i], kind="stable") if scores[i, j] > 0][: config.num_neighbors]
        if len(order) < min(config.min_partners, len(frames) - 1):
            if relaxed is None:
                relaxed = matching_pair_scores(frames, config, scale, limits=False)
            extra = [int(j) for j in np.argsort(-relaxed[i], kind="stable") if relaxed[i, j] > 0 and j not in order]
            order = (order + extra)[: max(config.min_partners, len(order))]
        out.append(order)
    return out


#: fewest anchors (or coarse-sweep pixels, in %) that set a frame's depth range.
MIN_RANGE_SAMPLES = 10
#: the coarse sweep of a frame without anchors runs on images this many times smaller.
COARSE_FACTOR = 4


def prior_range(
    config: MvsTeacherConfig, anchors_z: np.ndarray | None, metres_per_unit: float | None, spacing: float
) -> tuple[float, float, bool]:
    """Near and far depth of a frame's sweep (scene units), and whether the frame's anchors set them.

    Without anchors: the configured metric range, or for a scene without scale a range relative to
    the capture's camera spacing (all that says how far the scene is); ``dense_depth`` then narrows
    it with a coarse sweep.
    """
    if anchors_z is not None and np.sum(anchors_z > 0) >= MIN_RANGE_SAMPLES:
        z = anchors_z[anchors_z > 0]
        near, far = np.percentile(z, 2), np.percentile(z, 98)
        return float(near / config.depth_margin), float(far * config.depth_margin), True
    if metres_per_unit is not None:
        return config.min_depth_m / metres_per_unit, config.max_depth_m / metres_per_unit, False
    return 0.5 * spacing, 200.0 * spacing, False


def coarse_range(
    ref: View, sources: Sequence[View], near: float, far: float, config: MvsTeacherConfig
) -> tuple[float, float]:
    """Narrow a wide depth range with a sweep on ``COARSE_FACTOR`` times smaller images (frames without anchors).

    The 2nd to 98th percentile of the coarse depths, widened by ``depth_margin``, within (near, far);
    (near, far) itself when fewer than ``MIN_RANGE_SAMPLES`` % of the coarse pixels get a depth.
    """
    coarse = replace(config, window=5)
    small = plane_sweep(
        scaled_view(ref, COARSE_FACTOR), [scaled_view(v, COARSE_FACTOR) for v in sources], near, far, coarse
    )
    z = small.depth_HW[small.depth_HW > 0]
    if 100 * z.size < MIN_RANGE_SAMPLES * small.depth_HW.size:
        return near, far
    lo, hi = np.percentile(z, 2) / config.depth_margin, np.percentile(z, 98) * config.depth_margin
    return float(max(lo, near)), float(min(hi, far))


# --------------------------------------------------------------------------- cross-check and fusion


def sample_depth(depth_HW: np.ndarray, uv_N2: np.ndarray, max_rel: float) -> np.ndarray:
    """Depth at image points: bilinear where the four pixels around are valid and within ``max_rel`` of
    each other, else the pixel the point falls in (no blending across a depth edge); 0 outside or invalid."""
    H, W = depth_HW.shape
    with np.errstate(invalid="ignore"):
        u = np.nan_to_num(uv_N2[:, 0], nan=-10.0)
        v = np.nan_to_num(uv_N2[:, 1], nan=-10.0)
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    near = np.where(inside, depth_HW[np.clip(v, 0, H - 1).astype(np.int64), np.clip(u, 0, W - 1).astype(np.int64)], 0.0)
    j0 = np.clip(np.floor(u - 0.5), 0, W - 2).astype(np.int64)
    i0 = np.clip(np.floor(v - 0.5), 0, H - 2).astype(np.int64)
    a = np.clip(u - 0.5 - j0, 0.0, 1.0)
    b = np.clip(v - 0.5 - i0, 0.0, 1.0)
    q = np.stack([depth_HW[i0, j0], depth_HW[i0, j0 + 1], depth_HW[i0 + 1, j0], depth_HW[i0 + 1, j0 + 1]], 1)
    smooth = inside & (q.min(1) > 0) & (q.max(1) <= q.min(1) * (1.0 + max_rel))
    blend = q[:, 0] * (1 - a) * (1 - b) + q[:, 1] * a * (1 - b) + q[:, 2] * (1 - a) * b + q[:, 3] * a * b
    return np.where(smooth, blend, near)


def cross_check(
    ref: View, depth_HW: np.ndarray, sources: Sequence[tuple[View, np.ndarray]], config: MvsTeacherConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Forward-backward check of ``ref``'s depth against each source's own depth map.

    Returns:
        the fused depth (mean over the reference and the agreeing sources, 0 where fewer than
        ``min_consistent_views`` agree) and the number of agreeing sources per pixel.
    """
    cam = ref.camera
    H, W = cam.height, cam.width
    valid = depth_HW > 0
    rows, cols = np.nonzero(valid)
    uv = np.stack([cols + 0.5, rows + 0.5], 1)
    d = depth_HW[rows, cols].astype(np.float64)
    pts_ref = cam.backproject(uv, d)
    total = d.copy()
    agree = np.zeros(len(d), np.int64)
    for src, src_depth in sources:
        src_from_ref = src.cam_from_world @ ref.frame.world_from_cam
        uv_s, z_s = src.camera.project(transform_points(src_from_ref, pts_ref))
        d_s = sample_depth(src_depth, uv_s, config.max_rel_depth)
        has = (z_s > 0) & (d_s > 0)
        back = transform_points(np.linalg.inv(src_from_ref), src.camera.backproject(uv_s, d_s))
        uv_b, z_b = cam.project(back)
        with np.errstate(invalid="ignore"):
            ok = has & (np.linalg.norm(uv_b - uv, axis=1) <= config.max_reproj_px)
            ok &= np.abs(z_b - d) <= config.max_rel_depth * d
        agree += ok
        total += np.where(ok, z_b, 0.0)
    keep = agree >= config.min_consistent_views
    fused = np.zeros((H, W), np.float32)
    fused[rows[keep], cols[keep]] = (total[keep] / (agree[keep] + 1)).astype(np.float32)
    count = np.zeros((H, W), np.int64)
    count[rows, cols] = agree
    return fused, count


# --------------------------------------------------------------------------- anchors


@dataclass(frozen=True, eq=False)
class AnchorCheck:
    """The anchors of one frame on its target grid."""

    rows: np.ndarray
    cols: np.ndarray
    z: np.ndarray  # the points' depths
    xyz_N3: np.ndarray
    conf: np.ndarray
    rel_error: np.ndarray  # |dense - z| / z where the dense map has a depth, NaN elsewhere


def check_anchors(frame: Frame, camera: Camera, obs: Observations | None, depth_HW: np.ndarray) -> AnchorCheck | None:
    """The dense depth at each observed sparse point's target pixel, as a relative error."""
    if obs is None or len(obs) == 0:
        return None
    H, W = depth_HW.shape
    sx, sy = W / frame.camera.width, H / frame.camera.height
    cols = np.floor(obs.uv_N2[:, 0] * sx).astype(np.int64)
    rows = np.floor(obs.uv_N2[:, 1] * sy).astype(np.int64)
    z = anchor_depths(frame, obs)
    inside = (cols >= 0) & (cols < W) & (rows >= 0) & (rows < H) & (z > 0)
    rows, cols, z = rows[inside], cols[inside], z[inside]
    dense = depth_HW[rows, cols].astype(np.float64)
    rel = np.where(dense > 0, np.abs(dense - z) / z, np.nan)
    return AnchorCheck(rows, cols, z, obs.xyz_N3[inside], obs.conf[inside], rel)


def apply_anchors(
    frame: Frame,
    camera: Camera,
    depth_HW: np.ndarray,
    conf_HW: np.ndarray,
    check: AnchorCheck | None,
    tolerance: float,
    radius: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """World coordinates from the dense depth, with the anchors trusted where they disagree.

    An anchor whose relative depth error exceeds ``tolerance`` takes its cell (its point at its
    depth on the ray of the cell centre, as the ``colmap`` teacher snaps it, with its confidence),
    and the dense pixels within ``radius`` that disagree with it by more than ``tolerance`` are
    dropped (the same mistaken surface).

    Returns:
        coords_HW3 (float32, NaN where invalid), conf_HW, valid_HW and counts (anchors compared,
        replaced, dense pixels dropped).
    """
    H, W = depth_HW.shape
    depth = depth_HW.astype(np.float64).copy()
    conf = conf_HW.astype(np.float32).copy()
    stats = {"compared": 0, "replaced": 0, "dropped": 0}
    bad = np.zeros(0, bool)
    if check is not None:
        compared = np.isfinite(check.rel_error)
        bad = compared & (np.where(compared, check.rel_error, 0.0) > tolerance)
        stats["compared"], stats["replaced"] = int(compared.sum()), int(bad.sum())
        for r, c, z in zip(check.rows[bad], check.cols[bad], check.z[bad]):
            patch = depth[max(r - radius, 0) : r + radius + 1, max(c - radius, 0) : c + radius + 1]
            off = (patch > 0) & (np.abs(patch - z) > tolerance * z)
            stats["dropped"] += int(off.sum())
            patch[off] = 0.0
    valid = depth > 0
    uv = pixel_centers(W, H).reshape(-1, 2)
    coords = transform_points(frame.world_from_cam, camera.backproject(uv, depth.reshape(-1))).reshape(H, W, 3)
    if bad.any():
        rows, cols = check.rows[bad], check.cols[bad]
        centres = np.stack([cols + 0.5, rows + 0.5], 1)
        coords[rows, cols] = transform_points(frame.world_from_cam, camera.backproject(centres, check.z[bad]))
        conf[rows, cols] = check.conf[bad]
        valid[rows, cols] = True
    coords = coords.astype(np.float32)
    coords[~valid] = np.nan
    conf[~valid] = 0.0
    return coords, conf, valid, stats


# --------------------------------------------------------------------------- teacher


@dataclass(frozen=True, eq=False)
class DenseDepth:
    """The cross-checked depth maps of a scene's mapping frames, before anchoring.

    Attributes:
        views: the frames' views (target grids), in ``scene.mapping`` order.
        neighbors: each frame's source frames (indices).
        depth: fused depth per frame (scene units, 0 where none).
        conf: confidence per frame (agreeing fraction times ZNCC score, 0 where none).
        raw_depth: the plane sweep's depth per frame before the cross-check.
        seconds: wall time of the sweep and of the cross-check.
    """

    views: list[View]
    neighbors: list[list[int]]
    depth: list[np.ndarray]
    conf: list[np.ndarray]
    raw_depth: list[np.ndarray]
    seconds: dict


def spacing_of(frames: Sequence[Frame]) -> float:
    """Median distance from a camera to its nearest neighbour (1 for a single frame)."""
    if len(frames) < 2:
        return 1.0
    centres = np.stack([f.world_from_cam[:3, 3] for f in frames])
    dist = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.diag(np.full(len(frames), np.inf))
    spacing = float(np.median(dist.min(1)))
    return spacing if spacing > 0 and math.isfinite(spacing) else 1.0


def dense_depth(scene: Scene, config: MvsTeacherConfig, observations: dict[str, Observations]) -> DenseDepth:
    """Plane-sweep depth of every mapping frame, cross-checked against its sources and fused."""
    c = config
    frames = scene.mapping
    start = time.perf_counter()
    anchors_z = {f.name: anchor_depths(f, observations[f.name]) for f in frames if f.name in observations}
    all_z = np.concatenate(list(anchors_z.values())) if anchors_z else np.zeros(0)
    median_depth = float(np.median(all_z[all_z > 0])) if np.sum(all_z > 0) >= 10 else None
    neighbors = choose_neighbors(frames, c, scene.metres_per_unit, median_depth)
    spacing = spacing_of(frames)
    views = [load_view(f, c.max_side) for f in progress_bar(frames, "mvs: images")]
    raw: list[SweepResult] = []
    for i in progress_bar(range(len(frames)), "mvs: plane sweep"):
        if not neighbors[i]:
            H, W = views[i].camera.height, views[i].camera.width
            raw.append(SweepResult(np.zeros((H, W), np.float32), np.zeros((H, W), np.float32)))
            continue
        sources = [views[j] for j in neighbors[i]]
        near, far, anchored = prior_range(c, anchors_z.get(frames[i].name), scene.metres_per_unit, spacing)
        if not anchored:
            near, far = coarse_range(views[i], sources, near, far, c)
        raw.append(plane_sweep(views[i], sources, near, far, c))
    sweep_s = time.perf_counter() - start
    depths = [r.depth_HW for r in raw]
    agree = [np.zeros(d.shape, np.int64) for d in depths]
    for _ in range(c.fusion_rounds):
        checked = [
            cross_check(views[i], depths[i], [(views[j], depths[j]) for j in neighbors[i]], c)
            for i in range(len(frames))
        ]
        depths = [d for d, _ in checked]
        agree = [a for _, a in checked]
    confs = [
        np.where(depths[i] > 0, agree[i] / max(len(neighbors[i]), 1) * raw[i].score_HW, 0.0).astype(np.float32)
        for i in range(len(frames))
    ]
    seconds = {"sweep": sweep_s, "cross_check": time.perf_counter() - start - sweep_s}
    return DenseDepth(views, neighbors, depths, confs, [r.depth_HW for r in raw], seconds)


class MvsTeacher:
    """Dense scene coordinates from plane-sweep stereo over the posed mapping photos, anchored by sparse points."""

    name = "mvs"

    def __init__(self, config: MvsTeacherConfig = MvsTeacherConfig()):
        self.config = config

    def settings(self) -> dict:
        return asdict(self.config)

    def teach(self, scene: Scene) -> Iterator[FrameTargets]:
        c = self.config
        start = time.perf_counter()
        observations = anchor_observations(scene, c.anchors)
        dense = dense_depth(scene, c, observations)
        frames = scene.mapping
        checks = [
            check_anchors(f, dense.views[i].camera, observations.get(f.name), dense.depth[i])
            for i, f in enumerate(frames)
        ]
        rel = np.concatenate(
            [ch.rel_error[np.isfinite(ch.rel_error)] for ch in checks if ch is not None] or [np.zeros(0)]
        )
        tolerance = max(c.max_rel_depth, c.anchor_tolerance * float(np.median(rel))) if rel.size else math.inf
        totals = {"compared": 0, "replaced": 0, "dropped": 0}
        for i, f in enumerate(frames):
            coords, conf, valid, stats = apply_anchors(
                f, dense.views[i].camera, dense.depth[i], dense.conf[i], checks[i], tolerance, c.anchor_radius_px
            )
            for key in totals:
                totals[key] += stats[key]
            yield FrameTargets(f.name, dense.views[i].camera, coords, conf, valid)
        log.info(
            "mvs %s: %d frames, sweep %.0f s, cross-check %.0f s, total %.0f s; anchors: %d compared, median "
            "relative error %.2f %%, tolerance %.2f %%, %d replaced, %d dense pixels dropped",
            scene.id,
            len(frames),
            dense.seconds["sweep"],
            dense.seconds["cross_check"],
            time.perf_counter() - start,
            rel.size,
            100 * float(np.median(rel)) if rel.size else float("nan"),
            100 * tolerance if math.isfinite(tolerance) else float("nan"),
            totals["replaced"],
            totals["dropped"],
        )
