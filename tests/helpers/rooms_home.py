"""A tiny home of two rooms for the room-recognition tests: the two synth layouts, tiny ace students.

Both rooms are rendered small (128x96) and each gets the default ``ace`` student with a
narrower head, distilled for 800 iterations from a small feature buffer: enough for its room's
query images to give about twice the other room's inliers, and its mapping images ten times,
in about 20 s on 2 idle cores (one torch thread: on a machine shared with other jobs, two
threads spin against each other and training the heads took six times longer here).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
import yaml

from helpers.distill_fixtures import TINY_SCENE
from slocal.data import load_scene
from slocal.data.synth import render_scene
from slocal.distill.trainer import distill_student

HOME = "home"
ROOMS = {"home/kitchen": 1, "home/living": 2}
# The distillation tests' tiny scene, with more mapping frames: each room must be recognised.
ROOM_SCENE = replace(TINY_SCENE, mapping_frames=32)
ITERATIONS = 800
TINY_ACE_OVERRIDES = {
    "student": {"max_side": 128, "head_width": 128, "head_layers": 3},
    "train": {
        "buffer_passes": 4,
        "view_passes": 2,
        "batch_cells": 1024,
        "val_every_s": 1.0e9,
        "checkpoint_every_s": 1.0e9,
    },
}


def make_tiny_home(root: Path) -> tuple[Path, Path]:
    """Render ``home/kitchen`` (room 1) and ``home/living`` (room 2) and distill their ``ace`` students.

    Returns:
        The data root and the runs folder.
    """
    data, runs = root / "data", root / "runs"
    config = root / "tiny-ace.yaml"
    config.write_text(yaml.safe_dump(TINY_ACE_OVERRIDES))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for room, layout in ROOMS.items():
            render_scene(data / room, replace(ROOM_SCENE, room=layout, room_size=None, num_boxes=None))
            scene = load_scene(data, room)
            distill_student(scene, runs, "ace", config_file=config, iterations=ITERATIONS, device="cpu")
    finally:
        torch.set_num_threads(threads)
    return data, runs
