"""The layout of the runs folder: where each pipeline step writes and finds its files.

Every step imports these helpers (it is below teach, distill, localize and bench),
so a path is spelled once::

    <runs>/<scene>/targets/<teacher>-<key>/      cached teacher targets (teach)
    <runs>/<scene>/students/<student>/model.pt   a distilled student (distill, localize, bench)
    <runs>/<scene>/students/<student>/model.pt.ckpt   its training checkpoint
    <runs>/<scene>/sift/<key>/                   the SIFT baseline's map (bench)
"""

from __future__ import annotations

from pathlib import Path


def scene_dir(runs_root: str | Path, scene_id: str) -> Path:
    """``<runs>/<scene>``: everything slocal writes for one scene."""
    return Path(runs_root) / scene_id


def targets_root(runs_root: str | Path, scene_id: str) -> Path:
    """``<runs>/<scene>/targets``: one folder per teacher and settings."""
    return scene_dir(runs_root, scene_id) / "targets"


def target_cache_dir(runs_root: str | Path, scene_id: str, teacher: str, key: str) -> Path:
    """``<runs>/<scene>/targets/<teacher>-<key>`` (``key`` hashes the teacher settings and the scene)."""
    return targets_root(runs_root, scene_id) / f"{teacher}-{key}"


def default_student_path(runs_root: str | Path, scene_id: str, student: str) -> Path:
    """``<runs>/<scene>/students/<student>/model.pt`` (where distill writes and the localizer looks)."""
    return scene_dir(runs_root, scene_id) / "students" / student / "model.pt"


def checkpoint_path_for(model_path: str | Path) -> Path:
    """The training checkpoint next to a model file: ``<model>.ckpt``."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".ckpt")


def sift_map_dir(runs_root: str | Path, scene_id: str, key: str) -> Path:
    """``<runs>/<scene>/sift/<key>`` (``key`` hashes the map settings and the scene)."""
    return scene_dir(runs_root, scene_id) / "sift" / key
