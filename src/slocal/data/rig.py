"""The colour-depth rig of an RGB-D scene: where the depth camera sits relative to the colour camera.

Most RGB-D datasets register depth to colour (12Scenes, the procedural room): a colour pixel
and the depth pixel at the same place see the same ray. 7-Scenes does not: its Kinect's colour
and infrared cameras sit centimetres apart, the depth images are the infrared camera's, and the
poses are the depth camera's (KinectFusion tracked depth). A ``DepthRegistration`` states the
rigid transform ``cam_from_depth`` (colour from depth) and a depth scale, and
``apply_depth_registration`` makes a scene consistent with it:

- every frame gets ``Frame.cam_from_depth``, so ``Frame.depth_at`` renders depth into the colour
  camera (z-buffered) instead of reading it through the intrinsics;
- where the stored poses are the depth camera's (``poses_of="depth"``), every frame's pose becomes
  the colour camera's: ``world_from_cam = world_from_depth @ inv(cam_from_depth)``. Queries too:
  one rig took them, and a localizer sees their colour images, so their reference poses are
  converted the same way (and the report says so).

The registration itself is estimated from the mapping frames by ``slocal.teach.rig``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from slocal.data.scene import Frame, Scene
from slocal.errors import SlocalError
from slocal.geometry.pose import check_rigid, invert
from slocal.io import read_json

POSES_OF = ("depth", "colour")
RIG_MODES = ("auto", "estimate", "off")  # how ``slocal.teach.rig.registered_scene`` obtains a rig


@dataclass(frozen=True, eq=False)
class DepthRegistration:
    """The depth camera relative to the colour camera, and a depth scale.

    Attributes:
        cam_from_depth: (4, 4) rigid transform from the depth camera's frame to the colour camera's.
        depth_scale: factor on the stored depth (1.0: the depth unit is right).
        poses_of: which camera the scene's poses belonged to before registration: ``depth``
            (they are converted to the colour camera's) or ``colour`` (kept).
        source: how it was obtained (``estimated``, ``identity``, a file...).
        stats: the estimation's report (residuals, counts, time).
    """

    cam_from_depth: np.ndarray
    depth_scale: float = 1.0
    poses_of: str = "depth"
    source: str = "estimated"
    stats: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        T = np.asarray(self.cam_from_depth, np.float64)
        problem = check_rigid(T) if T.shape == (4, 4) else f"shape {T.shape}, expected (4, 4)"
        if problem:
            raise SlocalError(f"cam_from_depth is not a rigid transform: {problem}")
        if not (math.isfinite(self.depth_scale) and 0.5 < self.depth_scale < 2.0):
            raise SlocalError(f"depth scale must be within (0.5, 2), got {self.depth_scale}")
        if self.poses_of not in POSES_OF:
            raise SlocalError(f"poses_of must be one of {', '.join(POSES_OF)}, got {self.poses_of!r}")
        object.__setattr__(self, "cam_from_depth", T)

    @property
    def translation_cm(self) -> list[float]:
        """Position of the depth camera in the colour camera's frame, centimetres."""
        return (self.cam_from_depth[:3, 3] * 100).tolist()

    @property
    def rotation_deg(self) -> float:
        R = self.cam_from_depth[:3, :3]
        return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0))))

    def is_identity(self, tol_m: float = 1e-6, tol_deg: float = 1e-4) -> bool:
        return (
            np.linalg.norm(self.cam_from_depth[:3, 3]) < tol_m
            and self.rotation_deg < tol_deg
            and abs(self.depth_scale - 1.0) < 1e-9
        )

    def summary(self) -> dict:
        """What a report states (translation in cm, rotation in degrees, scale, source, pose convention),
        with the transform itself, so ``from_dict`` rebuilds the registration from it."""
        return {
            "source": self.source,
            "poses_of": self.poses_of,
            "depth_from_colour_translation_cm": self.translation_cm,
            "rotation_deg": self.rotation_deg,
            "depth_scale": self.depth_scale,
            "cam_from_depth": self.cam_from_depth.tolist(),
        }

    def to_dict(self) -> dict:
        return {
            "cam_from_depth": self.cam_from_depth.tolist(),
            "depth_scale": self.depth_scale,
            "poses_of": self.poses_of,
            "source": self.source,
            "stats": self.stats,
        }

    @classmethod
    def from_dict(cls, d: dict) -> DepthRegistration:
        """From ``to_dict`` or ``summary`` (a cached rig file, a model file's record).

        Raises:
            SlocalError: a field is missing or malformed.
        """
        missing = [k for k in ("cam_from_depth", "depth_scale", "poses_of") if k not in d]
        if missing:
            raise SlocalError(f"a colour-depth rig needs {', '.join(missing)}")
        try:
            cam_from_depth = np.array(d["cam_from_depth"], np.float64)
            depth_scale = float(d["depth_scale"])
        except (TypeError, ValueError) as exc:
            raise SlocalError(f"malformed colour-depth rig: {exc}") from exc
        return cls(
            cam_from_depth, depth_scale, str(d["poses_of"]), str(d.get("source", "file")), dict(d.get("stats", {}))
        )

    def same_as(self, other: DepthRegistration, tol_m: float = 1e-6, tol_scale: float = 1e-9) -> bool:
        """The same transform, scale and pose convention (what a scene's fingerprint tells apart)."""
        return (
            self.poses_of == other.poses_of
            and np.allclose(self.cam_from_depth, other.cam_from_depth, rtol=0.0, atol=tol_m)
            and abs(self.depth_scale - other.depth_scale) <= tol_scale
        )


def read_depth_registration(path: str | Path) -> DepthRegistration:
    """A colour-depth rig from a JSON file: a cached estimate (``RUNS/SCENE/rig/depth-*.json``) or a summary.

    Raises:
        SlocalError: the file is missing, not JSON, or not a rig (the error names it).
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise SlocalError("not a colour-depth rig file (expected a JSON object)", path)
    try:
        return replace(DepthRegistration.from_dict(data), source=f"file {path.name}")
    except SlocalError as exc:
        raise SlocalError(exc.message, path) from exc


def poses_of(scene: Scene) -> str:
    """Which camera the scene's stored poses belong to: ``colour`` unless its loader says otherwise."""
    return str(scene.extra.get("poses_of", "colour"))


def needs_registration(scene: Scene) -> bool:
    """True for an RGB-D scene whose loader says its depth is not registered to colour (7-Scenes),
    until the rig has been applied."""
    return scene.has_depth and scene.extra.get("depth_registered") is False and "depth_registration" not in scene.extra


def _registered(frame: Frame, reg: DepthRegistration, depth_from_cam: np.ndarray) -> Frame:
    world_from_cam = frame.world_from_cam @ depth_from_cam if reg.poses_of == "depth" else frame.world_from_cam
    if not frame.has_depth:
        return replace(frame, world_from_cam=world_from_cam)
    return replace(
        frame,
        world_from_cam=world_from_cam,
        cam_from_depth=reg.cam_from_depth,
        depth_scale=frame.depth_scale * reg.depth_scale,
    )


def apply_depth_registration(scene: Scene, reg: DepthRegistration) -> Scene:
    """The scene with its depth rendered through ``reg`` and its poses on the colour camera.

    Raises:
        SlocalError: the registration's pose convention is not the scene's, or the scene is registered already.
    """
    if "depth_registration" in scene.extra:
        raise SlocalError(f"scene {scene.id} already has a depth registration", scene.root)
    if reg.poses_of != poses_of(scene):
        raise SlocalError(
            f"the registration assumes poses of the {reg.poses_of} camera, "
            f"but scene {scene.id}'s poses are the {poses_of(scene)} camera's",
            scene.root,
        )
    depth_from_cam = invert(reg.cam_from_depth)
    mapping = tuple(_registered(f, reg, depth_from_cam) for f in scene.mapping)
    query = tuple(_registered(f, reg, depth_from_cam) for f in scene.query)
    extra = {**scene.extra, "depth_registration": reg.summary(), "poses_of": "colour"}
    return replace(scene, mapping=mapping, query=query, extra=extra)
