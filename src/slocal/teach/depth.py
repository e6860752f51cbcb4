"""The depth teacher: registered depth back-projected with the frame's known pose."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import Annotated

import numpy as np
from pydantic import Field

from slocal.config import config_dataclass
from slocal.data.scene import Frame, Scene
from slocal.errors import SlocalError
from slocal.progress import progress_bar
from slocal.teach.cross_check import CROSS_CHECK_RULE, cross_check
from slocal.teach.targets import FrameTargets, depth_coords, target_camera


@config_dataclass
class DepthTeacherConfig:
    """Settings of the depth teacher.

    Attributes:
        max_side: longer side of the target grid in pixels.
        min_depth, max_depth: depth range in metres accepted as valid.
        cross_check_views: keep only targets that this many overlapping mapping frames confirm,
            each moved along its ray to the agreeing targets' mean range (``teach.cross_check``);
            0 keeps every frame's own depth as it is.
        cross_check_partners: overlapping frames each frame is checked against.
        cross_check_cm: largest distance between agreeing targets.
        cross_check_drop: remove the targets partners see but do not confirm; False keeps them
            unchanged and only averages the confirmed ones.
        cross_check_average: move the confirmed targets to their mean range; False keeps them
            unchanged and only removes the disputed ones.
        smooth_px: side of the window (depth pixels, odd) each frame's depth is averaged over before it
            is lifted (``smooth_depth``); 0 keeps the depth as read.
        smooth_range: neighbours within this fraction of a pixel's depth take part in its mean.
    """

    max_side: Annotated[int, Field(ge=8)] = 320
    min_depth: Annotated[float, Field(ge=0)] = 0.1
    max_depth: Annotated[float, Field(gt=0)] = 10.0
    cross_check_views: Annotated[int, Field(ge=0)] = 0
    cross_check_partners: Annotated[int, Field(ge=1)] = 4
    cross_check_cm: Annotated[float, Field(gt=0)] = 2.0
    cross_check_drop: bool = True
    cross_check_average: bool = True
    smooth_px: Annotated[int, Field(ge=0)] = 0
    smooth_range: Annotated[float, Field(gt=0, lt=1)] = 0.03

    def __post_init__(self) -> None:
        if self.smooth_px and self.smooth_px % 2 == 0:
            raise SlocalError(
                f"DepthTeacherConfig: smooth_px must be odd (a window centred on its pixel), got {self.smooth_px}"
            )
        if self.cross_check_views > self.cross_check_partners:
            raise SlocalError(
                f"DepthTeacherConfig: cross_check_views ({self.cross_check_views}) exceeds cross_check_partners "
                f"({self.cross_check_partners}): no target could be confirmed"
            )


class DepthTeacher:
    """Scene coordinates from RGB-D depth; confidence 1 wherever depth is valid."""

    name = "depth"

    def __init__(self, config: DepthTeacherConfig = DepthTeacherConfig()):
        self.config = config
        self.stats: dict = {}

    def settings(self) -> dict:
        settings = asdict(self.config)
        # Options that are off change nothing: targets cached before they existed stay valid.
        if not self.config.smooth_px:
            settings = {k: v for k, v in settings.items() if not k.startswith("smooth")}
        if not self.config.cross_check_views:
            return {k: v for k, v in settings.items() if not k.startswith("cross_check")}
        # The check's rule enters the cache key: targets of an earlier rule (a 3D mean) are not reused.
        return {**settings, "cross_check_rule": CROSS_CHECK_RULE}

    def teach(self, scene: Scene) -> Iterator[FrameTargets]:
        if not scene.has_depth:
            raise SlocalError(
                "the depth teacher needs depth images for every mapping frame; use --teacher sfm", scene.root
            )
        c = self.config
        frames = map(self._frame_targets, progress_bar(scene.mapping, "depth teacher"))
        if not c.cross_check_views:
            yield from frames
            return
        checked, self.stats = cross_check(
            scene,
            list(frames),
            c.cross_check_views,
            c.cross_check_partners,
            c.cross_check_cm / 100.0,
            drop_disputed=c.cross_check_drop,
            average=c.cross_check_average,
        )
        yield from checked

    def _frame_targets(self, frame: Frame) -> FrameTargets:
        c = self.config
        camera = target_camera(frame, c.max_side)
        depth = frame.read_depth()
        if c.smooth_px:
            depth = smooth_depth(depth, c.smooth_px, c.smooth_range)
        coords, valid = depth_coords(frame, camera, depth)
        z = frame.depth_at(camera, depth)
        valid &= (z >= c.min_depth) & (z <= c.max_depth)
        coords[~valid] = np.nan
        return FrameTargets(frame.name, camera, coords, valid.astype(np.float32), valid)


def smooth_depth(depth_HW: np.ndarray, window: int, rel_range: float) -> np.ndarray:
    """Each valid pixel's depth replaced by the mean of its window's valid pixels on the same surface.

    Why: a structured-light sensor quantises depth in disparity (on a Kinect, steps of about 2.6 cm at
    3 m) and its noise grows with depth; averaging within one frame keeps each target on its own
    frame's surface, pixel and pose, unlike averaging across views (``teach.cross_check``). A neighbour
    takes part when it is valid and within ``rel_range`` of the pixel's own depth, so another surface
    behind or in front of it, and the zeros of invalid pixels, are left out and depth edges stay sharp.
    The mean of a plane over a window centred on a pixel is the plane's depth there; where the window is
    cut by an edge the mean leans by up to the slope times half the window. Own code: OpenCV's
    bilateral filter weighs by an absolute depth range and averages invalid zeros in.

    Args:
        depth_HW: depth in metres, 0 where invalid.
        window: odd side of the square window in pixels.
        rel_range: neighbours within ``rel_range * depth`` of the pixel's depth are averaged.

    Returns:
        float32 (H, W) depth, 0 where the input is 0.
    """
    r = window // 2
    H, W = depth_HW.shape
    d = depth_HW.astype(np.float32)
    padded = np.pad(d, r)
    total = np.zeros_like(d)
    count = np.zeros_like(d)
    tolerance = np.float32(rel_range) * d
    for dy in range(window):
        for dx in range(window):
            nb = padded[dy : dy + H, dx : dx + W]
            same = np.abs(nb - d) < tolerance  # false for invalid pixels and for the invalid centre (0 < 0)
            total += np.where(same, nb, 0.0)
            count += same
    return np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)
