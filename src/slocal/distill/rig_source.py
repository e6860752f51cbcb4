"""Where a colour-depth rig comes from when the user names one (``--depth-registration``).

A mode (``auto``, ``estimate``, ``off``: ``slocal.teach.rig.registered_scene`` estimates or skips it),
a rig file (a cached estimate ``RUNS/SCENE/rig/depth-*.json``, or a summary as reports write it), or a
model file, which records the rig its student was taught through: benching or teaching through that
one reproduces the scene the student was trained on, whatever rig the runs folder holds.

Kept apart from ``model_file`` so that loading a student does not import the data layer.
"""

from __future__ import annotations

from pathlib import Path

from slocal.data.rig import RIG_MODES, DepthRegistration, read_depth_registration
from slocal.distill.model_file import read_model_payload
from slocal.errors import SlocalError


def model_depth_registration(path: str | Path) -> DepthRegistration:
    """The colour-depth rig the student in ``path`` was taught through.

    Raises:
        SlocalError: not a model file, one that records no rig (a scene without one, or a file
            older than the record), or a malformed record (the error names the file).
    """
    record = read_model_payload(path).get("depth_registration")
    if not record:
        raise SlocalError("model file records no colour-depth rig", path)
    try:
        return DepthRegistration.from_dict(record)
    except SlocalError as exc:
        raise SlocalError(f"its colour-depth rig: {exc.message}", path) from exc


def resolve_depth_registration(value: str) -> str | DepthRegistration:
    """What ``--depth-registration`` names: a mode (``RIG_MODES``) as is, else the rig in a rig file
    (``.json``) or a model file.

    Raises:
        SlocalError: the file is missing or holds no rig.
    """
    if value in RIG_MODES:
        return value
    path = Path(value)
    if not path.is_file():
        raise SlocalError(
            f"file not found (a depth registration is {', '.join(RIG_MODES)}, or a rig .json or model file)", path
        )
    return read_depth_registration(path) if path.suffix == ".json" else model_depth_registration(path)
