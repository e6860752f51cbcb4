"""7-Scenes layout: ``<scene>/seq-XX/frame-XXXXXX.{color.png|color.jpg,depth.png,pose.txt}``.

``TrainSplit.txt`` / ``TestSplit.txt`` list ``sequenceN`` lines (mapping / query).
An optional ``camera-intrinsics.txt`` (3x3 K) applies to colour and depth;
without it the customary defaults are used (colour f = 525, depth f = 585,
principal point at the image centre, 640x480).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2

from slocal.data.poses import read_matrix, read_pose
from slocal.data.scene import Frame, Scene
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera

log = logging.getLogger(__name__)

DEFAULT_COLOR_F = 525.0
DEFAULT_DEPTH_F = 585.0
DEFAULT_SIZE = (640, 480)


def is_seven_scenes(folder: Path) -> bool:
    return (folder / "TrainSplit.txt").is_file() and any(folder.glob("seq-*"))


def _read_split(path: Path) -> list[str]:
    if not path.is_file():
        raise SlocalError("split file not found", path)
    seqs = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        m = re.fullmatch(r"sequence\s*(\d+)", line)
        if m is None:
            raise SlocalError(f"expected lines 'sequenceN', found {line!r}", path)
        seqs.append(f"seq-{int(m.group(1)):02d}")
    if not seqs:
        raise SlocalError("split lists no sequence", path)
    return seqs


def _image_size(path: Path) -> tuple[int, int]:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise SlocalError("cannot decode image (corrupt or unsupported format)", path)
    return img.shape[1], img.shape[0]


def load_seven_scenes(root: Path, scene_id: str) -> Scene:
    """Load a 7-Scenes scene folder."""
    intr = root / "camera-intrinsics.txt"
    frames_by_split: dict[str, list[Frame]] = {}
    skipped = 0
    color_cam = depth_cam = None
    for split, split_file in (("mapping", "TrainSplit.txt"), ("query", "TestSplit.txt")):
        frames: list[Frame] = []
        for seq in _read_split(root / split_file):
            seq_dir = root / seq
            if not seq_dir.is_dir():
                raise SlocalError(f"sequence folder {seq} listed in {split_file} is missing", seq_dir)
            for pose_path in sorted(seq_dir.glob("frame-*.pose.txt")):
                stem = pose_path.name[: -len(".pose.txt")]
                image = next(
                    (p for p in (seq_dir / f"{stem}.color.png", seq_dir / f"{stem}.color.jpg") if p.is_file()), None
                )
                if image is None:
                    raise SlocalError(f"no colour image for {stem} (.color.png or .color.jpg)", seq_dir)
                if color_cam is None:
                    size = _image_size(image)
                    depth_size = _image_size(seq_dir / f"{stem}.depth.png") if (seq_dir / f"{stem}.depth.png").is_file() else size
                    if intr.is_file():
                        K = read_matrix(intr, (3, 3))
                        color_cam = Camera.from_K(K, *size)
                        depth_cam = Camera.from_K(K, *depth_size)
                    else:
                        w, h = size
                        color_cam = Camera(w, h, DEFAULT_COLOR_F, DEFAULT_COLOR_F, w / 2, h / 2)
                        dw, dh = depth_size
                        depth_cam = Camera(dw, dh, DEFAULT_DEPTH_F, DEFAULT_DEPTH_F, dw / 2, dh / 2)
                pose = read_pose(pose_path)
                if pose is None:
                    skipped += 1
                    continue
                depth = seq_dir / f"{stem}.depth.png"
                frames.append(
                    Frame(
                        name=f"{seq}/{stem}",
                        image_path=image,
                        camera=color_cam,
                        world_from_cam=pose,
                        depth_path=depth if depth.is_file() else None,
                        depth_camera=depth_cam if depth.is_file() else None,
                        depth_scale=0.001,
                        depth_invalid=(65535,),
                    )
                )
        if not frames:
            raise SlocalError(f"the {split} split ({split_file}) has no frames with a valid pose", root)
        frames_by_split[split] = frames
    if skipped:
        log.warning("%s: skipped %d frames with invalid (INF/NaN) poses", scene_id, skipped)
    return Scene(scene_id, root, "7scenes", tuple(frames_by_split["mapping"]), tuple(frames_by_split["query"]), skipped)
