"""Settings of ``slocal map`` (``MapConfig``) and the scale the user gives (``ScaleRequest``).

Both are ``slocal.config`` dataclasses (types checked and coerced on construction); the ranges and
the choices are checked together in ``__post_init__`` so that one line names every bad setting.
"""

from __future__ import annotations

import math

from slocal.capture.pairs import STRATEGIES
from slocal.capture.sfm import CAMERA_MODELS, MAPPERS
from slocal.config import config_dataclass
from slocal.errors import SlocalError

# Fewest mapping images a model is built from (two to start a model, one more to register against it).
MIN_IMAGES = 3


@config_dataclass
class MapConfig:
    """How a video or photo folder becomes a COLMAP scene.

    Attributes:
        fps: video: time slots per second; the sharpest frame of each is kept.
        max_side: video: longer side of the frames written into the scene.
        blur_ratio: video: a slot whose sharpest frame is less sharp than this
            fraction of the local median is skipped as blurred (0: keep all).
        blur_window: video: slots on each side for that local median.
        camera_model: COLMAP camera model of every camera (distortion is removed
            on loading, ``slocal.data.colmap``).
        sift_max_side: SIFT runs on images downscaled to this longer side.
        max_features: SIFT features per image.
        pairs: ``auto``, ``exhaustive``, ``sequential``, ``retrieval`` or
            ``sequential+retrieval`` (``slocal.capture.pairs``).
        exhaustive_max: ``auto`` matches every pair up to this many images.
        overlap: sequential: neighbours in capture order.
        retrieval_k: retrieval: most similar images per image.
        vocab_size: retrieval: visual words.
        mapper: ``incremental`` or ``global`` (pycolmap's GLOMAP).
        self_calibration: start a camera without a focal length (video, photos without EXIF) at
            the one its own image pairs give (``sfm.self_calibrate``); False: COLMAP's default.
        seed: seeds COLMAP's RANSAC (verification and mapper) and the retrieval vocabulary.
    """

    fps: float = 2.0
    max_side: int = 1280
    blur_ratio: float = 0.5
    blur_window: int = 10
    camera_model: str = "SIMPLE_RADIAL"
    sift_max_side: int = 1600
    max_features: int = 8192
    pairs: str = "auto"
    exhaustive_max: int = 60
    overlap: int = 10
    retrieval_k: int = 10
    vocab_size: int = 256
    mapper: str = "incremental"
    self_calibration: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not (math.isfinite(self.fps) and self.fps > 0):
            problems.append(f"fps={self.fps} (must be > 0)")
        if self.max_side < 64 or self.sift_max_side < 64:
            problems.append(f"max_side={self.max_side}, sift_max_side={self.sift_max_side} (must be >= 64)")
        if not (0.0 <= self.blur_ratio < 1.0) or self.blur_window < 1:
            problems.append(f"blur_ratio={self.blur_ratio} (0 to <1), blur_window={self.blur_window} (>= 1)")
        if self.camera_model not in CAMERA_MODELS:
            problems.append(f"camera_model={self.camera_model!r} (one of {', '.join(CAMERA_MODELS)})")
        if self.pairs not in STRATEGIES:
            problems.append(f"pairs={self.pairs!r} (one of {', '.join(STRATEGIES)})")
        if self.mapper not in MAPPERS:
            problems.append(f"mapper={self.mapper!r} (one of {', '.join(MAPPERS)})")
        if min(self.max_features, self.overlap, self.retrieval_k, self.vocab_size) < 1 or self.exhaustive_max < 0:
            problems.append(
                f"max_features={self.max_features}, overlap={self.overlap}, retrieval_k={self.retrieval_k}, "
                f"vocab_size={self.vocab_size} (>= 1), exhaustive_max={self.exhaustive_max} (>= 0)"
            )
        if problems:
            raise SlocalError("invalid map settings: " + "; ".join(problems))


@config_dataclass
class ScaleRequest:
    """The scale the user gives: metres per unit, or a measured distance between two images' camera centres.

    Attributes:
        metres_per_unit: metres per model unit.
        distance: ``(image A, image B, metres)``, image names as in the scene's ``images/``.
    """

    metres_per_unit: float | None = None
    distance: tuple[str, str, float] | None = None

    def __post_init__(self) -> None:
        if self.metres_per_unit is not None and self.distance is not None:
            raise SlocalError("give the scale once: metres per unit or a measured distance, not both")
        if self.metres_per_unit is not None and not (math.isfinite(self.metres_per_unit) and self.metres_per_unit > 0):
            raise SlocalError(f"metres per unit must be a positive number, got {self.metres_per_unit}")
        if self.distance is not None and not (math.isfinite(self.distance[2]) and self.distance[2] > 0):
            raise SlocalError(f"the measured distance must be a positive number of metres, got {self.distance[2]}")
