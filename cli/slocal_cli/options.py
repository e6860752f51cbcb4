"""Options shared by several commands (one definition each, so their help reads the same everywhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slocal.distill.config import DEFAULT_STUDENT
from slocal.teach import TEACHERS

MetresPerUnit = Annotated[
    float | None,
    typer.Option(
        "--metres-per-unit",
        help="Metres per scene unit, for COLMAP models in their own units (default: the scene's scale.txt, "
        "else errors are reported in model units).",
        min=1e-12,
    ),
]

PoseFiles = Annotated[
    list[Path] | None,
    typer.Option(
        "--poses",
        help="SfM pseudo ground truth ('seq-XX/frame-XXXXXX.color.png qw qx qy qz tx ty tz f' per line, "
        "cam_from_world) "
        "replacing the dataset's poses and colour focal length; repeat for several files (e.g. train and test).",
    ),
]
DepthRegistration = Annotated[
    str,
    typer.Option(
        "--depth-registration",
        help="The colour-depth rig of RGB-D data: 'auto' estimates it from the mapping frames (once, cached under "
        "RUNS/SCENE/rig) where depth is not registered to colour (7-Scenes) and moves the depth camera's poses to "
        "the colour camera; 'estimate' does so for any RGB-D scene; 'off' uses the scene as loaded; a rig file "
        "(.json, e.g. a cached RUNS/SCENE/rig/depth-*.json) or a model file applies the rig it holds (a model's: "
        "the one it was taught through), estimating nothing.",
    ),
]
TeacherOpt = Annotated[
    str | None,
    typer.Option(
        "--teacher",
        "-t",
        help=" | ".join(TEACHERS) + " (default: depth for RGB-D scenes, colmap for a COLMAP model, else sfm).",
    ),
]

TeacherSettings = Annotated[
    list[str] | None,
    typer.Option(
        "--teacher-option",
        help="KEY=VALUE setting of the teacher's config, repeatable (e.g. smooth_px=15 or cross_check_views=1 for "
        "depth; docs/usage.md lists them). Cached targets are reused only for the same settings.",
    ),
]

SceneId = Annotated[str, typer.Option("--scene", "-s", help="Scene id relative to the data root, e.g. apt1/kitchen.")]
StudentName = Annotated[
    str,
    typer.Option(
        "--student",
        help=f"Student name for the default model path (default {DEFAULT_STUDENT}: ace-lite0; cnn = cnn-small, ...).",
    ),
]
