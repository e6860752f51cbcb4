"""``slocal teach``: compute (or reuse) teacher targets for a scene's mapping frames."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slocal.data import load_scene
from slocal.distill.rig_source import resolve_depth_registration
from slocal.teach import default_teacher, ensure_targets, make_teacher, teacher_options
from slocal.teach.rig import registered_scene
from slocal_cli.common import (
    DEFAULT_DATA,
    DEFAULT_RUNS,
    DataRoot,
    JsonOut,
    RunsRoot,
    Verbose,
    handle_errors,
    print_json,
)
from slocal_cli.options import DepthRegistration, MetresPerUnit, PoseFiles, SceneId, TeacherOpt, TeacherSettings

FormatOpt = Annotated[str | None, typer.Option("--format", help="Force the scene layout: 12scenes, 7scenes or colmap.")]


@handle_errors
def teach(
    scene: SceneId,
    teacher: TeacherOpt = None,
    teacher_option: TeacherSettings = None,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="DUSt3R checkpoint (.pth) for --teacher dust3r.")
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="torch device for network teachers (cpu, cuda).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Recompute even if cached targets match.")] = False,
    fmt: FormatOpt = None,
    metres_per_unit: MetresPerUnit = None,
    poses: PoseFiles = None,
    depth_registration: DepthRegistration = "auto",
    json_out: JsonOut = False,
    data_root: DataRoot = DEFAULT_DATA,
    runs: RunsRoot = DEFAULT_RUNS,
    verbose: Verbose = False,
) -> None:
    """Produce world-frame scene-coordinate targets for the mapping frames (cached under RUNS/SCENE/targets)."""
    sc = load_scene(data_root, scene, fmt, runs_root=runs, metres_per_unit=metres_per_unit, pose_files=poses or ())
    sc = registered_scene(sc, runs, resolve_depth_registration(depth_registration))
    name = teacher or default_teacher(sc)
    targets = ensure_targets(
        sc,
        make_teacher(name, **teacher_options(name, checkpoint, device, teacher_option or ())),
        runs,
        overwrite=overwrite,
    )
    result = {"scene": sc.id, "teacher": name, **targets.stats, "directory": str(targets.directory)}
    if "depth_registration" in sc.extra:
        result["depth_registration"] = sc.extra["depth_registration"]
    if json_out:
        print_json(result)
    else:
        typer.echo(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()))
