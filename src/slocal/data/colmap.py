"""COLMAP layout: a sparse model (``cameras``, ``images``, ``points3D``; .bin or .txt) plus an image folder.

Accepted places for the model: ``<scene>/sparse/0``, ``<scene>/sparse`` or
``<scene>`` itself; images live in ``<scene>/images``. Every registered image
is a mapping frame, except those named in ``<scene>/queries.txt`` (one image
name per line, relative to ``images/``), which become the query frames with
the model's pose as ground truth.

slocal's cameras are distortion-free pinholes: a camera with non-zero
distortion is refused with instructions to undistort the model first, never
silently treated as a pinhole.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from slocal.data.scene import Frame, Scene
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera
from slocal.geometry.pose import invert

log = logging.getLogger(__name__)

_MODEL_FILES = ("cameras", "images", "points3D")


def find_model(folder: Path) -> Path | None:
    """The folder holding the sparse model, or None."""
    for candidate in (folder / "sparse" / "0", folder / "sparse", folder):
        for ext in (".bin", ".txt"):
            if all((candidate / f"{name}{ext}").is_file() for name in _MODEL_FILES):
                return candidate
    return None


def is_colmap(folder: Path) -> bool:
    return (folder / "images").is_dir() and find_model(folder) is not None


def pinhole_from_colmap(camera, source: Path) -> Camera:
    """Convert a pycolmap camera to a pinhole ``Camera``; refuse real distortion.

    pycolmap's principal point uses the same pixel-corner convention as
    ``slocal.geometry.camera``, so no half-pixel shift is needed.
    """
    model = camera.model_name
    params = np.asarray(camera.params, dtype=np.float64)
    fx_idx = list(camera.focal_length_idxs())
    pp_idx = list(camera.principal_point_idxs())
    extra = [i for i in range(len(params)) if i not in fx_idx and i not in pp_idx]
    if extra and np.any(np.abs(params[extra]) > 1e-12):
        raise SlocalError(
            f"camera {camera.camera_id} uses the distorted model {model} "
            f"(extra params {params[extra].round(6).tolist()}); undistort the model first "
            "(colmap image_undistorter, or pycolmap.undistort_images) and point slocal at the result",
            source,
        )
    fx = params[fx_idx[0]]
    fy = params[fx_idx[1]] if len(fx_idx) > 1 else fx
    return Camera(int(camera.width), int(camera.height), float(fx), float(fy), float(params[pp_idx[0]]), float(params[pp_idx[1]]))


def load_colmap_scene(root: Path, scene_id: str) -> Scene:
    """Load a COLMAP scene folder."""
    import pycolmap

    model_dir = find_model(root)
    if model_dir is None:
        raise SlocalError("no COLMAP model (cameras/images/points3D .bin or .txt) found", root)
    try:
        rec = pycolmap.Reconstruction(str(model_dir))
    except (RuntimeError, ValueError) as exc:
        raise SlocalError(f"cannot read COLMAP model: {exc}", model_dir) from exc
    images_dir = root / "images"
    query_file = root / "queries.txt"
    query_names: set[str] = set()
    if query_file.is_file():
        query_names = {line.strip() for line in query_file.read_text().splitlines() if line.strip()}

    cameras: dict[int, Camera] = {}
    mapping: list[Frame] = []
    query: list[Frame] = []
    for image_id in sorted(rec.reg_image_ids()):
        image = rec.image(image_id)
        if image.camera_id not in cameras:
            cameras[image.camera_id] = pinhole_from_colmap(rec.camera(image.camera_id), model_dir)
        cam_from_world = np.eye(4)
        cam_from_world[:3, :] = image.cam_from_world().matrix()
        path = images_dir / image.name
        if not path.is_file():
            raise SlocalError(f"image {image.name} of the COLMAP model is missing", path)
        frame = Frame(image.name, path, cameras[image.camera_id], invert(cam_from_world))
        (query if image.name in query_names else mapping).append(frame)
    missing = query_names - {f.name for f in query}
    if missing:
        raise SlocalError(
            f"{len(missing)} query image(s) are not registered in the model, e.g. {sorted(missing)[0]!r}", query_file
        )
    if not mapping:
        raise SlocalError("the COLMAP model has no registered mapping image", model_dir)
    return Scene(scene_id, root, "colmap", tuple(mapping), tuple(query), 0, {"model_dir": str(model_dir)})
