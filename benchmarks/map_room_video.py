"""The product path on a video: synth video -> slocal map -> slocal distill -> slocal bench (issue 30, 6c).

Every step is the CLI a user runs, timed::

    slocal synth room --video room.mp4 --query-video room-queries.mp4     # the procedural room, walked
    slocal map room.mp4 --scene room-video --queries room-queries.mp4     # pycolmap, model units
    slocal distill --scene room-video --iterations N                      # the default student, colmap teacher
    slocal bench --scenes room-video --methods ace --no-distill          # against the model's own query poses

``bench`` reports in model units (no scale was given). Because the room is
rendered, its true camera path is known (``room.poses.txt``): a similarity of
the mapped cameras onto it gives the metres per model unit after the fact, so
the same errors are also shown in cm (for reading only; the scene itself was
never told its scale).

Usage::

    python benchmarks/map_room_video.py                      # 40 000 iterations (10 minutes on a quiet machine)
    python benchmarks/map_room_video.py --iterations 8000
    python benchmarks/map_room_video.py --minutes 10         # a wall-clock budget instead (measures the load too)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import run_cli, write_results
from map_redkitchen import scrub
from slocal.bench.metrics import ACCURACY_THRESHOLDS
from slocal.bench.report import json_safe
from slocal.capture.scale import fit_similarity
from slocal.data import load_scene
from slocal.data.synth.video import read_video_poses

SCENE = "room-video"
RESULTS = "2026-12-05-map/room_video"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=40000, help="distillation iterations (fixed)")
    parser.add_argument("--minutes", type=float, default=None, help="a distillation budget in minutes instead")
    parser.add_argument("--results-name", default=RESULTS)
    args = parser.parse_args()
    load_start = list(os.getloadavg())
    steps = {}
    with tempfile.TemporaryDirectory(prefix="map-room-video-") as tmp:
        tmp = Path(tmp)
        local = {str(tmp): "$TMP"}
        data, runs = tmp / "data", tmp / "runs"
        walk, queries = tmp / "room.mp4", tmp / "room-queries.mp4"
        where = ["--data-root", str(data), "--runs", str(runs)]
        synth, cmd, s, _, _ = run_cli(["synth", "room", "--video", str(walk), "--query-video", str(queries), *where])
        steps["synth"] = {"command": cmd, "wall_s": round(s, 1), "videos": synth["videos"]}
        summary, cmd, s, _, _ = run_cli(["map", str(walk), "--scene", SCENE, "--queries", str(queries), *where])
        steps["map"] = {"command": cmd, "wall_s": round(s, 1), "summary": summary}
        budget = ["--minutes", f"{args.minutes:g}"] if args.minutes else ["--iterations", str(args.iterations)]
        distill, cmd, s, _, _ = run_cli(["distill", "--scene", SCENE, *budget, "--device", "cpu", *where])
        steps["distill"] = {"command": cmd, "wall_s": round(s, 1), "result": distill}
        student = distill["student"]
        out = tmp / "bench"
        _, cmd, s, _, _ = run_cli(
            ["bench", "--scenes", SCENE, "--methods", student, "--no-distill", "--out", str(out), *where],
            json_out=False,
        )
        report = json.loads((out / "results.json").read_text())
        per_query = json.loads((out / "per_query.json").read_text())
        steps["bench"] = {"command": cmd, "wall_s": round(s, 1), "rows": report["rows"], "units": report["units"]}

        # After the fact: the model's scale from the true camera path of the rendered videos.
        scene = load_scene(data, SCENE, runs_root=runs)
        truth = {"room": read_video_poses(walk.with_name("room.poses.txt"))}
        truth["room-queries"] = read_video_poses(queries.with_name("room-queries.poses.txt"))
        frames = scene.mapping + scene.query
        model = np.array([f.world_from_cam[:3, 3] for f in frames])
        true = np.array([truth[f.name.split("/")[0]][int(f.name[-10:-4])][1][:3, 3] for f in frames])
        fit = fit_similarity(model[: len(scene.mapping)], true[: len(scene.mapping)])
        residual_cm = 100 * np.linalg.norm(fit.apply(model) - true, axis=1)
        centres = model[: len(scene.mapping)]
        spread = float(np.median(np.linalg.norm(centres - centres.mean(axis=0), axis=1)))

    t_units = np.array([q["t_err_units"] if q["success"] else np.inf for q in per_query])
    r_deg = np.array([q["r_err_deg"] if q["success"] else np.inf for q in per_query])
    t_cm = 100 * t_units * fit.scale
    accuracy = {name: float(np.mean((t_cm < 100 * t) & (r_deg < r)) * 100) for name, t, r in ACCURACY_THRESHOLDS}
    total = sum(step["wall_s"] for step in steps.values())
    row = steps["bench"]["rows"][0]
    payload = {
        "loadavg_at_start": load_start,
        "minutes": args.minutes,
        "iterations": None if args.minutes else args.iterations,
        "steps": steps,
        "total_wall_s": round(total, 1),
        "true_path": {
            "metres_per_unit": fit.scale,
            "camera_centre_residual_cm": {
                "mapping_median": float(np.median(residual_cm[: len(scene.mapping)])),
                "query_median": float(np.median(residual_cm[len(scene.mapping) :])) if len(scene.query) else None,
                "max": float(residual_cm.max()),
            },
            "mapping_camera_spread_units": spread,
        },
        "queries": {
            "n": len(per_query),
            "median_t_units": float(np.median(t_units)),
            "median_t_pct_of_spread": float(100 * np.median(t_units) / spread),
            "median_r_deg": float(np.median(r_deg)),
            "median_t_cm_true_scale": float(np.median(t_cm)),
            "accuracy_true_scale": accuracy,
        },
    }
    s = steps["map"]["summary"]
    lines = [
        "# Video -> map -> distill -> bench on the procedural room (model units)",
        "",
        "{header}",
        f"Load average at start {', '.join(f'{v:.2f}' for v in load_start)}. Every step is the CLI (commands in the "
        "JSON). The scene was never given a scale: bench is in model units; the cm columns use the scale of the "
        "mapped cameras fitted afterwards to the rendered videos' true path.",
        "",
        "| step | wall s | what |",
        "|---|---|---|",
        f"| synth | {steps['synth']['wall_s']:.0f} | "
        + ", ".join(f"{Path(v['path']).name}: {v['frames']} frames" for v in steps["synth"]["videos"])
        + " |",
        f"| map | {steps['map']['wall_s']:.0f} | {s['registered']['mapping']}/{s['images']['mapping']} mapping, "
        f"{s['registered']['query']}/{s['images']['query']} query frames registered; {s['pairs']['strategy']} "
        f"({s['pairs']['matched']} pairs), {s['mapper']}; stages "
        + ", ".join(f"{k} {v:.0f}" for k, v in s["seconds"].items() if k != "total")
        + " s |",
        f"| distill | {steps['distill']['wall_s']:.0f} | {student}, "
        + (f"{args.minutes:g} min budget, " if args.minutes else "fixed ")
        + f"{distill.get('iterations')} iterations, teacher {distill.get('teacher')} |",
        f"| bench | {steps['bench']['wall_s']:.0f} | {row.get('n_queries')} queries |",
        f"| total | {total:.0f} | goal <= 900 s |",
        "",
        "| queries | median t (model units) | median t / camera spread | median deg | median cm (true scale) | "
        + " | ".join(f"% {name[4:]}" for name, _, _ in ACCURACY_THRESHOLDS)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(ACCURACY_THRESHOLDS),
        f"| {len(per_query)} | {payload['queries']['median_t_units']:.4f} | "
        f"{payload['queries']['median_t_pct_of_spread']:.2f} % | {payload['queries']['median_r_deg']:.2f} | "
        f"{payload['queries']['median_t_cm_true_scale']:.2f} | "
        + " | ".join(f"{accuracy[name]:.0f}" for name, _, _ in ACCURACY_THRESHOLDS)
        + " |",
        "",
        f"Mapped camera centres vs the true path after a similarity on the mapping frames: median "
        f"{payload['true_path']['camera_centre_residual_cm']['mapping_median']:.2f} cm (mapping), "
        f"max {payload['true_path']['camera_centre_residual_cm']['max']:.2f} cm; "
        f"{fit.scale:.4f} m per model unit.",
    ]
    json_path, md_path = write_results(
        args.results_name, json_safe(scrub(payload, local)), scrub("\n".join(lines) + "\n", local)
    )
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
