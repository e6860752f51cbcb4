"""An analytic scene for DUSt3R teacher/baseline tests: a closed box room of planes with known poses.

It renders exact world points for any pinhole camera, so tests can build the
point maps DUSt3R would ideally predict (view 1's frame, arbitrary scale).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from slocal.data.scene import Frame, Scene
from slocal.geometry import Camera, pixel_centers, to_homogeneous, transform_points

# Planes n . X = d (world frame, y down like the cameras): a 6 x 3 x 6 m room and a slanted panel.
PLANES = (
    ((0.0, 0.0, 1.0), 4.0),
    ((0.0, 0.0, -1.0), 2.0),
    ((1.0, 0.0, 0.0), 3.0),
    ((-1.0, 0.0, 0.0), 3.0),
    ((0.0, 1.0, 0.0), 1.5),
    ((0.0, -1.0, 0.0), 1.5),
)
# A slanted panel in front of the back wall, x in [-1, 0.5]: z = 2.5 + 0.5 x.
PANEL = ((-0.5 / math.hypot(1, 0.5), 0.0, 1 / math.hypot(1, 0.5)), 2.5 / math.hypot(1, 0.5))


def rotation(yaw_deg: float = 0.0, pitch_deg: float = 0.0) -> np.ndarray:
    """world_from_cam rotation: yaw about the (down) y axis, then pitch about x."""
    a, b = math.radians(yaw_deg), math.radians(pitch_deg)
    Ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    Rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return Ry @ Rx


def pose(centre, yaw_deg: float = 0.0, pitch_deg: float = 0.0) -> np.ndarray:
    return to_homogeneous(rotation(yaw_deg, pitch_deg), np.asarray(centre, float))


def render_world(camera: Camera, world_from_cam: np.ndarray) -> np.ndarray:
    """World points seen at the pixel centres of ``camera``, (H, W, 3) float64."""
    uv = pixel_centers(camera.width, camera.height).reshape(-1, 2)
    rays = camera.rays(uv) @ world_from_cam[:3, :3].T
    origin = world_from_cam[:3, 3]
    best = np.full(len(rays), np.inf)
    for k, (n, d) in enumerate(PLANES + (PANEL,)):
        n = np.asarray(n)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (d - n @ origin) / (rays @ n)
            hit = origin + t[:, None] * rays
        ok = t > 1e-9
        if k == len(PLANES):
            ok &= (hit[:, 0] >= -1.0) & (hit[:, 0] <= 0.5) & (np.abs(hit[:, 1]) < 1.0)
        best = np.where(ok & (t < best), t, best)
    return (origin + best[:, None] * rays).reshape(camera.height, camera.width, 3)


def render_cam(camera: Camera, world_from_cam: np.ndarray, frame_from_world: np.ndarray) -> np.ndarray:
    """Points of ``camera``'s pixels expressed in another frame, (H, W, 3)."""
    pts = render_world(camera, world_from_cam).reshape(-1, 3)
    return transform_points(frame_from_world, pts).reshape(camera.height, camera.width, 3)


def make_frame(name: str, T: np.ndarray, camera: Camera, image_path: Path | None = None) -> Frame:
    return Frame(name, image_path or Path(f"/nonexistent/{name}.png"), camera, T)


def write_scene(
    root: Path,
    mapping: list[tuple[str, np.ndarray]],
    query: list[tuple[str, np.ndarray]],
    camera: Camera,
    seed: int = 0,
) -> Scene:
    """A Scene whose frames have (random) image files of the camera's size."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)

    def frames(items):
        out = []
        for name, T in items:
            path = root / f"{name}.png"
            cv2.imwrite(str(path), rng.integers(0, 255, (camera.height, camera.width, 3), dtype=np.uint8))
            out.append(Frame(name, path, camera, T))
        return tuple(out)

    return Scene("synthetic/room", root, "colmap", frames(mapping), frames(query))


def dust3r_prediction(cam1: Camera, T1: np.ndarray, cam2: Camera, T2: np.ndarray, scale: float, render=render_world):
    """Exact point maps as DUSt3R would predict them: both in camera 1's frame, in units of ``scale`` metres."""
    from slocal.geometry import invert
    from slocal.teach.dust3r.inference import PairPrediction

    cam1_from_world = invert(T1)

    def in_cam1(cam, T):
        return (
            transform_points(cam1_from_world, render(cam, T).reshape(-1, 3)).reshape(cam.height, cam.width, 3) / scale
        )

    conf = lambda c: np.full((c.height, c.width), 10.0, np.float32)  # noqa: E731
    return PairPrediction(
        in_cam1(cam1, T1).astype(np.float32), conf(cam1), in_cam1(cam2, T2).astype(np.float32), conf(cam2)
    )


class Oracle:
    """A stand-in for the network: exact predictions of a rendered scene, a random scale per pair.

    Views without a frame (bench queries) use ``query_pose``, which the test sets.
    """

    def __init__(self, render=render_world, noise: float = 0.0, seed: int = 0):
        self.render = render
        self.noise = noise
        self.seed = seed
        self.calls: list[tuple[str, str]] = []
        self.query_pose: np.ndarray | None = None

    def _pose(self, view) -> tuple[str, np.ndarray]:
        if view.frame is None:
            return "<query>", self.query_pose
        return view.frame.name, view.frame.world_from_cam

    def __call__(self, pairs):
        import zlib

        from slocal.teach.dust3r.inference import PairPrediction

        out = []
        for v1, v2 in pairs:
            (n1, T1), (n2, T2) = self._pose(v1), self._pose(v2)
            self.calls.append((n1, n2))
            rng = np.random.default_rng(zlib.crc32(f"{self.seed}|{n1}|{n2}".encode()))
            scale = float(np.exp(rng.uniform(-2, 2)))
            p = dust3r_prediction(v1.camera, T1, v2.camera, T2, 1.0, self.render)
            p1, p2 = (x + rng.normal(0, self.noise, x.shape) if self.noise else x for x in (p.pts3d_1, p.pts3d_2))
            out.append(
                PairPrediction((p1 / scale).astype(np.float32), p.conf_1, (p2 / scale).astype(np.float32), p.conf_2)
            )
        return out
