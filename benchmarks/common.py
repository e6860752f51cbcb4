"""Helpers shared by the benchmark scripts: machine description and result writing."""

from __future__ import annotations

import datetime as _dt
import os
import shlex
import sys
from pathlib import Path

from slocal.bench.machine import machine_info
from slocal.io import write_json, write_text

RESULTS = Path(__file__).resolve().parent / "results"


def command_line() -> str:
    """The command that ran this script, as typed from the repository root."""
    return " ".join(shlex.quote(a) for a in ["python", *sys.argv])


def write_results(name: str, payload: dict, markdown: str) -> tuple[Path, Path]:
    """Write ``results/<name>.json`` (payload + machine, date, command, load) and ``results/<name>.md``."""
    meta = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "machine": machine_info(),
        "loadavg_at_end": list(os.getloadavg()),
    }
    json_path = write_json(RESULTS / f"{name}.json", {**meta, **payload})
    header = (
        f"- date (UTC): {meta['date']}\n- command: `{meta['command']}`\n"
        f"- machine: {meta['machine'].get('cpu', '?')}, {meta['machine'].get('cores', '?')} cores; "
        f"load average at end {', '.join(f'{v:.2f}' for v in meta['loadavg_at_end'])}\n\n"
    )
    md_path = write_text(RESULTS / f"{name}.md", markdown.replace("{header}", header))
    return json_path, md_path
