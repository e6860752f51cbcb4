"""Small file helpers shared by every step: atomic writes, atomic folders, process locks, checked image reads.

Crash safety: a file or folder is built under a hidden temporary name that
carries the writer's host and PID (``.NAME.HOST-PID-XXXX.tmp.EXT``,
``.NAME.partial-HOST-PID-XXXX``), flushed to disk (``fsync`` of the data and
of the folder) and only then renamed onto its final name, so after ``kill -9``
or a power loss the final name holds either the old complete version or the
new one. Leftovers of a killed writer are removed by the next write of the
same name once their PID is no longer running on this host.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from filelock import FileLock, Timeout
from PIL import Image, UnidentifiedImageError

from slocal.errors import SlocalError, first_line

log = logging.getLogger(__name__)

# How long a second process waits for a cache another process is building (seconds);
# SLOCAL_LOCK_TIMEOUT overrides it (0: do not wait).
DEFAULT_LOCK_TIMEOUT_S = 3600.0


def _owner_tag() -> str:
    # Host and PID tell a later run whether the writer of a leftover can still be alive.
    return f"{socket.gethostname()}-{os.getpid()}"


def _writer_is_dead(host: str, pid: int) -> bool:
    """True when ``pid`` on ``host`` is this machine's and no longer runs (other hosts: unknown, keep)."""
    if host != socket.gethostname():
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _remove_leftovers(parent: Path, name: str) -> None:
    """Remove temporary files and partial folders of ``name`` in ``parent`` left by killed writers."""
    if not parent.is_dir():
        return
    pattern = re.compile(rf"\.{re.escape(name)}\.(?:partial-|old-)?(?P<host>.+)-(?P<pid>\d+)-[a-z0-9_]+(?:\.tmp.*)?")
    for entry in parent.iterdir():
        if not entry.name.startswith(f".{name}."):
            continue
        m = pattern.fullmatch(entry.name)
        if m is None or not _writer_is_dead(m["host"], int(m["pid"])):
            continue
        log.info("removing %s, left by a killed run", entry)
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _default_mode(directory: bool) -> int:
    # mkstemp/mkdtemp create 0600/0700 entries; published files get the usual umask-based mode.
    mask = os.umask(0o022)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def fsync_path(path: str | Path) -> None:
    """Flush a file's or a folder's data and metadata to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    A crash or exception leaves ``path`` untouched (the old file, or none). The
    file and its folder are fsynced around the rename, so the new name never
    points at data that is not on disk yet. The temporary file keeps ``path``'s
    suffix so writers that pick a format from the suffix (numpy, OpenCV, torch)
    behave as for the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_owner_tag()}-", suffix=".tmp" + path.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, _default_mode(directory=False))
        yield tmp_path
        fsync_path(tmp_path)
        os.replace(tmp_path, path)
        fsync_path(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_dir(path: str | Path, carry_over: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield an empty hidden folder next to ``path``; publish it as ``path`` on success.

    The folder is built as ``.NAME.partial-HOST-PID-XXXX``; on success every file
    and folder in it is fsynced and it is renamed onto ``path`` (an existing
    ``path`` is first renamed aside, then removed). On an exception it is removed;
    after ``kill -9`` it stays hidden and the next ``atomic_dir`` of the same
    ``path`` removes it. A reader therefore sees the old complete folder, the new
    complete folder, or (killed between the two renames) none.

    Args:
        path: the folder to publish.
        carry_over: entries of an existing ``path`` (top level) to copy into the
            new folder when it has no entry of that name (e.g. a user's notes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path.parent, path.name)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.partial-{_owner_tag()}-"))
    try:
        os.chmod(tmp, _default_mode(directory=True))
        yield tmp
        if carry_over is not None and path.is_dir():
            for entry in path.iterdir():
                if carry_over(entry) and not (tmp / entry.name).exists():
                    # Copied, not moved: until the rename below the old folder must stay whole.
                    (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, tmp / entry.name)
        for folder, _, files in os.walk(tmp):
            for f in files:
                fsync_path(Path(folder) / f)
            fsync_path(folder)
        old = None
        if path.exists() or path.is_symlink():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-{_owner_tag()}-"))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        fsync_path(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def process_lock(path: str | Path, what: str, timeout_s: float | None = None) -> Iterator[None]:
    """Hold an inter-process lock file while building ``what``.

    A second process waits, logging which process holds the lock, for at most
    ``timeout_s`` seconds, then stops with a ``SlocalError``. The lock file holds
    the owner's host and PID for that message; it stays in place after release
    (removing a lock file while another process waits on it would let a third
    one lock a new file at the same path).

    Args:
        path: the lock file (``*.lock``).
        what: what the lock protects, for the messages ("the depth targets of redkitchen").
        timeout_s: seconds to wait; 0 fails at once; None: ``$SLOCAL_LOCK_TIMEOUT``,
            else ``DEFAULT_LOCK_TIMEOUT_S``.

    Raises:
        SlocalError: still locked after ``timeout_s`` (names the lock file and holder).
    """
    path = Path(path)
    if timeout_s is None:
        text = os.environ.get("SLOCAL_LOCK_TIMEOUT", "")
        try:
            timeout_s = float(text) if text else DEFAULT_LOCK_TIMEOUT_S
        except ValueError:
            raise SlocalError(f"SLOCAL_LOCK_TIMEOUT must be a number of seconds, got {text!r}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    # thread_local=False: one lock per process, whichever thread releases it.
    lock = FileLock(str(path), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = _lock_holder(path)
        if timeout_s <= 0:
            raise SlocalError(
                f"{what} is in use by another slocal process ({holder}); wait for it to finish", path
            ) from None
        log.info("waiting up to %g s for %s: locked by %s (lock file %s)", timeout_s, what, holder, path)
        try:
            lock.acquire(timeout=timeout_s)
        except Timeout:
            raise SlocalError(
                f"{what} is still in use by another slocal process ({holder}) after {timeout_s:g} s "
                "(SLOCAL_LOCK_TIMEOUT sets the wait)",
                path,
            ) from None
    try:
        with open(path, "w") as f:
            f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        yield
    finally:
        lock.release()


def _lock_holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "unknown pid"


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


def check_image(path: str | Path) -> None:
    """Decode an image file completely and strictly (a truncated file is an error).

    OpenCV decodes a truncated JPEG with only a warning on stderr and grey rows
    at the bottom; PIL (without ``LOAD_TRUNCATED_IMAGES``) raises, so it is used
    for this check.

    Raises:
        SlocalError: the file is missing, empty, truncated or not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise SlocalError("image not found", path)
    if path.stat().st_size == 0:
        raise SlocalError("image file is empty (0 bytes)", path)
    try:
        with Image.open(path) as im:
            im.load()
    except UnidentifiedImageError:
        raise SlocalError("cannot decode image (corrupt or unsupported format)", path) from None
    except (OSError, SyntaxError, ValueError) as exc:
        # PIL reports truncation and corrupt streams as OSError/SyntaxError/ValueError.
        raise SlocalError(f"cannot decode image: corrupt or truncated ({first_line(exc, 120)})", path) from None


def _looks_truncated(data: bytes) -> bool:
    # A complete JPEG ends with the EOI marker FF D9, a PNG with its IEND chunk. Some
    # cameras append data after them, so a missing end marker only triggers the strict
    # (slower) check. It also keeps libpng's own error line off stderr.
    tail = data.rstrip(b"\x00")[-16:]
    if data[:2] == b"\xff\xd8":
        return not tail.endswith(b"\xff\xd9")
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return not tail.endswith(b"IEND\xaeB`\x82")
    return False


def _image_bytes(path: Path, what: str) -> bytes:
    """The file's bytes, refusing a missing, empty or truncated image in one line naming it."""
    if not path.is_file():
        raise SlocalError(f"{what} not found", path)
    data = path.read_bytes()
    if not data:
        raise SlocalError(f"{what} file is empty (0 bytes)", path)
    if _looks_truncated(data):
        check_image(path)
    return data


def read_image(path: str | Path) -> np.ndarray:
    """Read a colour image as RGB.

    Returns:
        uint8 array (H, W, 3), RGB order.

    Raises:
        SlocalError: the file is missing, empty, truncated or not a decodable image.
    """
    path = Path(path)
    data = _image_bytes(path, "image")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise SlocalError("cannot decode image (corrupt or unsupported format)", path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_depth_png(path: str | Path) -> np.ndarray:
    """Read a 16-bit depth PNG as stored (no unit conversion).

    Returns:
        uint16 array (H, W).
    """
    path = Path(path)
    data = _image_bytes(path, "depth image")
    depth = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
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
