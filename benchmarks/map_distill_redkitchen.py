"""redkitchen's photos without poses -> slocal map -> slocal distill -> slocal bench, in model units (issue 30).

The second half of the redkitchen goal: the 100 mapping + 20 query images of
``7scenes-mini/redkitchen-split`` as a photo folder (symlinks, no poses, no
intrinsics) are mapped with the defaults (``--queries 'seq-02/*'``), the
default student is distilled on the model with the scene's default teacher
(``colmap``: the model's own points) for a fixed number of iterations, and
``slocal bench`` localizes the 20 queries with it and with SIFT, against the
model's own query poses, in model units (no scale is given).

The goal is relative to the scene: the student's median position error within
5 % of the scene's camera distance (the median distance from a mapping camera
to the model points it sees) and 1 deg. For reading only, errors are also given
in cm through the similarity of the model's mapping cameras onto the 7-Scenes
poses (``map_redkitchen.alignment``, with the colour-camera offset).

Usage::

    python benchmarks/map_distill_redkitchen.py --iterations 40000
    python benchmarks/map_distill_redkitchen.py --work DIR   # keep (and reuse) the mapped scene and runs in DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pycolmap

from common import SHARED_DATA, run_cli, write_results
from map_redkitchen import alignment, load_reference, scrub
from slocal.bench.report import json_safe

SCENE = "redkitchen-split"
MAPPED = "rk-mapped"
RESULTS = "2026-12-05-map/redkitchen_distill"
GOAL_PCT, GOAL_DEG = 5.0, 1.0


def camera_distance(rec: pycolmap.Reconstruction, names: set[str]) -> float:
    """Median distance (model units) from a mapping camera to the model points it observes."""
    dists = []
    for image in rec.images.values():
        if image.name not in names:
            continue
        centre = image.projection_center()
        ids = [p.point3D_id for p in image.points2D if p.has_point3D()]
        xyz = np.array([rec.points3D[i].xyz for i in ids])
        dists.append(np.linalg.norm(xyz - centre, axis=1))
    return float(np.median(np.concatenate(dists)))


def _stats(values: np.ndarray) -> dict:
    return {"median": float(np.median(values)), "p90": float(np.percentile(values, 90)), "max": float(values.max())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=40000, help="distillation iterations (fixed)")
    parser.add_argument("--work", type=Path, default=None, help="folder for photos, data and runs (default: temp)")
    parser.add_argument("--results-name", default=RESULTS)
    args = parser.parse_args()
    scene, gt, mapping_names = load_reference()
    load_start = list(os.getloadavg())
    steps: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="map-distill-rk-") as tmp:
        work = args.work or Path(tmp)
        local = {str(work): "$WORK", str(SHARED_DATA): "../shared/data"}
        photos, data, runs = work / "photos", work / "data", work / "runs"
        for name in gt:
            if not (photos / name).exists():
                (photos / name).parent.mkdir(parents=True, exist_ok=True)
                (photos / name).symlink_to(scene.root / name)
        where = ["--data-root", str(data), "--runs", str(runs)]
        if (data / MAPPED / "map.json").is_file():
            summary = json.loads((data / MAPPED / "map.json").read_text())
            steps["map"] = {"reused": True, "summary": summary}
        else:
            summary, cmd, s, load0, load1 = run_cli(
                ["map", str(photos), "--scene", MAPPED, "--queries", "seq-02/*", *where]
            )
            steps["map"] = {"command": cmd, "wall_s": round(s, 1), "loadavg": [load0[0], load1[0]], "summary": summary}
        distill, cmd, s, load0, load1 = run_cli(
            ["distill", "--scene", MAPPED, "--iterations", str(args.iterations), "--device", "cpu", *where]
        )
        steps["distill"] = {"command": cmd, "wall_s": round(s, 1), "loadavg": [load0[0], load1[0]], "result": distill}
        student = distill["student"]
        out = work / "bench"
        _, cmd, s, load0, load1 = run_cli(
            ["bench", "--scenes", MAPPED, "--methods", f"{student},sift", "--no-distill", "--out", str(out), *where],
            json_out=False,
        )
        report = json.loads((out / "results.json").read_text())
        per_query = json.loads((out / "per_query.json").read_text())
        steps["bench"] = {
            "command": cmd,
            "wall_s": round(s, 1),
            "loadavg": [load0[0], load1[0]],
            "rows": report["rows"],
        }
        rec = pycolmap.Reconstruction(str(data / MAPPED / "sparse" / "0"))
        distance = camera_distance(rec, mapping_names)
        fits = alignment(rec, gt, mapping_names)
    metres_per_unit = fits["similarity + colour offset"]["metres_per_unit"]

    methods = {}
    for method in dict.fromkeys(q["method"] for q in per_query):
        rows = [q for q in per_query if q["method"] == method]
        t = np.array([q["t_err_units"] if q["success"] else np.inf for q in rows])
        r = np.array([q["r_err_deg"] if q["success"] else np.inf for q in rows])
        methods[method] = {
            "queries": len(rows),
            "localized": int(sum(q["success"] for q in rows)),
            "t_units": _stats(t),
            "r_deg": _stats(r),
            "median_t_pct_of_camera_distance": float(100 * np.median(t) / distance),
            "median_t_cm_via_7scenes_fit": float(100 * np.median(t) * metres_per_unit),
            "pct_within_goal": float(100 * np.mean((100 * t / distance <= GOAL_PCT) & (r <= GOAL_DEG))),
        }
    student = next(k for k in methods if k != "sift")
    m = methods[student]
    goal_met = m["median_t_pct_of_camera_distance"] <= GOAL_PCT and m["r_deg"]["median"] <= GOAL_DEG
    payload = {
        "scene": SCENE,
        "mapped_scene": MAPPED,
        "iterations": args.iterations,
        "loadavg_at_start": load_start,
        "camera_distance_units": distance,
        "metres_per_unit_via_7scenes_fit": metres_per_unit,
        "alignment": fits,
        "steps": steps,
        "methods": methods,
        "goal": {"median_t_pct": GOAL_PCT, "median_deg": GOAL_DEG, "met": bool(goal_met)},
    }
    s = steps["map"]["summary"]
    d = steps["distill"]
    lines = [
        "# redkitchen's photos without poses: map -> distill -> bench in model units",
        "",
        "{header}",
        f"Load average at start {', '.join(f'{v:.2f}' for v in load_start)}. Every step is the CLI (commands and "
        "per-step load in the JSON). The scene was never given a scale: the student and SIFT are scored against the "
        "model's own poses of the 20 held-out queries, in model units. Camera distance: median distance from a "
        f"mapping camera to the model points it sees, {distance:.3f} units. cm columns for reading only, through "
        f"the mapped cameras' similarity onto the 7-Scenes poses (with the colour-camera offset): "
        f"{metres_per_unit:.4f} m per unit.",
        "",
        "| step | wall s | load start-end | what |",
        "|---|---|---|---|",
        (
            "| map | reused | - | "
            if steps["map"].get("reused")
            else f"| map | {steps['map']['wall_s']:.0f} | {steps['map']['loadavg'][0]:.1f}-"
            f"{steps['map']['loadavg'][1]:.1f} | "
        )
        + f"{s['registered']['mapping']}/{s['images']['mapping']} mapping, {s['registered']['query']}/"
        f"{s['images']['query']} query images registered; {s['pairs']['strategy']}, {s['mapper']} |",
        f"| distill | {d['wall_s']:.0f} | {d['loadavg'][0]:.1f}-{d['loadavg'][1]:.1f} | {student}, "
        f"{d['result'].get('iterations')} iterations, teacher {d['result'].get('teacher')} |",
        f"| bench | {steps['bench']['wall_s']:.0f} | {steps['bench']['loadavg'][0]:.1f}-"
        f"{steps['bench']['loadavg'][1]:.1f} | {student} and sift, 20 queries |",
        "",
        "| method | localized | median t (units) | median t / camera distance | median deg | p90 t (units) | "
        f"% within {GOAL_PCT:g} % and {GOAL_DEG:g} deg | median cm (7-Scenes fit) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, v in methods.items():
        lines.append(
            f"| {method} | {v['localized']}/{v['queries']} | {v['t_units']['median']:.4f} | "
            f"{v['median_t_pct_of_camera_distance']:.2f} % | {v['r_deg']['median']:.2f} | {v['t_units']['p90']:.4f} | "
            f"{v['pct_within_goal']:.0f} | {v['median_t_cm_via_7scenes_fit']:.2f} |"
        )
    lines += [
        "",
        f"Goal (student median within {GOAL_PCT:g} % of the camera distance and {GOAL_DEG:g} deg): "
        + ("met." if goal_met else "not met."),
    ]
    json_path, md_path = write_results(
        args.results_name, json_safe(scrub(payload, local)), scrub("\n".join(lines) + "\n", local)
    )
    for path in (json_path, md_path):  # the command line names --work
        path.write_text(scrub(path.read_text(), {str(work): "$WORK"}))
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
