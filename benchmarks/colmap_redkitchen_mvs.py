"""The default student on colmap-redkitchen taught by ``mvs`` and by ``colmap``, against COLMAP's own query poses.

For each teacher T, in its own runs folder (students are stored per scene and preset, not per teacher),
one after the other::

    slocal teach   --scene colmap-redkitchen --teacher T --json
    slocal distill --scene colmap-redkitchen --teacher T (--minutes M | --iterations N) --json
    slocal bench   --scenes colmap-redkitchen --methods ace,sift --teacher T --no-distill --out DIR --json

``--methods`` changes the bench's methods (``ace,ace+flow,sift`` adds the flow-refined student);
``--reuse-student`` benches a student already distilled in the runs folder with the same teacher,
budget and seed instead of distilling it again.

The queries' reference poses are COLMAP's own (the model registered them with the mapping images),
in model units: the report gives each method's median rotation error (deg) and median position error
as a percentage of the mean camera-to-scene distance (per query: the median distance from its
camera centre to the model points it observes; mean over the queries), the issue's goal being
<= 0.5 deg and <= 1 %. SIFT runs in the same bench call as the student.

Usage::

    python benchmarks/colmap_redkitchen_mvs.py --runs RUNS --iterations 20000

Writes ``benchmarks/results/<name>.{json,md}`` (``--name``, default
``2026-12-05-precision/colmap_redkitchen_mvs``; a run with ``--teachers T`` adds T to a file of the same
budget and seed, so the teachers can run in parallel) and keeps each bench report (``results.*``,
``per_query.json``) under ``<name>/<teacher>/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pycolmap

from common import REPORT_FILES, RESULTS, SHARED_DATA, run_cli, write_results
from slocal.data import load_scene
from slocal.distill.config import DEFAULT_STUDENT
from slocal.distill.config_files import default_model_path
from slocal.distill.model_file import read_model_payload

SCENE = "colmap-redkitchen"
DEFAULT_NAME = "2026-12-05-precision/colmap_redkitchen_mvs"
GOAL_DEG, GOAL_PCT = 0.5, 1.0


def scene_distance(data_root: Path, runs: Path) -> dict:
    """Per query: median distance (model units) from its camera centre to the model points it observes."""
    scene = load_scene(data_root, SCENE, runs_root=runs)
    rec = pycolmap.Reconstruction(scene.extra["model_dir"])
    ids = scene.extra["image_ids"]
    per_query = {}
    for frame in scene.query:
        image = rec.image(ids[frame.name])
        xyz = np.array([rec.points3D[p.point3D_id].xyz for p in image.points2D if p.has_point3D()])
        per_query[frame.name] = float(np.median(np.linalg.norm(xyz - frame.world_from_cam[:3, 3], axis=1)))
    return {"mean": float(np.mean(list(per_query.values()))), "per_query": per_query}


def method_summary(per_query: list[dict], method: str, distance: float) -> dict:
    rows = [q for q in per_query if q["method"] == method]
    t = np.array([q["t_err_units"] if q["success"] else np.inf for q in rows], np.float64)
    r = np.array([q["r_err_deg"] if q["success"] else np.inf for q in rows], np.float64)
    median_t, median_r = float(np.median(t)), float(np.median(r))
    pct = 100.0 * t / distance
    return {
        "n_queries": len(rows),
        "failed": int(sum(not q["success"] for q in rows)),
        "median_r_deg": median_r,
        "median_t_units": median_t,
        "median_t_pct_of_distance": 100.0 * median_t / distance,
        "within_goal_pct": float(np.mean((r <= GOAL_DEG) & (pct <= GOAL_PCT)) * 100),
        "meets_goal": bool(median_r <= GOAL_DEG and 100.0 * median_t / distance <= GOAL_PCT),
    }


def fmt(v, digits=2) -> str:
    return "inf" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def markdown(payload: dict) -> str:
    lines = [
        "# The default student on colmap-redkitchen: `mvs` vs `colmap` teacher (COLMAP's own query poses)",
        "",
        "{header}"
        f"Budget: {payload['budget']} for each student (same for both). 20 queries; reference poses are COLMAP's "
        f"(model units). Mean camera-to-scene distance over the queries: {payload['distance']['mean']:.3f} units "
        f"(~{0.17 * payload['distance']['mean']:.2f} m at about 0.17 m per unit). Goal: median <= {GOAL_DEG} deg "
        f"and <= {GOAL_PCT} % of that distance.",
        "",
        "| teacher | method | median rot (deg) | median pos (units) | median pos (% of distance) | "
        "both within goal (% of queries) | failed | meets goal | distill |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for teacher, run in payload["runs"].items():
        for method, m in run["methods"].items():
            d = run["distill"]
            lines.append(
                f"| {teacher} | {method} | {fmt(m['median_r_deg'])} | {fmt(m['median_t_units'], 4)} | "
                f"{fmt(m['median_t_pct_of_distance'])} | {m['within_goal_pct']:.0f} | {m['failed']} | "
                f"{'yes' if m['meets_goal'] else 'no'} | "
                + (f"{d['iterations']} its, {d['train_minutes']:.1f} min |" if method != "sift" else "- |")
            )
    lines += [
        "",
        "Teacher times and quality: `teacher_mvs.md` (a teach step here reuses targets already cached in its runs "
        "folder).",
        "",
        "Commands (in order, one at a time):",
        "",
    ]
    for run in payload["runs"].values():
        for key in ("teach", "distill", "bench"):
            lines.append(f"- `{run[key]['command']}` (load average before: {run[key]['loadavg_before'][0]:.1f})")
    return "\n".join(lines) + "\n"


def reused_student(model: Path, teacher: str, args) -> tuple[dict, str, float, list]:
    """``run_cli``'s distill outputs for a student distilled earlier; refuses one of another teacher or budget.

    A model file does not record its training seed: ``--seed`` is then the caller's word for it.
    """
    payload = read_model_payload(model)
    train = payload["train"]
    if payload.get("teacher") != teacher or (args.iterations and train["iterations"] != args.iterations):
        raise SystemExit(
            f"{model}: distilled from {payload.get('teacher')} for {train['iterations']} iterations, "
            f"not {teacher} for {args.iterations}"
        )
    if args.minutes:
        raise SystemExit("--reuse-student needs --iterations (a minutes budget is not recorded exactly)")
    distill = {
        "model": str(model),
        "student": payload["student"]["name"],
        "iterations": train["iterations"],
        "train_minutes": train["minutes"],
        "its_per_s": train["iterations"] / (60.0 * train["minutes"]),
    }
    return distill, f"(reused {model}, distilled earlier with seed {args.seed})", 0.0, [0.0, 0.0, 0.0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=SHARED_DATA)
    parser.add_argument("--runs", type=Path, required=True, help="parent of one runs folder per teacher")
    parser.add_argument("--teachers", default="mvs,colmap")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--minutes", type=float)
    budget.add_argument("--iterations", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=DEFAULT_NAME, help="results path under benchmarks/results/, no suffix")
    parser.add_argument("--methods", default="ace,sift", help="slocal bench --methods (e.g. ace,ace+flow,sift)")
    parser.add_argument(
        "--reuse-student",
        action="store_true",
        help="bench the student already distilled in the runs folder (same budget and seed) instead of distilling",
    )
    args = parser.parse_args()
    if not (args.data_root / SCENE).is_dir():
        print(f"{SCENE} not found under {args.data_root}", file=sys.stderr)
        return 1
    budget_args = ["--iterations", str(args.iterations)] if args.iterations else ["--minutes", f"{args.minutes:g}"]
    payload: dict = {
        "scene": SCENE,
        "budget": " ".join(budget_args),
        "seed": args.seed,
        "distance": scene_distance(args.data_root, args.runs / "distance"),
        "runs": {},
    }
    for teacher in args.teachers.split(","):
        runs = args.runs / teacher
        common = ["--data-root", str(args.data_root), "--runs", str(runs)]
        teach, teach_cmd, teach_s, teach_load, _ = run_cli(["teach", "--scene", SCENE, "--teacher", teacher, *common])
        model = default_model_path(runs, SCENE, DEFAULT_STUDENT)
        if args.reuse_student and model.is_file():
            distill, distill_cmd, distill_s, distill_load = reused_student(model, teacher, args)
        else:
            distill, distill_cmd, distill_s, distill_load, _ = run_cli(
                ["distill", "--scene", SCENE, "--teacher", teacher, *budget_args, "--seed", str(args.seed), *common]
            )
        out = runs / "bench"
        bench, bench_cmd, bench_s, bench_load, _ = run_cli(
            ["bench", "--scenes", SCENE, "--methods", args.methods, "--teacher", teacher, "--no-distill"]
            + ["--out", str(out), *common]
        )
        keep = RESULTS / args.name / teacher
        keep.mkdir(parents=True, exist_ok=True)
        for name in REPORT_FILES:
            shutil.copy2(out / name, keep / name)
        per_query = json.loads((out / "per_query.json").read_text())
        payload["runs"][teacher] = {
            "teach": {
                "command": teach_cmd,
                "wall_s": teach_s,
                "loadavg_before": teach_load,
                "consistency": teach.get("consistency"),
            },
            "distill": {
                "command": distill_cmd,
                "wall_s": distill_s,
                "loadavg_before": distill_load,
                **{k: distill.get(k) for k in ("model", "student", "iterations", "train_minutes", "its_per_s")},
            },
            "bench": {"command": bench_cmd, "wall_s": bench_s, "loadavg_before": bench_load},
            "methods": {
                m: method_summary(per_query, m, payload["distance"]["mean"])
                for m in dict.fromkeys(q["method"] for q in per_query)
            },
        }
        print(teacher, json.dumps(payload["runs"][teacher]["methods"]), flush=True)
    # Teachers may run as separate invocations (one CPU slot each): keep the other teachers' runs of the same
    # budget and seed from the file, this invocation's replacing its own.
    earlier = RESULTS / f"{args.name}.json"
    if earlier.is_file():
        old = json.loads(earlier.read_text())
        if (old.get("budget"), old.get("seed")) == (payload["budget"], payload["seed"]):
            payload["runs"] = {**{t: r for t, r in old["runs"].items() if t not in payload["runs"]}, **payload["runs"]}
    json_path, md_path = write_results(args.name, payload, markdown(payload))
    print(md_path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
