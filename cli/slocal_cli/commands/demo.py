"""``slocal demo``: the whole loop on the embedded procedural scene."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from slocal.demo import DemoConfig, run_demo
from slocal_cli.commands.bench import echo_result
from slocal_cli.common import DEFAULT_DATA, DEFAULT_RUNS, DataRoot, RunsRoot, Verbose, handle_errors


@handle_errors
def demo(
    minutes: Annotated[float, typer.Option("--minutes", help="Distillation budget of the student.")] = DemoConfig.minutes,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the procedural scene.")] = DemoConfig.seed,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Report folder (default: RUNS/demo-bench).")] = None,
    data_root: DataRoot = DEFAULT_DATA,
    runs: RunsRoot = DEFAULT_RUNS,
    verbose: Verbose = False,
) -> None:
    """Render a procedural room, teach with depth, distill a CNN student and bench it against SIFT and DUSt3R."""
    out = out or runs / "demo-bench"
    command = shlex.join(["slocal", "demo", "--minutes", str(minutes), "--seed", str(seed), "--data-root", str(data_root), "--runs", str(runs), "--out", str(out)])
    result = run_demo(data_root, runs, out, DemoConfig(seed=seed, minutes=minutes), command)
    echo_result(result)
    if result.failures:
        raise typer.Exit(1)
