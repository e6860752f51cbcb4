"""Choose the query-time RANSAC settings on validation frames, never on the queries.

Takes students trained by ``tune_redkitchen_split.py`` (each holds out a stretch of
the mapping trajectory and names those frames in its model file), runs the network
once per validation frame, then PnP-RANSAC with every setting of the grid on the
same 2D-3D matches. Reports accuracy and RANSAC milliseconds per setting, pooled
over the given models (one model per seed). ``--max-points`` also tries using only
that many of the matches (evenly spaced cells, ``Localizer(max_points=...)``);
``--ransac-points`` runs RANSAC on that many and refines on all of them, and
``--refine-px`` adds a final Cauchy refinement at that scale (``PnpConfig``).
``--ransac-seeds K`` repeats every RANSAC with K seeds and pools the poses, so that two
settings are not told apart by RANSAC's own luck; each setting is also compared pose by
pose with the first one (poses one setting puts within 5 cm / 5 deg and the other not; poses it puts
closer, and poses it turns less) and reports each model's median alone, so that one seed cannot carry a setting.

Usage::

    python benchmarks/tune_ransac.py /tmp/runs/tuning/xstrong-pushpull-seed0/model.pt \\
        /tmp/runs/tuning/xstrong-pushpull-seed1/model.pt
    python benchmarks/tune_ransac.py --thresholds 20 --iterations 500 --max-points 0 640 320 MODEL...

Results go to ``benchmarks/results/tune_ransac.{json,md}`` (or ``--name``).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from common import (
    SEVEN_SCENES,
    closer_vs_first,
    held_out_frames,
    hits_within,
    paired_vs_first,
    turned_less_vs_first,
    write_results,
)
from slocal.bench.metrics import accuracy_summary, query_result
from slocal.data import load_scene
from slocal.distill.rig_source import model_depth_registration, resolve_depth_registration
from slocal.geometry.pnp import PnpConfig, solve_pnp
from slocal.io import read_image
from slocal.localize.localizer import correspondences, load_model
from slocal.teach.rig import registered_scene

THRESHOLDS = (5.0, 10.0, 20.0, 30.0, 40.0)
MAX_ITERATIONS = (250, 500, 1000, 2000, 10000)
REPEATS = 3  # RANSAC timings per frame and setting at least (the median is kept)


def model_scene(
    model_path: Path,
    data_root: Path,
    scene_id: str,
    pose_files: tuple[Path, ...] = (),
    depth_registration: str = "off",
    runs_root: Path | None = None,
):
    """The scene as a model was trained on it, and the loaded model.

    ``pose_files`` and ``depth_registration`` (with the ``runs_root`` that caches the rig) give the
    frames the poses the model was trained with, as ``slocal distill --poses --depth-registration`` did;
    ``depth_registration="model"`` takes the rig the model file records, and then the scene must be the
    one it was trained on (fingerprint checked).
    """
    scene = load_scene(data_root, scene_id, runs_root=runs_root, pose_files=pose_files)
    own_rig = depth_registration == "model"
    rig = model_depth_registration(model_path) if own_rig else resolve_depth_registration(depth_registration)
    if rig != "off":
        scene = registered_scene(scene, runs_root, rig)
    return scene, load_model(model_path, expect_fingerprint=scene.fingerprint if own_rig else None)


def frame_predictions(
    model_path: Path,
    data_root: Path,
    scene_id: str,
    pose_files: tuple[Path, ...] = (),
    depth_registration: str = "off",
    runs_root: Path | None = None,
) -> list[tuple[str, object, np.ndarray]]:
    """(name, student output, cam_from_world) of every validation frame of one model (see ``model_scene``)."""
    scene, model = model_scene(model_path, data_root, scene_id, pose_files, depth_registration, runs_root)
    return held_out_predictions(scene, model, held_out_frames(model_path))


def held_out_predictions(scene, model, names: set[str]) -> list[tuple[str, object, np.ndarray]]:
    """(name, student output, cam_from_world) of the scene's mapping frames named in ``names``."""
    out = []
    for frame in (f for f in scene.mapping if f.name in names):
        out.append((frame.name, model.predict(read_image(frame.image_path), frame.camera), frame.cam_from_world))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="model files trained with validation frames")
    parser.add_argument("--scene", default="redkitchen-split")
    parser.add_argument("--data-root", type=Path, default=SEVEN_SCENES)
    parser.add_argument("--thresholds", type=float, nargs="+", default=THRESHOLDS, help="pixels at 640 px width")
    parser.add_argument("--iterations", type=int, nargs="+", default=MAX_ITERATIONS, help="RANSAC iteration caps")
    parser.add_argument("--max-points", type=int, nargs="+", default=[0], help="matches kept per frame (0 = all)")
    parser.add_argument(
        "--ransac-points", type=int, nargs="+", default=[0], help="matches RANSAC samples and scores (0 = all)"
    )
    parser.add_argument(
        "--refine-px", type=float, nargs="+", default=[0.0], help="final refinement scale at 640 px (0 = none)"
    )
    parser.add_argument("--ransac-seeds", type=int, default=1, help="RANSAC seeds per frame and setting, poses pooled")
    parser.add_argument(
        "--poses", type=Path, action="append", default=[], help="pose files, as the models were trained"
    )
    parser.add_argument(
        "--depth-registration",
        default="off",
        help="as the models were trained: auto, estimate, off, a rig file, or 'model' (each model's recorded rig)",
    )
    parser.add_argument("--runs", type=Path, default=None, help="runs folder caching the rig (auto, estimate)")
    parser.add_argument(
        "--within", type=float, nargs=2, default=(5.0, 5.0), metavar=("CM", "DEG"), help="the paired threshold"
    )
    parser.add_argument("--name", default="tune_ransac", help="results file name in benchmarks/results/")
    args = parser.parse_args()
    max_t, max_r = args.within[0] / 100.0, args.within[1]
    within = f"{args.within[0]:g} cm / {args.within[1]:g}°"
    by_model = [
        frame_predictions(path, args.data_root, args.scene, tuple(args.poses), args.depth_registration, args.runs)
        for path in args.models
    ]
    frames = [m for model_frames in by_model for m in model_frames]
    if args.ransac_seeds < 1:
        raise SystemExit("--ransac-seeds must be >= 1")
    seeds = list(range(args.ransac_seeds))
    per_model = [len(model_frames) * len(seeds) for model_frames in by_model]
    rows, first_hits, first_t, first_r = [], None, None, None
    grid = itertools.product(args.thresholds, args.iterations, args.max_points, args.ransac_points, args.refine_px)
    for threshold, iterations, max_points, ransac_points, refine_px in grid:
        cfg = PnpConfig(
            threshold_px=threshold,
            max_iterations=iterations,
            min_iterations=min(100, iterations),
            ransac_points=ransac_points or None,
            refine_px=refine_px or None,
        )
        results, ms = [], []
        for name, prediction, cam_from_world in frames:
            uv, xyz = correspondences(prediction, max_points=max_points or None)
            runs = [solve_pnp(uv, xyz, prediction.camera, replace(cfg, seed=seed)) for seed in seeds]
            timing = runs + [solve_pnp(uv, xyz, prediction.camera, cfg) for _ in range(REPEATS - len(runs))]
            ms.append(float(np.median([r.ms for r in timing])))
            for seed, r in zip(seeds, runs):
                pose = r.cam_from_world if r.success else None
                results.append(query_result(f"{name}#{seed}", pose, cam_from_world, r.num_inliers, {}))
        s = accuracy_summary(results)
        hits = hits_within(results, max_t, max_r)
        t_err = np.array([r.t_err_m for r in results])
        r_err = np.array([r.r_err_deg for r in results])
        first_hits = hits if first_hits is None else first_hits
        first_t = t_err if first_t is None else first_t
        first_r = r_err if first_r is None else first_r
        bounds = np.cumsum([0, *per_model])
        rows.append(
            {
                "threshold_px": threshold,
                "max_iterations": iterations,
                "max_points": max_points or None,
                "ransac_points": ransac_points or None,
                "refine_px": refine_px or None,
                "frames": len(frames),
                "poses": len(results),
                "pct_10cm5deg": s["acc_10cm5deg"],
                "pct_5cm5deg": s["acc_5cm5deg"],
                "pct_2cm2deg": s["acc_2cm2deg"],
                "median_cm": s["median_t_cm"],
                "median_deg": s["median_r_deg"],
                **paired_vs_first(hits, first_hits, "within"),
                **closer_vs_first(t_err, first_t),
                **turned_less_vs_first(r_err, first_r),
                "median_cm_per_model": [float(np.median(t_err[a:b])) * 100.0 for a, b in itertools.pairwise(bounds)],
                "median_deg_per_model": [float(np.median(r_err[a:b])) for a, b in itertools.pairwise(bounds)],
                "ms_p50": float(np.median(ms)),
                "ms_p95": float(np.quantile(ms, 0.95)),
            }
        )
        print(rows[-1], flush=True)
    lines = [
        "# RANSAC settings on validation frames (never the queries)\n",
        "{header}",
        f"Models: {', '.join(f'`{p}`' for p in args.models)}; {len(frames)} validation frames in all (held-out "
        "stretches of "
        f"the mapping trajectory of `{args.scene}`), {len(seeds)} RANSAC seed(s) each: {len(frames) * len(seeds)} "
        "poses per "
        f"setting. Same network output for every setting; RANSAC ms is the median of {max(REPEATS, len(seeds))} runs "
        "per "
        f"frame. *vs first row*: poses this setting puts within {within} and the first row's does not (+), and the "
        "reverse (−); *closer*: poses whose position error is smaller than the first row's (+) or larger (−); "
        "*turned less*: the same for the rotation error; each with the two-sided sign test's p. *Per model*: the "
        "median position / rotation error of each model's poses alone, in the order the models are given.\n",
        "| threshold px (at 640) | max iterations | matches | RANSAC on | refine px | % @10cm5° | % @5cm5° | % @2cm2° "
        "| median cm / ° | per model cm / ° "
        f"| vs first row @{within} | closer vs first row | turned less vs first row | RANSAC ms p50 / p95 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['threshold_px']:g} | {r['max_iterations']} | {r['max_points'] or 'all'} "
            f"| {r.get('ransac_points') or 'all'} | {r.get('refine_px') or '–'} | {r['pct_10cm5deg']:.0f} | "
            f"{r['pct_5cm5deg']:.0f} | {r['pct_2cm2deg']:.0f} "
            f"| {r['median_cm']:.1f} / {r['median_deg']:.2f} "
            f"| {', '.join(f'{c:.1f} / {d:.2f}' for c, d in zip(r['median_cm_per_model'], r['median_deg_per_model']))} "
            f"| +{r['won_within_vs_first']} / −{r['lost_within_vs_first']} (p {r['sign_test_p']:.2f}) "
            f"| +{r['closer_vs_first']} / −{r['farther_vs_first']} (p {r['closer_sign_test_p']:.2g}) "
            f"| +{r['turned_less_vs_first']} / −{r['turned_more_vs_first']} (p {r['turned_sign_test_p']:.2g}) "
            f"| {r['ms_p50']:.1f} / {r['ms_p95']:.1f} |"
        )
    write_results(args.name, {"models": [str(p) for p in args.models], "rows": rows}, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
