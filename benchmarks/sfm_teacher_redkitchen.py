"""SfM teacher and SIFT baseline on 7-Scenes redkitchen (the 7scenes-mini subset).

1. ``slocal teach --scene redkitchen --teacher sfm --json ... --overwrite``: SIFT
   triangulated with the known poses on the 125 mapping frames; ``ensure_targets``
   scores the sparse targets against the registered depth (median error, % within 5 cm).
2. The ``sift`` baseline (``slocal.bench.sift.SiftLocalizer``) on the 25 queries:
   accuracy at 5 cm/5 deg and 2 cm/2 deg, median errors, and ms per query by stage.
3. Optional diagnostic (``--colour-focal F``): both again with the colour
   camera's focal length replaced by ``F`` (mapping and query frames; depth is
   untouched), to show how much the data's colour intrinsics matter.

Usage::

    python benchmarks/sfm_teacher_redkitchen.py                       # steps 1 and 2
    python benchmarks/sfm_teacher_redkitchen.py --colour-focal 525    # plus the diagnostic

Writes ``benchmarks/results/sfm_teacher_redkitchen.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import RESULTS, SEVEN_SCENES
from slocal.bench.machine import machine_info
from slocal.bench.metrics import accuracy_summary, query_result
from slocal.bench.report import code_text
from slocal.bench.sift import SiftConfig, SiftLocalizer
from slocal.data import load_scene
from slocal.data.scene import Scene
from slocal.io import read_image, write_json, write_text
from slocal.teach import ensure_targets
from slocal.teach.features import colmap_quiet
from slocal.teach.sfm import SfmTeacher, SfmTeacherConfig, build_sfm_map

STAGES = ("load", "features", "matching", "ransac", "total")


def finite_or_none(obj):
    """JSON has no infinity: failed queries (infinite error) are written as null."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite_or_none(v) for v in obj]
    return obj


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def run_teacher_cli(data_root: Path, runs: Path) -> tuple[dict, float, str]:
    """The ``slocal teach`` command as a user runs it; returns its JSON, wall time and command line."""
    cmd = [
        "slocal",
        "teach",
        "--scene",
        "redkitchen",
        "--teacher",
        "sfm",
        "--json",
        "--data-root",
        str(data_root),
        "--runs",
        str(runs),
        "--overwrite",
    ]
    print("+", shlex.join(cmd), flush=True)
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out), time.perf_counter() - start, shlex.join(cmd)


def run_sift(scene: Scene, runs: Path) -> dict:
    """Build the SIFT map (fresh) and localize every query; accuracy and per-stage timing."""
    start = time.perf_counter()
    loc = SiftLocalizer.build(scene, runs, SiftConfig(), overwrite=True)
    build_s = time.perf_counter() - start
    results, per_query = [], []
    for frame in scene.query:
        t0 = time.perf_counter()
        rgb = read_image(frame.image_path)
        t1 = time.perf_counter()
        res, ms = loc.localize(rgb, frame.camera)
        ms = {"load": (t1 - t0) * 1e3, **ms, "total": (time.perf_counter() - t0) * 1e3}
        r = query_result(
            frame.name, res.cam_from_world if res.success else None, frame.cam_from_world, res.num_inliers, ms
        )
        results.append(r)
        per_query.append(
            {
                "query": frame.name,
                "success": r.success,
                "t_err_cm": r.t_err_m * 100,
                "r_err_deg": r.r_err_deg,
                "inliers": res.num_inliers,
                "matches": res.num_correspondences,
                "ms": {k: round(v, 1) for k, v in ms.items()},
            }
        )
        print(
            f"  {frame.name}: t {r.t_err_m * 100:.1f} cm, r {r.r_err_deg:.2f} deg, {res.num_inliers} inliers, "
            f"{ms['total']:.0f} ms",
            flush=True,
        )
    acc = accuracy_summary(results)
    timing = {f"ms_{s}": float(np.median([q["ms"][s] for q in per_query])) for s in STAGES}
    return {
        "n_queries": acc["n_queries"],
        "failed": sum(not r.success for r in results),
        "acc_5cm5deg": acc["acc_5cm5deg"],
        "acc_2cm2deg": acc["acc_2cm2deg"],
        "median_t_cm": acc["median_t_cm"],
        "median_r_deg": acc["median_r_deg"],
        **timing,
        "ms_total_p95": float(np.percentile([q["ms"]["total"] for q in per_query], 95)),
        "map_mb": loc.map_mb,
        "map_build_s": build_s,
        "map_stats": loc.stats,
        "per_query": per_query,
    }


def refined_focal(scene: Scene, workdir: Path) -> dict:
    """The colour focal length COLMAP converges to when the map's intrinsics may move (poses stay fixed)."""
    import pycolmap

    config = SfmTeacherConfig()
    sfm_map = build_sfm_map(scene, config, workdir)
    rec = pycolmap.Reconstruction(sfm_map.reconstruction)
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = config.num_threads
    image_root = Path(os.path.commonpath([str(f.image_path.resolve().parent) for f in scene.mapping]))
    with colmap_quiet():
        refined = pycolmap.triangulate_points(
            rec,
            sfm_map.database_path,
            image_root,
            workdir / "refined",
            clear_points=True,
            options=options,
            refine_intrinsics=True,
        )
    fx, fy = (float(v) for v in refined.camera(1).params[:2])
    return {
        "start_f": scene.mapping[0].camera.fx,
        "fx": fx,
        "fy": fy,
        "reproj_px": float(refined.compute_mean_reprojection_error()),
    }


def with_focal(scene: Scene, focal: float) -> Scene:
    """The scene with every colour camera's fx = fy = ``focal`` (depth cameras unchanged)."""

    def fix(frames):
        return tuple(dataclasses.replace(f, camera=dataclasses.replace(f.camera, fx=focal, fy=focal)) for f in frames)

    return dataclasses.replace(scene, mapping=fix(scene.mapping), query=fix(scene.query))


def fmt(v, nd=1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "inf" if not np.isfinite(v) else f"{v:.{nd}f}"
    return str(v)


def markdown(report: dict) -> str:
    m, t, s = report["machine"], report["teacher"], report["sift"]
    lines = [
        "# SfM teacher and SIFT baseline on redkitchen (7scenes-mini)",
        "",
        f"- date (UTC): {m['date']}",
        f"- code: {code_text(m.get('code'))}",
        f"- command: `{report['command']}`",
        f"- teacher command: `{t['command']}`",
        f"- machine: {m['cpu']}, {m['cores']} cores, pycolmap {m['versions'].get('pycolmap')}, "
        f"numpy {m['versions'].get('numpy')}, poselib {m['versions'].get('poselib')}, Python {m['python']}",
        f"- load average (1/5/15 min) before teacher / before SIFT / at end: {t['loadavg_before']} / "
        f"{s['loadavg_before']} / {report['loadavg_end']} (shared machine: timings are noisy)",
        f"- data: {report['data_root']}/redkitchen, 125 mapping frames (seq-01), 25 queries (seq-02), "
        "loader intrinsics: colour f = 525, depth f = 585 (camera-intrinsics.txt; see colour_focal_redkitchen.md)",
        "",
        "## SfM teacher (targets vs registered depth)",
        "",
        "| frames | skipped | target points | compared | median error (cm) | within 5 cm (%) | pairs | 3D points | "
        "wall (s) |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {t['frames']} | {t['skipped_frames']} | {t['points']} | {t.get('compared_points')} | "
        f"{fmt(t.get('median_error_cm'))} "
        f"| {fmt(t.get('within_5cm'))} | {s['map_stats'].get('pairs')} | {s['map_stats'].get('points3D')} | "
        f"{fmt(t['wall_s'])} |",
        "",
        "## SIFT baseline (25 queries)",
        "",
        "| 5cm/5deg (%) | 2cm/2deg (%) | median t (cm) | median r (deg) | failed | ms/query (median) | load | "
        "features | matching | ransac | p95 ms | map MiB | map build (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {fmt(s['acc_5cm5deg'])} | {fmt(s['acc_2cm2deg'])} | {fmt(s['median_t_cm'], 2)} | "
        f"{fmt(s['median_r_deg'], 2)} | {s['failed']} "
        f"| {fmt(s['ms_total'], 0)} | {fmt(s['ms_load'], 0)} | {fmt(s['ms_features'], 0)} | "
        f"{fmt(s['ms_matching'], 0)} | {fmt(s['ms_ransac'], 0)} "
        f"| {fmt(s['ms_total_p95'], 0)} | {fmt(s['map_mb'], 2)} | {fmt(s['map_build_s'], 0)} |",
        "",
        "Matching includes retrieval (bag of words, top 10). Accuracies count failures as infinite error.",
    ]
    d = report.get("diagnostic")
    if d:
        dt, ds = d["teacher"], d["sift"]
        lines += [
            "",
            f"## Diagnostic: colour focal length {d['colour_focal']:g} instead of 585",
            "",
            "Same pipeline with the colour cameras' fx = fy replaced (depth cameras unchanged). "
            f"Letting COLMAP refine the focal length of the f = {d['refined_focal']['start_f']:g} map (poses fixed) "
            "gives "
            f"fx = {d['refined_focal']['fx']:.1f}, fy = {d['refined_focal']['fy']:.1f} px "
            f"(mean reprojection error {d['refined_focal']['reproj_px']:.2f} px): the provided colour intrinsics do "
            "not fit the colour images.",
            "",
            "| teacher median error (cm) | within 5 cm (%) | target points | SIFT 5cm/5deg (%) | 2cm/2deg (%) | "
            "median t (cm) | median r (deg) |",
            "|---|---|---|---|---|---|---|",
            f"| {fmt(dt.get('median_error_cm'))} | {fmt(dt.get('within_5cm'))} | {dt['points']} | "
            f"{fmt(ds['acc_5cm5deg'])} "
            f"| {fmt(ds['acc_2cm2deg'])} | {fmt(ds['median_t_cm'], 2)} | {fmt(ds['median_r_deg'], 2)} |",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=SEVEN_SCENES)
    parser.add_argument("--runs", type=Path, default=Path("/tmp/sfm_runs"))
    parser.add_argument(
        "--colour-focal", type=float, default=None, help="also run the diagnostic with this colour focal"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "sfm_teacher_redkitchen")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not (args.data_root / "redkitchen").is_dir():
        print(f"redkitchen not found under {args.data_root}", file=sys.stderr)
        return 1

    report: dict = {
        "command": shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "data_root": str(args.data_root),
    }
    report["machine"] = machine_info()

    before = loadavg()
    stats, wall, cmd = run_teacher_cli(args.data_root, args.runs)
    report["teacher"] = {**stats, "wall_s": wall, "command": cmd, "loadavg_before": before}
    print(f"teacher: {json.dumps({k: v for k, v in stats.items() if k != 'directory'})}", flush=True)

    scene = load_scene(args.data_root, "redkitchen")
    before = loadavg()
    report["sift"] = {**run_sift(scene, args.runs), "loadavg_before": before}

    if args.colour_focal is not None:
        refined = refined_focal(scene, args.runs / "focal-refine")
        print(f"refined colour focal: {refined}", flush=True)
        fixed = with_focal(scene, args.colour_focal)
        runs = args.runs / f"focal{args.colour_focal:g}"
        start = time.perf_counter()
        targets = ensure_targets(fixed, SfmTeacher(SfmTeacherConfig()), runs, overwrite=True)
        report["diagnostic"] = {
            "colour_focal": args.colour_focal,
            "refined_focal": refined,
            "teacher": {**targets.stats, "wall_s": time.perf_counter() - start},
            "sift": run_sift(fixed, runs),
        }

    report["loadavg_end"] = loadavg()
    write_json(args.out.with_suffix(".json"), finite_or_none(report))
    write_text(args.out.with_suffix(".md"), markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
