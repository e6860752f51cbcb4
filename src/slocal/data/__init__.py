"""Scenes: loaders for 12Scenes, 7-Scenes and COLMAP models, and the procedural demo scene."""

from slocal.data.registry import (
    default_data_root,
    default_runs_root,
    detect_format,
    find_rooms,
    find_scenes,
    list_scenes,
    load_scene,
)
from slocal.data.scene import FORMATS, Frame, Scene

__all__ = [
    "FORMATS",
    "Frame",
    "Scene",
    "default_data_root",
    "default_runs_root",
    "detect_format",
    "find_rooms",
    "find_scenes",
    "list_scenes",
    "load_scene",
]
