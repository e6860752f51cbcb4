"""Fundamental matrices of known motions, for the self-calibration tests."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def skew(t_3: np.ndarray) -> np.ndarray:
    """``[t]x``: the matrix with ``skew(t) @ v == np.cross(t, v)``."""
    return np.array([[0, -t_3[2], t_3[1]], [t_3[2], 0, -t_3[0]], [-t_3[1], t_3[0], 0]])


def random_motion(rng: np.random.Generator, forward: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A rotation of about 0.2 rad per axis and a unit baseline (its forward part scaled by ``forward``)."""
    R_33 = Rotation.from_rotvec(rng.normal(0, 0.2, 3)).as_matrix()
    t_3 = rng.normal(0, 1, 3) * [1, 1, forward]
    return R_33, t_3 / np.linalg.norm(t_3)


def fundamental(K_33: np.ndarray, R_33: np.ndarray, t_3: np.ndarray) -> np.ndarray:
    """``F = K^-T [t]x R K^-1`` between two images of one camera ``K``, the second at ``x2 = R x1 + t``."""
    Ki = np.linalg.inv(K_33)
    return Ki.T @ skew(t_3) @ R_33 @ Ki
