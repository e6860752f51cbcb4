"""``slocal view``: a self-contained HTML page of a scene, its targets, a student and a bench run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slocal.data import load_scene
from slocal.distill.config import DEFAULT_STUDENT
from slocal.distill.config_files import default_model_path
from slocal.distill.rig_source import resolve_depth_registration
from slocal.errors import SlocalError
from slocal.localize.localizer import load_model
from slocal.teach.rig import registered_scene
from slocal_cli.common import DEFAULT_DATA, DEFAULT_RUNS, DataRoot, RunsRoot, Verbose, handle_errors
from slocal_cli.options import DepthRegistration, MetresPerUnit


@handle_errors
def view(
    scene: Annotated[str, typer.Option("--scene", "-s", help="Scene id relative to the data root.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="HTML file to write (default: RUNS/SCENE/view.html).")
    ] = None,
    student: Annotated[
        str | None, typer.Option("--student", help="Show this student's points (its default model under --runs).")
    ] = None,
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="Show this model's points (.pt or .onnx).")
    ] = None,
    frame: Annotated[
        str | None, typer.Option("--frame", help="Frame the student predicts (default: the first query).")
    ] = None,
    bench: Annotated[
        Path | None, typer.Option("--bench", help="A `slocal bench --out` folder: query ground truth vs estimates.")
    ] = None,
    teacher: Annotated[
        str | None, typer.Option("--teacher", "-t", help="Whose cached targets to show (default: the most recent).")
    ] = None,
    max_points: Annotated[int, typer.Option("--max-points", help="Teacher points shown at most.", min=100)] = 20000,
    metres_per_unit: MetresPerUnit = None,
    depth_registration: DepthRegistration = "auto",
    data_root: DataRoot = DEFAULT_DATA,
    runs: RunsRoot = DEFAULT_RUNS,
    verbose: Verbose = False,
) -> None:
    """Write one HTML page (plotly, offline) with the scene's cameras, targets, student points and query errors."""
    from slocal.bench.view import view_scene

    if student and model:
        raise SlocalError("give --student or --model, not both")
    sc = registered_scene(
        load_scene(data_root, scene, runs_root=runs, metres_per_unit=metres_per_unit),
        runs,
        resolve_depth_registration(depth_registration),
    )
    path = model or (default_model_path(runs, scene, student or DEFAULT_STUDENT) if student else None)
    predictor = load_model(path, expect_scene=sc.id) if path is not None else None
    written = view_scene(
        sc, out or Path(runs) / scene / "view.html", runs, teacher, predictor, frame, bench, max_points
    )
    typer.echo(str(written))
