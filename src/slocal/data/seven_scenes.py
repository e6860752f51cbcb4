"""7-Scenes layout: ``<scene>/seq-XX/frame-XXXXXX.{color.png|color.jpg,depth.png,pose.txt}``.

``TrainSplit.txt`` / ``TestSplit.txt`` list ``sequenceN`` lines (mapping / query).

Intrinsics. 7-Scenes' colour and depth cameras differ: the customary values are
f = 525 px for colour and f = 585 px for depth, principal point at the image
centre. An optional ``camera-intrinsics.txt`` (3x3 K, as shipped with TSDF-fusion
redistributions) is the *depth* camera's matrix; an optional
``color-intrinsics.txt`` (3x3 K) sets the colour camera. Colour and depth are
two cameras of one rig, and the poses are the depth camera's: the scene says so
(``extra``: ``depth_registered`` False, ``poses_of`` depth) and
``slocal.teach.rig`` estimates the rig from the mapping frames.

Why not take ``camera-intrinsics.txt`` (f = 585) for colour too: on
``7scenes-mini/redkitchen`` the colour images are photo-consistent across
views at f ~ 525 and clearly not at 585 (``benchmarks/colour_focal_7scenes.py``),
and SfM with the poses fixed converges to f ~ 520-532 for the colour frames.
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
DEPTH_INTRINSICS = "camera-intrinsics.txt"
COLOR_INTRINSICS = "color-intrinsics.txt"


def _camera(intrinsics_file: Path, size: tuple[int, int], default_f: float) -> Camera:
    """The camera from a 3x3 K file if present, else the default focal length with a centred principal point."""
    if intrinsics_file.is_file():
        try:
            return Camera.from_K(read_matrix(intrinsics_file, (3, 3)), *size)
        except SlocalError as exc:
            raise SlocalError(exc.message, exc.path or intrinsics_file) from None
    w, h = size
    return Camera(w, h, default_f, default_f, w / 2, h / 2)


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
                    depth_size = (
                        _image_size(seq_dir / f"{stem}.depth.png")
                        if (seq_dir / f"{stem}.depth.png").is_file()
                        else size
                    )
                    color_cam = _camera(root / COLOR_INTRINSICS, size, DEFAULT_COLOR_F)
                    depth_cam = _camera(root / DEPTH_INTRINSICS, depth_size, DEFAULT_DEPTH_F)
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
    # The Kinect's depth is the infrared camera's and KinectFusion tracked that camera: depth is not
    # registered to colour and the poses are the depth camera's (``slocal.data.rig``).
    extra = {"depth_registered": False, "poses_of": "depth"}
    return Scene(
        scene_id, root, "7scenes", tuple(frames_by_split["mapping"]), tuple(frames_by_split["query"]), skipped, extra
    )
