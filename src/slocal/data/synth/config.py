"""Settings of the procedural scene (``SynthConfig``)."""

from __future__ import annotations

from dataclasses import dataclass

from slocal.errors import SlocalError
from slocal.geometry.camera import Camera

# Distance from the walls within which furniture stands; cameras stay inside it.
FURNITURE_BAND = 0.9
CAMERA_CLEARANCE = 0.6


@dataclass(frozen=True)
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

    mapping_frames: int = 150
    query_frames: int = 15
    seed: int = 0
    color_size: tuple[int, int] = (320, 240)
    depth_size: tuple[int, int] = (160, 120)
    focal: float = 260.0
    room_size: tuple[float, float, float] = (5.5, 4.5, 2.6)
    num_boxes: int = 8
    texels_per_metre: float = 200.0
    jpeg_quality: int = 92
    noise_sigma: float = 1.5
    exposure_jitter: float = 0.04

    def __post_init__(self) -> None:
        if self.mapping_frames < 1 or self.query_frames < 1:
            raise SlocalError(
                f"need at least one mapping and one query frame, got {self.mapping_frames} and {self.query_frames}"
            )
        if min(self.color_size) < 8 or min(self.depth_size) < 4:
            raise SlocalError(f"image sizes too small: colour {self.color_size}, depth {self.depth_size}")
        if not self.focal > 0 or not self.texels_per_metre > 0:
            raise SlocalError(f"focal ({self.focal}) and texels_per_metre ({self.texels_per_metre}) must be positive")
        w, d, h = self.room_size
        if min(w, d) < 2 * (FURNITURE_BAND + CAMERA_CLEARANCE) + 0.4 or h < 2.2:
            raise SlocalError(f"room {self.room_size} too small: need x, y >= 3.4 m and height >= 2.2 m")
        if self.num_boxes < 0:
            raise SlocalError(f"num_boxes must be >= 0, got {self.num_boxes}")

    @property
    def color_camera(self) -> Camera:
        w, h = self.color_size
        return Camera(w, h, self.focal, self.focal, w / 2.0, h / 2.0)

    @property
    def depth_camera(self) -> Camera:
        return self.color_camera.scaled(*self.depth_size)
