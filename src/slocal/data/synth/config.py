"""Settings of the procedural scene (``SynthConfig``) and the room layouts it can render (``ROOMS``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import Field

from slocal.config import config_dataclass
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera

# Distance from the walls within which furniture stands; cameras stay inside it.
FURNITURE_BAND = 0.9
CAMERA_CLEARANCE = 0.6


@dataclass(frozen=True)
class RoomLayout:
    """What makes one synthetic room unlike another, beyond the seed.

    Attributes:
        name: a short description (logs, ``slocal synth --help``).
        size: default room extent (x, y, z) in metres.
        boxes: default number of furniture boxes.
        pillars: floor-to-ceiling pillars against the walls, as (wall, position along it in [0, 1],
            width, depth) in metres; wall 0/1 are x = 0 / x = W, 2/3 are y = 0 / y = D. They make the
            floor plan other than a rectangle, inside the band the cameras never enter.
        lights: point lights as fractions of the room extent (x, y) and metres below the ceiling
            (None: two lamps at a third and two thirds of the length, 25 cm below the ceiling).
        style: texture style: ``plain`` (noise, marks, posters, rugs) or ``tiled`` (the same over a
            tiled floor and striped wallpaper).
    """

    name: str
    size: tuple[float, float, float]
    boxes: int
    pillars: tuple[tuple[int, float, float, float], ...] = ()
    lights: tuple[tuple[float, float, float], ...] | None = None
    style: str = "plain"


# Room 1 is the demo's room and must render exactly as it always has: its random streams are the
# seed's own (``SynthConfig.rng_key``), and its layout adds nothing that draws random numbers.
ROOMS: dict[int, RoomLayout] = {
    1: RoomLayout("the demo room: 5.5 x 4.5 m, 8 boxes, plain walls", (5.5, 4.5, 2.6), 8),
    2: RoomLayout(
        "a long living room: 7.2 x 4.0 m, higher ceiling, 12 boxes, two pillars, tiled floor, striped wallpaper",
        (7.2, 4.0, 2.9),
        12,
        pillars=((2, 0.3, 0.55, 0.45), (3, 0.65, 0.7, 0.4)),
        lights=((0.2, 0.5, 0.3), (0.5, 0.4, 0.3), (0.8, 0.6, 0.3)),
        style="tiled",
    ),
}


@config_dataclass
class SynthConfig:
    """Settings of the procedural demo scene.

    Attributes:
        mapping_frames: frames of the mapping trajectory (``sequence1``).
        query_frames: frames of the query trajectory (``sequence0``).
        seed: drives textures, furniture, trajectories and sensor noise.
        room: the room layout (``ROOMS``): 1 is the demo room; 2 a different room (size, floor plan,
            furniture, lights, texture style), not the same room with other noise.
        color_size: colour image (width, height).
        depth_size: depth image (width, height); same optical centre and field
            of view as the colour camera (its intrinsics are the colour ones scaled).
        focal: colour focal length in pixels (fx = fy).
        room_size: room extent (x, y, z) in metres; z is up (None: the layout's).
        num_boxes: furniture boxes along the walls, fewer if they do not fit (None: the layout's).
        texels_per_metre: texture resolution on every surface.
        jpeg_quality: colour JPEG quality.
        noise_sigma: per-pixel Gaussian sensor noise (grey levels).
        exposure_jitter: per-frame gain drawn uniformly from 1 +- this.
    """

    mapping_frames: Annotated[int, Field(ge=1)] = 150
    query_frames: Annotated[int, Field(ge=1)] = 15
    seed: int = 0
    room: int = 1
    color_size: tuple[Annotated[int, Field(ge=8)], Annotated[int, Field(ge=8)]] = (320, 240)
    depth_size: tuple[Annotated[int, Field(ge=4)], Annotated[int, Field(ge=4)]] = (160, 120)
    focal: Annotated[float, Field(gt=0)] = 260.0
    room_size: tuple[float, float, float] | None = None
    num_boxes: Annotated[int, Field(ge=0)] | None = None
    texels_per_metre: Annotated[float, Field(gt=0)] = 200.0
    jpeg_quality: int = 92
    noise_sigma: float = 1.5
    exposure_jitter: float = 0.04

    def __post_init__(self) -> None:
        if self.room not in ROOMS:
            raise SlocalError(f"unknown room layout {self.room}; choose one of {', '.join(map(str, sorted(ROOMS)))}")
        # Frozen: the layout's defaults are filled in once, here, so every reader sees plain values.
        if self.room_size is None:
            object.__setattr__(self, "room_size", self.layout.size)
        if self.num_boxes is None:
            object.__setattr__(self, "num_boxes", self.layout.boxes)
        w, d, h = self.room_size
        if min(w, d) < 2 * (FURNITURE_BAND + CAMERA_CLEARANCE) + 0.4 or h < 2.2:
            raise SlocalError(f"room {self.room_size} too small: need x, y >= 3.4 m and height >= 2.2 m")

    @property
    def layout(self) -> RoomLayout:
        return ROOMS[self.room]

    def rng(self, *stream: int) -> np.random.Generator:
        """The random generator of one stream (textures, furniture, a frame's noise, ...).

        Room 1 keeps the seed's own streams (``[seed, *stream]``), so the demo room renders
        bit-identically to before rooms existed; other rooms add their number to every key.
        """
        key = [self.seed, *stream] if self.room == 1 else [self.seed, *stream, self.room]
        return np.random.default_rng(key)

    @property
    def color_camera(self) -> Camera:
        w, h = self.color_size
        return Camera(w, h, self.focal, self.focal, w / 2.0, h / 2.0)

    @property
    def depth_camera(self) -> Camera:
        return self.color_camera.scaled(*self.depth_size)
