"""Find scenes under a data root, detect their layout and load them."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from slocal.data.colmap import is_colmap, load_colmap_scene
from slocal.data.pseudo_gt import apply_pose_files
from slocal.data.scene import FORMATS, Scene
from slocal.data.seven_scenes import is_seven_scenes, load_seven_scenes
from slocal.data.twelve_scenes import is_twelve_scenes, load_twelve_scenes
from slocal.errors import SlocalError

log = logging.getLogger(__name__)

_DETECTORS = (("12scenes", is_twelve_scenes), ("7scenes", is_seven_scenes), ("colmap", is_colmap))
_LOADERS = {"12scenes": load_twelve_scenes, "7scenes": load_seven_scenes, "colmap": load_colmap_scene}


def default_data_root() -> Path:
    """``$SLOCAL_DATA`` if set, else ``./data``."""
    return Path(os.environ.get("SLOCAL_DATA", "data"))


def default_runs_root() -> Path:
    """``$SLOCAL_RUNS`` if set, else ``./runs``."""
    return Path(os.environ.get("SLOCAL_RUNS", "runs"))


def detect_format(folder: Path) -> str | None:
    """The layout of ``folder`` (one of ``FORMATS``), or None if it is no scene."""
    for name, is_format in _DETECTORS:
        if is_format(folder):
            return name
    return None


def undistort_cache_dir(runs_root: str | Path, scene_id: str) -> Path:
    """Where a scene's undistorted images are cached: ``<runs>/<scene>/undistorted``."""
    return Path(runs_root) / scene_id / "undistorted"


def load_scene(
    data_root: str | Path,
    scene_id: str,
    fmt: str | None = None,
    runs_root: str | Path | None = None,
    metres_per_unit: float | None = None,
    pose_files: Sequence[str | Path] = (),
) -> Scene:
    """Load the scene ``data_root / scene_id``.

    Args:
        data_root: folder holding the scenes.
        scene_id: path of the scene relative to ``data_root`` (``apt1/kitchen``).
        fmt: force a layout instead of detecting it.
        runs_root: runs folder; COLMAP scenes with distorted cameras cache their
            undistorted images under ``undistort_cache_dir(runs_root, scene_id)``.
        metres_per_unit: override the scene's scale (e.g. ``--metres-per-unit``);
            None keeps what the scene says (1 for RGB-D datasets, ``scale.txt`` or unknown for COLMAP).
        pose_files: pseudo ground-truth files (``slocal.data.pseudo_gt``) replacing the
            poses and colour focal lengths (e.g. ``--poses``).
    """
    root = Path(data_root) / scene_id
    if not root.is_dir():
        raise SlocalError(f"scene {scene_id!r} not found under data root {data_root}", root)
    if fmt is None:
        fmt = detect_format(root)
        rooms = find_rooms(data_root, scene_id) if fmt is None else []
        if rooms:
            raise SlocalError(
                f"{scene_id!r} is a folder of {len(rooms)} scenes ({', '.join(rooms)}), not one scene: name a room, "
                "or give the folder to `slocal localize` / `slocal bench`, which recognise the room",
                root,
            )
        if fmt is None:
            raise SlocalError(
                "not a scene folder: expected 12Scenes (info.txt + data/), 7-Scenes (TrainSplit.txt + seq-XX/) "
                "or COLMAP (a sparse model + images/)",
                root,
            )
    elif fmt not in FORMATS:
        raise SlocalError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "colmap":
        scene = load_colmap_scene(
            root, scene_id, undistort_cache_dir(runs_root, scene_id) if runs_root is not None else None
        )
    else:
        scene = _LOADERS[fmt](root, scene_id)
    if pose_files:
        scene = apply_pose_files(scene, pose_files)
    return scene.with_scale(metres_per_unit)


def find_scenes(data_root: str | Path, max_depth: int = 3) -> list[tuple[str, str]]:
    """(scene_id, format) for every scene folder under ``data_root``, sorted."""
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise SlocalError("data root not found", data_root)
    found = []

    def walk(folder: Path, depth: int) -> None:
        fmt = detect_format(folder)
        if fmt is not None:
            found.append((folder.relative_to(data_root).as_posix(), fmt))
            return
        if depth >= max_depth:
            return
        for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            walk(child, depth + 1)

    for child in sorted(p for p in data_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        walk(child, 1)
    return found


def find_rooms(data_root: str | Path, scene_id: str, max_depth: int = 2) -> list[str]:
    """The scene ids of the rooms in a folder of scenes, sorted: ``apt1`` -> ``["apt1/kitchen", "apt1/living"]``.

    A home is a folder whose sub-folders are scenes (12Scenes: ``apt1/kitchen``, ``apt1/living``...);
    each room keeps its own frame, its own targets and its own student.

    Returns:
        The rooms, or ``[]`` when ``data_root / scene_id`` is itself a scene or holds none.

    Raises:
        SlocalError: the folder does not exist.
    """
    folder = Path(data_root) / scene_id
    if not folder.is_dir():
        raise SlocalError(f"scene {scene_id!r} not found under data root {data_root}", folder)
    if detect_format(folder) is not None:
        return []
    return [f"{scene_id.rstrip('/')}/{room}" for room, _ in find_scenes(folder, max_depth)]


def list_scenes(data_root: str | Path) -> list[dict]:
    """Summaries (``Scene.summary``) of every scene under ``data_root``.

    A scene that fails to load is listed with its error instead of its counts,
    so one broken folder does not hide the others.
    """
    rows = []
    for scene_id, fmt in find_scenes(data_root):
        try:
            rows.append(load_scene(data_root, scene_id, fmt).summary())
        except SlocalError as exc:
            log.warning("%s", exc)
            rows.append({"scene": scene_id, "format": fmt, "error": str(exc)})
    return rows
