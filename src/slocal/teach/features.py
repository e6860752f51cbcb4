"""SIFT features through pycolmap: extraction at a bounded resolution, quiet logging.

Shared by the SfM teacher (``slocal.teach.sfm``) and the SIFT baseline (``slocal.bench.sift``).
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from slocal.data.colmap import colmap_quiet
from slocal.errors import SlocalError

# pycolmap is imported inside the functions that use it: it loads large native libraries
# that the depth teacher, distillation and the localizer never need.

log = logging.getLogger(__name__)


class SiftExtractor:
    """pycolmap SIFT at a bounded resolution, keypoints in the input image's coordinates.

    Args:
        max_side: the image is downscaled (area interpolation) so its longer side is at most this.
        max_features: keep at most this many keypoints, the largest-scale ones.
        num_threads: CPU threads.
        use_gpu: use pycolmap's CUDA SIFT.
    """

    def __init__(self, max_side: int, max_features: int, num_threads: int = 2, use_gpu: bool = False):
        import pycolmap

        if use_gpu and not pycolmap.has_cuda:
            raise SlocalError("use_gpu=True but this pycolmap was built without CUDA")
        options = pycolmap.FeatureExtractionOptions()
        options.num_threads = num_threads
        options.use_gpu = use_gpu
        options.sift.max_num_features = max_features
        self.max_side = max_side
        self.max_features = max_features
        with colmap_quiet():
            self._extractor = pycolmap.FeatureExtractor.create(
                options, pycolmap.Device.cuda if use_gpu else pycolmap.Device.cpu
            )

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Extract SIFT.

        Args:
            image: uint8 (H, W, 3) RGB or (H, W) grey.

        Returns:
            keypoints_N4: float32 (x, y, scale, orientation), x and y in the
            input's pixel convention (``slocal.geometry.camera``), scale in input pixels.
            descriptors_N128: uint8 SIFT descriptors (COLMAP's quantisation).
        """
        import pycolmap

        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        grey = np.ascontiguousarray(grey, dtype=np.uint8)
        H, W = grey.shape
        scale = min(1.0, self.max_side / max(H, W))
        if scale < 1.0:
            w, h = max(1, round(W * scale)), max(1, round(H * scale))
            grey = cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA)
        else:
            w, h = W, H
        keypoints, descriptors = self._extractor.extract_from_uint8_array(grey)
        kp = pycolmap.keypoints_to_matrix(keypoints).astype(np.float32).reshape(-1, 4)
        desc = np.asarray(descriptors.data, dtype=np.uint8).reshape(-1, 128)
        # Corner-origin coordinates scale exactly with the image size.
        kp[:, 0] *= W / w
        kp[:, 1] *= H / h
        kp[:, 2] *= W / w
        if len(kp) > self.max_features:
            keep = np.sort(np.argsort(-kp[:, 2], kind="stable")[: self.max_features])
            kp, desc = kp[keep], desc[keep]
        return np.ascontiguousarray(kp), np.ascontiguousarray(desc)
