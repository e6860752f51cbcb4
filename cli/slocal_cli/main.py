"""The ``slocal`` Typer application: registers one function per subcommand."""

from __future__ import annotations

import sys

import typer

from slocal_cli.commands import bench, demo, distill, export, localize, scenes, synth, teach, view
from slocal_cli.commands.map import map_command
from slocal_cli.common import one_line_usage_error

app = typer.Typer(
    name="slocal",
    help="Visual localization with small scene-specific students distilled from 3D teachers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Visual localization with small scene-specific students distilled from 3D teachers.

    Pipeline: synth (demo scene) or map (your video/photos) -> teach -> distill -> localize / bench; `demo` runs it all.
    """


app.command("demo")(demo.demo)
app.command("scenes")(scenes.scenes)
app.command("synth")(synth.synth)
app.command("map")(map_command)
app.command("teach")(teach.teach)
app.command("distill")(distill.distill)
app.command("localize")(localize.localize)
app.command("bench")(bench.bench)
app.command("export")(export.export)
app.command("view")(view.view)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point.

    A bad command line (unknown option, value out of range, missing argument) is shown as
    one ``error:`` line naming the option, like every other slocal error, and exits with
    its usage-error code (2) instead of Typer's framed box.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        code = app(args=args or ["--help"], prog_name="slocal", standalone_mode=False)
    except typer.TyperException as exc:
        sys.stderr.write(f"error: {one_line_usage_error(exc)}\n")
        code = exc.exit_code
    except typer.Abort:
        sys.stderr.write("error: aborted\n")
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
