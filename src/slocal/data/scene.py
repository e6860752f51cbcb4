"""The scene model every loader produces: frames with camera, pose and optional depth."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from slocal.errors import SlocalError
from slocal.geometry.camera import Camera, pixel_centers
from slocal.geometry.pose import invert, transform_points
from slocal.geometry.zbuffer import splat_nearest
from slocal.io import read_depth_png

FORMATS = ("12scenes", "7scenes", "colmap")


@dataclass(frozen=True, eq=False)
class Frame:
    """One image with its ground-truth pose.

    Attributes:
        name: identifier unique within the scene, e.g. ``seq-01/frame-000000``.
        image_path: colour image file.
        camera: colour camera at the stored image size.
        world_from_cam: (4, 4) camera-to-world pose (what 7-Scenes/12Scenes store).
        depth_path: depth image, if any.
        depth_camera: camera of the depth image.
        depth_scale: metres per stored depth unit.
        depth_invalid: stored values that mean "no depth" besides 0.
        cam_from_depth: (4, 4) rigid transform from the depth camera to the colour
            camera of this frame, or None where depth is registered to colour
            (one optical centre: a colour pixel maps to the depth image through
            the intrinsics alone). Set by ``slocal.data.rig`` for RGB-D rigs
            whose cameras sit apart (7-Scenes' Kinect).
    """

    name: str
    image_path: Path
    camera: Camera
    world_from_cam: np.ndarray
    depth_path: Path | None = None
    depth_camera: Camera | None = None
    depth_scale: float = 0.001
    depth_invalid: tuple[int, ...] = ()
    cam_from_depth: np.ndarray | None = None

    @property
    def cam_from_world(self) -> np.ndarray:
        """(4, 4) world-to-camera pose."""
        return invert(self.world_from_cam)

    @property
    def world_from_depth(self) -> np.ndarray:
        """(4, 4) pose of the depth camera (the colour camera's where depth is registered)."""
        if self.cam_from_depth is None:
            return self.world_from_cam
        return self.world_from_cam @ self.cam_from_depth

    @property
    def has_depth(self) -> bool:
        return self.depth_path is not None and self.depth_camera is not None

    def read_depth(self) -> np.ndarray:
        """Depth in metres at the depth camera's resolution, 0 where invalid.

        Returns:
            float32 array (H_d, W_d).
        """
        if not self.has_depth:
            raise SlocalError(f"frame {self.name} has no depth", self.image_path)
        raw = read_depth_png(self.depth_path)
        expected = (self.depth_camera.height, self.depth_camera.width)
        if raw.shape != expected:
            raise SlocalError(
                f"depth is {raw.shape[1]}x{raw.shape[0]}, expected {expected[1]}x{expected[0]}", self.depth_path
            )
        depth = raw.astype(np.float32) * np.float32(self.depth_scale)
        invalid = raw == 0
        for value in self.depth_invalid:
            invalid |= raw == value
        depth[invalid] = 0.0
        return depth

    def depth_at(self, camera: Camera, depth_HW: np.ndarray | None = None) -> np.ndarray:
        """Depth (z in ``camera``'s frame) at the pixel centres of ``camera``.

        Registered depth (``cam_from_depth`` is None) shares the colour camera's
        optical centre, so a pixel of ``camera`` maps to the depth image through
        the intrinsics alone; it is sampled there by nearest neighbour, which
        never mixes foreground and background at edges. Otherwise every depth
        pixel is lifted into the depth camera's frame, moved into the colour
        camera by ``cam_from_depth`` and z-buffered onto ``camera``'s grid
        (``slocal.geometry.zbuffer``): a point seen by the depth camera but
        hidden from the colour camera loses to the nearer surface.

        Returns:
            float32 array (camera.height, camera.width), metres, 0 where invalid.
        """
        if depth_HW is None:
            depth_HW = self.read_depth()
        if self.cam_from_depth is not None:
            return self._rendered_depth(camera, depth_HW)
        uv = pixel_centers(camera.width, camera.height).reshape(-1, 2)
        uv_d, _ = self.depth_camera.project(camera.rays(uv))
        cols = np.floor(uv_d[:, 0]).astype(np.int64)
        rows = np.floor(uv_d[:, 1]).astype(np.int64)
        inside = (cols >= 0) & (cols < depth_HW.shape[1]) & (rows >= 0) & (rows < depth_HW.shape[0])
        out = np.zeros(len(uv), np.float32)
        out[inside] = depth_HW[rows[inside], cols[inside]]
        return out.reshape(camera.height, camera.width)

    def _rendered_depth(self, camera: Camera, depth_HW: np.ndarray) -> np.ndarray:
        # Each depth pixel is split into k x k sub-pixels carrying its value, so the lifted points
        # are at least as dense as ``camera``'s grid and the splat leaves no holes.
        k = max(1, int(np.ceil(max(camera.fx / self.depth_camera.fx, camera.fy / self.depth_camera.fy))))
        dcam = self.depth_camera.scaled(self.depth_camera.width * k, self.depth_camera.height * k)
        depth = np.repeat(np.repeat(depth_HW, k, axis=0), k, axis=1) if k > 1 else depth_HW
        valid = depth > 0
        uv = pixel_centers(dcam.width, dcam.height)[valid]
        pts_depth = dcam.backproject(uv, depth[valid])
        depth, _ = splat_nearest(camera, transform_points(self.cam_from_depth, pts_depth))
        return depth


@dataclass(frozen=True, eq=False)
class Scene:
    """A localization scene: mapping frames to learn from, query frames to localize.

    Attributes:
        id: path of the scene relative to the data root, e.g. ``apt1/kitchen``.
        root: the scene folder.
        format: one of ``FORMATS``.
        mapping, query: the frames (invalid poses already skipped).
        skipped: number of frames skipped for invalid (INF/NaN) poses.
        extra: loader-specific details (e.g. the COLMAP model folder).
        metres_per_unit: metres per world unit of the poses; 1.0 for the metric
            RGB-D datasets, None when unknown (a COLMAP model without a scale):
            errors are then reported in model units, never as centimetres.
    """

    id: str
    root: Path
    format: str
    mapping: tuple[Frame, ...]
    query: tuple[Frame, ...]
    skipped: int = 0
    extra: dict = field(default_factory=dict)
    metres_per_unit: float | None = 1.0

    def __post_init__(self) -> None:
        s = self.metres_per_unit
        if s is not None and not (np.isfinite(s) and s > 0):
            raise SlocalError(f"metres per unit must be a positive number, got {s}", self.root)

    @property
    def units(self) -> str:
        """``"m"`` when the scale is known, else ``"units"`` (model units)."""
        return "m" if self.metres_per_unit is not None else "units"

    def with_scale(self, metres_per_unit: float | None) -> Scene:
        """The same scene with another scale (None keeps this one)."""
        if metres_per_unit is None:
            return self
        return replace(self, metres_per_unit=float(metres_per_unit))

    def without_mapping(self, names: Iterable[str]) -> Scene:
        """The same scene without the named mapping frames (e.g. frames held out for validation)."""
        drop = set(names)
        unknown = drop - {f.name for f in self.mapping}
        if unknown:
            raise SlocalError(f"scene {self.id} has no mapping frame named {sorted(unknown)[0]!r}", self.root)
        return replace(self, mapping=tuple(f for f in self.mapping if f.name not in drop))

    @property
    def has_depth(self) -> bool:
        return bool(self.mapping) and all(f.has_depth for f in self.mapping)

    @property
    def fingerprint(self) -> str:
        """Short hash of the frame names, cameras, poses and depth geometry; changes when the scene does.

        A colour-depth rig applied to the frames (``data.rig``) is part of it: a rig estimated anew
        changes what a depth-based teacher computes even where the poses stay the colour camera's.
        Frames without one hash as before, so their cached targets and students stay valid.
        """
        h = hashlib.sha256()
        h.update(f"{self.id}|{self.format}".encode())
        for split, frames in (("m", self.mapping), ("q", self.query)):
            for f in frames:
                h.update(f"{split}|{f.name}|{sorted(f.camera.to_dict().items())}".encode())
                h.update(np.round(f.world_from_cam, 6).astype(np.float64).tobytes())
                if f.cam_from_depth is not None:
                    h.update(f"rig|{f.depth_scale:.9g}".encode())
                    h.update(np.round(f.cam_from_depth, 6).astype(np.float64).tobytes())
        if "model_digest" in self.extra:  # a COLMAP model's points (the colmap teacher's input)
            h.update(str(self.extra["model_digest"]).encode())
        return h.hexdigest()[:16]

    def frame(self, name: str) -> Frame:
        for f in self.mapping + self.query:
            if f.name == name:
                return f
        raise SlocalError(f"scene {self.id} has no frame named {name!r}", self.root)

    def summary(self) -> dict:
        return {
            "scene": self.id,
            "format": self.format,
            "mapping": len(self.mapping),
            "query": len(self.query),
            "skipped": self.skipped,
            "depth": self.has_depth,
            "metres_per_unit": self.metres_per_unit,
            "path": str(self.root),
        }
