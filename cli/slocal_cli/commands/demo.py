"""``slocal demo``: the whole loop on the embedded procedural scene."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from slocal.demo import DemoConfig, run_demo
from slocal_cli.commands.bench import echo_result, split_list
from slocal_cli.common import DEFAULT_DATA, DEFAULT_RUNS, DataRoot, RunsRoot, Verbose, handle_errors


@handle_errors
def demo(
    minutes: Annotated[
        float, typer.Option("--minutes", help="Distillation budget of the student.")
    ] = DemoConfig.minutes,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the procedural scene.")] = DemoConfig.seed,
    methods: Annotated[
        str | None,
        typer.Option(
            "--methods",
            help="Comma-separated methods of the final table (default: the demo's student and sift); add dust3r for "
            "the teacher's per-query time.",
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Report folder (default: RUNS/demo-bench).")] = None,
    data_root: DataRoot = DEFAULT_DATA,
    runs: RunsRoot = DEFAULT_RUNS,
    verbose: Verbose = False,
) -> None:
    """Render a procedural room, teach with depth, distill a student (ace-lite0-std) and bench it against SIFT."""
    out = out or runs / "demo-bench"
    command = shlex.join(
        [
            "slocal",
            "demo",
            "--minutes",
            str(minutes),
            "--seed",
            str(seed),
            *(["--methods", methods] if methods else []),
            "--data-root",
            str(data_root),
            "--runs",
            str(runs),
            "--out",
            str(out),
        ]
    )
    config = DemoConfig(seed=seed, minutes=minutes, methods=tuple(split_list(methods)) if methods else None)
    result = run_demo(data_root, runs, out, config, command)
    echo_result(result)
    typer.echo(f"localize with the demo's student: {config.localize_command(data_root, runs)}")
    if result.failures:
        raise typer.Exit(1)
