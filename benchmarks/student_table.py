"""Distill students on a scene and bench them against SIFT+PnP on its queries, in one run per seed.

For each seed, as subprocesses (the product's own commands)::

    slocal distill --scene S --student X --seed K --minutes M --runs RUNS/seedK --json     (each student)
    slocal bench --scenes S --methods X1,...,sift --no-distill --runs RUNS/seedK --out ...

Every method of a seed is measured in the same bench run, on the same queries; the
table lists each seed's rows (accuracy, median error, ms per query, map size) and the
distillation wall time (encoding included). Results: ``benchmarks/results/<name>.{json,md}``
and each seed's bench report under ``benchmarks/results/<name>/seedK/``.

Usage::

    python benchmarks/student_table.py --scene redkitchen-split --students ace --seeds 0,1 --ransac-points 0 \\
        --name redkitchen_split_cpu
    python benchmarks/student_table.py --scene redkitchen-split --students cnn,ace,vit,hybrid-lite0 --minutes 5 \\
        --name seed_table_redkitchen_split_cpu
    python benchmarks/student_table.py --scene redkitchen --students ace --seeds 0 --name redkitchen_cpu
    python benchmarks/student_table.py --scene redkitchen --students ace --seeds 0 --refine --name ...  # + ace+flow
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, REPORT_FILES, RESULTS, SEVEN_SCENES, write_results
from slocal.distill.config_files import resolve_preset


def run(cmd: list[str], stdout=None) -> tuple[subprocess.CompletedProcess, float]:
    print("$", shlex.join(["slocal", *cmd[3:]]), file=sys.stderr, flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=stdout, text=True, check=False)
    return proc, time.perf_counter() - start


def one_seed(args, seed: int, students: list[str]) -> dict:
    runs = args.runs / f"seed{seed}"
    base = [sys.executable, "-m", "slocal_cli.main"]
    common = ["--data-root", str(args.data_root), "--runs", str(runs), "--depth-registration", args.depth_registration]
    for pose_file in args.poses:
        common += ["--poses", str(pose_file)]
    teacher = ["--teacher", args.teacher] if args.teacher else []
    budget = ["--iterations", str(args.iterations)] if args.iterations else ["--minutes", f"{args.minutes:g}"]
    distilled = {}
    for student in students:
        # distill writes where bench looks (slocal's one model-path rule), so no --out here.
        cmd = [
            *base,
            "distill",
            "--scene",
            args.scene,
            "--student",
            student,
            "--seed",
            str(seed),
            *budget,
            *teacher,
            "--device",
            args.device,
            "--json",
            *common,
        ]
        existing = [
            p
            for name in {student, resolve_preset(student)}
            if (p := runs / args.scene / "students" / name / "model.pt").is_file()
        ]
        if args.reuse and existing:
            distilled[student] = {"reused": str(existing[0])}
            continue
        proc, wall = run(cmd, stdout=subprocess.PIPE)
        if proc.returncode != 0:
            raise SystemExit(f"distill {student} failed with exit code {proc.returncode}")
        distilled[student] = {**json.loads(proc.stdout), "wall_s": wall, "command": shlex.join(["slocal", *cmd[3:]])}
    out = args.results_dir / args.name / f"seed{seed}"
    if out.exists():
        shutil.rmtree(out)
    cmd = [
        *base,
        "bench",
        "--scenes",
        args.scene,
        "--methods",
        ",".join([*students, *(f"{s}+flow" for s in students if args.refine), *args.baselines]),
        "--no-distill",
        *teacher,
        "--device",
        args.device,
        *common,
    ]
    rows, command, proc, wall = bench_and_keep(cmd, runs / "bench-report", out)
    commands = [command]
    # The same models again with other RANSAC settings: a second bench run of the students only for each.
    reruns = []
    if args.ransac_points is not None:  # 0: all matches
        reruns.append(
            ("--ransac-points", str(args.ransac_points), "ransac", f"RANSAC on {args.ransac_points or 'all'}")
        )
    if args.ransac_threshold is not None:
        value = f"{args.ransac_threshold:g}"
        reruns.append(("--ransac-threshold", value, "threshold", f"RANSAC at {value} px"))
    for flag, value, folder, label in reruns:
        cmd = [*base, "bench", "--scenes", args.scene, "--methods", ",".join(students), "--no-distill",
               "--device", args.device, flag, value, *common]  # fmt: skip
        other, command, _, _ = bench_and_keep(
            cmd, runs / f"bench-report-{folder}", out / flag.lstrip("-").replace("-", "_")
        )
        rows += [{**r, "method": f"{r['method']} ({label})"} for r in other]
        commands.append(command)
    return {
        "seed": seed,
        "distill": distilled,
        "bench_commands": commands,
        "bench_exit": proc.returncode,
        "bench_wall_s": wall,
        "rows": rows,
    }


def bench_and_keep(
    cmd: list[str], report: Path, keep: Path
) -> tuple[list[dict], str, subprocess.CompletedProcess, float]:
    """Run ``slocal bench`` (``cmd`` without ``--out``) into ``report``; copy its report files to ``keep``.

    Returns:
        The report's rows, the command as typed, the process and its wall seconds.
    """
    cmd = [*cmd, "--out", str(report)]
    proc, wall = run(cmd)
    if not (report / "results.json").is_file():
        raise SystemExit(f"bench wrote no results (exit code {proc.returncode}): {shlex.join(cmd)}")
    keep.mkdir(parents=True)
    for name in REPORT_FILES:
        if (report / name).is_file():
            shutil.copy2(report / name, keep / name)
    rows = json.loads((report / "results.json").read_text())["rows"]
    return rows, shlex.join(["slocal", *cmd[3:]]), proc, wall


def fmt(v, digits=1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def cam_err(row: dict) -> str:
    """The mean camera-frame error (the systematic part) and its query count."""
    mean = row.get("mean_cam_err")
    return "-" if not mean else f"{', '.join(f'{v:+.1f}' for v in mean)} ({row.get('n_cam_err')})"


def split_ms(row: dict) -> str:
    """``network + RANSAC`` p50 milliseconds of a student row, ``+ refine`` with flow ("-" for baselines)."""
    if row.get("ms_network") is None or row.get("ms_ransac") is None:
        return "-"
    refine = f" + {row['ms_refine']:.1f} refine" if row.get("ms_refine") is not None else ""
    return f"{row['ms_network']:.1f} + {row['ms_ransac']:.1f}{refine}"


def markdown(payload: dict) -> str:
    lines = [
        f"# {payload['scene']}: students vs baselines, one bench run per seed\n",
        "{header}",
        (
            f"Budget per student: {payload['iterations']} head steps (encoding excluded), "
            if payload.get("iterations")
            else f"Budget per student: {payload['minutes']:g} min of mapping "
        )
        + f"on this machine's {payload.get('device', 'cpu')} "
        "(feature encoding included; students are benched there too, SIFT always runs on the CPU). "
        "Every row of a seed comes from the same `slocal bench` run on the same queries.\n",
        f"Teacher: {payload.get('teacher') or 'the scene default'}; depth registration: "
        f"{payload.get('depth_registration', 'auto')}; poses: "
        f"{', '.join(Path(p).name for p in payload.get('poses', [])) or 'the dataset'}"
        f"{'; reference: ' + payload['reference'] if payload.get('reference') else ''}.\n",
        "| seed | method | queries | % @10cm5° | % @5cm5° | % @2cm2° | median cm / ° | mean error in camera frame "
        "x, y, z cm (n) | ms/query p50 | network + RANSAC ms | speed vs first student | map MB | distill wall min |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run_ in payload["runs"]:
        rows = [r for r in run_["rows"] if r.get("scene") == payload["scene"]]
        ref = next((r for r in rows if r["method"] == payload["students"][0] and r.get("ms_per_query")), None)
        for r in rows:
            d = run_["distill"].get(r["method"], {})
            wall = d.get("wall_s")
            speed = "-" if not ref or not r.get("ms_per_query") else f"x{r['ms_per_query'] / ref['ms_per_query']:.1f}"
            if r.get("failed"):
                lines.append(f"| {run_['seed']} | {r['method']} | failed: {r['failed']} | | | | | | | | | | |")
                continue
            lines.append(
                f"| {run_['seed']} | {r['method']} | {r['n_queries']} | {fmt(r['acc_10cm5deg'], 0)} | "
                f"{fmt(r['acc_5cm5deg'], 0)} | "
                f"{fmt(r['acc_2cm2deg'], 0)} | {fmt(r['median_t_cm'])} / {fmt(r['median_r_deg'], 2)} | {cam_err(r)} | "
                f"{fmt(r.get('ms_per_query'))} | "
                f"{split_ms(r)} | {speed} | {fmt(r.get('map_mb'))} | {fmt(wall / 60 if wall else None)} |"
            )
    lines += ["", "Commands:", ""]
    for run_ in payload["runs"]:
        for d in run_["distill"].values():
            lines.append(f"- `{d.get('command', 'reused ' + str(d.get('reused')))}`")
        lines += [f"- `{c}`" for c in run_["bench_commands"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", default="redkitchen-split")
    parser.add_argument("--students", default="ace")
    parser.add_argument("--baselines", default="sift")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--iterations", type=int, default=None, help="head steps instead of --minutes")
    parser.add_argument("--teacher", default=None, help="distill's --teacher (default: the scene's)")
    parser.add_argument("--poses", type=Path, action="append", default=[], help="pseudo ground truth (--poses)")
    parser.add_argument(
        "--depth-registration", default="auto", help="auto, estimate, off, or a rig or model file (slocal's option)"
    )
    parser.add_argument("--name", required=True, help="result file name under benchmarks/results/")
    parser.add_argument("--data-root", type=Path, default=SEVEN_SCENES)
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "bench")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--ransac-points", type=int, default=None, help="also bench the students with `--ransac-points N` (0: all)"
    )
    parser.add_argument(
        "--ransac-threshold",
        type=float,
        default=None,
        help="also bench the students with `--ransac-threshold PX` (pixels at 640 px width)",
    )
    parser.add_argument(
        "--device", default="cpu", help="torch device for mapping and for the students' queries (cpu, cuda)"
    )
    parser.add_argument("--reuse", action="store_true", help="bench an existing model instead of distilling it again")
    parser.add_argument(
        "--refine", action="store_true", help="also each student with its poses finished by flow (method STUDENT+flow)"
    )
    args = parser.parse_args()
    args.baselines = [b for b in args.baselines.split(",") if b]
    students = [s for s in args.students.split(",") if s]
    runs = [one_seed(args, int(seed), students) for seed in args.seeds.split(",")]
    reference = next((r.get("reference") for run_ in runs for r in run_["rows"] if r.get("reference")), None)
    payload = {
        "scene": args.scene,
        "students": students,
        "minutes": args.minutes,
        "iterations": args.iterations,
        "teacher": args.teacher,
        "poses": [str(p) for p in args.poses],
        "depth_registration": args.depth_registration,
        "reference": reference,
        "device": args.device,
        "runs": runs,
    }
    write_results(args.name, payload, markdown(payload))
    print(markdown(payload).replace("{header}", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
