"""The procedural demo scene: a textured room with furniture boxes, ray cast with numpy.

``render_scene`` writes a scene in the 12Scenes raw layout (colour JPEGs,
uint16 millimetre depth PNGs at a lower resolution, camera-to-world poses,
``info.txt`` and ``split.txt``), so the ordinary loader reads it and every
later step runs on it without a download.

The world is a closed, axis-aligned room (z up, floor at z = 0) holding boxes
that may be rotated about the vertical (yaw). Every face carries its own
texture, generated once per seed and anchored to the face's 2D coordinates in
metres: multi-octave colour value noise, blobs, small marks and glyphs, stripe
patches, posters and rugs. Lighting (ambient + two Lambertian point lights with
shadows) depends only on the surface point, so it is baked into the textures
and a point looks the same from every view. Cameras follow the OpenCV/COLMAP
convention (x right, y down, z forward); rays go through pixel centres as
defined in ``slocal.geometry.camera``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from slocal.data.scene import Scene
from slocal.data.twelve_scenes import load_twelve_scenes
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera, pixel_centers
from slocal.geometry.pose import to_homogeneous
from slocal.io import atomic_dir, write_depth_png, write_image, write_text
from slocal.progress import progress_bar

log = logging.getLogger(__name__)

SENSOR_NAME = "slocal-synth"
DEPTH_SHIFT = 1000  # stored depth units per metre (millimetres)

_EPS = 1e-6
# The two face axes (u, v) of a face whose normal is along local axis a.
_FACE_AXES = ((1, 2), (0, 2), (0, 1))
# Distance from the walls within which furniture stands; cameras stay inside it.
_FURNITURE_BAND = 0.9
_CAMERA_CLEARANCE = 0.6
_GLYPHS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789#@%&?"


@dataclass(frozen=True)
class SynthConfig:
    """Settings of the procedural demo scene.

    Attributes:
        mapping_frames: frames of the mapping trajectory (``sequence1``).
        query_frames: frames of the query trajectory (``sequence0``).
        seed: drives textures, furniture, trajectories and sensor noise.
        color_size: colour image (width, height).
        depth_size: depth image (width, height); same optical centre and field
            of view as the colour camera (its intrinsics are the colour ones scaled).
        focal: colour focal length in pixels (fx = fy).
        room_size: room extent (x, y, z) in metres; z is up.
        num_boxes: furniture boxes along the walls (fewer if they do not fit).
        texels_per_metre: texture resolution on every surface.
        jpeg_quality: colour JPEG quality.
        noise_sigma: per-pixel Gaussian sensor noise (grey levels).
        exposure_jitter: per-frame gain drawn uniformly from 1 +- this.
    """

    mapping_frames: int = 150
    query_frames: int = 15
    seed: int = 0
    color_size: tuple[int, int] = (320, 240)
    depth_size: tuple[int, int] = (160, 120)
    focal: float = 260.0
    room_size: tuple[float, float, float] = (5.5, 4.5, 2.6)
    num_boxes: int = 8
    texels_per_metre: float = 200.0
    jpeg_quality: int = 92
    noise_sigma: float = 1.5
    exposure_jitter: float = 0.04

    def __post_init__(self) -> None:
        if self.mapping_frames < 1 or self.query_frames < 1:
            raise SlocalError(
                f"need at least one mapping and one query frame, got {self.mapping_frames} and {self.query_frames}"
            )
        if min(self.color_size) < 8 or min(self.depth_size) < 4:
            raise SlocalError(f"image sizes too small: colour {self.color_size}, depth {self.depth_size}")
        if not self.focal > 0 or not self.texels_per_metre > 0:
            raise SlocalError(f"focal ({self.focal}) and texels_per_metre ({self.texels_per_metre}) must be positive")
        w, d, h = self.room_size
        if min(w, d) < 2 * (_FURNITURE_BAND + _CAMERA_CLEARANCE) + 0.4 or h < 2.2:
            raise SlocalError(f"room {self.room_size} too small: need x, y >= 3.4 m and height >= 2.2 m")
        if self.num_boxes < 0:
            raise SlocalError(f"num_boxes must be >= 0, got {self.num_boxes}")

    @property
    def color_camera(self) -> Camera:
        w, h = self.color_size
        return Camera(w, h, self.focal, self.focal, w / 2.0, h / 2.0)

    @property
    def depth_camera(self) -> Camera:
        return self.color_camera.scaled(*self.depth_size)


@dataclass(frozen=True)
class SynthResult:
    """What ``render_scene`` wrote.

    Attributes:
        path: the scene folder.
        scene: the written scene, read back with the 12Scenes loader.
        seconds: wall time of the whole rendering, textures included.
    """

    path: Path
    scene: Scene
    seconds: float

    @property
    def mapping(self) -> int:
        return len(self.scene.mapping)

    @property
    def query(self) -> int:
        return len(self.scene.query)

    @property
    def frames_per_second(self) -> float:
        return (self.mapping + self.query) / max(self.seconds, 1e-9)


@dataclass(frozen=True, eq=False)
class _Solid:
    """An oriented box: ``world = R @ local + center``, local extent ``[-half, half]``."""

    center_3: np.ndarray
    half_3: np.ndarray
    R_33: np.ndarray
    inside: bool = False  # the room: rays start inside and exit through it


@dataclass(eq=False)
class _Face:
    """One rectangular face with its texture pyramid (level 0 first, float32 RGB radiance)."""

    solid: int
    axis: int
    sign: int  # +1: the face at +half along ``axis``
    size_uv: tuple[float, float]
    normal_3: np.ndarray  # world, pointing into free space
    levels: list[np.ndarray] = field(default_factory=list)


def _yaw_matrix(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------
# World: geometry and ray casting
# ----------------------------------------------------------------------------


class SynthWorld:
    """The room, its furniture and baked textures for one configuration.

    Args:
        config: scene settings; ``config.seed`` fixes everything.
    """

    def __init__(self, config: SynthConfig):
        self.config = config
        w, d, h = config.room_size
        room = _Solid(np.array([w / 2, d / 2, h / 2]), np.array([w / 2, d / 2, h / 2]), np.eye(3), inside=True)
        rng = np.random.default_rng([config.seed, 1])
        self.solids: list[_Solid] = [room, *_place_boxes(config, rng)]
        self.lights_L3 = np.array([[w / 3, d / 2, h - 0.25], [2 * w / 3, d / 2, h - 0.25]])
        self.faces: list[_Face] = []
        for s, solid in enumerate(self.solids):
            for axis in range(3):
                for sign in (-1, 1):
                    a, b = _FACE_AXES[axis]
                    normal = sign * solid.R_33[:, axis] * (-1.0 if solid.inside else 1.0)
                    size = (2 * float(solid.half_3[a]), 2 * float(solid.half_3[b]))
                    self.faces.append(_Face(s, axis, sign, size, normal))
        self._ray_cache: dict = {}
        self._texture(np.random.default_rng([config.seed, 2]))

    # -- geometry -------------------------------------------------------------

    def cast(
        self, origins_N3: np.ndarray, dirs_N3: np.ndarray, solids_only: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Nearest surface along each ray.

        Args:
            origins_N3: (N, 3) or (1, 3) ray origins (world).
            dirs_N3: (N, 3) ray directions (world, any length: ``t`` is in units of it).
            solids_only: ignore the room (for shadow rays).

        Returns:
            t_N: ray parameter of the hit (inf when nothing is hit), and
            face_N: index into ``self.faces`` (-1 when nothing is hit).
        """
        # Per-axis 1D arrays: reductions over a length-3 axis and tiny BLAS
        # matmuls are many times slower than elementwise ops on columns.
        n = len(dirs_N3)
        best_t = np.full(n, np.inf)
        best_face = np.full(n, -1, np.int64)
        for s, solid in enumerate(self.solids):
            if solids_only and solid.inside:
                continue
            R, c, half = solid.R_33, solid.center_3, solid.half_3
            tnear: list[np.ndarray] = []
            tfar: list[np.ndarray] = []
            positive: list[np.ndarray] = []
            for k in range(3):
                o_k = sum((origins_N3[:, j] - c[j]) * R[j, k] for j in range(3))
                d_k = dirs_N3[:, 0] * R[0, k] + dirs_N3[:, 1] * R[1, k] + dirs_N3[:, 2] * R[2, k]
                with np.errstate(divide="ignore", invalid="ignore"):
                    inv = 1.0 / d_k
                    t1 = (-half[k] - o_k) * inv
                    t2 = (half[k] - o_k) * inv
                tnear.append(np.minimum(t1, t2))
                tfar.append(np.maximum(t1, t2))
                # Rays leave the room through the face they point at; they enter a box through the opposite one.
                positive.append(d_k > 0 if solid.inside else d_k < 0)
            if solid.inside:
                t, pick = _select(tfar, np.less)
            else:
                t, pick = _select(tnear, np.greater)
                exit_t = np.minimum(np.minimum(tfar[0], tfar[1]), tfar[2])
                t = np.where((t <= exit_t) & (t > _EPS), t, np.inf)
            face = 6 * s + 2 * pick + np.where(pick == 0, positive[0], np.where(pick == 1, positive[1], positive[2]))
            closer = t < best_t
            best_t[closer] = t[closer]
            best_face[closer] = face[closer]
        return best_t, best_face

    def face_uv(self, f: int, points_N3: np.ndarray) -> np.ndarray:
        """Texture coordinates (metres, (N, 2)) of world points on face ``f``."""
        face = self.faces[f]
        solid = self.solids[face.solid]
        p = _mul_cols(points_N3 - solid.center_3, solid.R_33)
        a, b = _FACE_AXES[face.axis]
        return np.stack([p[:, a] + solid.half_3[a], solid.half_3[b] - p[:, b]], axis=1)

    def face_points(self, f: int, uv_N2: np.ndarray) -> np.ndarray:
        """World points (N, 3) of face ``f`` at texture coordinates ``uv_N2`` (metres)."""
        face = self.faces[f]
        solid = self.solids[face.solid]
        a, b = _FACE_AXES[face.axis]
        p = np.zeros((len(uv_N2), 3))
        p[:, face.axis] = face.sign * solid.half_3[face.axis]
        p[:, a] = uv_N2[:, 0] - solid.half_3[a]
        p[:, b] = solid.half_3[b] - uv_N2[:, 1]
        return _mul_cols(p, solid.R_33.T) + solid.center_3

    # -- textures and lighting ------------------------------------------------

    def _texture(self, rng: np.random.Generator) -> None:
        c = self.config
        for f, face in enumerate(self.faces):
            w_m, h_m = face.size_uv
            if face.solid == 0 and face.axis == 2:
                kind = "floor" if face.sign < 0 else "ceiling"
            elif face.solid == 0:
                kind = "wall"
            else:
                kind = "box"
            albedo = _albedo(w_m, h_m, c.texels_per_metre, rng, kind)
            shading = self._shading(f, albedo.shape[1], albedo.shape[0])
            radiance = albedo.astype(np.float32) * np.float32(1.0 / 255.0) * shading[..., None]
            face.levels = _pyramid(radiance)

    def _shading(self, f: int, width: int, height: int) -> np.ndarray:
        """Ambient + Lambertian point lights with shadows, on a coarse grid upsampled to (height, width)."""
        face = self.faces[f]
        w_m, h_m = face.size_uv
        gw, gh = max(2, math.ceil(w_m / 0.05) + 1), max(2, math.ceil(h_m / 0.05) + 1)
        gu, gv = np.meshgrid(np.linspace(0.0, w_m, gw), np.linspace(0.0, h_m, gh))
        points = self.face_points(f, np.stack([gu.ravel(), gv.ravel()], axis=1)) + 1e-3 * face.normal_3
        light = np.full(len(points), 0.42)
        for lamp_3 in self.lights_L3:
            to_light = lamp_3 - points
            dist = np.sqrt(to_light[:, 0] ** 2 + to_light[:, 1] ** 2 + to_light[:, 2] ** 2)
            nrm = face.normal_3
            cos = (to_light[:, 0] * nrm[0] + to_light[:, 1] * nrm[1] + to_light[:, 2] * nrm[2]) / dist
            lambert = np.clip(cos, 0.0, None)
            t, _ = self.cast(points, to_light, solids_only=True)
            visible = (t >= 1.0).astype(np.float64)
            light += 0.75 * lambert * visible / (1.0 + (dist / 2.6) ** 2)
        grid = light.reshape(gh, gw).astype(np.float32)
        return cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR)

    # -- rendering ------------------------------------------------------------

    def _rays(self, camera: Camera, world_from_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Origin (1, 3), world directions (N, 3) and camera-frame directions (N, 3) through the pixel centres."""
        if self._ray_cache.get("camera") != camera:
            uv = pixel_centers(camera.width, camera.height).reshape(-1, 2)
            # z = 1 in the camera frame, so the hit parameter t is the z-depth.
            self._ray_cache = {"camera": camera, "rays": camera.rays(uv)}
        rays_cam = self._ray_cache["rays"]
        return world_from_cam[:3, 3][None], _mul_cols(rays_cam, world_from_cam[:3, :3].T), rays_cam

    def render_depth(self, camera: Camera, world_from_cam: np.ndarray) -> np.ndarray:
        """Z-depth in metres at the pixel centres of ``camera``, float64 (H, W)."""
        origin, dirs, _ = self._rays(camera, world_from_cam)
        t, _ = self.cast(origin, dirs)
        return t.reshape(camera.height, camera.width)

    def render_color(self, camera: Camera, world_from_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Noise-free radiance and z-depth at the pixel centres of ``camera``.

        Textures are sampled trilinearly from their pyramid, the level chosen
        from the pixel's footprint on the surface, which keeps far or grazing
        surfaces from aliasing.

        Returns:
            rgb_HW3: float32 radiance, about [0, 1]; depth_HW: float64 metres.
        """
        origin, dirs, rays_cam = self._rays(camera, world_from_cam)
        t, face_id = self.cast(origin, dirs)
        if not np.all(np.isfinite(t)):
            raise SlocalError("a camera ray left the room: the camera is outside the synthetic scene")
        points = origin + t[:, None] * dirs
        ray_len = np.sqrt(rays_cam[:, 0] ** 2 + rays_cam[:, 1] ** 2 + 1.0)
        rgb = np.zeros((len(t), 3), np.float32)
        order = np.argsort(face_id, kind="stable")
        bounds = np.searchsorted(face_id[order], np.arange(len(self.faces) + 1))
        focal = math.sqrt(camera.fx * camera.fy)
        for f, face in enumerate(self.faces):
            idx = order[bounds[f] : bounds[f + 1]]
            if len(idx) == 0:
                continue
            uv_m = self.face_uv(f, points[idx])
            d, nrm = dirs[idx], face.normal_3
            cos = np.abs(d[:, 0] * nrm[0] + d[:, 1] * nrm[1] + d[:, 2] * nrm[2]) / ray_len[idx]
            footprint_m = t[idx] / focal / np.sqrt(np.maximum(cos, 0.05))
            rgb[idx] = _sample_trilinear(face.levels, face.size_uv, uv_m, footprint_m)
        return rgb.reshape(camera.height, camera.width, 3), t.reshape(camera.height, camera.width)


def _mul_cols(M_N3: np.ndarray, R_33: np.ndarray) -> np.ndarray:
    """``M_N3 @ R_33`` computed column by column (tiny BLAS products are slow and thread-hungry)."""
    cols = [M_N3[:, 0] * R_33[0, k] + M_N3[:, 1] * R_33[1, k] + M_N3[:, 2] * R_33[2, k] for k in range(3)]
    return np.stack(cols, axis=1)


def _select(values: list[np.ndarray], better) -> tuple[np.ndarray, np.ndarray]:
    """Elementwise best of three arrays under ``better`` (np.less / np.greater) and which one it was."""
    best, pick = values[0], np.zeros(len(values[0]), np.int64)
    for k in (1, 2):
        take = better(values[k], best)
        best = np.where(take, values[k], best)
        pick[take] = k
    return best, pick


def _place_boxes(config: SynthConfig, rng: np.random.Generator) -> list[_Solid]:
    """Furniture along the walls, inside the band the cameras never enter; no two boxes intersect."""
    W, D, H = config.room_size
    placed: list[tuple[np.ndarray, float, float, _Solid]] = []  # (2D corners, z0, z1, solid)
    attempts = 0
    while len(placed) < config.num_boxes and attempts < 400 * max(1, config.num_boxes):
        attempts += 1
        side = int(rng.choice(4, p=np.array([D, D, W, W]) / (2 * (W + D))))
        wall_len = D if side < 2 else W
        kind = rng.random()
        if kind < 0.25:  # wall cabinet / shelf, hanging
            depth, height, z0 = rng.uniform(0.22, 0.4), rng.uniform(0.25, 0.6), rng.uniform(1.25, H - 0.75)
        elif kind < 0.6:  # low: crate, bench
            depth, height, z0 = rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.65), 0.0
        elif kind < 0.85:  # mid: table-height cabinet
            depth, height, z0 = rng.uniform(0.35, 0.75), rng.uniform(0.7, 1.1), 0.0
        else:  # tall: wardrobe
            depth, height, z0 = rng.uniform(0.35, 0.65), rng.uniform(1.4, min(2.1, H - 0.3)), 0.0
        width = rng.uniform(0.4, 1.5)
        yaw_offset = rng.uniform(-0.3, 0.3) if z0 == 0.0 else 0.0
        along = rng.uniform(0.1 + width / 2, wall_len - 0.1 - width / 2)
        gap = rng.uniform(0.02, 0.15) + depth / 2 + 0.5 * width * abs(math.sin(yaw_offset))
        # Box local x runs along the wall, local y points into the room.
        if side == 0:
            cx, cy, base_yaw = gap, along, -math.pi / 2
        elif side == 1:
            cx, cy, base_yaw = W - gap, along, math.pi / 2
        elif side == 2:
            cx, cy, base_yaw = along, gap, 0.0
        else:
            cx, cy, base_yaw = along, D - gap, math.pi
        yaw = base_yaw + yaw_offset
        R = _yaw_matrix(yaw)
        half = np.array([width / 2, depth / 2, height / 2])
        corners = np.array([[sx * half[0], sy * half[1]] for sx in (-1, 1) for sy in (-1, 1)]) @ R[:2, :2].T + [cx, cy]
        inside_room = np.all((corners > 0.01) & (corners < [W - 0.01, D - 0.01]))
        dist_to_wall = np.minimum.reduce([corners[:, 0], W - corners[:, 0], corners[:, 1], D - corners[:, 1]])
        if not inside_room or np.any(dist_to_wall > _FURNITURE_BAND):
            continue
        z1 = z0 + height
        if any(z0 < pz1 and pz0 < z1 and _rects_overlap(corners, pc) for pc, pz0, pz1, _ in placed):
            continue
        solid = _Solid(np.array([cx, cy, z0 + height / 2]), half, R)
        placed.append((corners, z0, z1, solid))
    if len(placed) < config.num_boxes:
        log.warning("placed %d of %d boxes (no room for more)", len(placed), config.num_boxes)
    return [p[3] for p in placed]


def _rects_overlap(a_42: np.ndarray, b_42: np.ndarray, margin: float = 0.03) -> bool:
    """Whether two rectangles (4 corners, any order) come closer than ``margin``: separating-axis test.

    Testing the normals of all corner pairs covers the edges whatever the corner order (diagonals only add axes).
    """
    for poly in (a_42, b_42):
        for k in range(4):
            for j in range(k + 1, 4):
                edge = poly[j] - poly[k]
                axis = np.array([-edge[1], edge[0]]) / max(float(np.linalg.norm(edge)), 1e-12)
                pa, pb = a_42 @ axis, b_42 @ axis
                if pa.max() + margin < pb.min() or pb.max() + margin < pa.min():
                    return False
    return True


# ----------------------------------------------------------------------------
# Textures
# ----------------------------------------------------------------------------

# (cell size in metres, luminance amplitude, chroma amplitude) of the noise octaves.
_OCTAVES = (
    (1.0, 0.16, 0.05),
    (0.45, 0.15, 0.04),
    (0.2, 0.14, 0.035),
    (0.09, 0.14, 0.03),
    (0.04, 0.13, 0.025),
    (0.018, 0.11, 0.015),
)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """An RGB colour in [0, 1] from hue in turns, saturation and value."""
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _base_colour(kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "floor":
        return _hsv(rng.uniform(0.04, 0.11), rng.uniform(0.4, 0.6), rng.uniform(0.45, 0.6))
    if kind == "ceiling":
        return _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.05, 0.15), rng.uniform(0.8, 0.9))
    if kind == "wall":
        return _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.2, 0.4), rng.uniform(0.65, 0.8))
    if kind == "poster":
        return _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.9))
    return _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.3, 0.7), rng.uniform(0.4, 0.75))


def _value_noise(width: int, height: int, w_m: float, h_m: float, cell_m: float, channels: int, rng) -> np.ndarray:
    """Smooth noise in [-1, 1] with features of about ``cell_m``, (height, width, channels) float32."""
    gw, gh = math.ceil(w_m / cell_m) + 2, math.ceil(h_m / cell_m) + 2
    grid = rng.random((gh, gw, channels), dtype=np.float32) * 2.0 - 1.0
    out = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    return out.reshape(height, width, channels)


def _albedo(w_m: float, h_m: float, texels_per_metre: float, rng: np.random.Generator, kind: str) -> np.ndarray:
    """A unique, detailed texture for a ``w_m`` x ``h_m`` metre face; uint8 RGB (rows along v)."""
    width = max(4, math.ceil(w_m * texels_per_metre))
    height = max(4, math.ceil(h_m * texels_per_metre))
    base = _base_colour(kind, rng).astype(np.float32)
    lum = np.zeros((height, width, 1), np.float32)
    chroma = np.zeros((height, width, 3), np.float32)
    for cell_m, a_lum, a_chroma in _OCTAVES:
        lum += a_lum * _value_noise(width, height, w_m, h_m, cell_m, 1, rng)
        chroma += a_chroma * _value_noise(width, height, w_m, h_m, cell_m, 3, rng)
    img = np.clip(base * (1.0 + 1.6 * lum) + chroma, 0.0, 1.0)
    img = np.ascontiguousarray((img * 255.0 + 0.5).astype(np.uint8))
    px = texels_per_metre
    area = w_m * h_m

    def colour() -> tuple[int, int, int]:
        return tuple(int(v) for v in rng.integers(0, 256, 3))

    def tone() -> tuple[int, int, int]:
        """A shade of the surface's own colour: keeps surfaces distinguishable by hue."""
        return tuple(int(v) for v in np.clip(base * rng.uniform(0.3, 1.5) * 255.0 + rng.normal(0, 12, 3), 0, 255))

    def point() -> tuple[int, int]:
        return int(rng.integers(0, width)), int(rng.integers(0, height))

    # Stripe and checker patches: strong oriented structure at a few centimetres.
    for _ in range(rng.poisson(1.2 * area)):
        pw, ph = int(rng.uniform(0.15, 0.5) * px), int(rng.uniform(0.15, 0.5) * px)
        x0, y0 = int(rng.integers(0, max(1, width - pw))), int(rng.integers(0, max(1, height - ph)))
        patch = img[y0 : y0 + ph, x0 : x0 + pw]
        yy, xx = np.mgrid[0 : patch.shape[0], 0 : patch.shape[1]].astype(np.float32)
        angle, period = rng.uniform(0, math.pi), rng.uniform(0.02, 0.07) * px
        phase = (xx * math.cos(angle) + yy * math.sin(angle)) / period
        if rng.random() < 0.3:
            phase2 = (-xx * math.sin(angle) + yy * math.cos(angle)) / period
            mask = (np.floor(phase) + np.floor(phase2)) % 2 == 0
        else:
            mask = np.floor(phase) % 2 == 0
        patch[mask] = (0.35 * patch[mask] + 0.65 * np.array(colour())).astype(np.uint8)
    # Blobs and rings, 2-15 cm.
    for _ in range(rng.poisson(14 * area)):
        axes = (max(1, int(rng.uniform(0.02, 0.13) * px)), max(1, int(rng.uniform(0.02, 0.13) * px)))
        thickness = -1 if rng.random() < 0.6 else max(1, int(rng.uniform(0.005, 0.02) * px))
        fill = tone() if rng.random() < 0.6 else colour()
        cv2.ellipse(img, point(), axes, float(rng.uniform(0, 180)), 0, 360, fill, thickness, cv2.LINE_AA)
    # Small marks and glyphs, 1-5 cm: the detail a stride-8 cell sees from 1-3 m.
    for _ in range(rng.poisson(190 * area)):
        shape = rng.random()
        size = max(2, int(rng.uniform(0.012, 0.05) * px))
        x, y = point()
        if shape < 0.3:
            glyph = _GLYPHS[int(rng.integers(len(_GLYPHS)))]
            font_scale = size / 22.0  # Hershey simplex glyphs are ~22 px tall at scale 1
            thickness = max(1, size // 8)
            cv2.putText(img, glyph, (x, y), cv2.FONT_HERSHEY_SIMPLEX, font_scale, colour(), thickness, cv2.LINE_AA)
        elif shape < 0.55:
            cv2.circle(img, (x, y), max(1, size // 2), colour(), -1 if rng.random() < 0.5 else 1, cv2.LINE_AA)
        elif shape < 0.8:
            angle = rng.uniform(0, 2 * math.pi)
            end = (int(x + 2 * size * math.cos(angle)), int(y + 2 * size * math.sin(angle)))
            cv2.line(img, (x, y), end, colour(), max(1, size // 5), cv2.LINE_AA)
        else:
            cv2.rectangle(img, (x, y), (x + size, y + int(size * rng.uniform(0.5, 1.5))), colour(), -1)
    # Posters on walls and box sides, rugs on the floor: large unique landmarks.
    n_big = {"wall": rng.integers(2, 5), "floor": rng.integers(1, 3), "box": int(rng.random() < 0.35)}.get(kind, 0)
    for _ in range(n_big):
        pw_m = min(rng.uniform(0.35, 1.1), 0.8 * w_m)
        ph_m = min(rng.uniform(0.3, 0.9), 0.8 * h_m)
        if pw_m < 0.15 or ph_m < 0.15:
            continue
        poster = _albedo(pw_m, ph_m, texels_per_metre, rng, "poster")
        x0 = int(rng.uniform(0.05, max(0.06, w_m - pw_m - 0.05)) * px)
        if kind == "wall":  # v runs down from the ceiling: keep posters between 0.7 m and 2.3 m up
            y0 = int(rng.uniform(max(0.05, h_m - 2.3), max(0.06, h_m - 0.7 - ph_m)) * px)
        else:
            y0 = int(rng.uniform(0.05, max(0.06, h_m - ph_m - 0.05)) * px)
        ph, pw = min(poster.shape[0], height - y0), min(poster.shape[1], width - x0)
        if ph <= 0 or pw <= 0:
            continue
        img[y0 : y0 + ph, x0 : x0 + pw] = poster[:ph, :pw]
        cv2.rectangle(img, (x0, y0), (x0 + pw - 1, y0 + ph - 1), colour(), max(1, int(0.015 * px)))
    return img


def _pyramid(tex_HW3: np.ndarray, min_side: int = 4, max_levels: int = 6) -> list[np.ndarray]:
    levels = [tex_HW3]
    while len(levels) < max_levels and min(levels[-1].shape[:2]) >= 2 * min_side:
        h, w = levels[-1].shape[:2]
        levels.append(cv2.resize(levels[-1], ((w + 1) // 2, (h + 1) // 2), interpolation=cv2.INTER_AREA))
    return levels


def _bilinear(tex_HW3: np.ndarray, x_N: np.ndarray, y_N: np.ndarray) -> np.ndarray:
    """Bilinear lookup at continuous texel coordinates (texel centres at integers), clamped at the border.

    cv2.remap does the gather; its maps must stay below 32767 columns, hence the (rows, 1024) layout.
    """
    n = len(x_N)
    cols = 1024
    rows = max(1, -(-n // cols))
    map_x = np.zeros(rows * cols, np.float32)
    map_y = np.zeros(rows * cols, np.float32)
    map_x[:n] = x_N
    map_y[:n] = y_N
    out = cv2.remap(
        tex_HW3, map_x.reshape(rows, cols), map_y.reshape(rows, cols), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return out.reshape(rows * cols, -1)[:n]


def _sample_trilinear(
    levels: list[np.ndarray], size_uv: tuple[float, float], uv_m_N2: np.ndarray, footprint_m_N: np.ndarray
) -> np.ndarray:
    """Sample a texture pyramid at face coordinates (metres) with a per-sample footprint (metres)."""
    w_m, h_m = size_uv
    texel_m = w_m / levels[0].shape[1]
    lod = np.clip(np.log2(np.maximum(footprint_m_N / texel_m, 1e-6)), 0.0, len(levels) - 1.0)
    lo = np.floor(lod).astype(np.int64)
    frac = (lod - lo).astype(np.float32)[:, None]
    out = np.zeros((len(uv_m_N2), 3), np.float32)
    for level in np.unique(lo):
        sel = np.flatnonzero(lo == level)
        colours = []
        for k in (level, min(level + 1, len(levels) - 1)):
            tex = levels[k]
            # Texel i of a level covers [i, i + 1) * (size / n): its centre is at i + 0.5.
            x = uv_m_N2[sel, 0] * (tex.shape[1] / w_m) - 0.5
            y = uv_m_N2[sel, 1] * (tex.shape[0] / h_m) - 0.5
            colours.append(_bilinear(tex, x, y))
        out[sel] = colours[0] * (1 - frac[sel]) + colours[1] * frac[sel]
    return out


# ----------------------------------------------------------------------------
# Trajectories
# ----------------------------------------------------------------------------


def look_pose(position_3: np.ndarray, yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """``world_from_cam`` of a camera at ``position_3`` (z-up world) looking along yaw/pitch (radians).

    The camera's z axis is the viewing direction, x points right and y down
    (OpenCV/COLMAP); roll turns the image about the viewing direction.
    """
    forward = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c, s = math.cos(roll), math.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    return to_homogeneous(np.stack([right, down, forward], axis=1), position_3)


def trajectory(config: SynthConfig, split: str) -> list[np.ndarray]:
    """Camera poses (``world_from_cam``) of the mapping or query trajectory.

    Mapping: a smooth half loop around the room centre, looking outwards at the
    walls and furniture with yaw swinging +-30 degrees, pitch and height
    varying; with the default 150 frames consecutive frames are ~4 cm apart,
    a dense capture like the RGB-D benchmarks. Query: the same loop sampled
    between the mapping frames, plus a perturbation of position (up to ~5 cm)
    and orientation (~2 degrees), so every query is a new view within the
    mapped volume.
    """
    if split not in ("mapping", "query"):
        raise ValueError(f"split must be 'mapping' or 'query', got {split!r}")
    W, D, H = config.room_size
    rng = np.random.default_rng([config.seed, 3])
    phase = rng.uniform(0.0, 2 * math.pi, 12)
    margin = _FURNITURE_BAND + _CAMERA_CLEARANCE
    ax, ay = W / 2 - margin, D / 2 - margin
    n = config.mapping_frames if split == "mapping" else config.query_frames
    poses = []
    for i in range(n):
        s = i / n if split == "mapping" else (i + 0.5 + 0.3 * math.sin(7.0 * i + phase[6])) / n
        theta = math.pi * s + phase[0]
        radial = 1.0 + 0.12 * math.sin(6 * math.pi * s + phase[1])
        pos = np.array([W / 2 + ax * radial * math.cos(theta), D / 2 + ay * radial * math.sin(theta), 0.0])
        pos[2] = 1.45 + 0.3 * math.sin(6 * math.pi * s + phase[2]) + 0.1 * math.sin(14 * math.pi * s + phase[3])
        yaw = theta + 0.52 * math.sin(10 * math.pi * s + phase[4])
        pitch = -0.18 + 0.22 * math.sin(8 * math.pi * s + phase[5])
        roll = 0.05 * math.sin(12 * math.pi * s + phase[7])
        if split == "query":
            wobble = [math.sin(5.3 * i + phase[8]), math.cos(4.1 * i + phase[9]), math.sin(3.7 * i + phase[10])]
            pos += 0.03 * np.array(wobble)
            yaw += 0.03 * math.sin(2.9 * i + phase[11])
            pitch += 0.02 * math.cos(3.3 * i + phase[11])
            roll += 0.01 * math.sin(1.9 * i)
        poses.append(look_pose(pos, yaw, pitch, roll))
    return poses


# ----------------------------------------------------------------------------
# Writing the scene
# ----------------------------------------------------------------------------


def _matrix_line(M: np.ndarray) -> str:
    return " ".join(f"{v:.9g}" for v in np.asarray(M, dtype=np.float64).ravel())


def _intrinsic_44(camera: Camera) -> np.ndarray:
    K = np.eye(4)
    K[:3, :3] = camera.K
    return K


def _pose_text(world_from_cam: np.ndarray) -> str:
    return "\n".join(" ".join(f"{v:.9f}" for v in row) for row in world_from_cam) + "\n"


def _prepare_folder(out_dir: Path, overwrite: bool) -> None:
    """Refuse a non-empty folder unless ``overwrite`` (the new scene then replaces it)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SlocalError("exists and is not a folder", out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise SlocalError("folder exists and is not empty; overwrite it with --overwrite (overwrite=True)", out_dir)


def _not_synth_output(entry: Path) -> bool:
    """Files of an overwritten scene folder that synth did not write (kept in the new folder)."""
    return entry.name not in ("data", "info.txt", "split.txt")


def render_scene(
    out_dir: str | Path, config: SynthConfig = SynthConfig(), overwrite: bool = False, scene_id: str | None = None
) -> SynthResult:
    """Render the demo scene and write it in the 12Scenes raw layout.

    Frames ``0 .. Q-1`` are the queries (``sequence0`` of ``split.txt``),
    ``Q .. Q+M-1`` the mapping frames (``sequence1``). The scene is built in a
    hidden sibling folder and renamed to ``out_dir`` when complete
    (``slocal.io.atomic_dir``): a killed run leaves no folder the loader accepts,
    and the next run removes its leftover. With ``overwrite`` the old folder is
    replaced whole, except files synth does not write (kept). The same config
    gives bit-identical files.

    Args:
        out_dir: scene folder to create.
        config: scene settings.
        overwrite: replace the frames of a non-empty folder instead of refusing.
        scene_id: id of the returned scene (default: the folder name).

    Returns:
        The folder, the scene read back with the 12Scenes loader, and the wall time.
    """
    out_dir = Path(out_dir)
    start = time.perf_counter()
    _prepare_folder(out_dir, overwrite)
    final_dir = out_dir
    with atomic_dir(final_dir, carry_over=_not_synth_output) as out_dir:
        world = SynthWorld(config)
        log.info(
            "synth: built a %s m room with %d boxes and %d textured faces in %.1f s",
            "x".join(f"{v:g}" for v in config.room_size),
            len(world.solids) - 1,
            len(world.faces),
            time.perf_counter() - start,
        )
        color_cam, depth_cam = config.color_camera, config.depth_camera
        poses = trajectory(config, "query") + trajectory(config, "mapping")
        n_query, n_frames = config.query_frames, len(poses)
        data = out_dir / "data"
        for idx in progress_bar(range(n_frames), "synth: rendering frames"):
            world_from_cam = poses[idx]
            rgb, _ = world.render_color(color_cam, world_from_cam)
            depth = world.render_depth(depth_cam, world_from_cam)
            rng = np.random.default_rng([config.seed, 4, idx])
            gain = 1.0 + rng.uniform(-config.exposure_jitter, config.exposure_jitter)
            noise = rng.normal(0.0, config.noise_sigma, rgb.shape).astype(np.float32)
            image = np.clip(rgb * np.float32(255.0 * gain) + noise + 0.5, 0, 255).astype(np.uint8)
            depth_u16 = np.clip(np.round(depth * DEPTH_SHIFT), 0, 65535).astype(np.uint16)
            stem = data / f"frame-{idx:06d}"
            write_image(stem.with_name(stem.name + ".color.jpg"), image, jpeg_quality=config.jpeg_quality)
            write_depth_png(stem.with_name(stem.name + ".depth.png"), depth_u16)
            write_text(stem.with_name(stem.name + ".pose.txt"), _pose_text(world_from_cam))
        identity = _matrix_line(np.eye(4))
        info = [
            "m_versionNumber = 4",
            f"m_sensorName = {SENSOR_NAME}",
            f"m_colorWidth = {color_cam.width}",
            f"m_colorHeight = {color_cam.height}",
            f"m_depthWidth = {depth_cam.width}",
            f"m_depthHeight = {depth_cam.height}",
            f"m_depthShift = {DEPTH_SHIFT}",
            f"m_calibrationColorIntrinsic = {_matrix_line(_intrinsic_44(color_cam))}",
            f"m_calibrationColorExtrinsic = {identity}",
            f"m_calibrationDepthIntrinsic = {_matrix_line(_intrinsic_44(depth_cam))}",
            f"m_calibrationDepthExtrinsic = {identity}",
            f"m_frames.size = {n_frames}",
        ]
        n_mapping = n_frames - n_query
        split = (
            f"sequence0 [frames={n_query}]  [start=0 ; end={n_query - 1}]\n"
            f"sequence1 [frames={n_mapping}]  [start={n_query} ; end={n_frames - 1}]\n"
        )
        write_text(out_dir / "split.txt", split)
        write_text(out_dir / "info.txt", "\n".join(info) + "\n")
    out_dir = final_dir
    seconds = time.perf_counter() - start
    scene = load_twelve_scenes(out_dir, scene_id or out_dir.name)
    log.info(
        "synth: wrote %d mapping + %d query frames to %s in %.1f s (%.1f frames/s)",
        n_mapping, n_query, out_dir, seconds, n_frames / seconds,
    )
    return SynthResult(out_dir, scene, seconds)
