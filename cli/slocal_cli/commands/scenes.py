"""``slocal scenes``: list the scenes under the data root."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from slocal.data import list_scenes
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


@handle_errors
def scenes(
    json_out: JsonOut = False,
    data_root: DataRoot = DEFAULT_DATA,
    runs: RunsRoot = DEFAULT_RUNS,
    verbose: Verbose = False,
) -> None:
    """List every scene under the data root with its format and frame counts."""
    rows = list_scenes(data_root)
    if json_out:
        print_json(rows)
        return
    table = Table("scene", "format", "mapping", "query", "skipped", "depth", title=f"scenes in {data_root}")
    for r in rows:
        if "error" in r:
            table.add_row(r["scene"], r["format"], "-", "-", "-", f"[red]{r['error']}[/]")
        else:
            table.add_row(
                r["scene"],
                r["format"],
                str(r["mapping"]),
                str(r["query"]),
                str(r["skipped"]),
                "yes" if r["depth"] else "no",
            )
    Console().print(table)
