"""Benchmarking a home of rooms: is each query placed in its room, and how well is it posed there.

Every query of every room is localized by a ``RoomLocalizer`` over all the rooms' students.
The row reports room recognition (% of all queries placed in the room they were taken in) and
the pose accuracy and median errors of the queries placed right (a pose in another room's frame
has no error to measure); timings are over all queries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from slocal.bench.metrics import (
    QueryResult,
    accuracy_summary,
    query_result,
    room_summary,
    systematic_error,
    timing_summary,
)
from slocal.data.scene import Frame, Scene
from slocal.errors import SlocalError
from slocal.geometry.pnp import PnpConfig
from slocal.localize.rooms import CANDIDATES, Room, RoomLocalizer, load_rooms
from slocal.progress import progress_bar


def home_scale(scenes: Mapping[str, Scene]) -> float | None:
    """The rooms' common ``metres_per_unit``; rooms in different units are refused."""
    scales = {scene.metres_per_unit for scene in scenes.values()}
    if len(scales) != 1:
        listed = ", ".join(f"{r}: {s.metres_per_unit}" for r, s in scenes.items())
        raise SlocalError(f"the rooms of a home must share their units, got metres per unit {listed}")
    return scales.pop()


def localize_home(
    localizer: RoomLocalizer, queries: Mapping[str, Sequence[Frame]], label: str = "home"
) -> list[QueryResult]:
    """Localize each room's queries among all the rooms; results named ``room/frame``."""
    results = []
    for room, frames in queries.items():
        for frame in progress_bar(frames, f"{label} {room}"):
            loc = localizer.localize_image(frame.image_path, frame.camera)
            right = loc.room == room
            result = query_result(
                f"{room}/{frame.name}",
                loc.cam_from_world if right else None,
                frame.cam_from_world,
                loc.num_inliers,
                loc.ms,
            )
            results.append(_with_room(result, room, loc.room, loc.room_ratio))
    return results


def _with_room(result: QueryResult, room: str, room_est: str | None, ratio: float | None) -> QueryResult:
    return QueryResult(**{**result.__dict__, "room": room, "room_est": room_est, "room_ratio": ratio})


def home_student_row(
    home: str,
    scenes: Mapping[str, Scene],
    models: Mapping[str, Path],
    queries: Mapping[str, Sequence[Frame]],
    device: str,
    ransac_points: int | None = None,
    threshold_px: float | None = None,
) -> tuple[dict, list[QueryResult], PnpConfig]:
    """Localize every room's queries with the rooms' students; the row's numbers, the per-query results and
    the RANSAC settings of the final poses (the first room's: the rooms of a home share a preset).

    Args:
        home: the home's scene id (a folder of rooms).
        scenes: its rooms' scenes, by scene id.
        models: each room's student file.
        queries: each room's query frames.
        device: torch device.
        ransac_points, threshold_px: overrides of the students' RANSAC (``student_pnp``; None: each
            room's student's own) for the final pose; the room check uses fewer hypotheses.
    """
    rooms = [Room(room, Path(models[room])) for room in scenes]
    fingerprints = {room: scene.fingerprint for room, scene in scenes.items()}
    localizer = load_rooms(
        rooms,
        device=device,
        expect_fingerprints=fingerprints,
        ransac_points=ransac_points,
        ransac_threshold_px=threshold_px,
    )
    pnp = localizer.pnp_for(rooms[0].scene_id)
    if len(rooms) > CANDIDATES:
        localizer.describe_from_scenes(scenes)
    results = localize_home(localizer, queries, home)
    right = [r for r in results if r.room_est == r.room]
    scale = home_scale(scenes)
    students = list(localizer.models.values())
    row = {
        **accuracy_summary(right, scale),
        **systematic_error(right, scale),
        **timing_summary([r.ms for r in results]),
        **room_summary(results),
        "n_queries": len(results),
        "n_rooms": len(rooms),
        "rooms": ", ".join(scenes),
        "shared_encoder": bool(localizer.encoders),
        "map_mb": sum(getattr(m, "file_mb", 0.0) for m in students),
        "num_params": sum(getattr(m, "num_params", 0) or 0 for m in students) or None,
        "student": getattr(students[0], "name", None),
        "model": "; ".join(str(models[r]) for r in scenes),
    }
    return row, results, pnp
