"""Training data: mapping images at the student's size, teacher targets, augmentation.

Augmentation rescales and rotates the image in-plane about the principal
point. For a pinhole camera that is exactly a change of focal length and a
rotation of the camera about its optical axis, so the world-frame targets stay
valid: each output cell centre is mapped back through the inverse warp onto
the teacher's target grid (``sample_target_maps``: the target at the exact cell centre), and the augmented camera
(``K``, ``cam_from_world``) is given for the reprojection loss.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from slocal.data.scene import Frame, Scene
from slocal.distill.config import TrainConfig
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera, pixel_centers
from slocal.geometry.pose import invert
from slocal.io import read_image
from slocal.progress import progress_bar
from slocal.teach.frame_targets import FrameTargets, sample_target_maps
from slocal.teach.targets import TargetSet

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class TrainFrame:
    """One mapping frame prepared for training.

    Attributes:
        name: frame name in the scene.
        image_HW3: uint8 RGB at the student's input size.
        camera: camera of ``image_HW3``.
        cam_from_world: (4, 4) ground-truth pose.
        coords_HW3: float32 targets relative to the scene centre on the target grid (0 where invalid).
        valid_HW: bool target mask.
        target_camera: camera of the target grid.
        weight_HW: float32 loss weight from the teacher confidence (see ``confidence_weights``).
    """

    name: str
    image_HW3: np.ndarray
    camera: Camera
    cam_from_world: np.ndarray
    coords_HW3: np.ndarray
    valid_HW: np.ndarray
    target_camera: Camera
    weight_HW: np.ndarray


@dataclass(frozen=True, eq=False)
class ValFrame:
    """A held-out mapping frame at the student's input size (what validation localizes)."""

    name: str
    image_HW3: np.ndarray
    camera: Camera
    cam_from_world: np.ndarray


def load_val_frames(frames: list[Frame], image_size: tuple[int, int]) -> list[ValFrame]:
    """Read held-out frames resized to ``image_size`` = (width, height), cameras scaled with them."""
    out = []
    for frame in frames:
        rgb = cv2.resize(read_image(frame.image_path), image_size, interpolation=cv2.INTER_AREA)
        out.append(ValFrame(frame.name, rgb, frame.camera.scaled(*image_size), frame.cam_from_world))
    return out


@dataclass(frozen=True, eq=False)
class Batch:
    """A training batch (numpy; the trainer moves it to torch).

    Attributes:
        images_BHW3: float32 RGB in [0, 1] (augmented).
        coords_BN3: float32 targets relative to the centre, cells in row-major order.
        valid_BN: bool.
        K_B33: float32 intrinsics of the augmented images.
        cam_from_world_B34: float32 augmented poses, world relative to the centre.
        weight_BN: float32 per-cell loss weight (teacher confidence).
    """

    images_BHW3: np.ndarray
    coords_BN3: np.ndarray
    valid_BN: np.ndarray
    K_B33: np.ndarray
    cam_from_world_B34: np.ndarray
    weight_BN: np.ndarray


def confidence_scale(frames: Iterable[FrameTargets], source: str | Path | None = None) -> float:
    """The median teacher confidence over the valid targets of ``frames``: loss weights are confidence / it.

    Normalising keeps the loss scale independent of the teacher's confidence
    units (DUSt3R's conf >= 1, SfM's in (0, 1], depth's constant 1 -> weight 1).

    Raises:
        SlocalError: naming ``source``, when the median is not a positive number.
    """
    valid_conf = np.concatenate([t.conf_HW[t.valid_HW] for t in frames])
    median = float(np.median(valid_conf)) if valid_conf.size else 1.0
    if not np.isfinite(median) or median <= 0:
        raise SlocalError(f"teacher confidences are not positive (median {median})", source)
    return median


def confidence_weights(targets: TargetSet) -> dict[str, np.ndarray]:
    """Per-frame loss weights: teacher confidence divided by ``confidence_scale`` over all frames."""
    median = confidence_scale(targets.frames, targets.directory)
    return {t.name: np.where(t.valid_HW, t.conf_HW / median, 0.0).astype(np.float32) for t in targets.frames}


#: Median distance from a mapping camera to its targets that the recipes' metric settings (the coordinate loss in
#: metres, ``loss_clamp``, ``view_translation``, the reprojection loss's nearest depth) were tuned at: redkitchen's
#: median sensor depth is 1.84 m. A scene of unknown scale is taken to be this deep (``recipe_metres_per_unit``).
NOMINAL_DEPTH_M = 2.0


def median_target_depth(scene: Scene, targets: TargetSet, names: Collection[str] | None = None) -> float:
    """Median depth (scene units) of the valid targets in their own mapping camera, over all frames or ``names``."""
    frames = {f.name: f for f in scene.mapping}
    depths = []
    for t in targets.frames:
        if (names is not None and t.name not in names) or t.name not in frames:
            continue
        cam_from_world = frames[t.name].cam_from_world
        pts = t.coords_HW3[t.valid_HW].astype(np.float64)
        depths.append(pts @ cam_from_world[2, :3] + cam_from_world[2, 3])
    z = np.concatenate(depths) if depths else np.zeros(0)
    z = z[z > 0]
    if z.size == 0:
        raise SlocalError("no valid target lies in front of its mapping camera", targets.directory)
    return float(np.median(z))


def recipe_metres_per_unit(scene: Scene, targets: TargetSet, names: Collection[str] | None = None) -> tuple[float, str]:
    """Metres per scene unit for the recipe's metric settings, and where the number comes from.

    The scene's own scale where it has one (metric datasets: 1; a COLMAP scene with ``scale.txt``).
    A model of unknown scale (``slocal map`` without ``--distance``) is taken to be ``NOMINAL_DEPTH_M``
    deep at the median target depth: its unit is arbitrary (0.27 m for the procedural room's video,
    0.18 m for redkitchen's photos), and settings in metres read as units would shrink the novel views
    and outweigh the reprojection loss by as much. Poses and predictions stay in scene units.
    """
    if scene.metres_per_unit is not None:
        return float(scene.metres_per_unit), "the scene's scale"
    depth = median_target_depth(scene, targets, names)
    return (
        NOMINAL_DEPTH_M / depth,
        f"unknown scale: median target depth {depth:.3g} units taken as {NOMINAL_DEPTH_M:g} m",
    )


def scene_centre(targets: TargetSet, names: Collection[str] | None = None) -> np.ndarray:
    """Mean of the valid target coordinates (float64, scene units) of all frames, or of the frames ``names``."""
    total = np.zeros(3)
    count = 0
    for t in targets.frames:
        if names is not None and t.name not in names:
            continue
        pts = t.coords_HW3[t.valid_HW].astype(np.float64)
        total += pts.sum(0)
        count += len(pts)
    if count == 0:
        raise SlocalError("the targets contain no valid point", targets.directory)
    return total / count


def read_frame_image(frame: Frame) -> np.ndarray:
    """A frame's RGB image (H, W, 3) uint8, checked against its camera's size (a SlocalError naming the file)."""
    rgb = read_image(frame.image_path)
    if (rgb.shape[1], rgb.shape[0]) != frame.camera.size:
        raise SlocalError(
            f"image is {rgb.shape[1]}x{rgb.shape[0]}, its camera says {frame.camera.width}x{frame.camera.height}",
            frame.image_path,
        )
    return rgb


def load_train_frames(
    scene: Scene, targets: TargetSet, image_size: tuple[int, int], centre: np.ndarray
) -> list[TrainFrame]:
    """Read the mapping images at ``image_size`` = (width, height) and pair them with targets.

    Frames without targets are left out (the teacher skipped them).
    """
    by_name = targets.by_name()
    weights = confidence_weights(targets)
    frames: list[TrainFrame] = []
    width, height = image_size
    mapping: list[Frame] = [f for f in scene.mapping if f.name in by_name]
    if not mapping:
        raise SlocalError("no mapping frame has teacher targets", targets.directory)
    for frame in progress_bar(mapping, "loading images"):
        t = by_name[frame.name]
        rgb = read_frame_image(frame)
        small = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        coords = np.where(t.valid_HW[..., None], t.coords_HW3 - centre, 0.0).astype(np.float32)
        frames.append(
            TrainFrame(
                frame.name,
                small,
                frame.camera.scaled(width, height),
                frame.cam_from_world,
                coords,
                t.valid_HW.copy(),
                t.camera,
                weights[frame.name],
            )
        )
    return frames


def validation_split(num_frames: int, num_val: int, stretch: float = 0.0) -> tuple[list[int], list[int]]:
    """(train indices, held-out indices) of the mapping frames (in trajectory order).

    With ``stretch > 0`` the last ``round(stretch * num_frames)`` frames are held out as one
    contiguous stretch: the model must localize them from views of the rest of the
    trajectory, as it must the queries. Otherwise ``num_val`` evenly spaced interior
    frames are held out (each between two training neighbours: a test of memory).
    """
    if stretch > 0:
        count = int(round(stretch * num_frames))
        if count < 1 or num_frames - count < 2:
            return list(range(num_frames)), []
        return list(range(num_frames - count)), list(range(num_frames - count, num_frames))
    if num_val <= 0 or num_frames < 2 * num_val + 1:
        return list(range(num_frames)), []
    val = sorted({int(round(v)) for v in np.linspace(0, num_frames - 1, num_val + 2)[1:-1]})
    return [i for i in range(num_frames) if i not in val], val


def split_mapping(scene: Scene, num_val: int, stretch: float = 0.0) -> tuple[Scene, list[Frame]]:
    """The scene without its held-out mapping frames, and those frames (``validation_split``).

    The split is over all of the scene's mapping frames, whatever a teacher labelled, so every
    teacher and recipe of one scene holds out the same frames.
    """
    _, val_idx = validation_split(len(scene.mapping), num_val, stretch)
    held_out = [scene.mapping[i] for i in val_idx]
    return scene.without_mapping(f.name for f in held_out), held_out


class BatchSampler:
    """Deterministic batches from a shard of frames; its state resumes exactly.

    Frames are visited in a fresh random permutation every epoch; batches run
    across epoch boundaries. All randomness comes from one numpy Generator.
    """

    def __init__(
        self,
        frames: list[TrainFrame],
        indices: list[int],
        config: TrainConfig,
        stride: int,
        seed: int,
        centre: np.ndarray,
    ):
        if not indices:
            raise SlocalError("no training frames in this shard (too few mapping frames for the number of processes?)")
        self.frames = frames
        self.indices = list(indices)
        self.config = config
        self.stride = stride
        self.centre = np.asarray(centre, np.float64).reshape(3)
        self.rng = np.random.default_rng(seed)
        self.order: list[int] = []
        self.pos = 0
        cam = frames[indices[0]].camera
        self.uv_N2 = pixel_centers(cam.width, cam.height, stride).reshape(-1, 2)

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "order": list(self.order), "pos": int(self.pos)}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.order = [int(i) for i in state["order"]]
        self.pos = int(state["pos"])

    def _next_index(self) -> int:
        if self.pos >= len(self.order):
            self.order = [self.indices[i] for i in self.rng.permutation(len(self.indices))]
            self.pos = 0
        idx = self.order[self.pos]
        self.pos += 1
        return idx

    def next_batch(self) -> Batch:
        samples = [self.sample(self._next_index()) for _ in range(self.config.batch_size)]
        return Batch(*(np.stack(parts) for parts in zip(*samples)))

    def sample(self, index: int) -> tuple[np.ndarray, ...]:
        """One augmented frame: image, targets, validity, K, cam_from_world (centre-relative), weights."""
        f = self.frames[index]
        c = self.config
        cam = f.camera
        u = self.rng.uniform(-1.0, 1.0, size=5)
        scale = math.exp(u[0] * math.log1p(c.aug_scale))
        angle = u[1] * c.aug_rotation
        # Image warp about the principal point: x' - c = scale * R(angle) (x - c).
        M = cv2.getRotationMatrix2D((cam.cx, cam.cy), angle, scale)
        image = f.image_HW3
        if scale != 1.0 or angle != 0.0:
            image = cv2.warpAffine(
                image, M, (cam.width, cam.height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
            )
        img = image.astype(np.float32) * np.float32(1.0 / 255.0)
        if c.aug_color > 0:
            a = c.aug_color
            mean = img.mean()
            img = (
                (img - mean) * np.float32(1.0 + a * u[2])
                + mean * np.float32(1.0 + a * u[3])
                + np.float32(0.1 * a * u[4])
            )
            np.clip(img, 0.0, 1.0, out=img)

        # Cell centres of the augmented image -> un-augmented image -> target grid.
        M_inv = cv2.invertAffineTransform(M)
        src = self.uv_N2 @ M_inv[:, :2].T + M_inv[:, 2]
        tc = f.target_camera
        x_t = (src[:, 0] - cam.cx) / cam.fx * tc.fx + tc.cx
        y_t = (src[:, 1] - cam.cy) / cam.fy * tc.fy + tc.cy
        origin = invert(f.cam_from_world)[:3, 3] - self.centre  # the targets are centre-relative
        coords, weight, valid = sample_target_maps(
            f.coords_HW3, f.weight_HW, f.valid_HW, np.stack([x_t, y_t], 1), origin
        )
        coords = np.where(valid[:, None], coords, 0.0).astype(np.float32)

        # The augmented camera: focal lengths scaled, rotated about the optical axis.
        rad = math.radians(angle)
        R2 = np.array([[math.cos(rad), math.sin(rad), 0.0], [-math.sin(rad), math.cos(rad), 0.0], [0.0, 0.0, 1.0]])
        K = np.array([[cam.fx * scale, 0.0, cam.cx], [0.0, cam.fy * scale, cam.cy], [0.0, 0.0, 1.0]], np.float32)
        return img, coords, valid, K, self._pose(f, R2), weight

    def _pose(self, f: TrainFrame, R2: np.ndarray) -> np.ndarray:
        R, t = f.cam_from_world[:3, :3], f.cam_from_world[:3, 3]
        t_rel = t + R @ self.centre
        return np.concatenate([R2 @ R, (R2 @ t_rel)[:, None]], axis=1).astype(np.float32)
