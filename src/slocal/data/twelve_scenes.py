"""12Scenes raw layout: ``<scene>/data/frame-XXXXXX.{color.jpg,depth.png,pose.txt}``.

``<scene>/info.txt`` holds ``key = value`` lines with the colour and depth
sizes and 4x4 row-major intrinsics; ``<scene>/split.txt`` lists sequences as
``sequenceK [frames=N]  [start=A ; end=B]``. The frames of ``sequence0`` are the
queries, all others are mapping frames. Poses containing ``INF`` mark tracking
failures and are skipped (counted in the log).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from slocal.data.poses import read_key_values, read_pose
from slocal.data.scene import Frame, Scene
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera

log = logging.getLogger(__name__)

_SPLIT_RE = re.compile(r"sequence(\d+)\s*\[frames=(\d+)\]\s*\[start=(\d+)\s*;\s*end=(\d+)\]")


def is_twelve_scenes(folder: Path) -> bool:
    return (folder / "info.txt").is_file() and (folder / "data").is_dir()


def _intrinsic(info: dict[str, str], key: str, size_keys: tuple[str, str], path: Path) -> Camera:
    for k in (key, *size_keys):
        if k not in info:
            raise SlocalError(f"missing key {k!r}", path)
    try:
        M = np.array(info[key].split(), dtype=np.float64)
        width, height = int(info[size_keys[0]]), int(info[size_keys[1]])
    except ValueError as exc:
        raise SlocalError(f"malformed value for {key!r} or image size: {exc}", path) from exc
    if M.size != 16:
        raise SlocalError(f"{key} must hold 16 numbers (row-major 4x4), found {M.size}", path)
    try:
        return Camera.from_K(M.reshape(4, 4)[:3, :3], width, height)
    except SlocalError as exc:
        raise SlocalError(f"{key}: {exc.message}", path) from None


def read_split(path: Path) -> list[tuple[int, int, int]]:
    """Parse ``split.txt`` into (sequence, start, end) triples (end inclusive)."""
    if not path.is_file():
        raise SlocalError("split file not found", path)
    out = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        m = _SPLIT_RE.search(line)
        if m is None:
            raise SlocalError(f"line {lineno}: expected 'sequenceK [frames=N]  [start=A ; end=B]'", path)
        seq, n, start, end = map(int, m.groups())
        if end - start + 1 != n:
            raise SlocalError(f"line {lineno}: frames={n} disagrees with start={start} end={end}", path)
        out.append((seq, start, end))
    if not out:
        raise SlocalError("split lists no sequence", path)
    return out


def load_twelve_scenes(root: Path, scene_id: str) -> Scene:
    """Load a 12Scenes scene folder (or one written by ``slocal synth``)."""
    info_path = root / "info.txt"
    info = read_key_values(info_path)
    color_cam = _intrinsic(info, "m_calibrationColorIntrinsic", ("m_colorWidth", "m_colorHeight"), info_path)
    depth_cam = _intrinsic(info, "m_calibrationDepthIntrinsic", ("m_depthWidth", "m_depthHeight"), info_path)
    try:
        depth_shift = float(info.get("m_depthShift", "1000"))
    except ValueError as exc:
        raise SlocalError(f"malformed m_depthShift: {exc}", info_path) from exc
    if not depth_shift > 0:
        raise SlocalError(f"m_depthShift must be positive, got {depth_shift}", info_path)

    split = read_split(root / "split.txt")
    query_ids = {i for seq, s, e in split if seq == 0 for i in range(s, e + 1)}
    listed = {i for _, s, e in split for i in range(s, e + 1)}
    data = root / "data"
    missing = sorted(i for i in listed if not (data / f"frame-{i:06d}.pose.txt").is_file())
    if missing:
        raise SlocalError(
            f"lists {len(missing)} frame(s) with no pose file in {data} (e.g. frame-{missing[0]:06d}.pose.txt)",
            root / "split.txt",
        )
    mapping: list[Frame] = []
    query: list[Frame] = []
    skipped = 0
    for pose_path in sorted(data.glob("frame-*.pose.txt")):
        stem = pose_path.name[: -len(".pose.txt")]
        try:
            idx = int(stem.split("-")[1])
        except (IndexError, ValueError) as exc:
            raise SlocalError("frame file name is not frame-XXXXXX.pose.txt", pose_path) from exc
        if idx not in listed:
            continue
        pose = read_pose(pose_path)
        if pose is None:
            skipped += 1
            continue
        image = data / f"{stem}.color.jpg"
        if not image.is_file():
            raise SlocalError(f"colour image for {stem} not found", image)
        depth = data / f"{stem}.depth.png"
        frame = Frame(
            name=stem,
            image_path=image,
            camera=color_cam,
            world_from_cam=pose,
            depth_path=depth if depth.is_file() else None,
            depth_camera=depth_cam if depth.is_file() else None,
            depth_scale=1.0 / depth_shift,
        )
        (query if idx in query_ids else mapping).append(frame)
    if skipped:
        log.warning("%s: skipped %d frames with invalid (INF) poses", scene_id, skipped)
    if not mapping:
        raise SlocalError("split leaves no mapping frame with a valid pose", root / "split.txt")
    if not query:
        raise SlocalError("split leaves no query frame (sequence0) with a valid pose", root / "split.txt")
    return Scene(scene_id, root, "12scenes", tuple(mapping), tuple(query), skipped)
