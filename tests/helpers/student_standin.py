"""Test-only stand-ins for a distilled student (never used by the library).

``OracleStudent`` has the ``Student.predict`` interface but returns exact world
coordinates computed from a known pose and a synthetic depth map, so a
localizer round trip must recover that pose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from slocal.geometry import Camera, invert, pixel_centers, to_homogeneous, transform_points


@dataclass
class StandinOutput:
    coords_hw3: np.ndarray
    conf_hw: np.ndarray | None
    camera: Camera
    stride: int
    ms_network: float = 0.0


def synthetic_depth(uv_N2: np.ndarray, camera: Camera) -> np.ndarray:
    """A smooth, strictly positive depth (metres) as a function of normalised image position."""
    x = uv_N2[:, 0] / camera.width
    y = uv_N2[:, 1] / camera.height
    return 2.0 + 0.6 * np.sin(3.0 * x) + 0.4 * np.cos(5.0 * y) + 0.3 * x * y


def random_pose(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return to_homogeneous(Rotation.random(random_state=seed).as_matrix(), rng.normal(scale=1.5, size=3))


class OracleStudent:
    """Exact scene coordinates for the pose ``cam_from_world`` (set per query)."""

    def __init__(self, scene_id="synthetic", image_size=(160, 120), stride=8, outlier_fraction=0.0, seed=0):
        self.scene_id = scene_id
        self.image_size = image_size
        self.stride = stride
        self.outlier_fraction = outlier_fraction
        self.seed = seed
        self.cam_from_world = np.eye(4)
        self.calls = 0

    def predict(self, rgb_HW3: np.ndarray, camera: Camera) -> StandinOutput:
        assert rgb_HW3.shape[:2] == (camera.height, camera.width)
        self.calls += 1
        net_cam = camera.scaled(*self.image_size)
        uv = pixel_centers(net_cam.width, net_cam.height, self.stride).reshape(-1, 2)
        pts_cam = net_cam.backproject(uv, synthetic_depth(uv, net_cam))
        xyz = transform_points(invert(self.cam_from_world), pts_cam)
        conf = np.ones(len(uv), np.float32)
        rng = np.random.default_rng(self.seed)
        bad = rng.random(len(uv)) < self.outlier_fraction
        xyz[bad] += rng.normal(scale=1.0, size=(int(bad.sum()), 3))
        conf[bad] = 0.1
        h, w = net_cam.height // self.stride, net_cam.width // self.stride
        return StandinOutput(xyz.reshape(h, w, 3).astype(np.float32), conf.reshape(h, w), net_cam, self.stride)


class SceneOracleStudent(OracleStudent):
    """Exact coordinates for any query image of ``scene``, recognised by its pixels."""

    def __init__(self, scene, image_size=(64, 48), stride=8, outlier_fraction=0.0, seed=0):
        from slocal.io import read_image

        super().__init__(scene.id, image_size, stride, outlier_fraction, seed)
        self.poses = {read_image(f.image_path).tobytes(): f.cam_from_world for f in scene.query}
        self.file_mb = 0.5
        self.num_params = 1234

    def predict(self, rgb_HW3, camera):
        self.cam_from_world = self.poses[rgb_HW3.tobytes()]
        return super().predict(rgb_HW3, camera)


def make_tiny_student(scene_id="synthetic", image_size=(64, 48), stride=8, seed=0):
    """A tiny conv student with the export interface of ``slocal.distill`` students (test only)."""
    import torch

    from slocal.localize.onnx_student import preprocess

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(
                torch.nn.Conv2d(3, 16, stride, stride),
                torch.nn.ReLU(),
                torch.nn.Conv2d(16, 16, 1),
                torch.nn.GELU(),
                torch.nn.Conv2d(16, 4, 1),
            )
            self.register_buffer("centre", torch.tensor([0.5, -1.0, 2.0]))

        def forward(self, x):
            out = self.body(x)
            return out[:, :3] + self.centre.view(1, 3, 1, 1), torch.nn.functional.softplus(out[:, 3:])

    torch.manual_seed(seed)

    class Tiny:
        def __init__(self):
            self.scene_id = scene_id
            self.stride = stride
            self.image_size = image_size
            self.module = Net().eval()
            self.num_params = sum(p.numel() for p in self.module.parameters())
            self.file_mb = 0.01
            self.reference_camera = Camera(
                image_size[0], image_size[1], 50.0, 50.0, image_size[0] / 2, image_size[1] / 2
            )
            self.centre = np.array([0.5, -1.0, 2.0])
            self.name = "tiny"
            self.teacher = "depth"

        def export_module(self):
            return self.module

        def preprocess_spec(self):
            return {"resize": "area", "scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}

        def preprocess_network_input(self, rgb):
            return preprocess(
                rgb, self.reference_camera.scaled(rgb.shape[1], rgb.shape[0]), self.image_size, self.preprocess_spec()
            )[0]

        def predict(self, rgb, camera):
            x, net_cam = preprocess(rgb, camera, self.image_size, self.preprocess_spec())
            with torch.no_grad():
                coords, conf = self.module(torch.from_numpy(x))
            return StandinOutput(coords[0].permute(1, 2, 0).numpy(), conf[0, 0].numpy(), net_cam, self.stride)

    return Tiny()
