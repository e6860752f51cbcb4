import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from slocal.bench.metrics import (
    QueryResult,
    accuracy_summary,
    camera_frame_error,
    query_result,
    room_summary,
    summarize,
    systematic_error,
    timing_summary,
)
from slocal.geometry import to_homogeneous
from slocal.geometry.pose import invert


def q(t_cm, r_deg, ms=None):
    ok = math.isfinite(t_cm)
    return QueryResult("img", ok, t_cm / 100.0, r_deg, 50 if ok else 0, ms or {})


def test_accuracies_and_medians_on_known_errors():
    results = [q(0.5, 0.5), q(1.5, 0.5), q(3.0, 1.0), q(4.0, 6.0), q(8.0, 4.0), q(math.inf, math.inf)]
    s = accuracy_summary(results)
    assert s["n_queries"] == 6 and s["n_failed"] == 1
    assert s["acc_1cm1deg"] == pytest.approx(100 / 6)
    assert s["acc_2cm2deg"] == pytest.approx(200 / 6)
    assert s["acc_5cm5deg"] == pytest.approx(300 / 6)  # 4 cm / 6 deg fails the rotation bound
    assert s["acc_10cm5deg"] == pytest.approx(400 / 6)
    assert s["median_t_cm"] == pytest.approx(3.5)
    assert s["median_r_deg"] == pytest.approx(2.5)


def test_majority_failed_gives_infinite_median():
    s = accuracy_summary([q(1.0, 1.0), q(math.inf, math.inf), q(math.inf, math.inf)])
    assert math.isinf(s["median_t_cm"]) and math.isinf(s["median_r_deg"])
    assert s["acc_10cm5deg"] == pytest.approx(100 / 3)


def test_bounds_are_strict():
    s = accuracy_summary([q(5.0, 1.0), q(4.999, 5.0)])
    assert s["acc_5cm5deg"] == 0.0


def test_empty_gives_none():
    s = summarize([])
    assert s["n_queries"] == 0 and s["median_t_cm"] is None and s["acc_1cm1deg"] is None and s["ms_per_query"] is None


def test_timing_percentiles_per_stage():
    ms = [{"load": 1.0, "network": 10.0 * i, "ransac": 2.0, "total": 13.0 + 10.0 * i} for i in range(1, 21)]
    s = timing_summary(ms)
    assert s["ms_network"] == pytest.approx(105.0)
    assert s["ms_per_query"] == pytest.approx(118.0)
    assert s["ms_p95"] == pytest.approx(np.percentile([13.0 + 10.0 * i for i in range(1, 21)], 95))
    assert s["ms_load"] == 1.0 and s["ms_ransac"] == 2.0
    assert timing_summary([{"network": 3.0, "total": 4.0}])["ms_load"] is None


def test_query_result_compares_with_gt():
    gt = to_homogeneous(Rotation.from_euler("y", 30, degrees=True).as_matrix(), [0.1, 0.2, 0.3])
    est = gt.copy()
    est[:3, :3] = Rotation.from_euler("x", 2, degrees=True).as_matrix() @ gt[:3, :3]
    est[:3, 3] = est[:3, :3] @ (-gt[:3, :3].T @ gt[:3, 3] + np.array([0.03, 0, 0])) * -1
    r = query_result("a", est, gt, 100, {"total": 5.0})
    assert r.success and r.t_err_m == pytest.approx(0.03) and r.r_err_deg == pytest.approx(2.0)
    f = query_result("b", None, gt, 3, {"total": 1.0})
    assert not f.success and math.isinf(f.t_err_m) and f.num_inliers == 3


def test_scale_applies_before_the_cm_thresholds():
    # 0.4 units at 0.1 m/unit = 4 cm: inside 5 cm, outside 2 cm.
    results = [QueryResult("a", True, 0.4, 1.0, 50), QueryResult("b", True, 0.15, 1.0, 50)]
    s = accuracy_summary(results, metres_per_unit=0.1)
    assert s["units"] == "m" and s["median_t_cm"] == pytest.approx(2.75) and s["median_t_units"] == pytest.approx(0.275)
    assert s["acc_5cm5deg"] == 100.0 and s["acc_2cm2deg"] == 50.0


def test_unknown_scale_reports_model_units_and_no_cm():
    s = accuracy_summary([QueryResult("a", True, 0.4, 1.0, 50)], metres_per_unit=None)
    assert s["units"] == "model units" and s["median_t_units"] == pytest.approx(0.4)
    assert s["median_t_cm"] is None and s["acc_10cm5deg"] is None


def _posed(yaw_deg: float, centre_3) -> np.ndarray:
    """cam_from_world of a camera at ``centre_3`` turned ``yaw_deg`` about the world's y axis."""
    a = np.radians(yaw_deg)
    R_world_from_cam = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    return invert(to_homogeneous(R_world_from_cam, np.asarray(centre_3, float)))


def test_camera_frame_error_is_the_offset_in_the_true_camera():
    # Every estimate sits 3 cm to the right of the truth in its own camera: the world-frame errors
    # point different ways, the camera-frame ones are all (+3, 0, 0) cm.
    results = []
    for i, yaw in enumerate([0.0, 90.0, 200.0]):
        gt = _posed(yaw, [i, 0.5, 2.0])
        est = gt.copy()
        est[:3, 3] -= np.array([0.03, 0.0, 0.0])  # t = -R c: the centre moves by +3 cm along camera x
        results.append(query_result(f"q{i}", est, gt, 100, {"total": 1.0}))
    for r in results:
        np.testing.assert_allclose(camera_frame_error(r), [0.03, 0.0, 0.0], atol=1e-12)
    s = systematic_error(results, 1.0)
    np.testing.assert_allclose(s["mean_cam_err"], [3.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(s["std_cam_err"], [0.0, 0.0, 0.0], atol=1e-9)
    assert s["n_cam_err"] == 3


def test_systematic_error_leaves_out_gross_failures():
    gt = _posed(0.0, [0, 0, 0])
    near, far = gt.copy(), gt.copy()
    near[:3, 3] -= [0.0, 0.02, 0.0]
    far[:3, 3] -= [0.5, 0.0, 0.0]
    results = [
        query_result("a", near, gt, 50, {}),
        query_result("b", far, gt, 50, {}),
        query_result("c", None, gt, 0, {}),
    ]
    s = systematic_error(results, 1.0)
    assert s["n_cam_err"] == 1
    np.testing.assert_allclose(s["mean_cam_err"], [0.0, 2.0, 0.0], atol=1e-9)
    # Without a metric scale the unit is 0.01 model units and only the rotation bound applies.
    s_units = systematic_error(results, None)
    assert s_units["n_cam_err"] == 2
    assert systematic_error(results[2:], 1.0) == {"mean_cam_err": None, "std_cam_err": None, "n_cam_err": 0}


def test_room_summary_counts_queries_placed_in_their_room():
    gt = np.eye(4)

    def placed(room, est, ratio):
        return QueryResult(f"{room}/f", True, 0.0, 0.0, 50, {}, gt, gt, room=room, room_est=est, room_ratio=ratio)

    results = [
        placed("a/k", "a/k", 8.0),
        placed("a/k", "a/l", 1.1),
        placed("a/l", "a/l", 4.0),
        placed("a/l", "a/l", None),
    ]
    summary = room_summary(results)
    assert summary == {"room_recognition": 75.0, "n_room_right": 3, "room_ratio_median": 4.0}
    assert room_summary([]) == {"room_recognition": None, "n_room_right": 0, "room_ratio_median": None}
