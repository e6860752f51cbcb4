"""Image preparation exactly like DUSt3R's ``load_images``, with the matching camera.

* ``size=224``: the short side is resized to 224, then a centred 224 x 224 crop.
* any other ``size`` (512 for the 512 models; a smaller multiple of 16 for
  tests): the long side is resized to ``size``, then centred crops make both
  sides multiples of 16; a square result is cropped to H = 3/4 W unless
  ``square_ok``.

Resampling uses Pillow like the official loader: LANCZOS when shrinking,
BICUBIC otherwise. Pixels become ``(x / 255 - 0.5) / 0.5`` in [-1, 1].

The returned :class:`~slocal.geometry.Camera` describes the processed image
(``Camera.scaled`` then ``Camera.cropped``, in the pixel convention of
:mod:`slocal.geometry.camera`), so a point-map pixel ``(col, row)`` of the
network output sees the ray through ``(col + 0.5, row + 0.5)`` of that camera.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch

from slocal.geometry import Camera

PATCH = 16


def _resize_long_edge(img: PIL.Image.Image, long_edge: int) -> PIL.Image.Image:
    s = max(img.size)
    interp = PIL.Image.Resampling.LANCZOS if s > long_edge else PIL.Image.Resampling.BICUBIC
    new_size = tuple(int(round(x * long_edge / s)) for x in img.size)
    return img.resize(new_size, interp)


def crop_box(width: int, height: int, size: int, square_ok: bool = False) -> tuple[int, int, int, int]:
    """Crop ``(x0, y0, w, h)`` that the official loader takes from a resized ``width`` x ``height`` image."""
    cx, cy = width // 2, height // 2
    if size == 224:
        half = min(cx, cy)
        return cx - half, cy - half, 2 * half, 2 * half
    halfw, halfh = ((2 * cx) // PATCH) * (PATCH // 2), ((2 * cy) // PATCH) * (PATCH // 2)
    if not square_ok and width == height:
        # official: halfh = 3 * halfw / 4; rounded down to keep H a multiple of 16 for any size
        halfh = (3 * halfw // 4) // (PATCH // 2) * (PATCH // 2)
    return cx - halfw, cy - halfh, 2 * halfw, 2 * halfh


def preprocess_image(
    rgb_HW3: np.ndarray, camera: Camera, size: int = 512, square_ok: bool = False
) -> tuple[torch.Tensor, Camera]:
    """Prepare one RGB image for the DUSt3R network.

    Args:
        rgb_HW3: uint8 (H, W, 3) RGB image.
        camera: its pinhole camera (size must equal the image's).
        size: 224 (short side 224, square crop) or the long side in pixels, a
            multiple of 16 (512 for the 512 models).
        square_ok: keep square crops square (official default False: H = 3/4 W).

    Returns:
        img_3HW: float32 tensor (3, H, W) in [-1, 1], H and W multiples of 16;
        camera of the processed image.

    Raises:
        ValueError: wrong dtype/shape, a camera of another size, or a bad ``size``.
    """
    if rgb_HW3.dtype != np.uint8 or rgb_HW3.ndim != 3 or rgb_HW3.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) RGB image, got {rgb_HW3.dtype} {rgb_HW3.shape}")
    h1, w1 = rgb_HW3.shape[:2]
    if (camera.width, camera.height) != (w1, h1):
        raise ValueError(f"camera is {camera.width}x{camera.height} but the image is {w1}x{h1}")
    if size <= 0 or size % PATCH:
        raise ValueError(f"size must be a positive multiple of {PATCH}, got {size}")
    img = PIL.Image.fromarray(np.ascontiguousarray(rgb_HW3))
    long_edge = round(size * max(w1 / h1, h1 / w1)) if size == 224 else size
    img = _resize_long_edge(img, long_edge)
    w, h = img.size
    x0, y0, cw, ch = crop_box(w, h, size, square_ok)
    if cw < PATCH or ch < PATCH:
        raise ValueError(f"image {w1}x{h1} is too elongated to crop at size {size}")
    img = img.crop((x0, y0, x0 + cw, y0 + ch))
    img_3HW = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().div(255.0)
    img_3HW = (img_3HW - 0.5) / 0.5
    return img_3HW.contiguous(), camera.scaled(w, h).cropped(x0, y0, cw, ch)
