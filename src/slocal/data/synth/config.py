"""Settings of the procedural scene (``SynthConfig``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from slocal.config import config_dataclass
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera

# Distance from the walls within which furniture stands; cameras stay inside it.
FURNITURE_BAND = 0.9
CAMERA_CLEARANCE = 0.6


@config_dataclass
class SynthConfig:
    """Settings of the procedural demo scene.

    Attributes:
        mapping_frames: frames of the mapping trajectory (``sequence1``).
        query_frames: frames of the query trajectory (``sequence0``).
        seed: drives textures, furniture, trajectories and sensor noise.
        color_size: colour image (width, height).
        depth_size: depth image (width, height); same optical centre and field
            of view as the colour camera (its intrinsics are the colour ones scaled).
        focal: colour focal length in pixels (fx = fy).
        room_size: room extent (x, y, z) in metres; z is up.
        num_boxes: furniture boxes along the walls (fewer if they do not fit).
        texels_per_metre: texture resolution on every surface.
        jpeg_quality: colour JPEG quality.
        noise_sigma: per-pixel Gaussian sensor noise (grey levels).
        exposure_jitter: per-frame gain drawn uniformly from 1 +- this.
    """

    mapping_frames: Annotated[int, Field(ge=1)] = 150
    query_frames: Annotated[int, Field(ge=1)] = 15
    seed: int = 0
    color_size: tuple[Annotated[int, Field(ge=8)], Annotated[int, Field(ge=8)]] = (320, 240)
    depth_size: tuple[Annotated[int, Field(ge=4)], Annotated[int, Field(ge=4)]] = (160, 120)
    focal: Annotated[float, Field(gt=0)] = 260.0
    room_size: tuple[float, float, float] = (5.5, 4.5, 2.6)
    num_boxes: Annotated[int, Field(ge=0)] = 8
    texels_per_metre: Annotated[float, Field(gt=0)] = 200.0
    jpeg_quality: int = 92
    noise_sigma: float = 1.5
    exposure_jitter: float = 0.04

    def __post_init__(self) -> None:
        w, d, h = self.room_size
        if min(w, d) < 2 * (FURNITURE_BAND + CAMERA_CLEARANCE) + 0.4 or h < 2.2:
            raise SlocalError(f"room {self.room_size} too small: need x, y >= 3.4 m and height >= 2.2 m")

    @property
    def color_camera(self) -> Camera:
        w, h = self.color_size
        return Camera(w, h, self.focal, self.focal, w / 2.0, h / 2.0)

    @property
    def depth_camera(self) -> Camera:
        return self.color_camera.scaled(*self.depth_size)
