"""``slocal demo``: the whole loop on the embedded procedural scene."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from slocal.demo import DEMO_HEAD_STEPS, DemoConfig, run_demo
from slocal_cli.commands.bench import echo_result, split_list
from slocal_cli.common import DEFAULT_DATA, DEFAULT_RUNS, DataRoot, RunsRoot, Verbose, handle_errors


@handle_errors
def demo(
    iterations: Annotated[
        int | None,
        typer.Option(
            "--iterations",
            min=1,
            help=f"Head steps the student trains for (default {DEMO_HEAD_STEPS}: the same result on every run of a "
            "machine, 6 to 7 minutes on 2 CPU cores).",
        ),
    ] = None,
    minutes: Annotated[
        float | None,
        typer.Option("--minutes", min=0.01, help="Train for this wall-clock budget instead of a number of head steps."),
    ] = None,
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
    config = DemoConfig(
        seed=seed, iterations=iterations, minutes=minutes, methods=tuple(split_list(methods)) if methods else None
    )
    command = shlex.join(
        [
            "slocal",
            "demo",
            *(["--iterations", str(config.iterations)] if config.iterations is not None else []),
            *(["--minutes", str(config.minutes)] if config.minutes is not None else []),
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
    result = run_demo(data_root, runs, out, config, command)
    echo_result(result)
    typer.echo(f"localize with the demo's student: {config.localize_command(data_root, runs)}")
    if result.failures:
        raise typer.Exit(1)
