"""``slocal bench``: pose accuracy and speed of students and baselines, side by side."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from slocal.bench.report import json_safe
from slocal.bench.runner import DEFAULT_METHODS, BenchConfig, BenchResult, run_bench
from slocal.distill.config_files import preset_names
from slocal.teach import TEACHERS
from slocal_cli.common import (
    DEFAULT_DATA,
    DEFAULT_RUNS,
    DataRoot,
    JsonOut,
    RansacPoints,
    RansacThreshold,
    RunsRoot,
    Verbose,
    handle_errors,
    print_json,
)
from slocal_cli.options import DepthRegistration, MetresPerUnit, PoseFiles, TeacherSettings


def split_list(text: str | None) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


@handle_errors
def bench(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Report folder (results.json/.csv/.md, per_query.json, plots/).")
    ],
    scenes: Annotated[
        str | None,
        typer.Option(
            "--scenes",
            help="Comma-separated scene ids (default: every scene under the data root, plus an average row).",
        ),
    ] = None,
    methods: Annotated[
        str,
        typer.Option(
            "--methods",
            help="Comma-separated: student presets (" + ", ".join(preset_names()) + "), sift, dust3r. dust3r "
            "without --checkpoint runs random weights on a few queries: a timing-only row (~13 s a query on a CPU).",
        ),
    ] = ",".join(DEFAULT_METHODS),
    teacher: Annotated[
        str | None,
        typer.Option(
            "--teacher",
            "-t",
            help="Teacher for students distilled here (" + ", ".join(TEACHERS) + ") (default: the scene's default).",
        ),
    ] = None,
    teacher_option: TeacherSettings = None,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="DUSt3R checkpoint (.pth) for the dust3r baseline.")
    ] = None,
    minutes: Annotated[
        float | None, typer.Option("--minutes", help="Training minutes for each student that has to be distilled.")
    ] = None,
    no_distill: Annotated[
        bool, typer.Option("--no-distill", help="Report missing students as failed instead of distilling them.")
    ] = False,
    max_queries: Annotated[
        int | None,
        typer.Option("--max-queries", help="At most this many queries per scene, evenly spaced (quick runs).", min=1),
    ] = None,
    timing_queries: Annotated[
        int,
        typer.Option(
            "--timing-queries", help="Queries a timing-only baseline (dust3r without --checkpoint) is timed on.", min=1
        ),
    ] = 3,
    device: Annotated[str, typer.Option("--device", help="torch device for students and DUSt3R (cpu, cuda).")] = "cpu",
    threads: Annotated[
        int | None, typer.Option("--threads", help="torch CPU threads (default: torch's choice).", min=1)
    ] = None,
    metres_per_unit: MetresPerUnit = None,
    poses: PoseFiles = None,
    depth_registration: DepthRegistration = "auto",
    ransac_points: RansacPoints = None,
    ransac_threshold: RansacThreshold = None,
    json_out: JsonOut = False,
    data_root: DataRoot = DEFAULT_DATA,
    runs: RunsRoot = DEFAULT_RUNS,
    verbose: Verbose = False,
) -> None:
    """Localize every query of each scene with each method and compare with ground truth.

    Exits 1 when any scene or method failed (after writing the report, failures marked in the table).
    """
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    config = BenchConfig(
        teacher_settings=tuple(teacher_option or ()),
        distill_minutes=minutes,
        distill_missing=not no_distill,
        checkpoint=checkpoint,
        device=device,
        max_queries=max_queries,
        timing_queries=timing_queries,
        metres_per_unit=metres_per_unit,
        pose_files=tuple(poses or ()),
        depth_registration=depth_registration,
        ransac_points=ransac_points,
        ransac_threshold_px=ransac_threshold,
    )
    # Rebuilt from the parsed options so it reads the same however the command was invoked.
    parts = [
        "slocal",
        "bench",
        "--data-root",
        str(data_root),
        "--runs",
        str(runs),
        "--methods",
        methods,
        "--out",
        str(out),
    ]
    for flag, value in (
        ("--scenes", scenes),
        ("--teacher", teacher),
        ("--checkpoint", checkpoint),
        ("--minutes", minutes),
        ("--max-queries", max_queries),
        ("--metres-per-unit", metres_per_unit),
        ("--ransac-points", ransac_points),
        ("--ransac-threshold", ransac_threshold),
    ):
        if value is not None:
            parts += [flag, str(value)]
    for p in poses or ():
        parts += ["--poses", str(p)]
    for item in teacher_option or ():
        parts += ["--teacher-option", item]
    parts += (
        ["--timing-queries", str(timing_queries), "--device", device]
        + (["--threads", str(threads)] if threads else [])
        + (["--no-distill"] if no_distill else [])
    )
    command = shlex.join(parts)
    result = run_bench(data_root, runs, split_list(scenes) or None, split_list(methods), teacher, out, config, command)
    if json_out:
        print_json({"rows": json_safe(result.rows), "files": _files(result.paths), "failures": result.failures})
    else:
        echo_result(result)
    if result.failures:
        # The report is written; the exit code tells scripts that it is incomplete.
        raise typer.Exit(1)


def echo_result(result: BenchResult) -> None:
    """Print the Markdown table, the report files and plots, and the failures (on stderr)."""
    typer.echo(result.markdown)
    for kind, path in result.paths.items():
        if kind not in ("plots", "views"):
            typer.echo(f"{kind}: {path}")
    for path in result.paths.get("plots", []):
        typer.echo(f"plot: {path}")
    for path in result.paths.get("views", []):
        typer.echo(f"view: {path} (open in a browser: scene, targets, query errors in 3D)")
    if result.failures:
        typer.echo(f"{len(result.failures)} failed: " + "; ".join(result.failures), err=True)


def _files(paths: dict) -> dict:
    return {k: [str(p) for p in v] if isinstance(v, list) else str(v) for k, v in paths.items()}
