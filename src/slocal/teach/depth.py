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
    """

    max_side: Annotated[int, Field(ge=8)] = 320
    min_depth: Annotated[float, Field(ge=0)] = 0.1
    max_depth: Annotated[float, Field(gt=0)] = 10.0
    cross_check_views: Annotated[int, Field(ge=0)] = 0
    cross_check_partners: Annotated[int, Field(ge=1)] = 4
    cross_check_cm: Annotated[float, Field(gt=0)] = 2.0
    cross_check_drop: bool = True
    cross_check_average: bool = True

    def __post_init__(self) -> None:
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
        if not self.config.cross_check_views:
            # Without the check its settings change nothing: targets cached before it existed stay valid.
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
        coords, valid = depth_coords(frame, camera, depth)
        z = frame.depth_at(camera, depth)
        valid &= (z >= c.min_depth) & (z <= c.max_depth)
        coords[~valid] = np.nan
        return FrameTargets(frame.name, camera, coords, valid.astype(np.float32), valid)
