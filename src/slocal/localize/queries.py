"""Localizing photos nobody has posed: query cameras, many images at once, hloc-format pose files.

Query intrinsics come from one of three places:

- an hloc-style list file, one line per image: ``name MODEL W H params...``
  (any COLMAP camera model, as in ``cameras.txt``); distorted images are
  undistorted on the fly with pycolmap before the network sees them;
- ``fx, fy, cx, cy`` for every image, in pixels of the image as stored;
- the student's own training camera, rescaled to the image (same aspect ratio only).

``localize_queries`` keeps going when one image cannot be read or does not fit
its camera: that image is reported as failed (with the reason) and the rest are
localized. ``write_hloc_poses`` writes hloc's format
(``name qw qx qy qz tx ty tz``, ``cam_from_world``) plus a JSON sidecar.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slocal.data.colmap import colmap_camera, is_pinhole, pinhole_from_colmap, undistort_rgb
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera
from slocal.geometry.pose import rotmat_to_qvec
from slocal.io import read_image, write_json, write_text
from slocal.localize.localizer import Localizer
from slocal.localize.rooms import RoomLocalization, RoomLocalizer
from slocal.progress import progress_bar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Query:
    """One image to localize.

    Attributes:
        name: its name in the output (hloc: relative to the image folder).
        path: the image file.
        camera: a pycolmap camera (from a list file; undistorted on the fly), a
            ``Camera`` (pinhole, rescaled to the image if the aspect matches), or
            ``(fx, fy, cx, cy)`` of the image as stored.
    """

    name: str
    path: Path
    camera: object


@dataclass(frozen=True, eq=False)
class QueryPose:
    """What happened to one query: a pose, no pose (too few inliers), or an error (``error`` says why).

    In a home of rooms (``RoomLocalizer``) also the room it was placed in, how sure that is
    (``room_ratio``: best / runner-up check inliers) and every checked room's check inliers;
    ``cam_from_world`` is then in that room's frame.
    """

    name: str
    path: Path
    cam_from_world: np.ndarray | None
    num_inliers: int = 0
    num_correspondences: int = 0
    ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    room: str | None = None
    room_ratio: float | None = None
    room_inliers: dict[str, int] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return self.cam_from_world is not None

    def to_dict(self) -> dict:
        """JSON-ready fields; ``room``, ``room_ratio`` and ``room_inliers`` only for a query of a home."""
        T = self.cam_from_world
        rooms = {}
        if self.room is not None:
            rooms = {"room": self.room, "room_ratio": self.room_ratio, "room_inliers": dict(self.room_inliers)}
        return {
            "name": self.name,
            "image": str(self.path),
            "success": self.success,
            "error": self.error,
            "inliers": self.num_inliers,
            "correspondences": self.num_correspondences,
            "ms": self.ms,
            "cam_from_world": None if T is None else T.tolist(),
            "qvec": None if T is None else rotmat_to_qvec(T[:3, :3]).tolist(),
            "tvec": None if T is None else T[:3, 3].tolist(),
            **rooms,
        }


def read_intrinsics_list(path: str | Path) -> dict[str, object]:
    """Read an hloc-style query list with intrinsics: ``name MODEL W H params...`` per line.

    Blank lines and ``#`` comments are skipped.

    Returns:
        pycolmap cameras by image name.

    Raises:
        SlocalError: naming the file and the line of a malformed entry.
    """
    path = Path(path)
    if not path.is_file():
        raise SlocalError("intrinsics list not found", path)
    cameras: dict[str, object] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) < 5:
            raise SlocalError(
                f"line {lineno}: expected 'name MODEL WIDTH HEIGHT params...', got {line.strip()!r}", path
            )
        name, model, *rest = parts
        try:
            width, height = int(rest[0]), int(rest[1])
            params = [float(v) for v in rest[2:]]
        except ValueError:
            raise SlocalError(
                f"line {lineno}: width, height and parameters must be numbers, got {line.strip()!r}", path
            ) from None
        if name in cameras:
            raise SlocalError(f"line {lineno}: image {name!r} is listed twice", path)
        cameras[name] = colmap_camera(model, width, height, params, path, lineno)
    if not cameras:
        raise SlocalError("intrinsics list has no entries", path)
    return cameras


def _image_and_camera(query: Query) -> tuple[np.ndarray, Camera, float]:
    start = time.perf_counter()
    rgb = read_image(query.path)
    cam = query.camera
    if isinstance(cam, Camera):
        camera = cam
    elif isinstance(cam, tuple):
        try:
            camera = Camera(rgb.shape[1], rgb.shape[0], *(float(v) for v in cam))
        except SlocalError as exc:
            raise SlocalError(exc.message, query.path) from None
    elif is_pinhole(cam):
        camera = pinhole_from_colmap(cam, query.path)
    else:
        rgb, camera = undistort_rgb(rgb, cam, query.path)
    return rgb, camera, (time.perf_counter() - start) * 1e3


def localize_queries(localizer: Localizer | RoomLocalizer, queries: Sequence[Query]) -> list[QueryPose]:
    """Localize every query; one that fails with a ``SlocalError`` is reported and the rest go on.

    With a ``RoomLocalizer`` each query's pose comes with its room.

    Only slocal's own errors (bad input: unreadable image, camera that does not
    fit it) are recoverable; anything else is a bug and propagates.
    """
    out = []
    for q in progress_bar(queries, "localize"):
        try:
            rgb, camera, load_ms = _image_and_camera(q)
            loc = localizer.localize(rgb, camera, image=q.path)
        except SlocalError as exc:
            log.debug("%s failed: %s", q.path, exc)
            out.append(QueryPose(q.name, q.path, None, error=str(exc)))
            continue
        ms = {"load": load_ms, **loc.ms, "total": loc.ms["total"] + load_ms}
        pose = loc.cam_from_world if loc.success else None
        room = {}
        if isinstance(loc, RoomLocalization):
            room = {"room": loc.room, "room_ratio": loc.room_ratio, "room_inliers": loc.room_inliers}
        out.append(QueryPose(q.name, q.path, pose, loc.num_inliers, loc.num_correspondences, ms, **room))
    return out


def room_lines(results: Iterable[QueryPose]) -> str:
    """``name room room_ratio`` for each query placed in a room (localized or not), in order."""
    lines = []
    for r in results:
        if r.room is None:
            continue
        ratio = "none" if r.room_ratio is None else f"{r.room_ratio:.3g}"
        lines.append(f"{r.name} {r.room} {ratio}")
    return "\n".join(lines) + ("\n" if lines else "")


def hloc_lines(results: Iterable[QueryPose]) -> str:
    """hloc's pose format: ``name qw qx qy qz tx ty tz`` (cam_from_world) for each localized query."""
    lines = []
    for r in results:
        if not r.success:
            continue
        if any(c.isspace() for c in r.name):
            raise SlocalError(f"image name {r.name!r} contains whitespace; hloc's pose format cannot hold it", r.path)
        q = rotmat_to_qvec(r.cam_from_world[:3, :3])
        t = r.cam_from_world[:3, 3]
        lines.append(r.name + " " + " ".join(repr(float(v)) if math.isfinite(v) else "nan" for v in (*q, *t)))
    return "\n".join(lines) + ("\n" if lines else "")


def write_hloc_poses(path: str | Path, results: Sequence[QueryPose], extra: dict | None = None) -> tuple[Path, Path]:
    """Write ``path`` (hloc format, localized queries only) and ``<path stem>.json`` (every query).

    Both are written atomically; the sidecar holds inliers, timings and the
    reason of each failure. Queries of a home also get ``<path stem>_rooms.txt``
    (``room_lines``: each query's room, since every room has its own frame), named
    in the sidecar as ``rooms_file``.

    Returns:
        The pose file and the sidecar.
    """
    path = Path(path)
    sidecar = path.with_name(path.stem + ".json")
    if sidecar == path:
        raise SlocalError("the pose file must not be a .json file (its sidecar is <name>.json)", path)
    text = hloc_lines(results)
    rooms_text = room_lines(results)
    rooms_file = path.with_name(path.stem + "_rooms.txt") if rooms_text else None
    payload = {
        **(extra or {}),
        "poses": str(path),
        **({"rooms_file": str(rooms_file)} if rooms_file else {}),
        "localized": sum(r.success for r in results),
        "failed": sum(not r.success for r in results),
        "queries": [r.to_dict() for r in results],
    }
    write_json(sidecar, payload)
    if rooms_file is not None:
        write_text(rooms_file, rooms_text)
    write_text(path, text)
    return path, sidecar
