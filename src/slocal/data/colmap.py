"""COLMAP layout: a sparse model (``cameras``, ``images``, ``points3D``; .bin or .txt) plus an image folder.

Accepted places for the model: ``<scene>/sparse/0``, ``<scene>/sparse`` or
``<scene>`` itself; images live in ``<scene>/images``. Every registered image
is a mapping frame, except those named in ``<scene>/queries.txt`` (one image
name per line, relative to ``images/``), which become the query frames with
the model's pose as ground truth. Every image keeps its own camera, so one
scene may hold images of different sizes.

Distortion: slocal's cameras are pinholes. A camera with distortion
(SIMPLE_RADIAL, RADIAL, OPENCV, fisheye models, ...) is undistorted on the way
in with pycolmap's undistortion (the same code as ``colmap image_undistorter``)
into ``<cache_dir>/<camera key>/<image name>``; the frame then points at the
undistorted image and carries the undistorted pinhole camera. Only camera
models pycolmap cannot undistort (non-perspective ones) are refused.

Scale: a COLMAP model has no metric scale. ``<scene>/scale.txt`` (one number,
metres per model unit) sets ``Scene.metres_per_unit``; without it the scale is
unknown (None) and errors are reported in model units.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from slocal.data.scene import Frame, Scene
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera
from slocal.geometry.pose import invert
from slocal.io import read_image, write_image
from slocal.progress import progress_bar

log = logging.getLogger(__name__)

_MODEL_FILES = ("cameras", "images", "points3D")
SCALE_FILE = "scale.txt"
QUERIES_FILE = "queries.txt"
# Bump when the undistorted images change for the same camera (new options, new method).
UNDISTORT_VERSION = 1
# Models that are exact pinholes when their distortion parameters are all zero
# (fisheye models are not: zero parameters still mean an equidistant projection).
_PINHOLE_WHEN_ZERO = {
    "SIMPLE_PINHOLE",
    "PINHOLE",
    "SIMPLE_RADIAL",
    "RADIAL",
    "OPENCV",
    "FULL_OPENCV",
    "SIMPLE_DIVISION",
    "DIVISION",
}


def find_model(folder: Path) -> Path | None:
    """The folder holding the sparse model, or None."""
    for candidate in (folder / "sparse" / "0", folder / "sparse", folder):
        for ext in (".bin", ".txt"):
            if all((candidate / f"{name}{ext}").is_file() for name in _MODEL_FILES):
                return candidate
    return None


def is_colmap(folder: Path) -> bool:
    return (folder / "images").is_dir() and find_model(folder) is not None


def _extra_params(camera) -> np.ndarray:
    params = np.asarray(camera.params, dtype=np.float64)
    known = set(camera.focal_length_idxs()) | set(camera.principal_point_idxs())
    return params[[i for i in range(len(params)) if i not in known]]


def is_pinhole(camera) -> bool:
    """True when a pycolmap camera projects exactly as a pinhole (no distortion to remove)."""
    return camera.model.name in _PINHOLE_WHEN_ZERO and not np.any(np.abs(_extra_params(camera)) > 1e-12)


def pinhole_from_colmap(camera, source: Path | None = None) -> Camera:
    """Convert a distortion-free pycolmap camera to a ``Camera``.

    pycolmap's principal point uses the same pixel-corner convention as
    ``slocal.geometry.camera``, so no half-pixel shift is needed.

    Raises:
        SlocalError: the camera has distortion (undistort it first: ``undistorted_camera``).
    """
    if not is_pinhole(camera):
        raise SlocalError(
            f"camera {camera.camera_id} uses the distorted model {camera.model.name} "
            f"(extra params {_extra_params(camera).round(6).tolist()}); undistort it first",
            source,
        )
    params = np.asarray(camera.params, dtype=np.float64)
    fx_idx, pp_idx = list(camera.focal_length_idxs()), list(camera.principal_point_idxs())
    fx = params[fx_idx[0]]
    fy = params[fx_idx[1]] if len(fx_idx) > 1 else fx
    return Camera(
        int(camera.width), int(camera.height), float(fx), float(fy), float(params[pp_idx[0]]), float(params[pp_idx[1]])
    )


def colmap_camera(model: str, width: int, height: int, params, source: Path | None = None, line: int | None = None):
    """A pycolmap camera from a model name, size and parameters (as in cameras.txt), checked.

    Raises:
        SlocalError: unknown model or wrong number of parameters, naming ``source`` and ``line``.
    """
    import pycolmap

    where = f"line {line}: " if line is not None else ""
    try:
        model_id = getattr(pycolmap.CameraModelId, model)
    except AttributeError:
        raise SlocalError(f"{where}unknown COLMAP camera model {model!r}", source) from None
    camera = pycolmap.Camera.create_from_model_id(0, model_id, 1.0, int(width), int(height))
    params = [float(p) for p in params]
    if len(params) != len(camera.params):
        raise SlocalError(
            f"{where}camera model {model} takes {len(camera.params)} parameters ({camera.params_info}), got "
            f"{len(params)}",
            source,
        )
    if int(width) <= 0 or int(height) <= 0 or not all(math.isfinite(p) for p in params):
        raise SlocalError(f"{where}invalid camera {model} {width}x{height} {params}", source)
    camera.params = params
    return camera


def _undistort_options():
    import pycolmap

    return pycolmap.UndistortCameraOptions()


def undistorted_camera(camera, source: Path | None = None) -> Camera:
    """The pinhole camera of a pycolmap camera's undistorted image (itself when already a pinhole).

    Raises:
        SlocalError: pycolmap cannot undistort this camera model, with its reason.
    """
    import pycolmap

    if is_pinhole(camera):
        return pinhole_from_colmap(camera, source)
    try:
        pinhole = pycolmap.undistort_camera(_undistort_options(), camera)
    except (ValueError, RuntimeError) as exc:
        reason = str(exc).split("]")[-1].strip() or type(exc).__name__
        raise SlocalError(
            f"camera {camera.camera_id}: pycolmap cannot undistort the {camera.model.name} camera model ({reason})",
            source,
        ) from None
    return pinhole_from_colmap(pinhole, source)


def undistort_rgb(rgb_HW3: np.ndarray, camera, source: Path | None = None) -> tuple[np.ndarray, Camera]:
    """Undistort an RGB image of a pycolmap camera (pycolmap's warping, as COLMAP's undistorter).

    Returns:
        The undistorted uint8 image (H', W', 3) and its pinhole camera.
    """
    import pycolmap

    if (rgb_HW3.shape[1], rgb_HW3.shape[0]) != (camera.width, camera.height):
        raise SlocalError(
            f"image is {rgb_HW3.shape[1]}x{rgb_HW3.shape[0]} but its {camera.model.name} camera is "
            f"{camera.width}x{camera.height}",
            source,
        )
    if is_pinhole(camera):
        return rgb_HW3, pinhole_from_colmap(camera, source)
    pinhole = undistorted_camera(camera, source)  # refuses models pycolmap cannot undistort, with the reason
    bitmap, _ = pycolmap.undistort_image(
        _undistort_options(), pycolmap.Bitmap.from_array(np.ascontiguousarray(rgb_HW3)), camera
    )
    out = np.ascontiguousarray(bitmap.to_array())
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=2)
    return out, pinhole


def camera_key(camera) -> str:
    """Short hash of what decides an undistorted image: model, size, parameters, options, version."""
    blob = json.dumps(
        {
            "model": camera.model.name,
            "size": [int(camera.width), int(camera.height)],
            "params": [round(float(p), 12) for p in camera.params],
            "options": {k: str(v) for k, v in _undistort_options().todict().items()},
            "version": UNDISTORT_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def ensure_undistorted(source: Path, name: str, camera, cache_dir: Path) -> Path:
    """The undistorted copy of ``source`` under ``cache_dir``, written (atomically) when missing.

    A file in the cache is complete (written by rename); its folder name hashes
    the camera and the undistortion settings, so another camera gets another copy.
    """
    # PNG: no second lossy compression on top of the user's JPEG.
    out = cache_dir / camera_key(camera) / (name if name.lower().endswith(".png") else name + ".png")
    if not out.is_file():
        rgb, _ = undistort_rgb(read_image(source), camera, source)
        write_image(out, rgb)
    return out


def read_scale(path: Path) -> float:
    """Metres per model unit from a scale file (one positive number)."""
    text = path.read_text().split()
    try:
        (value,) = (float(v) for v in text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise SlocalError(f"line 1: expected one positive number (metres per model unit), got {' '.join(text)!r}", path)
    return value


def _read_queries(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def load_colmap_scene(root: Path, scene_id: str, cache_dir: Path | None = None) -> Scene:
    """Load a COLMAP scene folder.

    Args:
        root: the scene folder.
        scene_id: its id.
        cache_dir: folder for undistorted images (``<runs>/<scene>/undistorted``);
            needed only when a camera has distortion.

    Raises:
        SlocalError: no/corrupt model, an image of the model missing from ``images/``,
            a query not in the model, a camera pycolmap cannot undistort, or a
            distorted camera without ``cache_dir``.
    """
    import pycolmap

    model_dir = find_model(root)
    if model_dir is None:
        raise SlocalError("no COLMAP model (cameras/images/points3D .bin or .txt) found", root)
    try:
        rec = pycolmap.Reconstruction(str(model_dir))
    except (RuntimeError, ValueError) as exc:
        raise SlocalError(f"cannot read COLMAP model: {exc}", model_dir) from exc
    images_dir = root / "images"
    query_names = set(_read_queries(root / QUERIES_FILE))
    metres_per_unit = read_scale(root / SCALE_FILE) if (root / SCALE_FILE).is_file() else None

    cameras: dict[int, Camera] = {}
    mapping: list[Frame] = []
    query: list[Frame] = []
    image_ids: dict[str, int] = {}
    undistorted = 0
    for image_id in progress_bar(sorted(rec.reg_image_ids()), "COLMAP images"):
        image = rec.image(image_id)
        cam = rec.camera(image.camera_id)
        if image.camera_id not in cameras:
            cameras[image.camera_id] = undistorted_camera(cam, model_dir / "cameras")
        path = images_dir / image.name
        if not path.is_file():
            raise SlocalError(f"image {image.name} of the COLMAP model is missing", path)
        if not is_pinhole(cam):
            if cache_dir is None:
                raise SlocalError(
                    f"camera {cam.camera_id} ({cam.model.name}) has distortion; undistorting needs a runs folder "
                    "(--runs)",
                    model_dir / "cameras",
                )
            path = ensure_undistorted(path, image.name, cam, Path(cache_dir))
            undistorted += 1
        cam_from_world = np.eye(4)
        cam_from_world[:3, :] = image.cam_from_world().matrix()
        frame = Frame(image.name, path, cameras[image.camera_id], invert(cam_from_world))
        (query if image.name in query_names else mapping).append(frame)
        image_ids[image.name] = int(image_id)
    if undistorted:
        log.info("%s: %d image(s) undistorted (cached under %s)", scene_id, undistorted, cache_dir)
    missing = query_names - {f.name for f in query}
    if missing:
        raise SlocalError(
            f"{len(missing)} query image(s) are not registered in the model, e.g. {sorted(missing)[0]!r}",
            root / QUERIES_FILE,
        )
    if not mapping:
        raise SlocalError("the COLMAP model has no registered mapping image", model_dir)
    points_file = next(
        model_dir / f"points3D{ext}" for ext in (".bin", ".txt") if (model_dir / f"points3D{ext}").is_file()
    )
    digest = hashlib.sha256(points_file.read_bytes()).hexdigest()[:16]
    extra = {"model_dir": str(model_dir), "image_ids": image_ids, "model_digest": digest}
    return Scene(scene_id, root, "colmap", tuple(mapping), tuple(query), 0, extra, metres_per_unit)


# Threads for the pycolmap steps whose output must not depend on thread scheduling: feature matching and the
# fixed-pose triangulation. pycolmap 4.2's CPU matcher on two threads returned different matches for the same pair
# in different runs (on the interleaved redkitchen, pair (16, 24): 465 matches in one run, 20 in another; 1 to 5
# of 838 pairs per run), which moved the SfM teacher's points and the colour-depth rig estimated from them (0.55 cm
# in z from 7 of 10 550 points). One thread gave the same database in every run
# (benchmarks/results/2026-12-06-reproducible/). Ceres' threaded sums in triangulation are not reproducible
# either (colmap/colmap#727).
DETERMINISTIC_THREADS = 1


@contextmanager
def colmap_quiet() -> Iterator[None]:
    """Silence COLMAP's INFO logging (glog on stderr) unless slocal logs at DEBUG."""
    import pycolmap

    old = pycolmap.logging.minloglevel
    if not log.isEnabledFor(logging.DEBUG):
        pycolmap.logging.minloglevel = max(old, int(pycolmap.logging.Level.WARNING.value))
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = old
