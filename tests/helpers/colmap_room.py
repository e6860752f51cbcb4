"""A COLMAP model of the procedural room, written as COLMAP writes one (test helper, like ``distill_fixtures``).

Every image has its own camera (PINHOLE at different sizes, or OPENCV with
distortion); the model is in its own units (``metres / metres_per_unit``);
points3D come from the room's surfaces with tracks over every image that sees
them, queries included, as COLMAP would register every photo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pycolmap

from slocal.data.synth import SynthConfig, SynthWorld, trajectory
from slocal.geometry.camera import Camera, pixel_centers
from slocal.geometry.pose import invert

SIZES = ((128, 96), (120, 96), (128, 100))
OPENCV_DISTORTION = (-0.12, 0.02, 0.001, -0.0015)


@dataclass(frozen=True)
class ColmapRoom:
    """What ``write_room_colmap`` wrote."""

    root: Path
    metres_per_unit: float
    world_from_cam: dict  # image name -> (4, 4) metric pose
    points_model_P3: np.ndarray
    query_names: tuple[str, ...]


def _pycolmap_camera(camera_id: int, width: int, height: int, distortion: tuple | None):
    f = 0.85 * width
    if distortion is None:
        cam = pycolmap.Camera.create_from_model_name(camera_id, "PINHOLE", f, width, height)
        cam.params = [f, f * 1.01, width / 2 + 1.5, height / 2 - 1.0]
    else:
        cam = pycolmap.Camera.create_from_model_name(camera_id, "OPENCV", f, width, height)
        cam.params = [f, f * 1.01, width / 2 + 1.5, height / 2 - 1.0, *distortion]
    return cam


def _render(world: SynthWorld, cam, world_from_cam: np.ndarray, seed: int) -> np.ndarray:
    """Render through the (possibly distorted) pycolmap camera: a wider pinhole view, remapped."""
    w, h = cam.width, cam.height
    pad = 0.25
    f = float(cam.params[0])
    big = Camera(int(w * (1 + 2 * pad)), int(h * (1 + 2 * pad)), f, f, w * (0.5 + pad), h * (0.5 + pad))
    rgb, _ = world.render_color(big, world_from_cam)
    uv = pixel_centers(w, h).reshape(-1, 2)
    xy = cam.cam_from_img(uv)  # normalized image coordinates of each pixel centre
    map_x = (big.fx * xy[:, 0] + big.cx - 0.5).reshape(h, w).astype(np.float32)
    map_y = (big.fy * xy[:, 1] + big.cy - 0.5).reshape(h, w).astype(np.float32)
    out = cv2.remap(rgb, map_x, map_y, cv2.INTER_LINEAR)
    noise = np.random.default_rng(seed).normal(0.0, 1.0, out.shape)
    return np.clip(out * 255.0 + noise + 0.5, 0, 255).astype(np.uint8)


def write_room_colmap(
    root: Path,
    n_mapping: int = 8,
    n_query: int = 2,
    distortion: tuple | None = None,
    metres_per_unit: float = 0.5,
    sizes=SIZES,
    obs_noise_px: float = 0.3,
    seed: int = 0,
    texels_per_metre: float = 100.0,
) -> ColmapRoom:
    """Write ``root/images``, ``root/sparse/0`` (binary) and ``root/queries.txt``."""
    config = SynthConfig(mapping_frames=n_mapping, query_frames=n_query, seed=seed, texels_per_metre=texels_per_metre)
    world = SynthWorld(config)
    poses = trajectory(config, "mapping") + trajectory(config, "query")
    names = [f"map/{i:03d}.jpg" for i in range(n_mapping)] + [f"query/{i:03d}.jpg" for i in range(n_query)]
    rng = np.random.default_rng(seed)
    cams = [_pycolmap_camera(i + 1, *sizes[i % len(sizes)], distortion) for i in range(len(poses))]
    for name, cam, pose, i in zip(names, cams, poses, range(len(poses))):
        path = root / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(
            str(path),
            cv2.cvtColor(_render(world, cam, pose, seed * 1000 + i), cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, 95],
        )

    # Surface points seen by the mapping images (a coarse grid of rays each).
    pts = []
    for cam, pose in zip(cams[:n_mapping], poses[:n_mapping]):
        uv = pixel_centers(cam.width, cam.height, 12).reshape(-1, 2)
        uv = uv + rng.uniform(-4, 4, uv.shape)
        xy = cam.cam_from_img(uv)
        dirs = np.c_[xy, np.ones(len(xy))] @ pose[:3, :3].T
        t, _ = world.cast(pose[:3, 3][None], dirs)
        pts.append(pose[:3, 3] + t[:, None] * dirs)
    points_P3 = np.concatenate(pts)
    points_P3 = points_P3[np.isfinite(points_P3).all(1)]

    # Observations: projection into every image that sees the point unoccluded.
    obs: list[list[tuple[int, np.ndarray]]] = [[] for _ in points_P3]
    for k, (cam, pose) in enumerate(zip(cams, poses)):
        cam_from_world = invert(pose)
        p_cam = points_P3 @ cam_from_world[:3, :3].T + cam_from_world[:3, 3]
        front = p_cam[:, 2] > 0.05
        uv = np.full((len(points_P3), 2), np.nan)
        uv[front] = cam.img_from_cam(p_cam[front])
        inside = front & (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)
        t, _ = world.cast(pose[:3, 3][None], points_P3 - pose[:3, 3])
        visible = inside & (t > 1 - 1e-4)
        for p in np.flatnonzero(visible):
            obs[p].append((k, uv[p] + rng.normal(0, obs_noise_px, 2)))

    rec = pycolmap.Reconstruction()
    points2d: list[list] = [[] for _ in poses]
    tracks = []
    for p, o in enumerate(obs):
        if len(o) < 2:
            continue
        track = []
        for k, xy in o:
            track.append((k, len(points2d[k])))
            points2d[k].append(xy)
        tracks.append((p, track))
    for k, (cam, pose, name) in enumerate(zip(cams, poses, names)):
        rec.add_camera_with_trivial_rig(cam)
        cam_from_model = invert(pose)
        cam_from_model[:3, 3] /= metres_per_unit
        image = pycolmap.Image(name=name, camera_id=cam.camera_id, image_id=k + 1)
        image.points2D = [pycolmap.Point2D(xy) for xy in points2d[k]]
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(cam_from_model[:3, :]))
    kept = []
    for p, track in tracks:
        elements = [pycolmap.TrackElement(k + 1, idx) for k, idx in track]
        rec.add_point3D(points_P3[p] / metres_per_unit, pycolmap.Track(elements), np.array([128, 128, 128], np.uint8))
        kept.append(points_P3[p] / metres_per_unit)
    out = root / "sparse" / "0"
    out.mkdir(parents=True, exist_ok=True)
    rec.write_binary(str(out))
    (root / "queries.txt").write_text("\n".join(names[n_mapping:]) + "\n")
    return ColmapRoom(root, metres_per_unit, dict(zip(names, poses)), np.array(kept), tuple(names[n_mapping:]))
