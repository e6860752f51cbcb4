"""Score the same students' query poses against several references of one scene.

At 5 cm the reference decides what an error is: 7-Scenes' poses come from depth tracking and belong to
the depth camera, an SfM pseudo ground truth comes from the colour images. This script localizes every
query once per model (the product's ``Localizer``, the students' RANSAC settings) and compares the same
estimates with each reference:

- ``pose files``: the scene loaded with ``--poses`` (e.g. the SfM pseudo ground truth);
- ``dataset, as loaded``: the dataset's own poses (for 7-Scenes, the depth camera's);
- ``dataset, colour camera``: the dataset's poses moved to the colour camera through the colour-depth rig
  estimated on the mapping frames (``slocal.teach.rig``, ``--depth-registration auto``).

The references must share a world frame (the pseudo ground truth is aligned to the dataset's on the
mapping frames). Reported per reference and model: accuracy, median error, and the mean error in the
query camera's frame (the systematic part, over the queries within 10 cm / 5 deg).

Usage::

    python benchmarks/cross_reference.py --scene redkitchen-gap \\
        --poses results/2026-12-05-precision/pseudo_gt_redkitchen-gap.txt \\
        --model seed0=RUNS/seed0/redkitchen-gap/students/ace-lite0/model.pt --runs RUNS/rig \\
        --name 2026-12-05-precision/gap_cross_reference
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import SEVEN_SCENES, write_results
from slocal.bench.metrics import accuracy_summary, query_result, systematic_error
from slocal.data import load_scene
from slocal.geometry.pnp import DENSE_PNP
from slocal.localize.localizer import Localizer, load_model
from slocal.progress import progress_bar
from slocal.teach.rig import registered_scene


def references(args) -> dict[str, object]:
    scene_files = load_scene(args.data_root, args.scene, pose_files=args.poses)
    as_loaded = load_scene(args.data_root, args.scene)
    refs = {f"pose files ({', '.join(p.name for p in args.poses)})": scene_files} if args.poses else {}
    refs["dataset, as loaded"] = as_loaded
    colour = registered_scene(as_loaded, args.runs, "auto")
    if colour is not as_loaded:
        refs["dataset, colour camera (rig)"] = colour
    return refs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", default="redkitchen-gap")
    parser.add_argument("--data-root", type=Path, default=SEVEN_SCENES)
    parser.add_argument("--poses", type=Path, action="append", default=[])
    parser.add_argument("--model", action="append", required=True, help="LABEL=PATH of a model file")
    parser.add_argument("--runs", type=Path, required=True, help="runs folder for the rig estimate (cached)")
    parser.add_argument("--name", required=True)
    args = parser.parse_args()

    refs = references(args)
    # Any reference gives the query images and cameras: they are the same frames.
    query_frames = next(iter(refs.values())).query
    rows = []
    for spec in args.model:
        label, path = spec.split("=", 1)
        localizer = Localizer(load_model(path, expect_scene=args.scene), DENSE_PNP)
        estimates = {}
        for frame in progress_bar(query_frames, f"{label}: queries"):
            loc = localizer.localize_image(frame.image_path, frame.camera)
            estimates[frame.name] = (loc.cam_from_world, loc.num_inliers)
        for ref_name, scene in refs.items():
            results = [
                query_result(f.name, estimates[f.name][0], f.cam_from_world, estimates[f.name][1], {})
                for f in scene.query
            ]
            rows.append(
                {
                    "model": label,
                    "path": path,
                    "reference": ref_name,
                    **accuracy_summary(results, scene.metres_per_unit),
                    **systematic_error(results, scene.metres_per_unit),
                }
            )

    def f(v, d=1):
        return "-" if v is None else f"{v:.{d}f}"

    lines = [
        f"# {args.scene}: the same query poses against each reference\n",
        "{header}",
        "Each model localizes every query once; the same estimates are compared with each reference. Mean error in "
        "camera frame: estimated minus true centre in the true camera's frame (x right, y down, z forward), over "
        "the queries within 10 cm / 5° (n).\n",
        "| model | reference | queries | % @10cm5° | % @5cm5° | % @2cm2° | median cm / ° | mean error x, y, z cm (n) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mean = r.get("mean_cam_err")
        cam = "-" if not mean else f"{', '.join(f'{v:+.1f}' for v in mean)} ({r['n_cam_err']})"
        lines.append(
            f"| {r['model']} | {r['reference']} | {r['n_queries']} | {f(r['acc_10cm5deg'], 0)} | "
            f"{f(r['acc_5cm5deg'], 0)} | {f(r['acc_2cm2deg'], 0)} | {f(r['median_t_cm'])} / {f(r['median_r_deg'], 2)} "
            f"| {cam} |"
        )
    write_results(args.name, {"scene": args.scene, "rows": rows}, "\n".join(lines) + "\n")
    print("\n".join(lines).replace("{header}", ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
