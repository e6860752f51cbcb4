"""A walk-through video of the procedural room (``render_video``), for the video -> map path without a download.

The camera walks a closed loop around the room centre looking outwards (yaw
swinging, height and pitch varying smoothly, all periodic so the loop closes);
the ``queries`` path is a second, tighter loop with its own swing, so its
frames are new views of the same walls. Frames carry the scene's sensor noise
and exposure jitter and are encoded with PyAV (``slocal.capture.video``). The
true ``world_from_cam`` of every frame goes to a text file beside the video
(``poses_path``) for checking a reconstruction against it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slocal.capture.video import write_video
from slocal.data.synth.config import CAMERA_CLEARANCE, FURNITURE_BAND, SynthConfig
from slocal.data.synth.trajectories import look_pose
from slocal.data.synth.world import SynthWorld
from slocal.errors import SlocalError
from slocal.io import write_text
from slocal.progress import progress_bar

log = logging.getLogger(__name__)

PATHS = ("walk", "queries")


def walk_poses(config: SynthConfig, n_frames: int, path: str = "walk") -> list[np.ndarray]:
    """``world_from_cam`` of ``n_frames`` evenly timed frames along one closed loop.

    Args:
        config: the room (layout, size and seed).
        n_frames: frames over the loop.
        path: ``walk`` (the mapping video) or ``queries`` (a tighter loop, other swing).
    """
    if path not in PATHS:
        raise SlocalError(f"unknown video path {path!r}; expected one of {', '.join(PATHS)}")
    W, D, _ = config.room_size
    rng = config.rng(7, PATHS.index(path))
    phase = rng.uniform(0.0, 2 * math.pi, 6)
    margin = FURNITURE_BAND + CAMERA_CLEARANCE
    ax, ay = W / 2 - margin, D / 2 - margin
    radius, yaw_offset = (1.0, 0.0) if path == "walk" else (0.7, 0.3)
    poses = []
    for i in range(n_frames):
        s = i / n_frames
        theta = 2 * math.pi * s + phase[0]
        radial = radius * (1.0 + 0.08 * math.sin(6 * math.pi * s + phase[1]))
        position = np.array(
            [
                W / 2 + ax * radial * math.cos(theta),
                D / 2 + ay * radial * math.sin(theta),
                1.45 + 0.15 * math.sin(4 * math.pi * s + phase[2]),
            ]
        )
        # Three slow pans left and right per loop, as someone filming the walls while walking round.
        yaw = theta + yaw_offset + 0.35 * math.sin(6 * math.pi * s + phase[3])
        pitch = -0.15 + 0.12 * math.sin(4 * math.pi * s + phase[4])
        roll = 0.03 * math.sin(8 * math.pi * s + phase[5])
        poses.append(look_pose(position, yaw, pitch, roll))
    return poses


def poses_path(video: str | Path) -> Path:
    """The ground-truth file written beside a rendered video: ``<video stem>.poses.txt``."""
    video = Path(video)
    return video.with_name(video.stem + ".poses.txt")


@dataclass(frozen=True)
class VideoResult:
    """What ``render_video`` wrote: the video, its ground-truth file, frame count and wall time."""

    path: Path
    poses_path: Path
    frames: int
    seconds: float


def render_video(
    out: str | Path, config: SynthConfig = SynthConfig(), seconds: float = 40.0, fps: float = 10.0, path: str = "walk"
) -> VideoResult:
    """Render a walk-through of the room (``config``) as a video file (H.264 where PyAV has it).

    Args:
        out: the video file (``.mp4``); written atomically.
        config: room, image size, focal length, seed, noise.
        seconds: video length; the loop is walked once.
        fps: frame rate.
        path: ``walk`` or ``queries`` (see ``walk_poses``).

    Returns:
        The paths, the number of frames and the wall time.
    """
    out = Path(out)
    n_frames = round(seconds * fps)
    if n_frames < 2 or fps <= 0:
        raise SlocalError(f"a video needs at least 2 frames, got {seconds} s at {fps} fps")
    if config.color_size[0] % 2 or config.color_size[1] % 2:
        raise SlocalError(f"video frames need an even size, got {config.color_size[0]}x{config.color_size[1]}")
    start = time.perf_counter()
    world = SynthWorld(config)
    poses = walk_poses(config, n_frames, path)
    camera = config.color_camera

    def frames() -> Iterator[np.ndarray]:
        for idx in progress_bar(range(n_frames), f"synth: rendering {out.name}"):
            rgb, _ = world.render_color(camera, poses[idx])
            rng = config.rng(8, PATHS.index(path), idx)
            gain = 1.0 + rng.uniform(-config.exposure_jitter, config.exposure_jitter)
            noise = rng.normal(0.0, config.noise_sigma, rgb.shape).astype(np.float32)
            yield np.clip(rgb * np.float32(255.0 * gain) + noise + 0.5, 0, 255).astype(np.uint8)

    written = write_video(frames(), out, fps)
    rows = ["# frame, time (s), then the 4x4 world_from_cam (camera-to-world) pose, row-major, metres"]
    rows += [
        f"{i} {i / fps:.6f} " + " ".join(f"{v:.9g}" for v in pose.ravel()) for i, pose in enumerate(poses[:written])
    ]
    truth = write_text(poses_path(out), "\n".join(rows) + "\n")
    elapsed = time.perf_counter() - start
    log.info("synth: wrote %s (%d frames, %.0f s at %g fps) in %.1f s", out, written, seconds, fps, elapsed)
    return VideoResult(out, truth, written, elapsed)


def read_video_poses(path: str | Path) -> dict[int, tuple[float, np.ndarray]]:
    """``frame index -> (time s, world_from_cam (4, 4))`` from a ``poses_path`` file."""
    out = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if parts and not parts[0].startswith("#"):
            out[int(parts[0])] = (float(parts[1]), np.array(parts[2:18], np.float64).reshape(4, 4))
    return out
