"""Small file helpers shared by every step: atomic writes and checked image reads."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from slocal.errors import SlocalError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    A crash or exception leaves ``path`` untouched (the old file, or none).
    The temporary file keeps ``path``'s suffix so writers that pick a format
    from the suffix (numpy, OpenCV, torch) behave as for the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` and atomically move the result to ``path``."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write a text file."""
    return atomic_write(path, lambda p: p.write_text(text))


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file, naming the file in any error."""
    path = Path(path)
    if not path.is_file():
        raise SlocalError("file not found", path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SlocalError(f"not valid JSON ({exc.msg} at line {exc.lineno})", path) from exc


def read_image(path: str | Path) -> np.ndarray:
    """Read a colour image as RGB.

    Returns:
        uint8 array (H, W, 3), RGB order.

    Raises:
        SlocalError: the file is missing or is not a decodable image.
    """
    path = Path(path)
    if not path.is_file():
        raise SlocalError("image not found", path)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise SlocalError("cannot decode image (corrupt or unsupported format)", path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_depth_png(path: str | Path) -> np.ndarray:
    """Read a 16-bit depth PNG as stored (no unit conversion).

    Returns:
        uint16 array (H, W).
    """
    path = Path(path)
    if not path.is_file():
        raise SlocalError("depth image not found", path)
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if depth is None:
        raise SlocalError("cannot decode depth image (corrupt or unsupported format)", path)
    if depth.ndim != 2 or depth.dtype != np.uint16:
        raise SlocalError(
            f"depth must be a single-channel 16-bit image, got dtype {depth.dtype} shape {depth.shape}", path
        )
    return depth


def write_image(path: str | Path, rgb: np.ndarray, jpeg_quality: int = 95) -> Path:
    """Atomically write an RGB uint8 image (format from the suffix)."""
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if Path(path).suffix.lower() in {".jpg", ".jpeg"} else []

    def _write(tmp: Path) -> None:
        if not cv2.imwrite(str(tmp), bgr, params):
            raise SlocalError("cannot write image", path)

    return atomic_write(path, _write)


def write_depth_png(path: str | Path, depth_u16: np.ndarray) -> Path:
    """Atomically write a uint16 depth image as PNG."""
    if depth_u16.dtype != np.uint16:
        raise ValueError(f"depth must be uint16, got {depth_u16.dtype}")

    def _write(tmp: Path) -> None:
        if not cv2.imwrite(str(tmp), depth_u16):
            raise SlocalError("cannot write depth image", path)

    return atomic_write(path, _write)
