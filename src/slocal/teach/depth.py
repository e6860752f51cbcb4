"""The depth teacher: registered depth back-projected with the frame's known pose."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import Annotated

import numpy as np
from pydantic import Field

from slocal.config import config_dataclass
from slocal.data.scene import Scene
from slocal.errors import SlocalError
from slocal.progress import progress_bar
from slocal.teach.targets import FrameTargets, depth_coords, target_camera


@config_dataclass
class DepthTeacherConfig:
    """Settings of the depth teacher.

    Attributes:
        max_side: longer side of the target grid in pixels.
        min_depth, max_depth: depth range in metres accepted as valid.
    """

    max_side: Annotated[int, Field(ge=8)] = 320
    min_depth: Annotated[float, Field(ge=0)] = 0.1
    max_depth: Annotated[float, Field(gt=0)] = 10.0


class DepthTeacher:
    """Scene coordinates from RGB-D depth; confidence 1 wherever depth is valid."""

    name = "depth"

    def __init__(self, config: DepthTeacherConfig = DepthTeacherConfig()):
        self.config = config

    def settings(self) -> dict:
        return asdict(self.config)

    def teach(self, scene: Scene) -> Iterator[FrameTargets]:
        if not scene.has_depth:
            raise SlocalError(
                "the depth teacher needs depth images for every mapping frame; use --teacher sfm", scene.root
            )
        c = self.config
        for frame in progress_bar(scene.mapping, "depth teacher"):
            camera = target_camera(frame, c.max_side)
            depth = frame.read_depth()
            coords, valid = depth_coords(frame, camera, depth)
            z = frame.depth_at(camera, depth)
            valid &= (z >= c.min_depth) & (z <= c.max_depth)
            coords[~valid] = np.nan
            yield FrameTargets(frame.name, camera, coords, valid.astype(np.float32), valid)
