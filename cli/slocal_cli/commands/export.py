"""``slocal export``: a distilled student as ONNX or TorchScript."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slocal.distill.config import DEFAULT_STUDENT
from slocal.distill.config_files import default_model_path
from slocal.errors import SlocalError
from slocal.localize.export import EXPORT_FORMATS, export_student
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
from slocal_cli.options import SceneId, StudentName

SUFFIX = {"onnx": ".onnx", "torchscript": ".ts.pt"}


@handle_errors
def export(
    scene: SceneId,
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx | torchscript")] = "onnx",
    student: StudentName = DEFAULT_STUDENT,
    model: Annotated[
        Path | None,
        typer.Option("--model", "-m", help="Student file (.pt) (default: RUNS/SCENE/students/STUDENT/model.pt)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output file (default: beside the model, model.onnx / model.ts.pt)."),
    ] = None,
    json_out: JsonOut = False,
    data_root: DataRoot = DEFAULT_DATA,
    runs: RunsRoot = DEFAULT_RUNS,
    verbose: Verbose = False,
) -> None:
    """Export a student; the exported model is run once and checked against the torch output."""
    if fmt not in EXPORT_FORMATS:
        raise SlocalError(f"unknown format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    from slocal.distill.model_file import load_student

    model_path = model if model is not None else default_model_path(runs, scene, student)
    if not model_path.is_file():
        raise SlocalError(
            f"no {student} student for scene {scene}; run `slocal distill --scene {scene} --student {student}` first "
            "or pass --model",
            model_path,
        )
    student = load_student(model_path, device="cpu", expect_scene=scene)
    out_path = out if out is not None else model_path.with_name(model_path.stem + SUFFIX[fmt])
    info = export_student(student, out_path, format=fmt)
    if json_out:
        print_json(info)
    else:
        typer.echo(
            f"wrote {info['path']} ({info['format']}, {info['file_mb']:.2f} MB, max |onnx-torch| = "
            f"{info['max_abs_diff']:.2e})"
        )
