"""The ACE-style mapping buffer: frozen-encoder features of augmented mapping images, with their targets.

Each mapping image is encoded ``buffer_passes`` times: pass 0 as it is, the
others scaled by ``s`` and rotated by ``theta`` about the principal point.
The warp is ``x_aug - c = s F R(theta) F^-1 (x - c)`` (``F = diag(fx, fy)``), which
is exactly a pinhole camera with focal lengths ``s fx, s fy`` rotated about
its optical axis, so every pass keeps an exact camera (``K_P33``,
``cam_from_world_P34``) for the reprojection loss, and each stride-8 cell
centre maps back to an exact point of the teacher's target grid
(``FrameTargets.sample``).

The buffer holds, for every pass ``P`` and cell ``N`` of the ``h x w`` grid:
``feat_PNC`` (float16), ``coords_PN3`` (targets relative to the scene centre,
0 where none), ``valid_PN`` (a teacher target exists), ``inside_PN`` (the
cell shows the original image, not the warp's black border) and
``weight_PN`` (normalised teacher confidence).

Passes may also be novel views of a frame's targets from a moved camera
(``novel_views.py``).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from slocal.data.scene import Frame
from slocal.distill.config import BufferTrainConfig
from slocal.distill.data import confidence_scale, read_frame_image
from slocal.distill.encoder import DenseEncoder, encode, normalise
from slocal.distill.novel_views import (
    SplatPoints,
    frame_splat,
    is_dense,
    neighbour_splats,
    random_view,
    render_points,
    sparse_pass_targets,
    view_neighbours,
)
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera, pixel_centers
from slocal.geometry.pose import invert
from slocal.progress import progress_bar
from slocal.teach.targets import FrameTargets

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class FeatureBuffer:
    """Encoded, augmented mapping passes (see the module docstring for the arrays).

    Attributes:
        image_size: (width, height) of every pass; ``uv_N2`` are its cell centres.
        frame_P: index of the mapping frame of each pass (into ``frame_names``).
        K_P33, cam_from_world_P34: float32 exact camera of each pass; world relative to the centre.
        path: the backing file when the buffer is memory-mapped, else None.
    """

    image_size: tuple[int, int]
    feat_PNC: np.ndarray
    coords_PN3: np.ndarray
    valid_PN: np.ndarray
    inside_PN: np.ndarray
    weight_PN: np.ndarray
    K_P33: np.ndarray
    cam_from_world_P34: np.ndarray
    frame_P: np.ndarray
    frame_names: tuple[str, ...]
    uv_N2: np.ndarray
    path: Path | None = None

    @property
    def num_passes(self) -> int:
        return int(self.feat_PNC.shape[0])

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) of the stride-8 cell grid."""
        return self.image_size[1] // 8, self.image_size[0] // 8

    def channel_stats(self, num_cells: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and standard deviation of ``num_cells`` cells drawn uniformly (float32, (C,) each).

        Drawn from every cell of every pass, the warp's black border included.

        A sample, not the whole buffer: millions of float16 cells (possibly memory-mapped) would be read
        for statistics that a few ten thousand cells give to within a percent.
        """
        rng = np.random.default_rng(seed)
        P, N, _ = self.feat_PNC.shape
        feat_SC = self.feat_PNC[np.sort(rng.integers(0, P, num_cells)), rng.integers(0, N, num_cells)].astype(
            np.float32
        )
        return feat_SC.mean(0), feat_SC.std(0)

    def release(self) -> None:
        """Delete the backing file of a memory-mapped buffer."""
        if self.path is not None and self.path.exists():
            self.path.unlink()


def buffer_bytes(num_passes: int, num_cells: int, channels: int) -> int:
    """Memory the buffer needs: float16 features + targets, weights and masks."""
    return num_passes * num_cells * (2 * channels + 12 + 4 + 2)


def _available_ram() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def allocate_features(shape: tuple[int, int, int], max_gb: float, spill_path: Path) -> tuple[np.ndarray, Path | None]:
    """A float16 array in RAM, or memory-mapped from ``spill_path`` when it exceeds ``max_gb`` or free RAM.

    Raises:
        SlocalError: the disk cannot hold it either; says how much is needed and what lowers it.
    """
    need = int(np.prod(shape)) * 2
    avail = _available_ram()
    if need <= max_gb * 2**30 and (avail == 0 or need < 0.8 * avail):
        return np.empty(shape, np.float16), None
    spill_path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(spill_path.parent).free
    if need > 0.9 * free:
        raise SlocalError(
            f"the feature buffer needs {need / 2**30:.1f} GB: more than train.buffer_max_gb ({max_gb:g}), "
            f"free RAM ({avail / 2**30:.1f} GB) and free disk ({free / 2**30:.1f} GB); "
            "lower train.buffer_passes or student.max_side in a --config file",
            spill_path.parent,
        )
    log.info("feature buffer of %.1f GB exceeds RAM budget: memory-mapping %s", need / 2**30, spill_path)
    return np.lib.format.open_memmap(spill_path, mode="w+", dtype=np.float16, shape=shape), spill_path


def augmentation(config: BufferTrainConfig, rng: np.random.Generator, augment: bool) -> tuple[float, float, np.ndarray]:
    """Random (scale, angle in degrees, colour jitter (3,)) of one pass; identity when not ``augment``."""
    u = rng.uniform(-1.0, 1.0, size=5)
    if not augment:
        return 1.0, 0.0, np.zeros(3)
    scale = math.exp(u[0] * math.log1p(config.aug_scale))
    return scale, float(u[1] * config.aug_rotation), u[2:] * config.aug_color


def warp_matrix(camera: Camera, scale: float, angle_deg: float) -> np.ndarray:
    """2x2 ``A`` of the pass warp ``x_aug - c = A (x - c)`` in ``camera``'s pixels: ``s F R F^-1``."""
    rad = math.radians(angle_deg)
    R = np.array([[math.cos(rad), -math.sin(rad)], [math.sin(rad), math.cos(rad)]])
    F = np.diag([camera.fx, camera.fy])
    return scale * F @ R @ np.linalg.inv(F)


def render_pass(rgb_HW3: np.ndarray, camera: Camera, A_22: np.ndarray) -> np.ndarray:
    """The network-size image of one pass, warped from the stored image.

    ``camera`` is the network-size camera; the stored image is first area-resized
    to about the pass's scale (anti-aliasing), then warped with one affine map.
    OpenCV puts pixel centres at integers, ours at +0.5: the offset is folded
    into the translation.
    """
    Ho, Wo = rgb_HW3.shape[:2]
    W, H = camera.size
    zoom = math.sqrt(abs(np.linalg.det(A_22))) * math.sqrt((W / Wo) * (H / Ho))
    if zoom < 1.0:
        Wi, Hi = max(1, round(Wo * zoom)), max(1, round(Ho * zoom))
        src = cv2.resize(rgb_HW3, (Wi, Hi), interpolation=cv2.INTER_AREA)
    else:
        src, Wi, Hi = rgb_HW3, Wo, Ho
    S = np.diag([W / Wi, H / Hi])  # intermediate pixels -> network pixels
    c = np.array([camera.cx, camera.cy])
    L = A_22 @ S
    m = c - A_22 @ c
    M = np.concatenate([L, (m + L @ [0.5, 0.5] - 0.5)[:, None]], axis=1)
    return cv2.warpAffine(src, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def unwarped_cells(camera: Camera, A_22: np.ndarray, uv_N2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres of a pass in the unwarped network image (N, 2), and whether they fall inside it (N,)."""
    c = np.array([camera.cx, camera.cy])
    src = (uv_N2 - c) @ np.linalg.inv(A_22).T + c
    inside = (src[:, 0] >= 0) & (src[:, 0] < camera.width) & (src[:, 1] >= 0) & (src[:, 1] < camera.height)
    return src, inside


def pass_targets(
    targets: FrameTargets,
    camera: Camera,
    A_22: np.ndarray,
    uv_N2: np.ndarray,
    centre: np.ndarray,
    weight_scale: float,
    origin_3: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Targets at the cell centres of one pass: coords (centre-relative, 0 where none), valid, inside, weight.

    ``origin_3`` is the camera centre (world frame), for telling depth edges apart (``FrameTargets.sample``).
    """
    src, inside = unwarped_cells(camera, A_22, uv_N2)
    tc = targets.camera
    xy_t = np.stack(
        [(src[:, 0] - camera.cx) / camera.fx * tc.fx + tc.cx, (src[:, 1] - camera.cy) / camera.fy * tc.fy + tc.cy], 1
    )
    coords, conf, valid = targets.sample(xy_t, origin_3)
    valid &= inside
    rel = np.where(valid[:, None], coords.astype(np.float64) - centre, 0.0).astype(np.float32)
    weight = np.where(valid, conf / weight_scale, 0.0).astype(np.float32)
    return rel, valid, inside, weight


def pass_camera(
    camera: Camera, cam_from_world: np.ndarray, scale: float, angle_deg: float, centre: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """K (3, 3) and cam_from_world (3, 4) of a pass, the world relative to ``centre`` (float32)."""
    rad = math.radians(angle_deg)
    R3 = np.array([[math.cos(rad), -math.sin(rad), 0.0], [math.sin(rad), math.cos(rad), 0.0], [0.0, 0.0, 1.0]])
    K = np.array([[camera.fx * scale, 0.0, camera.cx], [0.0, camera.fy * scale, camera.cy], [0.0, 0.0, 1.0]])
    R, t = cam_from_world[:3, :3], cam_from_world[:3, 3]
    pose = np.concatenate([R3 @ R, (R3 @ (t + R @ centre))[:, None]], axis=1)
    return K.astype(np.float32), pose.astype(np.float32)


def build_buffer(
    frames: list[Frame],
    targets: dict[str, FrameTargets],
    encoder: DenseEncoder,
    image_size: tuple[int, int],
    centre: np.ndarray,
    config: BufferTrainConfig,
    seed: int,
    spill_path: Path,
    mean,
    std,
    part: str = "levels",
    metres_per_unit: float = 1.0,
) -> FeatureBuffer:
    """Encode ``config.buffer_passes`` passes of every frame (see the module docstring).

    Args:
        frames: the mapping frames to encode (each with its own camera; all are
            resized to ``image_size``, the camera scaled with them).
        targets: the teacher's targets by frame name.
        encoder: the frozen encoder, on the device that encodes.
        image_size: (width, height) of the network input, multiples of the coarsest encoder level.
        centre: (3,) scene centre subtracted from the targets and poses.
        seed: seeds the augmentation (a buffer is reproducible).
        spill_path: file used when the buffer must be memory-mapped.
        mean, std: input normalisation of the encoder.
        part: what to store: ``levels`` (fused features) or ``bottom`` (the stride-8 map; see ``encode``).
        metres_per_unit: of the scene (``data.recipe_metres_per_unit``): ``view_translation`` and the
            neighbour distance are metres, the poses and targets scene units.
    """
    W, H = image_size
    uv_N2 = pixel_centers(W, H, 8).reshape(-1, 2)
    N, P = len(uv_N2), len(frames) * config.buffer_passes
    weight_scale = confidence_scale([targets[f.name] for f in frames])
    channels = encoder.channels if part == "levels" else int(encoder.body.feature_info.channels()[0])
    # On a GPU the encoder runs there (torch); on the CPU ``encode`` hands it to onnxruntime.
    device = next(encoder.parameters()).device
    feat, path = allocate_features((P, N, channels), config.buffer_max_gb, spill_path)
    coords = np.zeros((P, N, 3), np.float32)
    valid = np.zeros((P, N), bool)
    inside = np.zeros((P, N), bool)
    weight = np.zeros((P, N), np.float32)
    K = np.zeros((P, 3, 3), np.float32)
    pose = np.zeros((P, 3, 4), np.float32)
    frame_of = np.repeat(np.arange(len(frames)), config.buffer_passes)
    rng = np.random.default_rng(seed)
    view_translation = config.view_translation / metres_per_unit
    log.info(
        "feature buffer: %d frames x %d passes x %d cells x %d channels (%.2f GB)",
        len(frames),
        config.buffer_passes,
        N,
        channels,
        buffer_bytes(P, N, channels) / 2**30,
    )
    if config.view_neighbours > 0:
        splats, splat_poses = neighbour_splats(frames, targets, sparse=config.view_neighbours_sparse)
    else:
        splats, splat_poses = [], np.zeros((0, 4, 4))
    p = 0
    for fi, frame in enumerate(progress_bar(frames, "encoding mapping images")):
        rgb = read_frame_image(frame)
        camera = frame.camera.scaled(W, H)
        t = targets[frame.name]
        dense = is_dense(t)
        points_M3, points_conf_M = (None, None) if dense else (t.coords_HW3[t.valid_HW], t.conf_HW[t.valid_HW])
        with_neighbours = bool(splats) and (dense or config.view_neighbours_sparse)
        # Already gathered for the neighbours' sake, or gathered now.
        own_splat = splats[fi] if with_neighbours else frame_splat(t, rgb, frame.cam_from_world)
        images = []
        for k in range(config.buffer_passes):
            scale, angle, jitter = augmentation(config, rng, augment=k > 0)
            view = own_splat is not None and k >= config.buffer_passes - config.view_passes
            if view:
                new_from_old = random_view(rng, view_translation, config.view_rotation)
                cam_from_world = new_from_old @ frame.cam_from_world
                splat = own_splat
                if with_neighbours:
                    near = [
                        i
                        for i in view_neighbours(
                            invert(cam_from_world), splat_poses, config.view_neighbours + 1, 0.5 / metres_per_unit
                        )
                        if i != fi
                    ]
                    splat = SplatPoints.concat(
                        [splat] + [splats[i] for i in near[: config.view_neighbours] if splats[i] is not None]
                    )
                rendered, vcoords, vvalid, vconf = render_points(splat, camera, cam_from_world)
                img = rendered.astype(np.float32) / 255.0
                vt = FrameTargets(frame.name, camera, vcoords, vconf, vvalid)
                A = np.eye(2)
            else:
                cam_from_world = frame.cam_from_world
                A = warp_matrix(camera, scale, angle)
                img = render_pass(rgb, camera, A).astype(np.float32) / 255.0
            if jitter.any():
                mean_level = img.mean()
                img = (img - mean_level) * (1.0 + jitter[0]) + mean_level * (1.0 + jitter[1]) + 0.1 * jitter[2]
                img = np.clip(img, 0.0, 1.0)
            images.append(img)
            if view:
                K[p], pose[p] = pass_camera(camera, cam_from_world, 1.0, 0.0, centre)
                if dense:
                    origin = invert(cam_from_world)[:3, 3]
                    coords[p], valid[p], inside[p], weight[p] = pass_targets(
                        vt, camera, A, uv_N2, centre, weight_scale, origin
                    )
                else:
                    coords[p], valid[p], weight[p] = sparse_pass_targets(
                        vcoords[vvalid], vconf[vvalid], K[p], pose[p], uv_N2, (H // 8, W // 8), centre, weight_scale
                    )
                inside[p] = valid[p]  # elsewhere the view shows filled-in colour: no reprojection loss there either
            else:
                K[p], pose[p] = pass_camera(camera, cam_from_world, scale, angle, centre)
                if dense:
                    origin = frame.world_from_cam[:3, 3]
                    coords[p], valid[p], inside[p], weight[p] = pass_targets(
                        t, camera, A, uv_N2, centre, weight_scale, origin
                    )
                else:
                    inside[p] = unwarped_cells(camera, A, uv_N2)[1]
                    coords[p], valid[p], weight[p] = sparse_pass_targets(
                        points_M3, points_conf_M, K[p], pose[p], uv_N2, (H // 8, W // 8), centre, weight_scale
                    )
                    valid[p] &= inside[p]
                    weight[p] *= valid[p]
            p += 1
        # All passes of a frame in one batch: 13.7 instead of 17.1 ms per 320x240 image through
        # onnxruntime on 2 cores here.
        with torch.no_grad():
            f = encode(encoder, normalise(np.stack(images), mean, std).to(device), part)
        feat[p - len(images) : p] = f.permute(0, 2, 3, 1).reshape(len(images), N, -1).cpu().numpy().astype(np.float16)
    return FeatureBuffer(
        (W, H),
        feat,
        coords,
        valid,
        inside,
        weight,
        K,
        pose,
        frame_of,
        tuple(f.name for f in frames),
        uv_N2.astype(np.float32),
        path,
    )
