"""Compare mapping recipes pose by pose on validation frames, never on the queries.

Each recipe is given as ``LABEL=MODEL[,MODEL...]``: students that ``tune_redkitchen_split.py``
trained with one variant, one model per training seed, listed in the same seed order for every
recipe. The held-out frames (a stretch, or ``--val-frames`` evenly spaced ones) do not depend on the
seed or the variant, so model *i* of two
recipes is localized on the same frames with the same RANSAC seeds (the default ``DENSE_PNP``,
``--ransac-seeds`` times per frame): every pose has a partner. The first recipe is the
reference; each other one is compared with it pose by pose (within 5 cm / 5 deg for one and not
the other), with the exact sign test. This separates two recipes far better than their
15-frame validation figures, whose 7-point steps hide most of the difference.

Usage::

    python benchmarks/compare_recipes.py --name compare_recipes_lr \\
        base=/tmp/runs/tuning/l816-240-seed0/model.pt,/tmp/runs/tuning/l816-240-seed1/model.pt \\
        lr4=/tmp/runs/tuning/l816-lr4-seed0/model.pt,/tmp/runs/tuning/l816-lr4-seed1/model.pt

Results: ``benchmarks/results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from common import SEVEN_SCENES, hits_5cm5deg, paired_vs_first, write_results
from slocal.bench.metrics import accuracy_summary, query_result
from slocal.distill.model_file import read_model_payload
from slocal.geometry.pnp import DENSE_PNP, solve_pnp
from slocal.localize.localizer import correspondences
from tune_ransac import frame_predictions


def parse_recipe(text: str) -> tuple[str, list[Path]]:
    label, sep, paths = text.partition("=")
    if not sep or not label or not paths:
        raise SystemExit(f"expected LABEL=MODEL[,MODEL...], got {text!r}")
    return label, [Path(p) for p in paths.split(",")]


def recipe_poses(models: list[Path], data_root: Path, scene: str, seeds: list[int]) -> list:
    """Pose results keyed in a fixed order: model index, frame name, RANSAC seed."""
    results = []
    for m, path in enumerate(models):
        for name, prediction, cam_from_world in sorted(frame_predictions(path, data_root, scene), key=lambda f: f[0]):
            uv, xyz = correspondences(prediction)
            for seed in seeds:
                r = solve_pnp(uv, xyz, prediction.camera, replace(DENSE_PNP, seed=seed))
                pose = r.cam_from_world if r.success else None
                results.append(query_result(f"{m}:{name}#{seed}", pose, cam_from_world, r.num_inliers, {}))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "recipes", nargs="+", help="LABEL=MODEL[,MODEL...], one model per training seed, same seed order"
    )
    parser.add_argument("--scene", default="redkitchen-split")
    parser.add_argument("--data-root", type=Path, default=SEVEN_SCENES)
    parser.add_argument("--ransac-seeds", type=int, default=5, help="RANSAC seeds per frame, poses pooled")
    parser.add_argument("--name", default="compare_recipes", help="results file name in benchmarks/results/")
    args = parser.parse_args()
    recipes = [parse_recipe(r) for r in args.recipes]
    if len({len(models) for _, models in recipes}) != 1:
        raise SystemExit("every recipe needs the same number of models (one per training seed, same order)")
    seeds = list(range(args.ransac_seeds))
    rows, first = [], None
    for label, models in recipes:
        results = recipe_poses(models, args.data_root, args.scene, seeds)
        keys = [r.image for r in results]
        hits = hits_5cm5deg(results)
        if first is None:
            first = (keys, hits)
        elif keys != first[0]:
            raise SystemExit(f"{label}: its models' validation frames differ from {recipes[0][0]}'s; cannot pair poses")
        s = accuracy_summary(results)
        iterations = [read_model_payload(p)["train"]["iterations"] for p in models]
        # Poses are ordered model by model, each model on the same frames and RANSAC seeds.
        per_model = (100.0 * hits.reshape(len(models), -1).mean(axis=1)).tolist()
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
                "pct_5cm5deg_per_model": per_model,
                **paired_vs_first(hits, first[1]),
            }
        )
        print(rows[-1], flush=True)
    n_models = len(recipes[0][1])
    lines = [
        "# Mapping recipes compared pose by pose on validation frames (never the queries)\n",
        "{header}",
        f"{n_models} model(s) per recipe (one per training seed, paired by seed), each localized on its held-out "
        f"frames of `{args.scene}` with the default RANSAC (`DENSE_PNP`), {len(seeds)} RANSAC seed(s) per frame: "
        f"{rows[0]['poses']} poses per recipe. *vs first row*: poses this recipe puts within 5 cm / 5° and the first "
        "row's does not (+), and the reverse (−), with the two-sided sign test's p. RANSAC seeds of one frame share "
        "the network output, so the poses are not independent: read p as a guide, not a verdict.\n",
        "| recipe | iterations | poses | % @10cm5° | % @5cm5° | % @5cm5° per model | % @2cm2° | median cm / ° | vs "
        "first row @5cm5° |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per_model = " / ".join(f"{p:.0f}" for p in r["pct_5cm5deg_per_model"])
        lines.append(
            f"| {r['recipe']} | {' / '.join(str(i) for i in r['iterations'])} | {r['poses']} | {r['pct_10cm5deg']:.0f} "
            f"| {r['pct_5cm5deg']:.0f} | {per_model} | {r['pct_2cm2deg']:.0f} | {r['median_cm']:.1f} / "
            f"{r['median_deg']:.2f} "
            f"| +{r['won_5cm5deg_vs_first']} / −{r['lost_5cm5deg_vs_first']} (p {r['sign_test_p']:.2f}) |"
        )
    lines += ["", "Models:", ""] + [f"- {r['recipe']}: " + ", ".join(f"`{m}`" for m in r["models"]) for r in rows]
    write_results(args.name, {"ransac_seeds": len(seeds), "rows": rows}, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
