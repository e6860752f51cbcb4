"""Options every subcommand accepts, logging set-up and the one-line error handler."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler

from slocal.errors import SlocalError
from slocal.geometry.pnp import DENSE_PNP

DataRoot = Annotated[
    Path,
    typer.Option(
        "--data-root", envvar="SLOCAL_DATA", help="Folder holding the scenes (env: SLOCAL_DATA).", show_envvar=False
    ),
]
RunsRoot = Annotated[
    Path,
    typer.Option(
        "--runs",
        envvar="SLOCAL_RUNS",
        help="Folder for targets, models and results (env: SLOCAL_RUNS).",
        show_envvar=False,
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging and full tracebacks.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
RansacPoints = Annotated[
    int | None,
    typer.Option(
        "--ransac-points",
        help="Students: RANSAC samples and scores at most this many of the dense matches, then refines on all (0: "
        "all) "
        f"(default: {DENSE_PNP.ransac_points or 'all'}).",
        min=0,
        show_default=False,
    ),
]
RansacThreshold = Annotated[
    float | None,
    typer.Option(
        "--ransac-threshold",
        help="Students: RANSAC inlier threshold in pixels at 640 px width (default: the one the student's preset "
        f"chose: {DENSE_PNP.threshold_px:g} px, 20 px for ace-lite0-std).",
        min=0.1,
        show_default=False,
    ),
]

DEFAULT_DATA = Path("data")
DEFAULT_RUNS = Path("runs")

stderr = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def setup_logging(verbose: bool) -> None:
    """Log to stderr through rich; INFO by default, DEBUG with ``-v``."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=stderr, show_path=verbose, show_time=False, markup=False)],
        force=True,
    )
    # Third-party debug chatter (matplotlib font cache, PIL plugins) drowns ours.
    for noisy in ("matplotlib", "PIL", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def handle_errors(fn: F) -> F:
    """Run a command: set up logging; show a ``SlocalError`` as one line and exit 1.

    Anything else is a bug and keeps its traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verbose = bool(kwargs.get("verbose", False))
        setup_logging(verbose)
        try:
            return fn(*args, **kwargs)
        except SlocalError as exc:
            if verbose:
                stderr.print_exception()
            stderr.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def one_line_usage_error(exc: typer.TyperException) -> str:
    """A usage error as one line: the command, what is wrong, where to look."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        return f"{ctx.command_path}: {message} (see --help)"
    return message


def print_json(obj: Any) -> None:
    """Write JSON to stdout (only JSON, so it can be piped)."""
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")
    sys.stdout.flush()
