"""The student model file and the ``Student`` wrapper the localizer uses.

A model file is ``torch.save`` of plain values only (tensors, dicts, lists,
str, int, float, bool), so it loads with ``torch.load(weights_only=True)``::

    format, version          "slocal-student", 1
    student                  the student's settings as a dict (``to_plain``; ``arch`` names its class)
    state_dict               the network's parameters and buffers
    scene_id, scene_fingerprint
    centre                   [x, y, z] added to the network output (metres)
    image_size, stride       (width, height) the network runs at; output stride
    camera                   the reference camera: intrinsics of the mapping images at their stored size
                             (the first mapping frame's; the network sees it scaled to image_size)
    teacher                  the teacher the targets came from
    teacher_settings         that teacher's settings (``TargetSet.settings``: what keys its cached targets)
    teacher_consistency      the targets' multi-view consistency (``TargetSet.stats["consistency"]``)
    depth_registration       the colour-depth rig the scene's depth and poses went through
                             (``DepthRegistration.summary``), or None
    train                    training summary (iterations, minutes, loss, validation, settings)
    num_params
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from slocal.device import use_bf16
from slocal.distill.config import StudentConfig, to_plain
from slocal.distill.config_files import student_from_plain
from slocal.distill.encoder import network_input, weights_digest
from slocal.distill.students import BufferStudent, StudentNet, build_student, num_params
from slocal.errors import SlocalError, first_line
from slocal.geometry.camera import Camera
from slocal.io import atomic_path
from slocal.torch_io import read_torch_file

log = logging.getLogger(__name__)

MODEL_FORMAT = "slocal-student"
MODEL_VERSION = 1
_REQUIRED = ("student", "state_dict", "scene_id", "scene_fingerprint", "centre", "image_size", "stride", "camera")


@dataclass(frozen=True, eq=False)
class StudentOutput:
    """A student's prediction for one image.

    Attributes:
        coords_hw3: float32 world-frame scene coordinates (centre added back) on the stride grid.
        conf_hw: float32 confidence, higher = more reliable, or None.
        camera: the camera of the image as the network saw it (input camera scaled to ``image_size``).
        stride: grid cell ``(i, j)`` has image coordinates ``(stride*j + stride/2, stride*i + stride/2)``
            in ``camera`` (``slocal.geometry.pixel_centers``).
        ms_network: forward-pass time in milliseconds (preprocessing excluded).
    """

    coords_hw3: np.ndarray
    conf_hw: np.ndarray | None
    camera: Camera
    stride: int
    ms_network: float


class _ExportModule(torch.nn.Module):
    """fp32 network + centre: image (B, 3, H, W) -> world coords (B, 3, h, w)[, conf (B, 1, h, w)]."""

    def __init__(self, net: StudentNet, centre: np.ndarray):
        super().__init__()
        self.net = net
        self.register_buffer("centre", torch.as_tensor(np.asarray(centre, np.float32)).view(1, 3, 1, 1))
        self.uncertainty = net.config.uncertainty

    def forward(self, image: torch.Tensor):
        out = self.net(image)
        coords = out[:, :3] + self.centre
        if self.uncertainty:
            return coords, torch.exp(-out[:, 3:4])
        return coords


class Student:
    """A loaded student: the network plus what is needed to use it.

    Attributes:
        name: student preset/name; teacher: the teacher it was distilled from.
        teacher_settings, teacher_consistency: that teacher's settings and its targets' multi-view
            consistency ({} and None in files written before they were recorded).
        depth_registration: the colour-depth rig it was taught through (``DepthRegistration.summary``), or None.
        scene_id, scene_fingerprint: the scene it was trained for.
        stride: output stride; image_size: (width, height) the network runs at.
        reference_camera: intrinsics of the mapping images at their stored size (the first mapping frame's).
        centre: (3,) float64 offset added to the network output.
        num_params, file_mb: size of the network and of the file.
        module: the ``torch.nn.Module`` (eval mode).
        config: the ``StudentConfig``; train_info: the stored training summary.
        precision: ``fp32`` or ``bf16`` (autocast of the body; the last layer is fp32).
        ransac_threshold_px: the RANSAC inlier threshold its preset chose (``StudentConfig``).
    """

    def __init__(self, module: StudentNet, payload: dict, file_mb: float, device: torch.device, precision: str):
        self.module = module
        self.config: StudentConfig = module.config
        self.name = self.config.name
        self.teacher = str(payload.get("teacher") or "")
        self.teacher_settings = dict(payload.get("teacher_settings") or {})
        self.teacher_consistency = payload.get("teacher_consistency")
        self.depth_registration = payload.get("depth_registration") or None
        self.scene_id = str(payload["scene_id"])
        self.scene_fingerprint = str(payload["scene_fingerprint"])
        self.stride = int(payload["stride"])
        self.image_size = (int(payload["image_size"][0]), int(payload["image_size"][1]))
        self.reference_camera = Camera.from_dict(payload["camera"])
        self.ransac_threshold_px = self.config.ransac_threshold_px
        self.centre = np.asarray(payload["centre"], np.float64).reshape(3)
        self.num_params = num_params(module)
        self.file_mb = file_mb
        self.train_info = dict(payload.get("train") or {})
        self.device = device
        self.precision = "bf16" if use_bf16(precision, device) else "fp32"
        self._channels_last = self.config.channels_last
        self._centre_t = torch.as_tensor(self.centre, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def preprocess_spec(self) -> dict:
        """How images become network input: resize, then ``(rgb * scale - mean) / std``."""
        return {"resize": "area", "scale": 1.0 / 255.0, "mean": list(self.config.mean), "std": list(self.config.std)}

    def prepare(self, rgb_HW3: np.ndarray, camera: Camera) -> tuple[np.ndarray, Camera]:
        """Resize to ``image_size`` and scale the camera with it."""
        if (rgb_HW3.shape[1], rgb_HW3.shape[0]) != camera.size:
            raise SlocalError(
                f"image is {rgb_HW3.shape[1]}x{rgb_HW3.shape[0]} but the camera is {camera.width}x{camera.height}"
            )
        width, height = self.image_size
        if camera.size != (width, height):
            rgb_HW3 = cv2.resize(rgb_HW3, (width, height), interpolation=cv2.INTER_AREA)
        return rgb_HW3, camera.scaled(width, height)

    def preprocess_network_input(self, rgb_HW3: np.ndarray) -> np.ndarray:
        """(1, 3, H, W) float32 network input of an RGB image (resized to ``image_size`` if needed)."""
        width, height = self.image_size
        if (rgb_HW3.shape[1], rgb_HW3.shape[0]) != (width, height):
            rgb_HW3 = cv2.resize(rgb_HW3, (width, height), interpolation=cv2.INTER_AREA)
        return network_input(rgb_HW3, self.config.mean, self.config.std)

    def export_module(self) -> torch.nn.Module:
        """The network in fp32 with the centre added: image -> coords[, conf] (see ``slocal.localize.export``)."""
        net = self.module.to(memory_format=torch.contiguous_format)
        return _ExportModule(net, self.centre).to(self.device).eval()

    def forward(self, x_B3HW: torch.Tensor) -> torch.Tensor:
        """Raw network output (centre not added) under the student's precision."""
        if self._channels_last:
            x_B3HW = x_B3HW.contiguous(memory_format=torch.channels_last)
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"),
        ):
            return self.module(x_B3HW)

    def predict(self, rgb_HW3: np.ndarray, camera: Camera) -> StudentOutput:
        """World coordinates on the stride grid of the image as the network sees it.

        Args:
            rgb_HW3: uint8 RGB image.
            camera: its intrinsics (same size as the image).
        """
        rgb, net_camera = self.prepare(rgb_HW3, camera)
        x = torch.from_numpy(self.preprocess_network_input(rgb)).to(self.device)
        start = time.perf_counter()
        out = self.forward(x)
        coords = (out[:, :3] + self._centre_t)[0].permute(1, 2, 0).float().cpu().numpy()
        conf = torch.exp(-out[0, 3]).float().cpu().numpy() if self.config.uncertainty else None
        ms = (time.perf_counter() - start) * 1e3
        return StudentOutput(np.ascontiguousarray(coords, dtype=np.float32), conf, net_camera, self.stride, ms)


def save_student(
    path: str | Path,
    net: StudentNet,
    *,
    scene_id: str,
    scene_fingerprint: str,
    centre: np.ndarray,
    image_size: tuple[int, int],
    camera: Camera,
    teacher: str,
    train: dict,
    teacher_settings: dict | None = None,
    teacher_consistency: dict | None = None,
    depth_registration: dict | None = None,
) -> Path:
    """Write a model file atomically (plain values only; see the module docstring)."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in net.scene_state_dict(compact=True).items()}
    payload = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "student": to_plain(net.config),
        "state_dict": state,
        "scene_id": scene_id,
        "scene_fingerprint": scene_fingerprint,
        "centre": [float(v) for v in np.asarray(centre).reshape(3)],
        "image_size": [int(image_size[0]), int(image_size[1])],
        "stride": int(net.config.stride),
        "camera": camera.to_dict(),
        "teacher": teacher,
        "teacher_settings": dict(teacher_settings or {}),
        "teacher_consistency": teacher_consistency,
        "depth_registration": depth_registration,
        "train": train,
        "num_params": num_params(net),
    }
    if isinstance(net, BufferStudent):
        payload["encoder"] = {"name": net.config.encoder, "weights_sha256": weights_digest(net.encoder.weights_file)}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_model_payload(path: str | Path) -> dict:
    """The checked contents of a model file (``weights_only`` load)."""
    path = Path(path)
    payload = read_torch_file(path, "model file not found", "not a readable slocal model file")
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise SlocalError("not a slocal student model file (no 'format': 'slocal-student')", path)
    if payload.get("version") != MODEL_VERSION:
        raise SlocalError(
            f"model file version {payload.get('version')} is not supported (expected {MODEL_VERSION})", path
        )
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise SlocalError(f"model file lacks {', '.join(missing)}", path)
    return payload


def load_student(
    path: str | Path,
    device: str = "cpu",
    expect_scene: str | None = None,
    *,
    expect_student: str | None = None,
    expect_fingerprint: str | None = None,
    precision: str = "auto",
) -> Student:
    """Load a student model file.

    Args:
        device: torch device.
        expect_scene: refuse a model trained for another scene id.
        expect_student: refuse a model of another student name (e.g. ``cnn-small``).
        expect_fingerprint: refuse a model trained on another version of the scene.
        precision: ``auto`` (bf16 on CPUs with native bf16 / bf16 GPUs), ``fp32`` or ``bf16``.

    Raises:
        SlocalError: missing or corrupt file, or a model for another scene/student.
    """
    path = Path(path)
    payload = read_model_payload(path)
    if expect_scene is not None and payload["scene_id"] != expect_scene:
        raise SlocalError(f"model was trained for scene {payload['scene_id']!r}, not {expect_scene!r}", path)
    if expect_fingerprint is not None and payload["scene_fingerprint"] != expect_fingerprint:
        rig = payload.get("depth_registration")
        remedy = (
            "distill it again, or use the colour-depth rig it was taught through (the model file as "
            "--depth-registration: depth camera at "
            f"({', '.join(f'{v:+.2f}' for v in rig['depth_from_colour_translation_cm'])}) cm, "
            f"{rig['rotation_deg']:.2f} deg, depth scale {rig['depth_scale']:.4f})"
            if rig
            else "distill it again"
        )
        raise SlocalError(
            f"model was trained on another version of scene {payload['scene_id']!r} "
            f"(fingerprint {payload['scene_fingerprint']} vs {expect_fingerprint}); {remedy}",
            path,
        )
    config = student_from_plain(payload["student"], path)
    if expect_student is not None and config.name != expect_student:
        raise SlocalError(f"model is student {config.name!r}, not {expect_student!r}", path)
    image_size = (int(payload["image_size"][0]), int(payload["image_size"][1]))
    net = build_student(config, image_size)
    if isinstance(net, BufferStudent):
        stored = (payload.get("encoder") or {}).get("weights_sha256")
        current = weights_digest(net.encoder.weights_file)
        if stored != current:
            raise SlocalError(
                f"model was trained on {config.encoder} encoder weights {stored}, but {net.encoder.weights_file} "
                f"is {current}; distill it again with these weights",
                path,
            )
    try:
        net.load_scene_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise SlocalError(
            f"weights do not match the stored {config.name} student: {first_line(exc, 300)}", path
        ) from exc
    dev = torch.device(device)
    net = net.to(dev).eval()
    if isinstance(net, BufferStudent) and dev.type == "cpu":
        net.prepare_inference(image_size)
    if config.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return Student(net, payload, path.stat().st_size / 2**20, dev, precision)
