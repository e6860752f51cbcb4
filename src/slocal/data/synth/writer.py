"""Writing the procedural scene in the 12Scenes raw layout (``render_scene``)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slocal.data.scene import Scene
from slocal.data.synth.config import SynthConfig
from slocal.data.synth.trajectories import trajectory
from slocal.data.synth.world import SynthWorld
from slocal.data.twelve_scenes import load_twelve_scenes
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera
from slocal.io import atomic_dir, write_depth_png, write_image, write_text
from slocal.progress import progress_bar

log = logging.getLogger(__name__)

SENSOR_NAME = "slocal-synth"
DEPTH_SHIFT = 1000  # stored depth units per metre (millimetres)


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
            "synth: built room %d, a %s m room with %d solids (boxes, pillars) and %d textured faces in %.1f s",
            config.room,
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
            rng = config.rng(4, idx)
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
        n_mapping,
        n_query,
        out_dir,
        seconds,
        n_frames / seconds,
    )
    return SynthResult(out_dir, scene, seconds)
