"""Self-calibration of the focal length from fundamental matrices of one camera's image pairs."""

import cv2
import numpy as np
import pytest

from helpers.epipolar import fundamental, random_motion
from slocal.errors import SlocalError
from slocal.geometry.calibration import essential_cost, focal_from_fundamentals

W, H, F_TRUE = 640, 480, 500.0
K = np.array([[F_TRUE, 0, W / 2], [0, F_TRUE, H / 2], [0, 0, 1.0]])


def fundamentals(n: int, seed: int) -> np.ndarray:
    """``F`` of ``n`` random motions (rotations up to 20 deg, mostly sideways baselines)."""
    rng = np.random.default_rng(seed)
    return np.stack([fundamental(K, *random_motion(rng, forward=0.3)) for _ in range(n)])


def f_from_matches(n: int, noise_px: float, seed: int) -> np.ndarray:
    """Fundamentals re-estimated (8-point, OpenCV) from noisy projections of random points, as COLMAP would."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        R, t = random_motion(rng, forward=0.3)
        X = np.c_[rng.uniform(-2, 2, (200, 2)), rng.uniform(3, 6, 200)]
        a = X @ K.T
        b = (X @ R.T + t) @ K.T
        pa = a[:, :2] / a[:, 2:] + rng.normal(0, noise_px, (200, 2))
        pb = b[:, :2] / b[:, 2:] + rng.normal(0, noise_px, (200, 2))
        F, _ = cv2.findFundamentalMat(pa, pb, cv2.FM_8POINT)
        out.append(F)
    return np.stack(out)


def test_exact_fundamentals_give_the_focal_length():
    est = focal_from_fundamentals(fundamentals(10, 0), W, H)
    assert est.focal_px == pytest.approx(F_TRUE, rel=0.006)  # the grid's step
    assert est.cost < 1e-2 and est.pairs == 10 and not est.at_bound
    # Far from the truth the matrices are far from essential.
    K_wrong = np.array([[[1.2 * W, 0, W / 2], [0, 1.2 * W, H / 2], [0, 0, 1]]])
    assert np.median(essential_cost(fundamentals(10, 0), K_wrong)) > 5 * est.cost


def test_noisy_estimated_fundamentals_give_the_focal_length_within_5_percent():
    est = focal_from_fundamentals(f_from_matches(20, 0.5, 1), W, H)
    assert est.focal_px == pytest.approx(F_TRUE, rel=0.05)


def test_a_focal_outside_the_range_is_flagged():
    est = focal_from_fundamentals(fundamentals(10, 2), W, H, range_factor=(1.0, 3.0))
    assert est.at_bound and est.focal_px == pytest.approx(W * 1.0)


def test_no_fundamentals_is_an_error():
    with pytest.raises(SlocalError, match="fundamental"):
        focal_from_fundamentals(np.zeros((0, 3, 3)), W, H)
