"""Observation confidence."""

import numpy as np
import pytest

from slocal.teach.sfm import SfmTeacherConfig, observation_confidence


def test_confidence_grows_with_track_and_angle_and_falls_with_error():
    c = SfmTeacherConfig()
    conf = observation_confidence(
        np.array([2, 3, 5, 3, 3, 3]), np.array([15, 15, 15, 5, 30, 15]), np.array([0, 0, 0, 0, 0, 2.0]), c
    )
    assert conf[0] == pytest.approx(0.5) and conf[1] == pytest.approx(0.75)
    assert conf[0] < conf[1] < conf[2] < 1.0
    assert conf[3] == pytest.approx(0.75 / 3) and conf[4] == pytest.approx(0.75)
    assert conf[5] == pytest.approx(0.375)  # off by s = max_reproj_error_px / 2 halves it
