"""preprocess_image: official resize/crop rules and the adjusted camera."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from slocal.geometry import Camera, pixel_centers
from slocal.teach.dust3r.preprocess import crop_box, preprocess_image


def camera_for(width: int, height: int) -> Camera:
    return Camera(width, height, fx=0.9 * width, fy=0.9 * width, cx=width / 2 + 3.3, cy=height / 2 - 2.1)


def random_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "size_in, size, size_out, crop_xy",
    [
        ((640, 480), 512, (512, 384), (0, 0)),
        ((480, 640), 512, (384, 512), (0, 0)),
        # 968 * 512 / 1296 = 382.4 -> 382 rows, centre-cropped to 23 * 16 = 368 (7 rows off the top)
        ((1296, 968), 512, (512, 368), (0, 7)),
        # square: cropped to H = 3/4 W
        ((600, 600), 512, (512, 384), (0, 64)),
        # 224 models: short side 224 (640x480 -> 299x224), centre crop 224x224
        ((640, 480), 224, (224, 224), (37, 0)),
        ((640, 480), 64, (64, 48), (0, 0)),
    ],
)
def test_sizes_crops_and_camera(size_in, size, size_out, crop_xy):
    w1, h1 = size_in
    cam = camera_for(w1, h1)
    img, new_cam = preprocess_image(random_image(w1, h1), cam, size=size)
    w, h = size_out
    assert img.shape == (3, h, w) and img.dtype == torch.float32
    assert (new_cam.width, new_cam.height) == (w, h)
    resized = (size, round(h1 * size / w1)) if w1 >= h1 else (round(w1 * size / h1), size)
    if size == 224:
        resized = (round(w1 * 224 / h1), 224)
    sx, sy = resized[0] / w1, resized[1] / h1
    assert new_cam.fx == pytest.approx(cam.fx * sx) and new_cam.fy == pytest.approx(cam.fy * sy)
    assert new_cam.cx == pytest.approx(cam.cx * sx - crop_xy[0])
    assert new_cam.cy == pytest.approx(cam.cy * sy - crop_xy[1])


def test_square_ok_keeps_square():
    img, cam = preprocess_image(random_image(600, 600), camera_for(600, 600), size=512, square_ok=True)
    assert img.shape == (3, 512, 512) and (cam.width, cam.height) == (512, 512)
    assert crop_box(512, 512, 512) == (0, 64, 512, 384)


def test_pixel_values_and_interpolation():
    """[-1, 1] scaling; BICUBIC when enlarging and LANCZOS when shrinking, like the official loader."""
    white = np.full((48, 64, 3), 255, np.uint8)
    assert torch.equal(preprocess_image(white, camera_for(64, 48), size=64)[0], torch.ones(3, 48, 64))
    assert torch.equal(preprocess_image(white * 0, camera_for(64, 48), size=64)[0], -torch.ones(3, 48, 64))
    small, big = random_image(320, 240, 1), random_image(1024, 768, 2)
    for rgb, want_filter, other in (
        (small, PIL.Image.Resampling.BICUBIC, PIL.Image.Resampling.LANCZOS),
        (big, PIL.Image.Resampling.LANCZOS, PIL.Image.Resampling.BICUBIC),
    ):
        img, _ = preprocess_image(rgb, camera_for(rgb.shape[1], rgb.shape[0]), size=512)
        want = np.asarray(PIL.Image.fromarray(rgb).resize((512, 384), want_filter)).astype(np.float32)
        wrong = np.asarray(PIL.Image.fromarray(rgb).resize((512, 384), other)).astype(np.float32)
        got = (img.permute(1, 2, 0).numpy() + 1) / 2 * 255
        assert np.abs(got - want).max() < 1e-3
        assert np.abs(got - wrong).max() > 10


@pytest.mark.parametrize("size_in, size", [((1296, 968), 512), ((640, 480), 224), ((480, 640), 512)])
def test_projected_point_lands_on_the_same_image_content(size_in, size):
    """A blob drawn at a point's projection in the original image is found at its projection with the new camera."""
    w1, h1 = size_in
    cam = camera_for(w1, h1)
    point_cam = np.array([[0.31, -0.17, 2.4]])
    uv = cam.project(point_cam)[0][0]
    centres = pixel_centers(w1, h1)  # the slocal pixel-centre convention
    sigma = 0.012 * w1
    blob = np.exp(-((centres - uv) ** 2).sum(-1) / (2 * sigma**2))
    rgb = np.repeat((255 * blob).round().astype(np.uint8)[..., None], 3, axis=2)
    img, new_cam = preprocess_image(rgb, cam, size=size)
    weight = np.clip((img[0].numpy() + 1) / 2, 0, None)
    centres_new = pixel_centers(new_cam.width, new_cam.height)
    found = (centres_new * weight[..., None]).sum((0, 1)) / weight.sum()
    want = new_cam.project(point_cam)[0][0]
    assert np.abs(found - want).max() < 0.1, (found, want)
    assert np.abs(want - uv).max() > 1  # the camera really changed


def test_bad_input():
    with pytest.raises(ValueError, match="camera is"):
        preprocess_image(random_image(64, 48), camera_for(640, 480), size=64)
    with pytest.raises(ValueError, match="multiple of 16"):
        preprocess_image(random_image(64, 48), camera_for(64, 48), size=100)
    with pytest.raises(ValueError, match="uint8"):
        preprocess_image(random_image(64, 48).astype(np.float32), camera_for(64, 48), size=64)
