"""Teacher targets and their on-disk cache.

A teacher turns each mapping frame into a *target map*: world-frame scene
coordinates (metres), a confidence and a validity mask on the pixel grid of a
stated camera (the frame's colour camera rescaled; see ``FrameTargets.camera``).
Target pixel ``(i, j)`` is the pixel centre ``(j + 0.5, i + 0.5)`` of that camera.

Cache layout, one folder per teacher and settings::

    <runs>/<scene>/targets/<teacher>-<key>/
        frames/<index>.npz    coords_HW3 (float32), conf_HW (float32), valid_HW (bool)
        index.json            settings, scene fingerprint, frame list, cameras, stats

The folder is built as a hidden ``.<teacher>-<key>.partial-*`` sibling and
renamed into place when complete (``slocal.io.atomic_dir``), so a run killed
mid-way leaves no folder that looks valid; the next run removes the leftover and
rebuilds. ``<teacher>-<key>.lock`` serialises processes building the same cache:
a second one waits (``SLOCAL_LOCK_TIMEOUT``), then reuses the finished cache.
``key`` hashes the teacher settings and the scene fingerprint, so changed
settings or a changed scene give a new folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from slocal.data.scene import Frame, Scene
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera, pixel_centers
from slocal.geometry.pose import transform_points
from slocal.io import atomic_dir, atomic_path, check_image, process_lock, read_json, write_json
from slocal.runs import target_cache_dir
from slocal.teach.consistency import multiview_consistency
from slocal.teach.frame_targets import FrameTargets

log = logging.getLogger(__name__)

TARGETS_VERSION = 1


class Teacher(Protocol):
    """What ``ensure_targets`` needs from a teacher.

    A teacher may also keep a ``stats`` dict of its own (the fused teacher's time split, the depth
    teacher's cross-check), filled by ``teach``; ``ensure_targets`` stores it as ``stats["teacher_stats"]``.
    """

    name: str

    def settings(self) -> dict:
        """Every setting that changes the targets (JSON-serialisable)."""

    def teach(self, scene: Scene) -> Iterable[FrameTargets]:
        """Targets for the scene's mapping frames (a frame may be left out)."""


@dataclass(frozen=True, eq=False)
class TargetSet:
    """A complete, cached set of targets for one scene and teacher."""

    teacher: str
    settings: dict
    directory: Path
    frames: tuple[FrameTargets, ...]
    stats: dict

    def by_name(self) -> dict[str, FrameTargets]:
        return {t.name: t for t in self.frames}


def target_camera(frame: Frame, max_side: int) -> Camera:
    """The target grid camera: the colour camera with its longer side at most ``max_side``."""
    if max(frame.camera.width, frame.camera.height) <= max_side:
        return frame.camera
    return frame.camera.scaled_to_max_side(max_side)


def depth_coords(frame: Frame, camera: Camera, depth_HW: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates from the frame's registered depth on ``camera``'s pixel grid.

    Returns:
        coords_HW3 float32 (NaN where depth is missing) and valid_HW bool.
    """
    depth = frame.depth_at(camera, depth_HW)
    uv = pixel_centers(camera.width, camera.height).reshape(-1, 2)
    pts_cam = camera.backproject(uv, depth.reshape(-1))
    coords = transform_points(frame.world_from_cam, pts_cam).astype(np.float32)
    valid = depth.reshape(-1) > 0
    coords[~valid] = np.nan
    return coords.reshape(camera.height, camera.width, 3), valid.reshape(camera.height, camera.width)


def cache_key(teacher: Teacher, scene: Scene) -> str:
    blob = json.dumps(
        {
            "teacher": teacher.name,
            "settings": teacher.settings(),
            "scene": scene.fingerprint,
            "version": TARGETS_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def targets_dir(runs_root: str | Path, scene: Scene, teacher: Teacher) -> Path:
    return target_cache_dir(runs_root, scene.id, teacher.name, cache_key(teacher, scene))


def _error_vs_depth(scene: Scene, targets: Iterable[FrameTargets]) -> Iterator[np.ndarray]:
    frames = {f.name: f for f in scene.mapping}
    for t in targets:
        ref, ref_valid = depth_coords(frames[t.name], t.camera)
        both = t.valid_HW & ref_valid
        yield np.linalg.norm(t.coords_HW3[both] - ref[both], axis=1)


def target_stats(scene: Scene, frames: tuple[FrameTargets, ...]) -> dict:
    """Counts, multi-view consistency, and the error against depth-derived coordinates when the scene has depth."""
    stats: dict = {
        "frames": len(frames),
        "skipped_frames": len(scene.mapping) - len(frames),
        "points": int(sum(t.num_valid for t in frames)),
        "consistency": multiview_consistency(scene, frames),
    }
    if scene.has_depth and frames:
        errors = np.concatenate(list(_error_vs_depth(scene, frames)))
        stats["compared_points"] = int(errors.size)
        if errors.size:
            stats["median_error_cm"] = float(np.median(errors) * 100)
            stats["within_5cm"] = float(np.mean(errors < 0.05) * 100)
    return stats


def cached_stats(scene: Scene, teacher: Teacher, runs_root: str | Path) -> dict | None:
    """The stats of the cached targets of ``teacher`` for ``scene`` (None when not cached), without loading them."""
    index_path = targets_dir(runs_root, scene, teacher) / "index.json"
    if not index_path.is_file():
        return None
    index = read_json(index_path)
    return index.get("stats") if index.get("scene_fingerprint") == scene.fingerprint else None


def log_consistency(teacher: str, stats: dict) -> None:
    c = stats.get("consistency", {})
    if "median" in c:
        log.info(
            "%s targets: multi-view consistency %.2f %s median, %.0f / %.0f / %.0f %% within 1 / 2 / 5 %s "
            "(%d points, %d frame pairs); %.1f %% of pixels labelled",
            teacher,
            c["median"],
            c["unit"],
            c["within_1"],
            c["within_2"],
            c["within_5"],
            c["unit"],
            c["points_compared"],
            c["pairs"],
            c["labelled_pct"],
        )


def _save_frame(path: Path, t: FrameTargets) -> None:
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, coords_HW3=t.coords_HW3, conf_HW=t.conf_HW, valid_HW=t.valid_HW)


def _load_frame(path: Path, name: str, camera: Camera) -> FrameTargets:
    if not path.is_file():
        raise SlocalError("target file missing from the cache (rebuild with --overwrite)", path)
    with np.load(path) as z:
        return FrameTargets(name, camera, z["coords_HW3"], z["conf_HW"], z["valid_HW"])


def load_targets(directory: str | Path) -> TargetSet:
    """Load a cached target set (written by ``ensure_targets``)."""
    directory = Path(directory)
    index = read_json(directory / "index.json")
    frames = tuple(
        _load_frame(directory / "frames" / f"{i:06d}.npz", entry["name"], Camera.from_dict(entry["camera"]))
        for i, entry in enumerate(index["frames"])
    )
    return TargetSet(index["teacher"], index["settings"], directory, frames, index["stats"])


def check_mapping_images(scene: Scene) -> None:
    """Decode every mapping colour image fully, so a truncated file fails here and not in distill.

    Raises:
        SlocalError: naming the first image that is missing, truncated or corrupt.
    """
    for frame in scene.mapping:
        check_image(frame.image_path)


def ensure_targets(scene: Scene, teacher: Teacher, runs_root: str | Path, overwrite: bool = False) -> TargetSet:
    """Load the cached targets of ``teacher`` for ``scene``, computing them if needed.

    Another process building the same cache is waited for (see ``slocal.io.process_lock``).

    Raises:
        SlocalError: a mapping image does not decode, or the teacher produced no
            valid target for any frame.
    """
    directory = targets_dir(runs_root, scene, teacher)
    with process_lock(directory.with_name(directory.name + ".lock"), f"the {teacher.name} targets of {scene.id}"):
        return _ensure_targets_locked(scene, teacher, directory, overwrite)


def _ensure_targets_locked(scene: Scene, teacher: Teacher, directory: Path, overwrite: bool) -> TargetSet:
    index_path = directory / "index.json"
    if index_path.is_file() and not overwrite:
        index = read_json(index_path)
        if index.get("scene_fingerprint") == scene.fingerprint and index.get("settings") == teacher.settings():
            log.info("using cached %s targets in %s", teacher.name, directory)
            targets = load_targets(directory)
            if "consistency" not in index["stats"]:
                # A cache written before consistency was measured: measure it once and keep it.
                index["stats"]["consistency"] = multiview_consistency(scene, targets.frames)
                write_json(index_path, index)
                targets = load_targets(directory)
            log_consistency(teacher.name, targets.stats)
            return targets
        log.info("cached targets in %s do not match; rebuilding", directory)

    check_mapping_images(scene)
    with atomic_dir(directory) as building:
        frames: list[FrameTargets] = []
        skipped: list[str] = []
        for t in teacher.teach(scene):
            if t.num_valid == 0:
                skipped.append(t.name)
                continue
            _save_frame(building / "frames" / f"{len(frames):06d}.npz", t)
            frames.append(t)
        if skipped:
            log.warning(
                "%s teacher: %d frame(s) without any valid target skipped (e.g. %s)",
                teacher.name,
                len(skipped),
                skipped[0],
            )
        if not frames:
            raise SlocalError(f"the {teacher.name} teacher produced no valid targets for any mapping frame", scene.root)
        frames_t = tuple(frames)
        stats = target_stats(scene, frames_t)
        if own := getattr(teacher, "stats", None):
            stats["teacher_stats"] = own
        write_json(
            building / "index.json",
            {
                "teacher": teacher.name,
                "settings": teacher.settings(),
                "scene": scene.id,
                "scene_fingerprint": scene.fingerprint,
                "version": TARGETS_VERSION,
                "frames": [{"name": t.name, "camera": t.camera.to_dict()} for t in frames_t],
                "stats": stats,
            },
        )
    log.info("%s targets: %d frames, %d points -> %s", teacher.name, stats["frames"], stats["points"], directory)
    log_consistency(teacher.name, stats)
    return TargetSet(teacher.name, teacher.settings(), directory, frames_t, stats)
