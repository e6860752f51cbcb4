"""A student exported to ONNX (``slocal export``), run with onnxruntime on CPU.

It has the ``predict`` interface of the torch ``Student``; everything besides
the graph (scene, stride, input size, preprocessing, reference camera) comes
from the ``slocal.*`` metadata that ``slocal.localize.export`` stores.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from slocal.distill.encoder import network_input
from slocal.distill.model_file import StudentOutput
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera
from slocal.geometry.pnp import DENSE_PNP
from slocal.onnx_runtime import cpu_session

# onnx is imported when an ONNX model's metadata is read: localizing with torch students never needs it.
log = logging.getLogger(__name__)

REQUIRED_KEYS = ("version", "scene_id", "stride", "image_size", "reference_camera", "centre", "preprocess")


def read_metadata(path: str | Path) -> dict:
    """The decoded ``slocal.*`` metadata of an exported ONNX student.

    Raises:
        SlocalError: not a readable ONNX file, or not exported by slocal.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (OSError, DecodeError) as exc:
        raise SlocalError(f"not a readable ONNX file ({type(exc).__name__}: {exc})", path) from exc
    raw = {p.key[len("slocal.") :]: p.value for p in model.metadata_props if p.key.startswith("slocal.")}
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise SlocalError(f"ONNX model lacks slocal metadata {missing}; export it with `slocal export`", path)
    try:
        return {k: json.loads(v) for k, v in raw.items()}
    except json.JSONDecodeError as exc:
        raise SlocalError(f"malformed slocal metadata: {exc}", path) from exc


INTERPOLATIONS = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
}


def preprocess(
    rgb_HW3: np.ndarray, camera: Camera, image_size: tuple[int, int], spec: dict
) -> tuple[np.ndarray, Camera]:
    """The network input described by a student's preprocessing ``spec``.

    The image is resized to ``image_size`` (its camera scaled with it), then
    ``(rgb * scale - mean) / std`` per channel.

    Args:
        rgb_HW3: uint8 RGB image of ``camera``'s size.
        camera: its intrinsics.
        image_size: (width, height) the network runs at.
        spec: ``{"resize": "area"|"linear"|..., "scale": float, "mean": [3], "std": [3]}``.

    Returns:
        x_13HW float32 and the camera of the resized image.
    """
    width, height = image_size
    interpolation = INTERPOLATIONS[spec.get("resize", "area")]
    if (rgb_HW3.shape[1], rgb_HW3.shape[0]) != (width, height):
        rgb_HW3 = cv2.resize(rgb_HW3, (width, height), interpolation=interpolation)
    x_13HW = network_input(rgb_HW3, spec["mean"], spec["std"], float(spec.get("scale", 1.0 / 255.0)))
    return x_13HW, camera.scaled(width, height)


class OnnxStudent:
    """An exported student; ``predict`` mirrors ``Student.predict``.

    Attributes:
        scene_id, stride, image_size ((width, height) the network runs at),
        reference_camera, centre, num_params, file_mb, path.
    """

    def __init__(self, path: Path, metadata: dict, session):
        self.path = Path(path)
        self.metadata = metadata
        self.session = session
        self.scene_id = str(metadata["scene_id"])
        self.stride = int(metadata["stride"])
        self.image_size = tuple(int(v) for v in metadata["image_size"])
        self.reference_camera = Camera.from_dict(metadata["reference_camera"])
        self.centre = np.asarray(metadata["centre"], np.float64)
        self.preprocess = metadata["preprocess"]
        self.teacher = metadata.get("teacher")
        self.name = metadata.get("student")
        self.scene_fingerprint = metadata.get("scene_fingerprint")
        self.num_params = int(metadata.get("num_params") or 0)
        # Files exported before the threshold was recorded were localized with DENSE_PNP's.
        self.ransac_threshold_px = float(metadata.get("ransac_threshold_px") or DENSE_PNP.threshold_px)
        self.file_mb = self.path.stat().st_size / 2**20
        self._outputs = [o.name for o in session.get_outputs()]

    @classmethod
    def load(
        cls,
        path: str | Path,
        expect_scene: str | None = None,
        expect_fingerprint: str | None = None,
        threads: int | None = None,
    ) -> OnnxStudent:
        """Open an exported student on CPU.

        Args:
            path: the ``.onnx`` file.
            expect_scene: refuse a model trained for another scene.
            expect_fingerprint: refuse a model trained on another version of the scene.
            threads: onnxruntime intra-op threads (None: onnxruntime's default).

        Raises:
            SlocalError: missing/corrupt file, missing metadata, or wrong scene.
        """
        path = Path(path)
        if not path.is_file():
            raise SlocalError("model file not found", path)
        metadata = read_metadata(path)
        if expect_scene is not None and metadata["scene_id"] != expect_scene:
            raise SlocalError(f"model was trained for scene {metadata['scene_id']!r}, not {expect_scene!r}", path)
        if expect_fingerprint is not None and metadata.get("scene_fingerprint") != expect_fingerprint:
            raise SlocalError(
                f"model was trained on another version of scene {metadata['scene_id']!r} "
                f"(fingerprint {metadata.get('scene_fingerprint')} vs {expect_fingerprint}); distill and export it "
                "again",
                path,
            )
        try:
            session = cpu_session(path, threads)
        except (RuntimeError, ort.capi.onnxruntime_pybind11_state.Fail) as exc:
            raise SlocalError(f"onnxruntime cannot load the model: {exc}", path) from exc
        return cls(path, metadata, session)

    def predict(self, rgb_HW3: np.ndarray, camera: Camera):
        """World coordinates on the stride grid of the image as the network sees it.

        Args:
            rgb_HW3: uint8 RGB image described by ``camera``.
            camera: its intrinsics (same size as the image).

        Returns:
            A ``StudentOutput``.
        """
        x_13HW, net_camera = preprocess(rgb_HW3, camera, self.image_size, self.preprocess)
        start = time.perf_counter()
        outputs = self.session.run(None, {"image": x_13HW})
        ms = (time.perf_counter() - start) * 1e3
        named = dict(zip(self._outputs, outputs))
        coords_hw3 = np.ascontiguousarray(named["coords"][0].transpose(1, 2, 0), dtype=np.float32)
        conf_hw = named["conf"][0, 0].astype(np.float32) if "conf" in named else None
        return StudentOutput(coords_hw3, conf_hw, net_camera, self.stride, ms)
