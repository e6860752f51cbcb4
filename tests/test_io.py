"""slocal.io: atomic files and folders, leftovers of killed writers, process locks, strict image reads."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from slocal.errors import SlocalError
from slocal.io import atomic_dir, atomic_path, check_image, process_lock, read_depth_png, read_image


def _dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_atomic_path_keeps_the_old_file_on_error_and_removes_a_killed_writers_tmp(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    host = socket.gethostname()
    stale = tmp_path / f".a.txt.{host}-{_dead_pid()}-abc123.tmp.txt"
    alive = tmp_path / f".a.txt.{host}-{os.getppid()}-abc123.tmp.txt"  # a running writer: keep
    other_host = tmp_path / f".a.txt.elsewhere-{_dead_pid()}-abc123.tmp.txt"  # unknown: keep
    for p in (stale, alive, other_host):
        p.write_text("x")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and not stale.exists() and alive.exists() and other_host.exists()
    mask = os.umask(0o022)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600


def test_atomic_dir_publishes_whole_and_clears_partials_of_killed_runs(tmp_path):
    target = tmp_path / "cache"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "f").write_text("1")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    stale = tmp_path / f".cache.partial-{socket.gethostname()}-{_dead_pid()}-abc_12"
    (stale / "frames").mkdir(parents=True)
    with atomic_dir(target) as d:
        assert not target.exists() and d.name.startswith(".cache.partial-")
        (d / "index.json").write_text("{}")
    assert not stale.exists() and [p.name for p in tmp_path.iterdir()] == ["cache"]
    (target / "notes.txt").write_text("mine")
    with atomic_dir(target, carry_over=lambda p: p.name == "notes.txt") as d:
        (d / "index.json").write_text('{"v": 2}')
    assert (target / "index.json").read_text() == '{"v": 2}' and (target / "notes.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]


def test_process_lock_times_out_naming_the_holder_and_is_free_after_release(tmp_path):
    lock = tmp_path / "x.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from slocal.io import process_lock\n"
            f"with process_lock({str(lock)!r}, 'x'):\n print('held', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SlocalError, match=f"pid {holder.pid} on") as info:
            with process_lock(lock, "the thing", timeout_s=0):
                pass
        assert info.value.path == lock and "the thing is in use" in str(info.value)
        with pytest.raises(SlocalError, match="after 0.2 s"):
            with process_lock(lock, "the thing", timeout_s=0.2):
                pass
    finally:
        holder.kill()
        holder.wait()
    with process_lock(lock, "the thing", timeout_s=0):  # the lock died with its holder
        assert lock.read_text().startswith(f"pid {os.getpid()} ")


def test_process_lock_waits_for_release(tmp_path, caplog):
    lock = tmp_path / "x.lock"
    held = threading.Event()

    def hold() -> None:
        with process_lock(lock, "x"):
            held.set()
            time.sleep(0.5)

    t = threading.Thread(target=hold)
    t.start()
    held.wait()
    start = time.monotonic()
    with caplog.at_level("INFO", logger="slocal.io"), process_lock(lock, "the cache", timeout_s=10):
        waited = time.monotonic() - start
    t.join()
    assert waited > 0.2 and "waiting up to 10 s for the cache" in caplog.text


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_and_empty_images_are_refused_strictly(tmp_path, suffix, capfd):
    rgb = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    good = tmp_path / f"good{suffix}"
    cv2.imwrite(str(good), rgb)
    check_image(good)
    assert read_image(good).shape == (48, 64, 3)
    data = good.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    for read in (check_image, read_image):
        with pytest.raises(SlocalError, match="truncated") as info:
            read(cut)
        assert info.value.path == cut
        with pytest.raises(SlocalError, match="empty"):
            read(empty)
    assert "libpng" not in capfd.readouterr().err  # no second line from the C library


def test_truncated_depth_png_is_refused(tmp_path):
    path = tmp_path / "d.png"
    cv2.imwrite(str(path), np.full((24, 32), 1000, np.uint16))
    assert read_depth_png(path).dtype == np.uint16
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(SlocalError, match="truncated"):
        read_depth_png(path)
