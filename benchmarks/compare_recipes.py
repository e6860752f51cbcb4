"""Compare mapping recipes pose by pose on validation frames, never on the queries.

Each recipe is given as ``LABEL=MODEL[,MODEL...]``: students that ``tune_redkitchen_split.py``
trained with one variant, one model per training seed, listed in the same seed order for every
recipe. The held-out frames (a stretch, or ``--val-frames`` evenly spaced ones) do not depend on the
seed or the variant, so model *i* of two
recipes is localized on the same frames with the same RANSAC seeds (each student's ``student_pnp``,
``--ransac-seeds`` times per frame): every pose has a partner. The first recipe is the
reference; each other one is compared with it pose by pose (within 5 cm / 5 deg for one and not
the other), with the exact sign test. This separates two recipes far better than their
15-frame validation figures, whose 7-point steps hide most of the difference.
``--within 2 2`` moves the threshold (e.g. to 2 cm / 2 deg where every recipe is within 5 cm), and
every row is also compared by position error pose by pose (closer / farther than the first row's),
which needs no threshold, and by rotation error (turned less / more). ``--ransac-threshold PX``
localizes every student at that threshold instead of its own (students whose presets or teachers
gave them different thresholds, compared at one).

Train the models with ``train.teach_held_out: false``: a teacher that fuses views (``fused``,
``mvs``, ``sfm``) then never sees a held-out frame, which otherwise shapes the targets around it
with its own depth and pose (models trained before that setting existed had it on).

Models trained with ``--poses`` and ``--depth-registration`` (e.g. redkitchen-gap on its SfM
pseudo ground truth, depth through the rig) are validated against the same poses: give the same
``--poses`` files, ``--depth-registration`` and the ``--runs`` folder that caches the rig.

Usage::

    python benchmarks/compare_recipes.py --name compare_recipes_lr \\
        base=/tmp/runs/tuning/l816-240-seed0/model.pt,/tmp/runs/tuning/l816-240-seed1/model.pt \\
        lr4=/tmp/runs/tuning/l816-lr4-seed0/model.pt,/tmp/runs/tuning/l816-lr4-seed1/model.pt
    python benchmarks/compare_recipes.py --scene redkitchen-gap --within 2 2 \\
        --poses benchmarks/results/2026-12-05-precision/pseudo_gt_redkitchen-gap.txt \\
        --depth-registration auto --runs /tmp/h29v/runs-depth --name ... depth=...,... fused=...,...

Results: ``benchmarks/results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
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
from slocal.bench.metrics import accuracy_summary, query_result, systematic_error
from slocal.distill.model_file import read_model_payload
from slocal.geometry.pnp import solve_pnp
from slocal.io import read_image
from slocal.localize.localizer import correspondences, student_pnp
from slocal.localize.refine import FlowRefiner, student_refiner
from tune_ransac import held_out_predictions, model_scene


def parse_recipe(text: str) -> tuple[str, list[Path]]:
    label, sep, paths = text.partition("=")
    if not sep or not label or not paths:
        raise SystemExit(f"expected LABEL=MODEL[,MODEL...], got {text!r}")
    return label, [Path(p) for p in paths.split(",")]


def recipe_poses(models: list[Path], args, seeds: list[int]) -> tuple[list, list | None]:
    """Pose results keyed in a fixed order: model index, frame name, RANSAC seed.

    With ``--refine`` also the same poses finished by flow to the nearest training frames
    (``FlowRefiner`` on the targets the model's teacher gave its training frames), else None.
    """
    results, refined = [], [] if args.refine else None
    for m, path in enumerate(models):
        scene, model = model_scene(
            path, args.data_root, args.scene, tuple(args.poses), args.depth_registration, args.runs
        )
        pnp = student_pnp(model, threshold_px=args.ransac_threshold)  # None: the threshold it records
        held_out = held_out_frames(path)
        frames = held_out_predictions(scene, model, held_out)
        if args.refine:
            images = {f.name: f for f in scene.mapping}
            keyframes = student_refiner(scene.without_mapping(held_out), model, args.runs).keyframes
            refiners = {seed: FlowRefiner(keyframes, seed=seed) for seed in seeds}
        for name, prediction, cam_from_world in sorted(frames, key=lambda f: f[0]):
            uv, xyz = correspondences(prediction)
            rgb = read_image(images[name].image_path) if args.refine else None
            for seed in seeds:
                r = solve_pnp(uv, xyz, prediction.camera, replace(pnp, seed=seed))
                pose = r.cam_from_world if r.success else None
                key = f"{m}:{name}#{seed}"
                results.append(query_result(key, pose, cam_from_world, r.num_inliers, {}))
                if refined is not None:
                    if pose is not None:
                        fine = refiners[seed].refine(rgb, images[name].camera, pose)
                        pose = fine.cam_from_world if fine.success else pose
                    refined.append(query_result(key, pose, cam_from_world, r.num_inliers, {}))
    return results, refined


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "recipes", nargs="+", help="LABEL=MODEL[,MODEL...], one model per training seed, same seed order"
    )
    parser.add_argument("--scene", default="redkitchen-split")
    parser.add_argument("--data-root", type=Path, default=SEVEN_SCENES)
    parser.add_argument("--ransac-seeds", type=int, default=5, help="RANSAC seeds per frame, poses pooled")
    parser.add_argument("--name", default="compare_recipes", help="results file name in benchmarks/results/")
    parser.add_argument(
        "--ransac-threshold", type=float, default=None, help="every student at this threshold (px at 640 width)"
    )
    parser.add_argument(
        "--within", type=float, nargs=2, default=(5.0, 5.0), metavar=("CM", "DEG"), help="the paired threshold"
    )
    parser.add_argument("--poses", type=Path, nargs="*", default=[], help="pose files the models were trained with")
    parser.add_argument(
        "--depth-registration",
        default="off",
        help="as the models were trained: auto, estimate, off, a rig file, or 'model' (each model's recorded rig)",
    )
    parser.add_argument(
        "--runs",
        type=Path,
        default=None,
        help="runs folder the models were trained with (the cached rig, undistorted COLMAP images)",
    )
    parser.add_argument(
        "--refine",
        action="store_true",
        help="also each recipe's poses finished by flow to the nearest training frames (row LABEL+flow)",
    )
    args = parser.parse_args()
    max_t, max_r = args.within[0] / 100.0, args.within[1]
    tag = f"{args.within[0]:g}cm{args.within[1]:g}deg"
    recipes = [parse_recipe(r) for r in args.recipes]
    if len({len(models) for _, models in recipes}) != 1:
        raise SystemExit("every recipe needs the same number of models (one per training seed, same order)")
    seeds = list(range(args.ransac_seeds))
    rows, first = [], None
    runs = []
    for label, models in recipes:
        results, refined = recipe_poses(models, args, seeds)
        runs.append((label, models, results))
        if refined is not None:
            runs.append((f"{label}+flow", models, refined))
    for label, models, results in runs:
        keys = [r.image for r in results]
        hits = hits_within(results, max_t, max_r)
        t_err = np.array([r.t_err_m for r in results])
        r_err = np.array([r.r_err_deg for r in results])
        if first is None:
            first = (keys, hits, t_err, r_err)
        elif keys != first[0]:
            raise SystemExit(f"{label}: its models' validation frames differ from {recipes[0][0]}'s; cannot pair poses")
        s = accuracy_summary(results)
        iterations = [read_model_payload(p)["train"]["iterations"] for p in models]
        # Poses are ordered model by model, each model on the same frames and RANSAC seeds.
        per_model = (100.0 * hits.reshape(len(models), -1).mean(axis=1)).tolist()
        per_model_cm = (100.0 * np.median(t_err.reshape(len(models), -1), axis=1)).tolist()
        per_model_deg = np.median(r_err.reshape(len(models), -1), axis=1).tolist()
        rows.append(
            {
                "recipe": label,
                "models": [str(p) for p in models],
                "iterations": iterations,
                "poses": len(results),
                "pct_10cm5deg": s["acc_10cm5deg"],
                "pct_5cm5deg": s["acc_5cm5deg"],
                "pct_2cm2deg": s["acc_2cm2deg"],
                "median_cm": s["median_t_cm"],
                "median_deg": s["median_r_deg"],
                f"pct_{tag}": 100.0 * float(hits.mean()),
                f"pct_{tag}_per_model": per_model,
                "median_cm_per_model": per_model_cm,
                "median_deg_per_model": per_model_deg,
                **systematic_error(results, 1.0),
                **paired_vs_first(hits, first[1], tag),
                **closer_vs_first(t_err, first[2]),
                **turned_less_vs_first(r_err, first[3]),
            }
        )
        print(rows[-1], flush=True)
    n_models = len(recipes[0][1])
    within = f"{args.within[0]:g} cm / {args.within[1]:g}°"
    reference = f" against the poses of {', '.join(f'`{p.name}`' for p in args.poses)}" if args.poses else ""
    if args.depth_registration != "off":
        reference += f" (depth registration `{args.depth_registration}`)"
    ransac = (
        f"every student's RANSAC at {args.ransac_threshold:g} px"
        if args.ransac_threshold is not None
        else "each student's RANSAC (`student_pnp`)"
    )
    lines = [
        "# Mapping recipes compared pose by pose on validation frames (never the queries)\n",
        "{header}",
        f"{n_models} model(s) per recipe (one per training seed, paired by seed), each localized on its held-out "
        f"frames of `{args.scene}`{reference} with {ransac}, {len(seeds)} RANSAC seed(s) "
        f"per frame: {rows[0]['poses']} poses per recipe. *vs first row*: poses this recipe puts within {within} "
        "and the first row's does not (+), and the reverse (−); *closer*: poses whose position error is smaller "
        "than the first row's (+) or larger (−); *turned less*: the same for the rotation error; each with the "
        "two-sided sign test's p. RANSAC seeds of one frame "
        "share the network output, so the poses are not independent: read p as a guide, not a verdict. "
        "*Mean error in camera frame*: the systematic part (x right, y down, z forward) over the poses within "
        "10 cm / 5°.\n",
        f"| recipe | iterations | poses | % @10cm5° | % @5cm5° | % @{within} per model | median cm / ° | "
        f"median cm / ° per model | mean error in camera frame x, y, z cm | vs first row @{within} "
        "| closer vs first row | turned less vs first row |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per_model = " / ".join(f"{p:.0f}" for p in r[f"pct_{tag}_per_model"])
        per_model_cm = ", ".join(
            f"{c:.2f} / {d:.2f}" for c, d in zip(r["median_cm_per_model"], r["median_deg_per_model"])
        )
        mean = ", ".join(f"{v:+.2f}" for v in r["mean_cam_err"]) if r["mean_cam_err"] else "–"
        lines.append(
            f"| {r['recipe']} | {' / '.join(str(i) for i in r['iterations'])} | {r['poses']} | {r['pct_10cm5deg']:.0f} "
            f"| {r['pct_5cm5deg']:.0f} | {r[f'pct_{tag}']:.0f} ({per_model}) | {r['median_cm']:.2f} / "
            f"{r['median_deg']:.2f} | {per_model_cm} | {mean} "
            f"| +{r[f'won_{tag}_vs_first']} / −{r[f'lost_{tag}_vs_first']} (p {r['sign_test_p']:.2f}) "
            f"| +{r['closer_vs_first']} / −{r['farther_vs_first']} (p {r['closer_sign_test_p']:.2g}) "
            f"| +{r['turned_less_vs_first']} / −{r['turned_more_vs_first']} (p {r['turned_sign_test_p']:.2g}) |"
        )
    lines += ["", "Models:", ""] + [f"- {r['recipe']}: " + ", ".join(f"`{m}`" for m in r["models"]) for r in rows]
    meta = {"scene": args.scene, "within": list(args.within), "poses": [str(p) for p in args.poses]}
    meta["ransac_threshold_px"] = args.ransac_threshold
    write_results(args.name, {"ransac_seeds": len(seeds), **meta, "rows": rows}, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
