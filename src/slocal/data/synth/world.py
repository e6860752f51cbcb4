"""The room and its furniture: box geometry, ray casting and rendering with baked textures."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from slocal.data.synth.config import FURNITURE_BAND, SynthConfig
from slocal.data.synth.textures import albedo_texture, pyramid, sample_trilinear
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera, pixel_centers

log = logging.getLogger(__name__)

_EPS = 1e-6
# The two face axes (u, v) of a face whose normal is along local axis a.
_FACE_AXES = ((1, 2), (0, 2), (0, 1))


@dataclass(frozen=True, eq=False)
class _Solid:
    """An oriented box: ``world = R @ local + center``, local extent ``[-half, half]``."""

    center_3: np.ndarray
    half_3: np.ndarray
    R_33: np.ndarray
    inside: bool = False  # the room: rays start inside and exit through it
    kind: str = "box"  # texture kind of its faces: "box" (furniture) or "wall" (a pillar)


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


class SynthWorld:
    """The room, its furniture and baked textures for one configuration.

    Args:
        config: scene settings; ``config.seed`` and ``config.room`` fix everything.
    """

    def __init__(self, config: SynthConfig):
        self.config = config
        w, d, h = config.room_size
        room = _Solid(np.array([w / 2, d / 2, h / 2]), np.array([w / 2, d / 2, h / 2]), np.eye(3), inside=True)
        pillars = _pillars(config)
        self.solids: list[_Solid] = [room, *pillars, *_place_boxes(config, config.rng(1), pillars)]
        lights = config.layout.lights
        if lights is None:
            self.lights_L3 = np.array([[w / 3, d / 2, h - 0.25], [2 * w / 3, d / 2, h - 0.25]])
        else:
            self.lights_L3 = np.array([[fx * w, fy * d, h - below] for fx, fy, below in lights])
        self.faces: list[_Face] = []
        for s, solid in enumerate(self.solids):
            for axis in range(3):
                for sign in (-1, 1):
                    a, b = _FACE_AXES[axis]
                    normal = sign * solid.R_33[:, axis] * (-1.0 if solid.inside else 1.0)
                    size = (2 * float(solid.half_3[a]), 2 * float(solid.half_3[b]))
                    self.faces.append(_Face(s, axis, sign, size, normal))
        self._ray_cache: dict = {}
        self._texture(config.rng(2))

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
                kind = self.solids[face.solid].kind
            albedo = albedo_texture(w_m, h_m, c.texels_per_metre, rng, kind, c.layout.style)
            shading = self._shading(f, albedo.shape[1], albedo.shape[0])
            radiance = albedo.astype(np.float32) * np.float32(1.0 / 255.0) * shading[..., None]
            face.levels = pyramid(radiance)

    def _shading(self, f: int, width: int, height: int) -> np.ndarray:
        """Ambient + Lambertian point lights with shadows, on a coarse grid upsampled to (height, width)."""
        face = self.faces[f]
        w_m, h_m = face.size_uv
        gw, gh = max(2, math.ceil(w_m / 0.05) + 1), max(2, math.ceil(h_m / 0.05) + 1)
        gu, gv = np.meshgrid(np.linspace(0.0, w_m, gw), np.linspace(0.0, h_m, gh))
        points = self.face_points(f, np.stack([gu.ravel(), gv.ravel()], axis=1)) + 1e-3 * face.normal_3
        light = np.full(len(points), 0.42)
        # 1.5 in all whatever the number of lamps (0.75 each for the demo room's two).
        gain = 1.5 / len(self.lights_L3)
        for lamp_3 in self.lights_L3:
            to_light = lamp_3 - points
            dist = np.sqrt(to_light[:, 0] ** 2 + to_light[:, 1] ** 2 + to_light[:, 2] ** 2)
            nrm = face.normal_3
            cos = (to_light[:, 0] * nrm[0] + to_light[:, 1] * nrm[1] + to_light[:, 2] * nrm[2]) / dist
            lambert = np.clip(cos, 0.0, None)
            t, _ = self.cast(points, to_light, solids_only=True)
            visible = (t >= 1.0).astype(np.float64)
            light += gain * lambert * visible / (1.0 + (dist / 2.6) ** 2)
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
            rgb[idx] = sample_trilinear(face.levels, face.size_uv, uv_m, footprint_m)
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


def _footprint(solid: _Solid) -> np.ndarray:
    """The 4 floor-plan corners (x, y) of an upright box."""
    half = solid.half_3
    corners = np.array([[sx * half[0], sy * half[1]] for sx in (-1, 1) for sy in (-1, 1)])
    return corners @ solid.R_33[:2, :2].T + solid.center_3[:2]


def _wall_frame(config: SynthConfig, wall: int, along: float, gap: float) -> tuple[float, float, float]:
    """Centre (x, y) and yaw of a box ``gap`` from the centre of wall ``wall``'s face, ``along`` metres along it.

    Box local x runs along the wall, local y points into the room.
    """
    W, D, _ = config.room_size
    if wall == 0:
        return gap, along, -math.pi / 2
    if wall == 1:
        return W - gap, along, math.pi / 2
    if wall == 2:
        return along, gap, 0.0
    return along, D - gap, math.pi


def _pillars(config: SynthConfig) -> list[_Solid]:
    """The layout's floor-to-ceiling pillars, flush against their walls (no randomness)."""
    W, D, H = config.room_size
    out = []
    for wall, position, width, depth in config.layout.pillars:
        if depth > FURNITURE_BAND:
            raise SlocalError(f"pillar depth {depth} m reaches past the furniture band ({FURNITURE_BAND} m)")
        wall_len = D if wall < 2 else W
        along = min(max(position * wall_len, width / 2), wall_len - width / 2)
        cx, cy, yaw = _wall_frame(config, wall, along, depth / 2)
        out.append(
            _Solid(np.array([cx, cy, H / 2]), np.array([width / 2, depth / 2, H / 2]), _yaw_matrix(yaw), kind="wall")
        )
    return out


def _place_boxes(config: SynthConfig, rng: np.random.Generator, fixed: Sequence[_Solid] = ()) -> list[_Solid]:
    """Furniture along the walls, inside the band the cameras never enter; no two boxes (nor a box and
    one of the ``fixed`` solids) intersect."""
    W, D, H = config.room_size
    # (2D corners, z0, z1, solid); the fixed solids first, so boxes keep clear of them.
    placed: list[tuple[np.ndarray, float, float, _Solid]] = [
        (_footprint(s), float(s.center_3[2] - s.half_3[2]), float(s.center_3[2] + s.half_3[2]), s) for s in fixed
    ]
    n_fixed = len(placed)
    attempts = 0
    while len(placed) - n_fixed < config.num_boxes and attempts < 400 * max(1, config.num_boxes):
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
        cx, cy, base_yaw = _wall_frame(config, side, along, gap)
        yaw = base_yaw + yaw_offset
        R = _yaw_matrix(yaw)
        half = np.array([width / 2, depth / 2, height / 2])
        corners = np.array([[sx * half[0], sy * half[1]] for sx in (-1, 1) for sy in (-1, 1)]) @ R[:2, :2].T + [cx, cy]
        inside_room = np.all((corners > 0.01) & (corners < [W - 0.01, D - 0.01]))
        dist_to_wall = np.minimum.reduce([corners[:, 0], W - corners[:, 0], corners[:, 1], D - corners[:, 1]])
        if not inside_room or np.any(dist_to_wall > FURNITURE_BAND):
            continue
        z1 = z0 + height
        if any(z0 < pz1 and pz0 < z1 and _rects_overlap(corners, pc) for pc, pz0, pz1, _ in placed):
            continue
        solid = _Solid(np.array([cx, cy, z0 + height / 2]), half, R)
        placed.append((corners, z0, z1, solid))
    if len(placed) - n_fixed < config.num_boxes:
        log.warning("placed %d of %d boxes (no room for more)", len(placed) - n_fixed, config.num_boxes)
    return [p[3] for p in placed[n_fixed:]]


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
