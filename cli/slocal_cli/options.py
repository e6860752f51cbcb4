"""Options shared by the commands that load scenes of any scale (COLMAP models have none)."""

from __future__ import annotations

from typing import Annotated

import typer

MetresPerUnit = Annotated[
    float | None,
    typer.Option(
        "--metres-per-unit",
        help="Metres per scene unit, for COLMAP models in their own units (default: the scene's scale.txt, "
        "else errors are reported in model units).",
        min=1e-12,
    ),
]
