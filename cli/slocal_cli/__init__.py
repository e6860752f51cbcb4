"""The ``slocal`` command line: a thin Typer layer over the ``slocal`` library."""
