"""Alternative ground truth: the SfM pseudo ground truth of 7-Scenes / 12Scenes (as ACE and DSAC* evaluate).

Published as one text file per scene and split, one line per frame::

    seq-01/frame-000000.color.png qw qx qy qz tx ty tz f

``q, t``: ``cam_from_world`` (COLMAP convention); ``f``: the colour focal
length in pixels of the stored image. ``apply_pose_files`` replaces the poses
and the colour focal length of the frames named in the files; frames named in
none are dropped (and counted in ``Scene.skipped``), so one scene never mixes
two ground truths. Depth keeps its own camera.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from slocal.data.scene import Scene
from slocal.errors import SlocalError
from slocal.geometry.pose import invert, qvec_to_rotmat, to_homogeneous

log = logging.getLogger(__name__)

_IMAGE_SUFFIX = re.compile(r"(\.color)?\.(png|jpg|jpeg)$", re.IGNORECASE)


def frame_key(name: str) -> str:
    """``seq-01/frame-000000.color.png`` -> ``seq-01/frame-000000`` (the loaders' frame names)."""
    return _IMAGE_SUFFIX.sub("", name.strip().lstrip("./"))


def read_pose_file(path: str | Path) -> dict[str, tuple[np.ndarray, float, int]]:
    """Read a pseudo ground-truth file.

    Returns:
        ``frame key -> (cam_from_world (4, 4), focal, line number)``.

    Raises:
        SlocalError: naming the file and line of a malformed entry or a repeated frame.
    """
    path = Path(path)
    if not path.is_file():
        raise SlocalError("pose file not found", path)
    out: dict[str, tuple[np.ndarray, float, int]] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            if len(parts) != 9:
                raise ValueError
            values = [float(v) for v in parts[1:]]
        except ValueError:
            raise SlocalError(
                f"line {lineno}: expected 'name qw qx qy qz tx ty tz f', got {line.strip()!r}", path
            ) from None
        if not all(math.isfinite(v) for v in values) or values[7] <= 0:
            raise SlocalError(f"line {lineno}: non-finite pose or non-positive focal length: {line.strip()!r}", path)
        try:
            R = qvec_to_rotmat(np.array(values[:4]))
        except SlocalError as exc:
            raise SlocalError(f"line {lineno}: {exc.message}", path) from None
        key = frame_key(parts[0])
        if key in out:
            raise SlocalError(f"line {lineno}: frame {parts[0]} is listed twice (first on line {out[key][2]})", path)
        out[key] = (to_homogeneous(R, np.array(values[4:7])), values[7], lineno)
    return out


def apply_pose_files(scene: Scene, paths: Sequence[str | Path]) -> Scene:
    """The scene with poses and colour focal lengths from pseudo ground-truth files.

    Raises:
        SlocalError: a file names a frame the scene does not have (file and line), or covers no frame.
    """
    entries: dict[str, tuple[np.ndarray, float, int, Path]] = {}
    for p in paths:
        for key, (T, f, lineno) in read_pose_file(p).items():
            entries[key] = (T, f, lineno, Path(p))
    names = {f.name for f in scene.mapping + scene.query}
    for key, (_, _, lineno, p) in entries.items():
        if key not in names:
            raise SlocalError(f"line {lineno}: frame {key!r} is not in scene {scene.id}", p)

    def convert(frames):
        kept = []
        for frame in frames:
            if frame.name not in entries:
                continue
            cam_from_world, f, _, _ = entries[frame.name]
            camera = replace(frame.camera, fx=f, fy=f)
            kept.append(replace(frame, camera=camera, world_from_cam=invert(cam_from_world)))
        return tuple(kept)

    mapping, query = convert(scene.mapping), convert(scene.query)
    dropped = len(scene.mapping) + len(scene.query) - len(mapping) - len(query)
    if not mapping and not query:
        raise SlocalError(f"the pose files cover no frame of scene {scene.id}", Path(paths[0]))
    if dropped:
        log.warning("%s: %d frame(s) not in the pose file(s) dropped", scene.id, dropped)
    # Pseudo ground truth is made from the colour images: its poses are the colour camera's.
    extra = {**scene.extra, "pose_files": [str(p) for p in paths], "poses_of": "colour"}
    return replace(scene, mapping=mapping, query=query, skipped=scene.skipped + dropped, extra=extra)
