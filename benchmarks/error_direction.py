"""Where a student's pose error points, off the mapping trajectory and on it.

For students trained with held-out mapping frames (``train.val_stretch``), localizes every held-out
frame and, as the control, every ``--train-every``-th frame the student was trained on. For each
pose it gives the position error in the true camera's frame (x right, y down, z forward; the
estimated minus the true centre), the rotation error as a rotation vector in that frame (yaw is
about y), and the direction from the true camera to the centroid of its ``--neighbours`` nearest
training cameras, with the cosine between that direction and the position error.

A student whose error is the same offset in every frame's camera (the systematic part that
``slocal bench`` reports beside the medians) shows it here in the per-axis medians; if the offset appears on
the held-out frames and not on the training ones, it comes from leaving the trajectory (the student
has learnt views, not only surfaces), not from its targets or the reference poses, which are the
same on both; a cosine near 1 says the pose is pulled back towards the views it was trained on.
Never run on queries: the held-out frames are mapping frames.

Usage::

    python benchmarks/error_direction.py --scene colmap-redkitchen --data-root ../shared/data \\
        --runs /tmp/runs --ransac-threshold 15 --name error_direction_colmap MODEL [MODEL ...]

Results: ``benchmarks/results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from common import SEVEN_SCENES, held_out_frames, write_results
from slocal.bench.metrics import camera_frame_error, query_result
from slocal.geometry.pnp import solve_pnp
from slocal.io import read_image
from slocal.localize.localizer import correspondences, student_pnp
from tune_ransac import model_scene


def frame_rows(model, frames, train_centres_M3: np.ndarray, neighbours: int, pnp) -> list[dict]:
    """One row per frame: camera-frame position and rotation errors, direction to the training cameras."""
    rows = []
    for frame in frames:
        prediction = model.predict(read_image(frame.image_path), frame.camera)
        uv, xyz = correspondences(prediction)
        result = solve_pnp(uv, xyz, prediction.camera, pnp)
        error = camera_frame_error(
            query_result(frame.name, result.cam_from_world, frame.cam_from_world, result.num_inliers, {})
        )
        if error is None:
            rows.append({"frame": frame.name, "success": False})
            continue
        R_gt, est = frame.cam_from_world[:3, :3], result.cam_from_world
        offsets = train_centres_M3 - frame.world_from_cam[:3, 3]
        # The frame itself is among the training cameras in the control: leave it out.
        dist = np.linalg.norm(offsets, axis=1)
        nearest = np.argsort(np.where(dist > 0, dist, np.inf))[:neighbours]
        towards = R_gt @ offsets[nearest].mean(0)
        cosine = float(error @ towards / max(np.linalg.norm(error) * np.linalg.norm(towards), 1e-12))
        rows.append(
            {
                "frame": frame.name,
                "success": True,
                "error_cam": error.tolist(),
                "rotvec_cam_deg": Rotation.from_matrix(est[:3, :3] @ R_gt.T).as_rotvec(degrees=True).tolist(),
                "towards_training_cam": towards.tolist(),
                "cosine": cosine,
            }
        )
    return rows


def summary(rows: list[dict], unit_scale: float) -> dict:
    """Per-axis medians over the localized rows, in the table's unit (cm or 0.01 model units).

    Medians, not means: one pose that RANSAC lost (metres off in a scene without a scale, where no
    position threshold can tell it) would otherwise set the systematic part alone.
    """
    ok = [r for r in rows if r["success"]]
    if not ok:
        return {"n": 0, "failed": len(rows)}
    e = np.array([r["error_cam"] for r in ok]) * unit_scale
    rv = np.array([r["rotvec_cam_deg"] for r in ok])
    d = np.array([r["towards_training_cam"] for r in ok]) * unit_scale
    return {
        "n": len(ok),
        "failed": len(rows) - len(ok),
        "median_error_cam": np.median(e, 0).tolist(),
        "median_error_norm": float(np.median(np.linalg.norm(e, axis=1))),
        "median_rotvec_cam_deg": np.median(rv, 0).tolist(),
        "median_rotation_deg": float(np.median(np.linalg.norm(rv, axis=1))),
        "median_towards_training_cam": np.median(d, 0).tolist(),
        "median_distance_to_training_cam": float(np.median(np.linalg.norm(d, axis=1))),
        "median_cosine": float(np.median([r["cosine"] for r in ok])),
        "share_positive_cosine": float(np.mean([r["cosine"] > 0 for r in ok])),
    }


def vec(v, digits: int = 1) -> str:
    return "–" if v is None else ", ".join(f"{x:+.{digits}f}" for x in v)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="model files trained with held-out mapping frames")
    parser.add_argument("--scene", default="redkitchen-split")
    parser.add_argument("--data-root", type=Path, default=SEVEN_SCENES)
    parser.add_argument("--runs", type=Path, default=None, help="runs folder (undistorted images, the rig)")
    parser.add_argument("--poses", type=Path, nargs="*", default=[], help="pose files the models were trained with")
    parser.add_argument("--depth-registration", default="off", help="as the models were trained (or: model)")
    parser.add_argument("--ransac-threshold", type=float, default=None, help="px at 640 width (default: the model's)")
    parser.add_argument("--train-every", type=int, default=6, help="the control: every k-th training frame")
    parser.add_argument("--neighbours", type=int, default=5, help="training cameras whose centroid gives the direction")
    parser.add_argument("--name", default="error_direction", help="results file name in benchmarks/results/")
    args = parser.parse_args()

    per_model, groups = [], {"held out": [], "trained on": []}
    unit_scale, unit = 100.0, "cm"
    for path in args.models:
        held = held_out_frames(path)
        scene, model = model_scene(
            path, args.data_root, args.scene, tuple(args.poses), args.depth_registration, args.runs
        )
        if scene.metres_per_unit is None:
            unit_scale, unit = 100.0, "0.01 units"
        else:
            unit_scale = 100.0 * scene.metres_per_unit
        train = [f for f in scene.mapping if f.name not in held]
        centres = np.array([f.world_from_cam[:3, 3] for f in train])
        pnp = replace(student_pnp(model, threshold_px=args.ransac_threshold), seed=0)
        rows = {
            "held out": frame_rows(model, [f for f in scene.mapping if f.name in held], centres, args.neighbours, pnp),
            "trained on": frame_rows(model, train[:: args.train_every], centres, args.neighbours, pnp),
        }
        for group, r in rows.items():
            groups[group] += r
        per_model.append(
            {"model": str(path), "rows": rows, "summary": {g: summary(r, unit_scale) for g, r in rows.items()}}
        )

    pooled = {g: summary(r, unit_scale) for g, r in groups.items()}
    lines = [
        "# Where the student's pose error points: held-out mapping frames against frames it trained on\n",
        "{header}",
        f"{len(args.models)} model(s) on `{args.scene}`, RANSAC seed 0"
        f"{f' at {args.ransac_threshold:g} px' if args.ransac_threshold else ' at each model’s threshold'}; "
        f"the control is one training frame in {args.train_every}. Camera frame: x right, y down, z forward, "
        f"errors in {unit}. *Towards training cameras*: from the true camera to the centroid of its "
        f"{args.neighbours} nearest training cameras; *cosine*: between that and the position error (1: the pose "
        "is pulled straight back towards them). Vectors are per-axis medians over the poses.\n",
        f"| frames | model | poses (failed) | median error {unit} / ° | position error x, y, z | "
        f"rotation vector x, y, z ° | towards training cameras x, y, z (distance) | "
        "median cosine | cosine > 0 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for group in groups:
        for m, label in [(m, Path(m["model"]).parent.name) for m in per_model] + [(None, "pooled")]:
            s = pooled[group] if m is None else m["summary"][group]
            if not s["n"]:
                lines.append(f"| {group} | {label} | 0 ({s['failed']}) | – | – | – | – | – | – |")
                continue
            lines.append(
                f"| {group} | {label} | {s['n']} ({s['failed']}) | {s['median_error_norm']:.2f} / "
                f"{s['median_rotation_deg']:.2f} | {vec(s['median_error_cam'])} | "
                f"{vec(s['median_rotvec_cam_deg'], 2)} | "
                f"{vec(s['median_towards_training_cam'], 0)} ({s['median_distance_to_training_cam']:.0f}) | "
                f"{s['median_cosine']:+.2f} | {100 * s['share_positive_cosine']:.0f} % |"
            )
    payload = {"scene": args.scene, "unit": unit, "pooled": pooled, "models": per_model}
    _, md = write_results(args.name, payload, "\n".join(lines) + "\n")
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
