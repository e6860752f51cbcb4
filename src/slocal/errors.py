"""The one exception type user-facing code raises for bad input."""

from __future__ import annotations

from pathlib import Path


class SlocalError(Exception):
    """A bad input or unusable state, described in one line for the user.

    Args:
        message: what is wrong, phrased for the user.
        path: the file or folder concerned; it is prefixed to the message.
    """

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self.message = message
        super().__init__(f"{path}: {message}" if path is not None else message)


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, for a one-line error; its type name when the message is empty."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__
