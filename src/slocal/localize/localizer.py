"""Localize a query image: student scene coordinates -> 2D-3D matches -> PnP-RANSAC.

The student predicts world coordinates on a stride grid of the image as the
network saw it (``StudentOutput.camera``); grid cell centres follow
``slocal.geometry.pixel_centers`` (the pixel-centre convention of
``slocal.geometry.camera``). poselib's LO-RANSAC with non-linear refinement
turns the matches into ``cam_from_world``; a ``FlowRefiner`` (``slocal.localize.refine``) may
finish it against the nearest mapping images.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from slocal.distill.model_file import load_student
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera, pixel_centers
from slocal.geometry.pnp import DENSE_PNP, PnpConfig, solve_pnp
from slocal.io import read_image
from slocal.localize.onnx_student import OnnxStudent
from slocal.runs import default_student_path

log = logging.getLogger(__name__)

# Relative difference of width/height ratios above which an image and a camera
# are considered different shapes (rounding a resized image stays well below it).
ASPECT_TOLERANCE = 0.01
# The principal point may lie off-centre, but not this far (fraction of the
# image size) outside the image: that means intrinsics for another image.
PRINCIPAL_POINT_MARGIN = 0.25


class ScenePredictor(Protocol):
    """What the localizer needs from a student (torch ``Student`` or ``OnnxStudent``).

    A predictor may also state ``ransac_threshold_px``, the RANSAC inlier threshold its preset chose
    (``StudentConfig.ransac_threshold_px``); one that does not is localized with ``DENSE_PNP``'s.
    """

    scene_id: str
    stride: int

    def predict(self, rgb_HW3: np.ndarray, camera: Camera):
        """Return an object with ``coords_hw3``, ``conf_hw``, ``camera``, ``stride``, ``ms_network``."""


class PoseRefiner(Protocol):
    """What the localizer needs from a refiner (``slocal.localize.refine.FlowRefiner``).

    Typed here rather than imported, so that loading a localizer stays free of the teachers the
    refiner reads its targets from.
    """

    def refine(self, rgb_HW3: np.ndarray, camera: Camera, cam_from_world: np.ndarray):
        """Return an object with ``cam_from_world``, ``success``, ``num_matches`` and ``num_inliers``."""


@dataclass(frozen=True, eq=False)
class Localization:
    """The pose of one query image.

    Attributes:
        cam_from_world: (4, 4) float64 pose, or None when localization failed.
        success: enough RANSAC inliers were found.
        num_inliers: RANSAC inliers.
        num_correspondences: 2D-3D matches given to RANSAC.
        ms: wall time per stage in milliseconds: ``load`` (only for
            ``localize_image``), ``network`` (preprocessing + forward pass),
            ``ransac`` (match selection + PnP-RANSAC + refinement), ``refine``
            (only with a flow refiner) and ``total``.
        refined: the pose is the flow refinement's, not the student's.
    """

    cam_from_world: np.ndarray | None
    success: bool
    num_inliers: int
    num_correspondences: int
    ms: dict[str, float] = field(default_factory=dict)
    refined: bool = False


def fit_camera_to_image(camera: Camera, width: int, height: int, image: str | Path | None = None) -> Camera:
    """The camera of an image of ``width`` x ``height`` pixels.

    A camera for the same image at another resolution is rescaled; a camera of
    a different aspect ratio, or whose principal point lies far outside the
    image, does not describe this image and is refused.

    Raises:
        SlocalError: naming ``image``, when the intrinsics cannot belong to it.
    """
    if (camera.width, camera.height) != (width, height):
        image_aspect, camera_aspect = width / height, camera.width / camera.height
        if abs(image_aspect - camera_aspect) / camera_aspect > ASPECT_TOLERANCE:
            raise SlocalError(
                f"image is {width}x{height} but the intrinsics are for {camera.width}x{camera.height} "
                f"(aspect {image_aspect:.3f} vs {camera_aspect:.3f}); pass intrinsics for this image (--intrinsics)",
                image,
            )
        camera = camera.scaled(width, height)
    mx, my = PRINCIPAL_POINT_MARGIN * width, PRINCIPAL_POINT_MARGIN * height
    if not (-mx <= camera.cx <= width + mx and -my <= camera.cy <= height + my):
        raise SlocalError(
            f"principal point ({camera.cx:g}, {camera.cy:g}) is far outside the {width}x{height} image; "
            "the intrinsics do not match this image",
            image,
        )
    return camera


def check_rgb(rgb_HW3: np.ndarray, image: str | Path | None = None) -> None:
    """Refuse anything but an (H, W, 3) uint8 array."""
    if not isinstance(rgb_HW3, np.ndarray) or rgb_HW3.ndim != 3 or rgb_HW3.shape[2] != 3 or rgb_HW3.dtype != np.uint8:
        shape = getattr(rgb_HW3, "shape", None)
        dtype = getattr(rgb_HW3, "dtype", type(rgb_HW3).__name__)
        raise SlocalError(f"expected an RGB uint8 image (H, W, 3), got shape {shape} dtype {dtype}", image)
    if rgb_HW3.shape[0] < 1 or rgb_HW3.shape[1] < 1:
        raise SlocalError(f"image is empty ({rgb_HW3.shape[1]}x{rgb_HW3.shape[0]})", image)


def correspondences(
    output, min_confidence: float | None = None, max_points: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """2D-3D matches from a student output.

    Args:
        output: a ``StudentOutput`` (``coords_hw3`` on the stride grid of ``output.camera``).
        min_confidence: drop cells whose confidence is below this (needs ``conf_hw``).
        max_points: keep at most this many cells, the most confident ones
            (evenly spaced ones without a confidence).

    Returns:
        uv_N2 (image coordinates in ``output.camera``) and xyz_N3 (world, metres), float64.
    """
    cam, s = output.camera, int(output.stride)
    uv_hw2 = pixel_centers(cam.width, cam.height, s)
    coords_hw3 = np.asarray(output.coords_hw3)
    if coords_hw3.shape != (*uv_hw2.shape[:2], 3):
        raise ValueError(
            f"student coordinates have shape {coords_hw3.shape}, expected {(*uv_hw2.shape[:2], 3)} "
            f"for a {cam.width}x{cam.height} image at stride {s}"
        )
    uv = uv_hw2.reshape(-1, 2)
    xyz = coords_hw3.reshape(-1, 3).astype(np.float64)
    keep = np.isfinite(xyz).all(1)
    conf = None if output.conf_hw is None else np.asarray(output.conf_hw, np.float64).reshape(-1)
    if conf is not None:
        if conf.size != len(uv):
            raise ValueError(f"student confidence has {conf.size} cells, coordinates have {len(uv)}")
        keep &= np.isfinite(conf)
        if min_confidence is not None:
            keep &= conf >= min_confidence
    elif min_confidence is not None:
        log.debug("min_confidence set but the student outputs no confidence; not filtering")
    idx = np.flatnonzero(keep)
    if max_points is not None and len(idx) > max_points:
        if conf is not None:
            idx = idx[np.argsort(-conf[idx], kind="stable")[:max_points]]
        else:
            idx = idx[np.linspace(0, len(idx) - 1, max_points).round().astype(np.int64)]
    return uv[idx], xyz[idx]


def student_pnp(
    model: ScenePredictor, ransac_points: int | None = None, threshold_px: float | None = None
) -> PnpConfig:
    """The RANSAC settings a student is localized with: ``DENSE_PNP`` at the student's own threshold.

    Args:
        ransac_points: RANSAC on this many of the matches (0: all; None: ``DENSE_PNP``'s).
        threshold_px: this inlier threshold instead of the student's (pixels at 640 px width).
    """
    threshold = threshold_px if threshold_px is not None else getattr(model, "ransac_threshold_px", None)
    config = replace(DENSE_PNP, threshold_px=float(threshold)) if threshold is not None else DENSE_PNP
    return config if ransac_points is None else replace(config, ransac_points=ransac_points or None)


class Localizer:
    """Student + PnP-RANSAC.

    Args:
        model: a ``Student`` (torch) or ``OnnxStudent``; anything with ``predict``.
        pnp_config: RANSAC settings (default: ``student_pnp(model)``, ``DENSE_PNP`` at the threshold
            the student's preset chose); its pixel threshold scales with the width of the image the
            network saw.
        min_confidence: drop predictions with a lower confidence (None: keep all).
        max_points: use at most this many matches, the most confident (None: all).
        refiner: finishes each pose against the nearest mapping images (None: the student's pose).
    """

    def __init__(
        self,
        model: ScenePredictor,
        pnp_config: PnpConfig | None = None,
        min_confidence: float | None = None,
        max_points: int | None = None,
        refiner: PoseRefiner | None = None,
    ):
        self.model = model
        self.pnp_config = pnp_config if pnp_config is not None else student_pnp(model)
        self.min_confidence = min_confidence
        self.max_points = max_points
        self.refiner = refiner
        self._warned_aspect = False

    @property
    def scene_id(self) -> str:
        return self.model.scene_id

    def localize(self, rgb_HW3: np.ndarray, camera: Camera, image: str | Path | None = None) -> Localization:
        """Estimate the pose of an image.

        Args:
            rgb_HW3: uint8 RGB image.
            camera: its intrinsics; rescaled when the image has another size but the same aspect.
            image: a name for error messages (the file, usually).

        Returns:
            A ``Localization``; too few inliers is ``success=False``.

        Raises:
            SlocalError: the image is not RGB uint8, or the camera does not fit it.
        """
        start = time.perf_counter()
        check_rgb(rgb_HW3, image)
        camera = fit_camera_to_image(camera, rgb_HW3.shape[1], rgb_HW3.shape[0], image)
        self._warn_if_distorted(camera, image)
        output = self.model.predict(rgb_HW3, camera)
        t_net = time.perf_counter()
        uv, xyz = correspondences(output, self.min_confidence, self.max_points)
        result = solve_pnp(uv, xyz, output.camera, self.pnp_config)
        t_ransac = time.perf_counter()
        ms = {"network": (t_net - start) * 1e3, "ransac": (t_ransac - t_net) * 1e3}
        if not result.success:
            log.debug("%s: localization failed (%d inliers of %d)", image, result.num_inliers, len(uv))
        cam_from_world, refined = result.cam_from_world, False
        if self.refiner is not None and result.success:
            refinement = self.refiner.refine(rgb_HW3, camera, result.cam_from_world)
            ms["refine"] = (time.perf_counter() - t_ransac) * 1e3
            if refinement.success:
                cam_from_world, refined = refinement.cam_from_world, True
            else:
                log.debug(
                    "%s: flow refinement failed (%d inliers of %d matches); the student's pose stays",
                    image,
                    refinement.num_inliers,
                    refinement.num_matches,
                )
        ms["total"] = (time.perf_counter() - start) * 1e3
        return Localization(cam_from_world, result.success, result.num_inliers, result.num_correspondences, ms, refined)

    def _warn_if_distorted(self, camera: Camera, image: str | Path | None) -> None:
        # The mapping images' shape (a model without a reference camera: its input size).
        ref = getattr(self.model, "reference_camera", None)
        size = ref.size if ref is not None else getattr(self.model, "image_size", None)
        if size is None or self._warned_aspect:
            return
        ref_aspect, aspect = size[0] / size[1], camera.width / camera.height
        if abs(ref_aspect - aspect) / ref_aspect > ASPECT_TOLERANCE:
            # The network input is resized to its training size: an image of another shape than the
            # mapping images gets stretched differently (geometry stays exact, the camera is scaled
            # the same way), so the network sees a distortion it was not trained on.
            log.warning(
                "%s: image aspect %.3f differs from the mapping images' %dx%d (%.3f); it is stretched",
                image if image is not None else "query",
                aspect,
                size[0],
                size[1],
                ref_aspect,
            )
            self._warned_aspect = True

    def localize_image(
        self,
        path: str | Path,
        camera: Camera | None = None,
        intrinsics: tuple[float, float, float, float] | None = None,
    ) -> Localization:
        """Read an image file and localize it; ``ms`` has ``load`` (decoding), included in ``total``.

        Args:
            path: the image file.
            camera: intrinsics of the image, possibly at another resolution (rescaled if the aspect matches).
            intrinsics: instead of ``camera``: (fx, fy, cx, cy) in pixels of this image at its stored size.

        Raises:
            SlocalError: naming the file, when it is missing or corrupt or the intrinsics do not fit it.
        """
        if (camera is None) == (intrinsics is None):
            raise ValueError("give exactly one of camera and intrinsics")
        start = time.perf_counter()
        rgb = read_image(path)
        load_ms = (time.perf_counter() - start) * 1e3
        if intrinsics is not None:
            try:
                camera = Camera(rgb.shape[1], rgb.shape[0], *(float(v) for v in intrinsics))
            except SlocalError as exc:
                raise SlocalError(exc.message, path) from None
        loc = self.localize(rgb, camera, image=path)
        ms = {"load": load_ms, **loc.ms, "total": loc.ms["total"] + load_ms}
        return replace(loc, ms=ms)


def load_model(
    path: str | Path,
    device: str = "cpu",
    expect_scene: str | None = None,
    expect_fingerprint: str | None = None,
    threads: int | None = None,
) -> ScenePredictor:
    """Load a student for localization: ``.onnx`` -> ``OnnxStudent`` (CPU), else a torch student file.

    Args:
        path: ``model.pt`` written by ``slocal distill``, or ``.onnx`` written by ``slocal export``.
        device: torch device for ``.pt`` students.
        expect_scene: refuse a model trained for another scene.
        expect_fingerprint: refuse a model trained on another version of the scene.
        threads: onnxruntime threads for ``.onnx`` models (torch's are set with ``torch.set_num_threads``).

    Raises:
        SlocalError: missing/corrupt file, or a model for another scene.
    """
    path = Path(path)
    if not path.is_file():
        raise SlocalError("model file not found", path)
    if path.stat().st_size == 0:
        # Neither reader says so: onnx parses an empty file as a model without metadata.
        raise SlocalError("not a slocal model file: the file is empty (0 bytes)", path)
    if path.suffix.lower() == ".onnx":
        return OnnxStudent.load(path, expect_scene=expect_scene, expect_fingerprint=expect_fingerprint, threads=threads)
    return load_student(path, device=device, expect_scene=expect_scene, expect_fingerprint=expect_fingerprint)


def trained_students(runs_root: str | Path, scene_id: str) -> list[str]:
    """The students that have a model file for a scene under the runs folder (folder names, sorted)."""
    students = Path(default_student_path(runs_root, scene_id, "_")).parent.parent
    return sorted(p.parent.name for p in students.glob("*/model.pt"))
