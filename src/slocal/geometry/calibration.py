"""A camera's focal length from the fundamental matrices between its own images (self-calibration).

Two images taken by one camera ``K`` are related by a fundamental matrix ``F``; ``E = K^T F K`` is
then an essential matrix, whose two non-zero singular values are equal. Under a wrong focal
length they are not, so the focal length that makes a set of ``F`` most nearly essential (the
smallest median of ``(s1 - s2) / s1``, Mendonça and Cipolla's criterion) is the camera's, with
the principal point at the image centre and square pixels (what COLMAP assumes of a camera it
knows nothing about). Neither COLMAP nor OpenCV offers this; it is a one-dimensional search.

A pair whose motion is a pure rotation, or whose points lie on one plane, has no unique ``F``:
give only pairs that COLMAP verified as general two-view geometry (not planar or panoramic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slocal.errors import SlocalError


@dataclass(frozen=True)
class FocalEstimate:
    """The focal length a set of fundamental matrices agrees on.

    Attributes:
        focal_px: the focal length, pixels.
        cost: median ``(s1 - s2) / s1`` of ``K^T F K`` at it (0: every ``F`` exactly essential).
        pairs: fundamental matrices used.
        at_bound: the minimum lies at an end of the searched range (the range is too narrow, or
            the pairs do not constrain the focal length).
    """

    focal_px: float
    cost: float
    pairs: int
    at_bound: bool


def essential_cost(F_N33: np.ndarray, K_S33: np.ndarray) -> np.ndarray:
    """``(s1 - s2) / s1`` of ``K^T F K`` for every candidate ``K`` and every ``F``; shape (S, N)."""
    E_SN33 = np.einsum("sji,njk,skl->snil", K_S33, F_N33, K_S33)
    s_SN3 = np.linalg.svd(E_SN33, compute_uv=False)
    return (s_SN3[..., 0] - s_SN3[..., 1]) / np.maximum(s_SN3[..., 0], 1e-300)


def focal_from_fundamentals(
    F_N33: np.ndarray, width: int, height: int, range_factor: tuple[float, float] = (0.3, 3.0), steps: int = 400
) -> FocalEstimate:
    """The focal length under which the fundamental matrices are most nearly essential.

    Args:
        F_N33: fundamental matrices between images of one camera, in pixel coordinates of this
            package's convention (pixel centres at ``x + 0.5``, COLMAP's).
        width, height: image size; the principal point is its centre.
        range_factor: searched focal lengths, as multiples of the longer side (log-spaced).
        steps: candidates in that range (400 over 0.3 to 3 is 0.6 % apart).

    Raises:
        SlocalError: no fundamental matrix, or one that is not finite.
    """
    F_N33 = np.asarray(F_N33, np.float64).reshape(-1, 3, 3)
    if len(F_N33) == 0 or not np.isfinite(F_N33).all():
        raise SlocalError(f"focal length from fundamental matrices: got {len(F_N33)}, or some not finite")
    # Scale each F to unit norm: the criterion is scale-free, the SVD better conditioned.
    F_N33 = F_N33 / np.linalg.norm(F_N33, axis=(1, 2), keepdims=True)
    side = max(width, height)
    focal_S = side * np.exp(np.linspace(np.log(range_factor[0]), np.log(range_factor[1]), steps))
    K_S33 = np.zeros((steps, 3, 3))
    K_S33[:, 0, 0] = K_S33[:, 1, 1] = focal_S
    K_S33[:, 0, 2], K_S33[:, 1, 2], K_S33[:, 2, 2] = width / 2, height / 2, 1.0
    cost_S = np.median(essential_cost(F_N33, K_S33), axis=1)
    best = int(np.argmin(cost_S))
    return FocalEstimate(float(focal_S[best]), float(cost_S[best]), len(F_N33), best in (0, steps - 1))
