"""Reading torch files safely: ``weights_only`` loads whose failures name the file."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from slocal.errors import SlocalError, first_line


def read_torch_file(path: str | Path, missing: str, unreadable: str) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU; never unpickles code.

    Args:
        path: the file.
        missing: the message when the file does not exist.
        unreadable: the start of the message when it cannot be read (the reason follows).

    Raises:
        SlocalError: naming the file, when it is missing or cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise SlocalError(missing, path)
    if path.stat().st_size == 0:
        raise SlocalError(f"{unreadable}: the file is empty (0 bytes)", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise SlocalError(f"{unreadable}: {first_line(exc)}", path) from exc
