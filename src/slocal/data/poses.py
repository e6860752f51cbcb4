"""Readers for the small text files of the RGB-D datasets (poses, matrices, key = value)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slocal.errors import SlocalError
from slocal.geometry.pose import check_rigid, orthonormalize


def read_matrix(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Read a whitespace-separated numeric matrix of the given shape (``inf``/``nan`` allowed)."""
    if not path.is_file():
        raise SlocalError("file not found", path)
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as exc:
        raise SlocalError(f"malformed matrix: {exc}", path) from exc
    if values.size != shape[0] * shape[1]:
        raise SlocalError(f"expected {shape[0]}x{shape[1]} numbers, found {values.size}", path)
    return values.reshape(shape)


def read_pose(path: Path) -> np.ndarray | None:
    """Read a 4x4 camera-to-world pose file.

    Returns:
        The orthonormalised pose, or None when every entry is INF/NaN (the
        tracking failure marker of 12Scenes): the caller skips the frame.

    Raises:
        SlocalError: the file is missing, malformed, mixes INF/NaN with numbers
            (a corrupt pose, not the marker) or is not a rigid transform.
    """
    T = read_matrix(path, (4, 4))
    finite = np.isfinite(T)
    if not finite.any():
        return None
    if not finite.all():
        raise SlocalError(
            f"pose holds {int((~finite).sum())} INF/NaN value(s) among numbers (a tracking-failure marker "
            "has INF in every entry)",
            path,
        )
    problem = check_rigid(T, tol=1e-2)
    if problem is not None:
        raise SlocalError(problem, path)
    return orthonormalize(T)


def read_key_values(path: Path) -> dict[str, str]:
    """Parse ``key = value`` lines (12Scenes ``info.txt``)."""
    if not path.is_file():
        raise SlocalError("file not found", path)
    out: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        if "=" not in line:
            raise SlocalError(f"line {lineno} is not 'key = value': {line.strip()!r}", path)
        key, value = line.split("=", 1)
        out[key.strip()] = value.strip()
    return out
