"""The procedural demo scene: a textured room with furniture boxes, ray cast with numpy.

``render_scene`` writes a scene in the 12Scenes raw layout (colour JPEGs,
uint16 millimetre depth PNGs at a lower resolution, camera-to-world poses,
``info.txt`` and ``split.txt``), so the ordinary loader reads it and every
later step runs on it without a download.

The world is a closed, axis-aligned room (z up, floor at z = 0) holding boxes
that may be rotated about the vertical (yaw). ``SynthConfig.room`` picks the room's
layout (``ROOMS``: size, pillars, furniture count, lights, texture style): room 1 is
the demo room, room 2 a different one, so two rooms under one folder make a home. Every face carries its own
texture, generated once per seed and anchored to the face's 2D coordinates in
metres: multi-octave colour value noise, blobs, small marks and glyphs, stripe
patches, posters and rugs. Lighting (ambient + two Lambertian point lights with
shadows) depends only on the surface point, so it is baked into the textures
and a point looks the same from every view. Cameras follow the OpenCV/COLMAP
convention (x right, y down, z forward); rays go through pixel centres as
defined in ``slocal.geometry.camera``.

Modules: ``config`` (``SynthConfig``), ``world`` (geometry, ray casting,
rendering), ``textures`` (procedural textures and their sampling),
``trajectories`` (camera paths), ``writer`` (``render_scene``: the files).
"""

from slocal.data.synth.config import ROOMS, RoomLayout, SynthConfig
from slocal.data.synth.trajectories import look_pose, trajectory
from slocal.data.synth.world import SynthWorld
from slocal.data.synth.writer import DEPTH_SHIFT, SENSOR_NAME, SynthResult, render_scene

__all__ = [
    "DEPTH_SHIFT",
    "ROOMS",
    "RoomLayout",
    "SENSOR_NAME",
    "SynthConfig",
    "SynthResult",
    "SynthWorld",
    "look_pose",
    "render_scene",
    "trajectory",
]
