"""Distill the default students on 7-Scenes redkitchen (7scenes-mini) and localize its 25 queries.

For each student (default: ``cnn`` and ``vit``) it runs, as a subprocess::

    slocal distill --scene redkitchen --student S --minutes M --device cpu ...

then localizes every query with ``slocal.localize`` (the product's localizer)
and writes ``benchmarks/results/distill_redkitchen_<device>.{json,md}``: the
machine, the date, the exact commands, load averages, and per student the
resolution, parameters, model size, training minutes/iterations, median
errors and accuracies at 10cm/5deg, 5cm/5deg, 2cm/2deg. The Phase-1 ablation
(``distill_redkitchen_ablation.json`` next to the results) is appended to the
markdown.

Usage::

    python benchmarks/distill_redkitchen.py                 # 2 x 10 minutes (run on a quiet machine)
    python benchmarks/distill_redkitchen.py --minutes 1 --results-dir /tmp/check   # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from slocal.bench.report import code_text

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SLOCAL_SHARED", REPO.parent / "shared")) / "data" / "7scenes-mini"
SCENE = "redkitchen"
ABLATION = REPO / "benchmarks" / "results" / "history" / "2026-11" / "distill_redkitchen_ablation.json"


def distill(student: str, args, runs: Path, out: Path) -> tuple[dict, str, dict]:
    cmd = [
        sys.executable,
        "-m",
        "slocal_cli.main",
        "distill",
        "--scene",
        SCENE,
        "--student",
        student,
        "--minutes",
        f"{args.minutes:g}",
        "--device",
        args.device,
        "--data-root",
        str(args.data_root),
        "--runs",
        str(runs),
        "--out",
        str(out),
        "--seed",
        str(args.seed),
        "--json",
    ]
    shown = shlex.join(["slocal", *cmd[3:]])
    print(f"$ {shown}", file=sys.stderr, flush=True)
    load_before = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"distill {student} failed with exit code {proc.returncode}")
    load = {
        "before": [round(v, 2) for v in load_before],
        "after": [round(v, 2) for v in os.getloadavg()],
        "wall_s": round(wall, 1),
    }
    return json.loads(proc.stdout), shown, load


def localize_queries(model: Path, device: str) -> tuple[dict, list[dict]]:
    from slocal.bench.metrics import query_result, summarize
    from slocal.data import load_scene
    from slocal.io import read_image
    from slocal.localize.localizer import Localizer, load_model

    scene = load_scene(DATA, SCENE)
    localizer = Localizer(load_model(model, device=device, expect_scene=SCENE))
    # Warm-up (first-call allocations and kernel selection are not per-query costs).
    localizer.localize(read_image(scene.query[0].image_path), scene.query[0].camera)
    results, rows = [], []
    for frame in scene.query:
        loc = localizer.localize(read_image(frame.image_path), frame.camera, image=frame.image_path)
        r = query_result(
            frame.name, loc.cam_from_world if loc.success else None, frame.cam_from_world, loc.num_inliers, loc.ms
        )
        results.append(r)
        rows.append(
            {"image": r.image, "t_cm": r.t_err_m * 100, "r_deg": r.r_err_deg, "inliers": r.num_inliers, "ms": r.ms}
        )
    return summarize(results), rows


def fmt(v, digits=1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Distillation on 7-Scenes redkitchen (7scenes-mini), CPU",
        "",
        f"- date: {m['date']}",
        f"- machine: {m['cpu']}, {m['cores']} cores, torch {m['versions'].get('torch')} ({m['torch_threads']} "
        f"threads), timm {m['versions'].get('timm')}",
        f"- data: 125 mapping frames (seq-01), {report['rows'][0]['n_queries'] if report['rows'] else 25} query "
        "frames (seq-02); depth teacher",
        "- commands:",
        *[
            f"  - `{r['command']}` (load average before/after: {r['load']['before']} / {r['load']['after']})"
            for r in report["rows"]
        ],
        f"- code: {code_text(m.get('code'))}",
        "",
        "| student | resolution | params | MB | minutes | iterations | median cm / deg | % @10cm5deg | % @5cm5deg | "
        "% @2cm2deg | ms net + ransac |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['student']} | {r['resolution']} | {r['params'] / 1e6:.2f} M | {r['mb']:.1f} | {r['minutes']:.1f} | "
            f"{r['iterations']} | "
            f"{fmt(r['median_t_cm'])} / {fmt(r['median_r_deg'], 2)} | {fmt(r['acc_10cm5deg'], 0)} | "
            f"{fmt(r['acc_5cm5deg'], 0)} | "
            f"{fmt(r['acc_2cm2deg'], 0)} | {fmt(r['ms_network'])} + {fmt(r['ms_ransac'])} |"
        )
    ablation = report.get("ablation")
    if ablation:
        lines += ["", "## Ablation (Phase 1 lab runs)", "", ablation["note"], ""]
        lines += [
            "| run | change | iterations | % @5cm5deg | median cm / deg | it/s (loadavg) |",
            "|---|---|---|---|---|---|",
        ]
        for a in ablation["runs"]:
            lines.append(
                f"| {a['run']} | {a['change']} | {a['iterations']} | {fmt(a['acc_5cm5deg'], 0)} | "
                f"{fmt(a['median_cm'])} / {fmt(a['median_deg'], 2)} | "
                f"{fmt(a.get('its_per_s'), 2)} ({fmt(a.get('loadavg'), 1)}) |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", default="cnn,vit")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=DATA)
    parser.add_argument("--runs", type=Path, default=None, help="targets and models (default: a temporary folder)")
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    if not (args.data_root / SCENE).is_dir():
        print(f"{SCENE} not found under {args.data_root}", file=sys.stderr)
        return 1

    from slocal.bench.machine import machine_info
    from slocal.io import write_json, write_text

    with tempfile.TemporaryDirectory(prefix="distill-redkitchen-") as tmp:
        runs = args.runs or Path(tmp) / "runs"
        rows, per_query = [], {}
        for student in [s.strip() for s in args.students.split(",") if s.strip()]:
            out = runs / SCENE / "students" / student / "model.pt"
            result, command, load = distill(student, args, runs, out)
            summary, queries = localize_queries(out, args.device)
            per_query[student] = queries
            rows.append(
                {
                    "student": result["student"],
                    "requested": student,
                    "command": command,
                    "load": load,
                    "resolution": "x".join(str(v) for v in result["image_size"]),
                    "params": result["num_params"],
                    "mb": result["file_mb"],
                    "minutes": result["train_minutes"],
                    "iterations": result["iterations"],
                    "its_per_s": result["its_per_s"],
                    "precision": result["precision"],
                    **summary,
                }
            )
            print(json.dumps(rows[-1], indent=None, default=str), file=sys.stderr, flush=True)
    report = {"machine": machine_info(), "scene": SCENE, "minutes": args.minutes, "rows": rows, "per_query": per_query}
    if ABLATION.is_file():
        report["ablation"] = json.loads(ABLATION.read_text())
    suffix = args.device.split(":")[0]
    write_json(args.results_dir / f"distill_redkitchen_{suffix}.json", report)
    write_text(args.results_dir / f"distill_redkitchen_{suffix}.md", markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
