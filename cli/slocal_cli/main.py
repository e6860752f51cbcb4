"""The ``slocal`` Typer application: registers one function per subcommand."""

from __future__ import annotations

import typer

from slocal_cli.commands import bench, demo, distill, export, localize, scenes, synth, teach, view

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

    Pipeline: synth (demo scene) -> teach -> distill -> localize / bench; `demo` runs it all.
    """


app.command("demo")(demo.demo)
app.command("scenes")(scenes.scenes)
app.command("synth")(synth.synth)
app.command("teach")(teach.teach)
app.command("distill")(distill.distill)
app.command("localize")(localize.localize)
app.command("bench")(bench.bench)
app.command("export")(export.export)
app.command("view")(view.view)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
