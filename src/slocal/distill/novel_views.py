"""Novel views for the mapping buffer: a frame's teacher targets splatted into a moved camera.

A pass of the buffer may show the scene from a camera the mapping frames never had
(``render_view``): the frame's coloured targets, where the teacher is dense, splatted
together with those of the ``view_neighbours`` training frames nearest to the new camera,
holes filled from their surroundings (``fill_holes``). Sparse teachers' frames (SfM, COLMAP)
are rendered through a surface interpolated from their points (``proxy_targets``; with their
neighbours' only when ``view_neighbours_sparse`` is set), and their targets are assigned to the
cells they project into (``sparse_pass_targets``) rather than sampled at the cell centres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from slocal.data.scene import Frame
from slocal.distill.data import read_frame_image
from slocal.geometry.camera import Camera, pixel_centers
from slocal.geometry.pose import invert, transform_points
from slocal.progress import progress_bar
from slocal.teach.targets import FrameTargets

# Sparse targets a frame needs before its novel views are rendered through their interpolated surface.
MIN_PROXY_POINTS = 100
# Fraction of valid target pixels above which a frame's targets count as dense (depth, DUSt3R).
DENSE_FRACTION = 0.5


def random_view(rng: np.random.Generator, translation: float, rotation_deg: float) -> np.ndarray:
    """A random rigid motion of a camera (4, 4), ``new_from_old``: up to ``translation`` (scene units),
    ``rotation_deg`` degrees."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = math.radians(rotation_deg) * rng.uniform(-1.0, 1.0)
    R, _ = cv2.Rodrigues(axis * angle)
    shift = rng.normal(size=3)
    shift *= translation * rng.uniform(0.0, 1.0) / np.linalg.norm(shift)
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -R @ shift  # the new centre is ``shift`` in the old camera frame
    return T


def fill_holes(image_HWC: np.ndarray, known_HW: np.ndarray) -> np.ndarray:
    """Fill the unknown pixels of an image from its known ones by push-pull (a mask-weighted image pyramid).

    Each level halves the image, averaging known pixels only; on the way back up
    an unknown pixel takes the bilinear upsample of the coarser level. Kept
    instead of ``cv2.inpaint`` (TELEA), which took half of a novel view's time
    for holes that carry no target anyway.

    Args:
        image_HWC: float32 image (H, W, C); values under unknown pixels are ignored.
        known_HW: bool mask of the known pixels.

    Returns:
        float32 (H, W, C): the known pixels unchanged, the others filled.
    """
    H, W = known_HW.shape
    if known_HW.all() or not known_HW.any():
        return image_HWC
    C = image_HWC.shape[2]
    w = known_HW.astype(np.float32)[..., None]
    half = (max(1, (W + 1) // 2), max(1, (H + 1) // 2))
    # The weighted image and its weights as one array: one resize per level instead of two.
    small_sum = cv2.resize(np.concatenate([image_HWC * w, w], axis=2), half, interpolation=cv2.INTER_AREA)
    small_sum = small_sum.reshape(half[1], half[0], C + 1)
    w_small = small_sum[..., C]
    small = fill_holes(small_sum[..., :C] / np.maximum(w_small, 1e-6)[..., None], w_small > 0)
    up = cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR).reshape(H, W, -1)
    return np.where(known_HW[..., None], image_HWC, up)


@dataclass(frozen=True, eq=False)
class SplatPoints:
    """Coloured world points to render novel views from (``render_points``).

    Attributes:
        points_M3: float32 world points.
        colours_M3: uint8 RGB.
        conf_M: float32 teacher confidence.
        supervised_M: bool, the point is a real target (else it only carries colour).
    """

    points_M3: np.ndarray
    colours_M3: np.ndarray
    conf_M: np.ndarray
    supervised_M: np.ndarray

    @classmethod
    def of_frame(
        cls, targets: FrameTargets, rgb_HW3: np.ndarray, supervised_HW: np.ndarray | None = None
    ) -> SplatPoints:
        """A frame's valid targets coloured by its image (resized to the target grid).

        Args:
            supervised_HW: which target pixels are real targets (default: all valid ones).
        """
        colours = cv2.resize(rgb_HW3, targets.camera.size, interpolation=cv2.INTER_AREA).reshape(-1, 3)
        keep = targets.valid_HW.reshape(-1)
        supervised = keep if supervised_HW is None else supervised_HW.reshape(-1)
        return cls(
            targets.coords_HW3.reshape(-1, 3)[keep].astype(np.float32),
            colours[keep],
            targets.conf_HW.reshape(-1)[keep].astype(np.float32),
            supervised[keep],
        )

    @classmethod
    def concat(cls, parts: list[SplatPoints]) -> SplatPoints:
        if len(parts) == 1:
            return parts[0]
        return cls(
            *(
                np.concatenate([getattr(q, k) for q in parts])
                for k in ("points_M3", "colours_M3", "conf_M", "supervised_M")
            )
        )


def render_points(
    splat: SplatPoints, camera: Camera, cam_from_world: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Splat coloured world points into a camera (novel-view augmentation).

    Points are projected into ``camera`` at ``cam_from_world`` and z-buffered
    (nearest wins). An empty pixel then takes the nearest of its four
    neighbours' points (closing the cracks of a magnifying motion); remaining
    holes are filled in the image (``fill_holes``) and left without targets.

    Returns:
        image_HW3 uint8, coords_HW3 float32 world points (NaN where no supervised point won the
        pixel), valid_HW bool, conf_HW float32.
    """
    # float32 throughout: ~20 passes over 300 000 points per view made this the costliest step of
    # encoding in float64; float32 moves a point across a pixel border only within ~1e-5 px of it.
    X = splat.points_M3
    W, H = camera.size
    # One 3x4 product gives (fx x + cx z, fy y + cy z, z) in camera coordinates.
    P_34 = camera.K @ np.asarray(cam_from_world, np.float64)[:3]
    p = cv2.transform(np.ascontiguousarray(X, np.float32).reshape(1, -1, 3), P_34).reshape(-1, 3)
    z = p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_z = np.float32(1.0) / z
        u = p[:, 0] * inv_z
        v = p[:, 1] * inv_z
    ok = z > 1e-3
    ok &= u >= 0
    ok &= u < W
    ok &= v >= 0
    ok &= v < H
    # Points outside the image go to a spare pixel H * W, cut off below (cheaper than selecting
    # the inside ones first); truncation is floor for the inside ones (u, v >= 0).
    with np.errstate(invalid="ignore"):
        pix = v.astype(np.int32) * np.int32(W) + u.astype(np.int32)
    pix[~ok] = H * W
    depth = np.full(H * W + 1, np.inf, np.float32)
    np.minimum.at(depth, pix, z)
    nearest = np.flatnonzero(z == depth[pix])
    owner = np.full(H * W + 1, -1, np.int64)
    owner[pix[nearest]] = nearest
    depth, owner = depth[:-1], owner[:-1]
    # Cracks: an empty pixel takes the nearest point owning one of its 4 neighbours (the first
    # in the order left, right, up, down on a tie).
    depth_HW, owner_HW = depth.reshape(H, W), owner.reshape(H, W)
    pad_d = np.pad(depth_HW, 1, constant_values=np.inf)
    pad_o = np.pad(owner_HW, 1, constant_values=-1)
    inner, lo, hi = slice(1, -1), slice(0, -2), slice(2, None)
    best_d, crack_owner = pad_d[inner, lo].copy(), pad_o[inner, lo].copy()
    for s in [(inner, hi), (lo, inner), (hi, inner)]:  # right, up and down neighbours
        closer = pad_d[s] < best_d
        np.copyto(best_d, pad_d[s], where=closer)
        np.copyto(crack_owner, pad_o[s], where=closer)
    owner = np.where(owner_HW >= 0, owner_HW, crack_owner).reshape(-1)
    filled = owner >= 0
    # Gather every pixel's point (pixels without one take point 0, then masked): np.take on whole
    # arrays is several times faster than boolean-masked fancy indexing.
    idx = np.maximum(owner, 0)
    image = fill_holes(splat.colours_M3.take(idx, axis=0).astype(np.float32).reshape(H, W, 3), filled.reshape(H, W))
    real = filled & splat.supervised_M.take(idx)
    coords = X.take(idx, axis=0)
    coords[~real] = np.nan
    conf_out = np.where(real, splat.conf_M.take(idx), np.float32(0.0))
    image_u8 = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    return image_u8, coords.reshape(H, W, 3), real.reshape(H, W), conf_out.reshape(H, W)


def render_view(
    targets: FrameTargets,
    rgb_HW3: np.ndarray,
    camera: Camera,
    cam_from_world: np.ndarray,
    supervised_HW: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Splat one frame's dense targets, coloured by its image, into another camera (``render_points``).

    Args:
        targets: dense targets of the frame (or a proxy surface, see ``proxy_targets``).
        rgb_HW3: the frame's image.
        camera, cam_from_world: the new camera.
        supervised_HW: which target pixels are real targets (default: all valid ones); the
            others only carry colour.
    """
    return render_points(SplatPoints.of_frame(targets, rgb_HW3, supervised_HW), camera, cam_from_world)


def view_neighbours(
    world_from_cam: np.ndarray, candidates_C44: np.ndarray, count: int, units_per_radian: float = 0.5
) -> np.ndarray:
    """Indices of the ``count`` candidate cameras nearest to a camera, nearest first.

    The distance is between camera centres plus ``units_per_radian`` (0.5 m in scene units) times the
    angle between the optical axes, so a camera looking the other way from the
    same spot is not a neighbour.

    Args:
        world_from_cam: (4, 4) the camera.
        candidates_C44: (C, 4, 4) world_from_cam of the candidates.
    """
    centre_dist = np.linalg.norm(candidates_C44[:, :3, 3] - world_from_cam[:3, 3], axis=1)
    cos = np.clip(candidates_C44[:, :3, 2] @ world_from_cam[:3, 2], -1.0, 1.0)
    score = centre_dist + units_per_radian * np.arccos(cos)
    return np.argsort(score, kind="stable")[:count]


def proxy_targets(targets: FrameTargets, cam_from_world: np.ndarray) -> FrameTargets:
    """A dense surface through a frame's sparse targets, to render novel views of its image.

    The targets' depths are interpolated over the whole grid (``fill_holes``)
    and lifted back to world points; only the image is rendered from the
    interpolated part (``render_view`` with ``supervised_HW = targets.valid_HW``),
    the targets stay the teacher's own points.
    """
    tc = targets.camera
    z = np.zeros(tc.height * tc.width, np.float32)
    valid = targets.valid_HW.reshape(-1)
    R, t = cam_from_world[:3, :3], cam_from_world[:3, 3]
    z[valid] = (targets.coords_HW3.reshape(-1, 3)[valid].astype(np.float64) @ R[2] + t[2]).astype(np.float32)
    z_HW = fill_holes(z.reshape(tc.height, tc.width, 1), targets.valid_HW & (z.reshape(tc.height, tc.width) > 0))[
        ..., 0
    ]
    uv = pixel_centers(tc.width, tc.height).reshape(-1, 2)
    X = transform_points(invert(cam_from_world), tc.backproject(uv, z_HW.reshape(-1).astype(np.float64)))
    ok = (z_HW > 0).reshape(-1)
    coords = np.where(ok[:, None], X, np.nan).astype(np.float32).reshape(tc.height, tc.width, 3)
    coords[targets.valid_HW] = targets.coords_HW3[targets.valid_HW]  # the teacher's points, bit for bit
    conf = np.where(targets.valid_HW, targets.conf_HW, 0.0).astype(np.float32)
    return FrameTargets(targets.name, tc, coords, conf, ok.reshape(tc.height, tc.width))


def sparse_pass_targets(
    points_M3: np.ndarray,
    conf_M: np.ndarray,
    K_33: np.ndarray,
    cam_from_world_34: np.ndarray,
    uv_N2: np.ndarray,
    grid: tuple[int, int],
    centre: np.ndarray,
    weight_scale: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Targets of one pass from a sparse teacher's points: coords (centre-relative), valid, weight per cell.

    A sparse teacher (SfM, COLMAP) has a point on ~1 % of its grid's pixels, so
    sampling at the cell centres (``pass_targets``) finds a target for ~5 % of
    the cells. Here every point goes to the cell it projects into (the most
    confident one when several do), moved onto the ray of the cell centre at
    its own depth, as the teachers snap points to their pixel centres: ~10x
    more supervised cells, each target off by the depth change across at most
    half a cell.

    Args:
        points_M3: world points (absolute world frame).
        conf_M: their confidences.
        K_33, cam_from_world_34: the pass camera, world relative to ``centre`` (``pass_camera``).
        uv_N2: cell centres; grid: (h, w) of the cell grid (stride ``8``).
        centre: (3,) scene centre.
        weight_scale: confidence normaliser (``confidence_scale``).
    """
    h, w = grid
    R, t = cam_from_world_34[:, :3].astype(np.float64), cam_from_world_34[:, 3].astype(np.float64)
    K = K_33.astype(np.float64)
    p = (points_M3.astype(np.float64) - centre) @ R.T + t
    z = p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        col = np.floor((K[0, 0] * p[:, 0] / z + K[0, 2]) / 8.0)
        row = np.floor((K[1, 1] * p[:, 1] / z + K[1, 2]) / 8.0)
    ok = (z > 1e-3) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
    cell = (row[ok] * w + col[ok]).astype(np.int64)
    idx = np.flatnonzero(ok)
    order = np.lexsort((-conf_M[idx], cell))  # most confident first within each cell
    _, first = np.unique(cell[order], return_index=True)
    pick, cells = idx[order[first]], cell[order[first]]
    uv = uv_N2[cells].astype(np.float64)
    zc = z[pick]
    cam = np.stack([(uv[:, 0] - K[0, 2]) / K[0, 0] * zc, (uv[:, 1] - K[1, 2]) / K[1, 1] * zc, zc], 1)
    coords = np.zeros((h * w, 3), np.float32)
    coords[cells] = ((cam - t) @ R).astype(np.float32)
    valid = np.zeros(h * w, bool)
    valid[cells] = True
    weight = np.zeros(h * w, np.float32)
    weight[cells] = conf_M[pick] / weight_scale
    return coords, valid, weight


def is_dense(targets: FrameTargets) -> bool:
    """Whether a frame's targets cover most of its grid (depth, DUSt3R), not a sparse teacher's points."""
    return bool(targets.valid_HW.mean() >= DENSE_FRACTION)


def frame_splat(targets: FrameTargets, rgb_HW3: np.ndarray, cam_from_world: np.ndarray) -> SplatPoints | None:
    """What a frame's novel views are rendered from: its coloured targets, or None when it has too few.

    Dense targets are splatted as they are; sparse ones (``is_dense`` false) through the surface
    interpolated from them (``proxy_targets``), whose points carry only colour except the teacher's
    own. A sparse frame with under ``MIN_PROXY_POINTS`` targets gets no novel views.
    """
    if is_dense(targets):
        return SplatPoints.of_frame(targets, rgb_HW3)
    if targets.num_valid < MIN_PROXY_POINTS:
        return None
    return SplatPoints.of_frame(proxy_targets(targets, cam_from_world), rgb_HW3, targets.valid_HW)


def neighbour_splats(
    frames: list[Frame], targets: dict[str, FrameTargets], sparse: bool = False
) -> tuple[list[SplatPoints | None], np.ndarray]:
    """Every frame's ``frame_splat`` and all frames' world_from_cam (F, 4, 4).

    Held in memory for the whole encoding (~1.5 MB a frame at a 320x240 target grid).

    Args:
        sparse: also gather sparsely taught frames (else None for them, as for frames without a splat).
    """
    splats: list[SplatPoints | None] = []
    for frame in progress_bar(frames, "gathering points for novel views"):
        t = targets[frame.name]
        gather = sparse or is_dense(t)
        splats.append(frame_splat(t, read_frame_image(frame), frame.cam_from_world) if gather else None)
    return splats, np.stack([f.world_from_cam for f in frames])
