"""Camera trajectories of the procedural scene: a mapping loop and query frames near it."""

from __future__ import annotations

import math

import numpy as np

from slocal.data.synth.config import CAMERA_CLEARANCE, FURNITURE_BAND, SynthConfig
from slocal.geometry.pose import to_homogeneous


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
    rng = config.rng(3)
    phase = rng.uniform(0.0, 2 * math.pi, 12)
    margin = FURNITURE_BAND + CAMERA_CLEARANCE
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
