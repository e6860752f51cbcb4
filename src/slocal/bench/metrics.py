"""Pose-error and timing statistics over a scene's queries.

Accuracies are percentages (0-100) over *all* queries: a failed localization
counts as an infinite error, so it lowers every accuracy and can make a median
infinite. Timings are summarised per stage (load, network, ransac, total).

Units: translation errors are measured in the scene's units (``t_err_m`` is
metres only for metric scenes). ``accuracy_summary`` scales them by the
scene's ``metres_per_unit`` before applying the cm thresholds; without a scale
(a COLMAP model in its own units) it reports the median in model units and no
cm-based accuracy, rather than pretending units are metres.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from slocal.geometry.pose import pose_error

# (name, metres, degrees): a query is correct when both errors are below the bounds.
ACCURACY_THRESHOLDS: tuple[tuple[str, float, float], ...] = (
    ("acc_10cm5deg", 0.10, 5.0),
    ("acc_5cm5deg", 0.05, 5.0),
    ("acc_2cm2deg", 0.02, 2.0),
    ("acc_1cm1deg", 0.01, 1.0),
)
TIMING_STAGES = ("load", "network", "ransac", "total")


@dataclass(frozen=True, eq=False)
class QueryResult:
    """Outcome of localizing one query image.

    Attributes:
        image: the query's name in its scene.
        success: a pose was estimated.
        t_err_m: camera-centre error in scene units, metres for metric scenes (inf when failed).
        r_err_deg: rotation error in degrees (inf when failed).
        num_inliers: RANSAC inliers (0 when failed before RANSAC).
        ms: wall time per stage in milliseconds (keys among ``TIMING_STAGES``).
        cam_from_world_gt: (4, 4) ground-truth pose.
        cam_from_world_est: (4, 4) estimate, or None when failed.
        room: in a home of rooms, the room the query was taken in (None elsewhere).
        room_est: the room it was placed in; a query placed in another room has no pose
            (``success`` False: its pose is in that room's frame).
        room_ratio: how sure the placement was (``slocal.localize.rooms.RoomLocalization``).
    """

    image: str
    success: bool
    t_err_m: float
    r_err_deg: float
    num_inliers: int
    ms: dict[str, float] = field(default_factory=dict)
    cam_from_world_gt: np.ndarray | None = None
    cam_from_world_est: np.ndarray | None = None
    room: str | None = None
    room_est: str | None = None
    room_ratio: float | None = None


def query_result(
    image: str,
    cam_from_world_est: np.ndarray | None,
    cam_from_world_gt: np.ndarray,
    num_inliers: int,
    ms: dict[str, float],
) -> QueryResult:
    """Compare an estimate (None = failed) with the ground truth."""
    if cam_from_world_est is None:
        return QueryResult(image, False, math.inf, math.inf, num_inliers, dict(ms), cam_from_world_gt, None)
    t_err, r_err = pose_error(cam_from_world_est, cam_from_world_gt)
    return QueryResult(image, True, t_err, r_err, num_inliers, dict(ms), cam_from_world_gt, cam_from_world_est)


def camera_frame_error(result: QueryResult) -> np.ndarray | None:
    """The estimated camera centre minus the true one, in the true camera's frame (scene units), or None.

    x right, y down, z forward: a component that is the same across queries is the systematic part
    of a method's error (e.g. a rig offset or a reference that disagrees with the images).
    """
    if not result.success or result.cam_from_world_est is None or result.cam_from_world_gt is None:
        return None
    gt, est = result.cam_from_world_gt, result.cam_from_world_est
    c_gt = -gt[:3, :3].T @ gt[:3, 3]
    c_est = -est[:3, :3].T @ est[:3, 3]
    return gt[:3, :3] @ (c_est - c_gt)


def systematic_error(results: Sequence[QueryResult], metres_per_unit: float | None) -> dict:
    """Mean and spread of ``camera_frame_error`` over the queries localized within 10 cm / 5 deg.

    Gross failures would dominate a mean, so only the queries within the loosest threshold count
    (for a scene without a scale: every successful query within 5 deg). Values in cm, or in 0.01
    model units without a scale.

    Returns:
        ``mean_cam_err``, ``std_cam_err`` (x, y, z lists) and ``n_cam_err``; None values without queries.
    """
    rows = []
    for r in results:
        e = camera_frame_error(r)
        if e is None or r.r_err_deg >= 5.0:
            continue
        if metres_per_unit is not None and r.t_err_m * metres_per_unit >= 0.10:
            continue
        rows.append(e * (metres_per_unit if metres_per_unit is not None else 1.0) * 100.0)
    if not rows:
        return {"mean_cam_err": None, "std_cam_err": None, "n_cam_err": 0}
    a = np.array(rows)
    return {"mean_cam_err": a.mean(0).tolist(), "std_cam_err": a.std(0).tolist(), "n_cam_err": len(rows)}


def room_summary(results: Sequence[QueryResult]) -> dict[str, float | int | None]:
    """Room recognition over a home's queries.

    Returns:
        ``room_recognition`` (% of queries placed in the room they were taken in), ``n_room_right``,
        and ``room_ratio_median`` (median sureness, over the queries with one).
    """
    right = sum(r.room_est == r.room for r in results)
    ratios = [r.room_ratio for r in results if r.room_ratio is not None]
    return {
        "room_recognition": 100.0 * right / len(results) if results else None,
        "n_room_right": right,
        "room_ratio_median": float(np.median(ratios)) if ratios else None,
    }


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, np.float64), q)) if len(values) else None


def timing_summary(ms_per_query: Sequence[dict[str, float]]) -> dict[str, float | None]:
    """Median of every stage and the 95th percentile of the total.

    Returns:
        ``ms_per_query`` (median total), ``ms_p95``, and ``ms_<stage>`` (median)
        for ``load``, ``network``, ``ransac`` (None where no query timed it) and
        for any other stage a method reports (e.g. SIFT's ``features``).
    """
    out: dict[str, float | None] = {}
    totals = [m["total"] for m in ms_per_query if "total" in m]
    out["ms_per_query"] = _percentile(totals, 50)
    out["ms_p95"] = _percentile(totals, 95)
    stages = list(TIMING_STAGES[:-1])
    for m in ms_per_query:
        stages += [k for k in m if k not in stages and k != "total"]
    for stage in stages:
        out[f"ms_{stage}"] = _percentile([m[stage] for m in ms_per_query if stage in m], 50)
    return out


def units_name(metres_per_unit: float | None) -> str:
    """``"m"`` for a metric scene, ``"model units"`` when the scale is unknown."""
    return "m" if metres_per_unit is not None else "model units"


def accuracy_summary(
    results: Sequence[QueryResult], metres_per_unit: float | None = 1.0
) -> dict[str, float | int | str | None]:
    """Median errors and accuracies over all queries (failures = infinite error).

    Args:
        results: per-query results, translation errors in scene units.
        metres_per_unit: the scene's scale; None when unknown.

    Returns:
        ``n_queries``, ``n_failed`` (count), ``units`` (``units_name``), ``median_t_units``
        (scene units), ``median_t_cm`` (None without a scale), ``median_r_deg`` (inf when
        more than half failed; None without queries) and the ``acc_*`` percentages of
        ``ACCURACY_THRESHOLDS`` (None without a scale: cm thresholds mean nothing in model units).
    """
    n = len(results)
    out: dict[str, float | int | str | None] = {
        "n_queries": n,
        "n_failed": sum(not r.success for r in results),
        "units": units_name(metres_per_unit),
    }
    if n == 0:
        out.update(
            {
                "median_t_cm": None,
                "median_t_units": None,
                "median_r_deg": None,
                **{name: None for name, _, _ in ACCURACY_THRESHOLDS},
            }
        )
        return out
    t_units = np.array([r.t_err_m for r in results], np.float64)
    r = np.array([r.r_err_deg for r in results], np.float64)
    out["median_t_units"] = float(np.median(t_units))
    out["median_r_deg"] = float(np.median(r))
    if metres_per_unit is None:
        out["median_t_cm"] = None
        out.update({name: None for name, _, _ in ACCURACY_THRESHOLDS})
        return out
    t = t_units * float(metres_per_unit)
    out["median_t_cm"] = float(np.median(t) * 100.0)
    for name, max_t, max_r in ACCURACY_THRESHOLDS:
        out[name] = float(np.mean((t < max_t) & (r < max_r)) * 100.0)
    return out


def summarize(
    results: Sequence[QueryResult], metres_per_unit: float | None = 1.0
) -> dict[str, float | int | str | None]:
    """Accuracy and timing statistics of one method on one scene (see ``accuracy_summary`` for units)."""
    return {
        **accuracy_summary(results, metres_per_unit),
        **systematic_error(results, metres_per_unit),
        **timing_summary([r.ms for r in results]),
    }
