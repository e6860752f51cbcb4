"""The SfM teacher: kept observations rasterised into sparse per-frame targets."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np

from slocal.data.scene import Frame, Scene
from slocal.geometry.pose import transform_points
from slocal.progress import progress_bar
from slocal.teach.sfm.config import SFM_MAP_VERSION, SfmTeacherConfig
from slocal.teach.sfm.map import build_sfm_map
from slocal.teach.sfm.tracks import Observations, kept_observations
from slocal.teach.targets import FrameTargets, target_camera

log = logging.getLogger(__name__)


def sparse_targets(
    frame: Frame, obs: Observations | None, max_side: int, snap_to_cell_center: bool = True
) -> FrameTargets:
    """Write observations into the frame's target grid (one per cell, the most confident).

    Args:
        frame: the mapping frame.
        obs: its kept observations (None = no target at all).
        max_side: longer side of the target grid.
        snap_to_cell_center: replace each point by the point at the same depth on
            the ray of its cell centre.
    """
    camera = target_camera(frame, max_side)
    H, W = camera.height, camera.width
    coords = np.full((H, W, 3), np.nan, np.float32)
    conf = np.zeros((H, W), np.float32)
    valid = np.zeros((H, W), bool)
    if obs is None or len(obs) == 0:
        return FrameTargets(frame.name, camera, coords, conf, valid)
    sx, sy = W / frame.camera.width, H / frame.camera.height
    cols = np.floor(obs.uv_N2[:, 0] * sx).astype(np.int64)
    rows = np.floor(obs.uv_N2[:, 1] * sy).astype(np.int64)
    inside = (cols >= 0) & (cols < W) & (rows >= 0) & (rows < H)
    cell = rows * W + cols
    # Most confident first within each cell; np.unique keeps the first occurrence.
    order = np.lexsort((-obs.conf, cell))
    order = order[inside[order]]
    _, first = np.unique(cell[order], return_index=True)
    pick = order[first]
    r, c = rows[pick], cols[pick]
    xyz = obs.xyz_N3[pick]
    if snap_to_cell_center:
        z = transform_points(frame.cam_from_world, xyz)[:, 2]
        centres = np.stack([c + 0.5, r + 0.5], 1)
        xyz = transform_points(frame.world_from_cam, camera.backproject(centres, z))
    coords[r, c] = xyz.astype(np.float32)
    conf[r, c] = obs.conf[pick]
    valid[r, c] = True
    return FrameTargets(frame.name, camera, coords, conf, valid)


@contextmanager
def _work_folder(workdir: Path | None) -> Iterator[Path]:
    if workdir is not None:
        yield Path(workdir)
        return
    with tempfile.TemporaryDirectory(prefix="slocal-sfm-") as tmp:
        yield Path(tmp)


class SfmTeacher:
    """Sparse scene coordinates from SIFT points triangulated with the known poses.

    Args:
        config: the settings.
        workdir: where the COLMAP database and model go; a temporary folder
            (deleted afterwards) when None.
    """

    name = "sfm"

    def __init__(self, config: SfmTeacherConfig = SfmTeacherConfig(), workdir: str | Path | None = None):
        self.config = config
        self.workdir = Path(workdir) if workdir is not None else None

    def settings(self) -> dict:
        d = asdict(self.config)
        d.pop("num_threads")
        return {**d, "map_version": SFM_MAP_VERSION}

    def teach(self, scene: Scene) -> Iterator[FrameTargets]:
        c = self.config
        with _work_folder(self.workdir) as work:
            sfm_map = build_sfm_map(scene, c, work)
            observations = kept_observations(sfm_map, c)
            num_obs = sum(len(o) for o in observations.values())
            without = sum(1 for i in sfm_map.image_ids.values() if i not in observations)
            log.info(
                "sfm %s: %d observations of kept points; %d of %d frames have none",
                scene.id,
                num_obs,
                without,
                len(sfm_map.frames),
            )
            for frame in progress_bar(sfm_map.frames, "sfm: targets"):
                obs = observations.get(sfm_map.image_ids[frame.name])
                yield sparse_targets(frame, obs, c.max_side, c.snap_to_cell_center)
