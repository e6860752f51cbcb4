"""A user's own COLMAP model, end to end: colmap-redkitchen (pycolmap's mapper, SIMPLE_RADIAL, arbitrary scale).

Steps, as a user would run them (the model is in COLMAP's own units)::

    slocal teach   --scene colmap-redkitchen --teacher colmap      # the model's own points, mapping images only
    slocal distill --scene colmap-redkitchen --teacher colmap --student ace --minutes M

then the 20 queries (``queries.txt``) are localized with the product's
localizer, in model units. To measure in metres, a similarity transform
(pycolmap's ``estimate_sim3d``) fitted over the *mapping* images' camera
centres maps the model frame onto the 7-Scenes metric ground truth
(``gt_world_from_cam.txt``); the query estimates are mapped with it and
compared with their metric ground truth. Errors against COLMAP's own query
poses (model units, and in metres through the fitted scale) are reported too.

Results (machine, date, command, query count, per-query errors) go to
``benchmarks/results/colmap_redkitchen_<device>.{json,md}``.

Usage::

    python benchmarks/colmap_redkitchen.py                                 # 10 minutes (quiet machine)
    python benchmarks/colmap_redkitchen.py --iterations 5 --results-name smoke   # quick check
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pycolmap

from common import SHARED_DATA, run_cli, write_results
from slocal.bench.metrics import accuracy_summary, query_result
from slocal.data import load_scene
from slocal.distill.config import DEFAULT_STUDENT
from slocal.geometry.pose import invert, pose_error
from slocal.io import read_image
from slocal.localize.localizer import Localizer, load_model

SCENE = "colmap-redkitchen"
GT_FILE = "gt_world_from_cam.txt"


def read_gt(path: Path) -> dict[str, np.ndarray]:
    """``name -> world_from_cam`` (4, 4), metres, from the README's format (name + 16 numbers)."""
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and not parts[0].startswith("#"):
            out[parts[0]] = np.array(parts[1:17], np.float64).reshape(4, 4)
    return out


def sim3_metric_from_model(scene, gt: dict[str, np.ndarray]):
    """pycolmap Sim3d mapping model coordinates to metric ones, fitted over the mapping camera centres."""
    names = [f.name for f in scene.mapping if f.name in gt]
    src = np.array([scene.frame(n).world_from_cam[:3, 3] for n in names])
    tgt = np.array([gt[n][:3, 3] for n in names])
    sim = pycolmap.estimate_sim3d(src, tgt)
    if sim is None:
        raise SystemExit("Sim(3) estimation failed")
    residual = np.linalg.norm(
        (sim.scale * (src @ np.asarray(sim.rotation.matrix()).T) + np.asarray(sim.translation)) - tgt, axis=1
    )
    return sim, names, residual


def metric_pose(sim, world_from_cam_model: np.ndarray) -> np.ndarray:
    """A model-frame camera pose mapped into the metric frame (rotation composed, centre transformed)."""
    R_s, t_s, s = np.asarray(sim.rotation.matrix()), np.asarray(sim.translation), float(sim.scale)
    out = np.eye(4)
    out[:3, :3] = R_s @ world_from_cam_model[:3, :3]
    out[:3, 3] = s * R_s @ world_from_cam_model[:3, 3] + t_s
    return out


def fmt(v, digits=1) -> str:
    return "-" if v is None else ("inf" if not np.isfinite(v) else f"{v:.{digits}f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", default=DEFAULT_STUDENT, help="default: slocal's default student")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--iterations", type=int, default=None, help="train exactly this many iterations instead (smoke tests)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=SHARED_DATA)
    parser.add_argument(
        "--runs", type=Path, default=None, help="targets, undistorted images and models (default: a temporary folder)"
    )
    parser.add_argument("--results-name", default=None, help="results file stem (default: colmap_redkitchen_<device>)")
    args = parser.parse_args()
    if not (args.data_root / SCENE).is_dir():
        print(f"{SCENE} not found under {args.data_root}", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory(prefix="colmap-redkitchen-") as tmp:
        runs = args.runs or Path(tmp) / "runs"
        common = ["--scene", SCENE, "--data-root", str(args.data_root), "--runs", str(runs)]
        teach, teach_cmd, teach_s, _, _ = run_cli(["teach", "--teacher", "colmap", *common])
        budget = ["--iterations", str(args.iterations)] if args.iterations else ["--minutes", f"{args.minutes:g}"]
        distill, distill_cmd, distill_s, _, _ = run_cli(
            [
                "distill",
                "--teacher",
                "colmap",
                "--student",
                args.student,
                *budget,
                "--device",
                args.device,
                "--seed",
                str(args.seed),
                *common,
            ]
        )

        scene = load_scene(args.data_root, SCENE, runs_root=runs)
        gt = read_gt(args.data_root / SCENE / GT_FILE)
        sim, fit_names, residual = sim3_metric_from_model(scene, gt)
        localizer = Localizer(load_model(distill["model"], device=args.device, expect_scene=SCENE))
        localizer.localize(read_image(scene.query[0].image_path), scene.query[0].camera)  # warm-up
        metric, model_units, rows = [], [], []
        for frame in scene.query:
            loc = localizer.localize_image(frame.image_path, frame.camera)
            est = loc.cam_from_world if loc.success else None
            gt_metric = invert(gt[frame.name])
            est_metric = None if est is None else invert(metric_pose(sim, invert(est)))
            metric.append(query_result(frame.name, est_metric, gt_metric, loc.num_inliers, loc.ms))
            model_units.append(query_result(frame.name, est, frame.cam_from_world, loc.num_inliers, loc.ms))
            colmap_vs_gt = pose_error(invert(metric_pose(sim, frame.world_from_cam)), gt_metric)
            rows.append(
                {
                    "image": frame.name,
                    "success": loc.success,
                    "inliers": loc.num_inliers,
                    "ms": loc.ms,
                    "t_err_cm": metric[-1].t_err_m * 100,
                    "r_err_deg": metric[-1].r_err_deg,
                    "t_err_units_vs_colmap": model_units[-1].t_err_m,
                    "r_err_deg_vs_colmap": model_units[-1].r_err_deg,
                    "colmap_query_vs_gt_cm": colmap_vs_gt[0] * 100,
                }
            )

    vs_gt = accuracy_summary(metric, 1.0)
    vs_colmap_units = accuracy_summary(model_units, None)
    vs_colmap_metric = accuracy_summary(model_units, float(sim.scale))
    payload = {
        "scene": SCENE,
        "student": distill["student"],
        "teacher": "colmap",
        "query_count": len(scene.query),
        "mapping_count": len(scene.mapping),
        "commands": [teach_cmd, distill_cmd],
        "teach": teach | {"wall_s": round(teach_s, 1)},
        "distill": {
            k: distill[k]
            for k in (
                "model",
                "iterations",
                "train_minutes",
                "its_per_s",
                "image_size",
                "num_params",
                "file_mb",
                "precision",
            )
        },
        "sim3": {
            "scale_m_per_unit": float(sim.scale),
            "fitted_on": len(fit_names),
            "centre_residual_cm_median": float(np.median(residual) * 100),
            "centre_residual_cm_max": float(residual.max() * 100),
        },
        "vs_metric_gt": vs_gt,
        "vs_colmap_model_units": vs_colmap_units,
        "vs_colmap_metric": vs_colmap_metric,
        "per_query": rows,
    }
    d = payload["distill"]
    md = "\n".join(
        [
            f"# {SCENE}: the colmap teacher on a COLMAP model in its own units",
            "",
            "{header}",
            f"- data: {len(scene.mapping)} mapping + {len(scene.query)} query images; SIMPLE_RADIAL, undistorted on "
            "load; teacher `colmap` "
            f"({teach['points']} targets on {teach['frames']} frames)",
            f"- commands: `{teach_cmd}`; `{distill_cmd}`",
            f"- student {d['student'] if 'student' in d else distill['student']}: {d['iterations']} iterations in "
            f"{d['train_minutes']:.1f} min "
            f"({d['its_per_s']:.1f} it/s), {d['image_size'][0]}x{d['image_size'][1]}, {d['file_mb']:.1f} MB",
            f"- Sim(3) model -> metric over {len(fit_names)} mapping centres: {sim.scale:.4f} m/unit, residual "
            f"{np.median(residual) * 100:.1f} cm median / {residual.max() * 100:.1f} cm max",
            "",
            "| compared with | median t | median r (°) | % @10cm5° | % @5cm5° | % @2cm2° | failed |",
            "|---|---|---|---|---|---|---|",
            f"| 7-Scenes metric GT (after Sim(3)) | {fmt(vs_gt['median_t_cm'])} cm | {fmt(vs_gt['median_r_deg'], 2)} "
            f"| {fmt(vs_gt['acc_10cm5deg'], 0)} | "
            f"{fmt(vs_gt['acc_5cm5deg'], 0)} | {fmt(vs_gt['acc_2cm2deg'], 0)} | {vs_gt['n_failed']} |",
            f"| COLMAP's query poses, model units | {fmt(vs_colmap_units['median_t_units'], 4)} units | "
            f"{fmt(vs_colmap_units['median_r_deg'], 2)} | - | - | - | "
            f"{vs_colmap_units['n_failed']} |",
            f"| COLMAP's query poses, x {sim.scale:.4f} m/unit | {fmt(vs_colmap_metric['median_t_cm'])} cm | "
            f"{fmt(vs_colmap_metric['median_r_deg'], 2)} | "
            f"{fmt(vs_colmap_metric['acc_10cm5deg'], 0)} | {fmt(vs_colmap_metric['acc_5cm5deg'], 0)} | "
            f"{fmt(vs_colmap_metric['acc_2cm2deg'], 0)} | "
            f"{vs_colmap_metric['n_failed']} |",
            "",
            "COLMAP's own query poses differ from the metric ground truth by "
            f"{np.median([r['colmap_query_vs_gt_cm'] for r in rows]):.1f} cm "
            "(median, after the same Sim(3)): the floor of the metric comparison.",
            "",
        ]
    )
    name = args.results_name or f"colmap_redkitchen_{args.device.split(':')[0]}"
    json_path, md_path = write_results(name, payload, md)
    print(md_path.read_text())
    print(f"results: {json_path}, {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
