"""Benchmark students and baselines on 7-Scenes redkitchen (the 7scenes-mini subset).

Runs ``slocal bench --scenes redkitchen --methods cnn,vit,sift,dust3r`` on
``/work/shared/data/7scenes-mini`` (25 queries, 125 mapping frames), distilling
missing students first, and copies the report (results.json/.md/.csv,
per_query.json and the plots) to ``benchmarks/results/bench_redkitchen_<device>/``.

Usage::

    python benchmarks/bench_redkitchen.py                      # full run (long on CPU)
    python benchmarks/bench_redkitchen.py --minutes 1 --max-queries 5 --methods cnn,sift \
        --results-dir /tmp/bench-check                         # quick check

Extra arguments after ``--`` are passed to ``slocal bench`` unchanged.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SLOCAL_SHARED", REPO.parent / "shared")) / "data" / "7scenes-mini"
REPORT_FILES = ("results.json", "results.md", "results.csv", "per_query.json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="cnn,vit,sift,dust3r")
    parser.add_argument("--minutes", type=float, default=None, help="training minutes per missing student")
    parser.add_argument("--max-queries", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--timing-queries", type=int, default=None, help="queries the timing-only dust3r row is timed on"
    )
    parser.add_argument("--checkpoint", type=Path, default=None, help="DUSt3R checkpoint for the dust3r baseline")
    parser.add_argument("--data-root", type=Path, default=DATA)
    parser.add_argument("--runs", type=Path, default=REPO / "runs", help="students and caches (reused between runs)")
    parser.add_argument(
        "--results-dir", type=Path, default=None, help="default: benchmarks/results/bench_redkitchen_<device>"
    )
    parser.add_argument("extra", nargs="*", help="further `slocal bench` arguments (after --)")
    args = parser.parse_args()

    if not (args.data_root / "redkitchen").is_dir():
        print(f"redkitchen not found under {args.data_root}", file=sys.stderr)
        return 1
    results_dir = args.results_dir or REPO / "benchmarks" / "results" / f"bench_redkitchen_{args.device.split(':')[0]}"
    with tempfile.TemporaryDirectory(prefix="bench-redkitchen-") as tmp:
        out = Path(tmp) / "report"
        cmd = [
            sys.executable,
            "-m",
            "slocal_cli.main",
            "bench",
            "--scenes",
            "redkitchen",
            "--methods",
            args.methods,
            "--data-root",
            str(args.data_root),
            "--runs",
            str(args.runs),
            "--device",
            args.device,
            "--out",
            str(out),
        ]
        if args.minutes is not None:
            cmd += ["--minutes", str(args.minutes)]
        if args.max_queries is not None:
            cmd += ["--max-queries", str(args.max_queries)]
        if args.threads is not None:
            cmd += ["--threads", str(args.threads)]
        if args.timing_queries is not None:
            cmd += ["--timing-queries", str(args.timing_queries)]
        if args.checkpoint is not None:
            cmd += ["--checkpoint", str(args.checkpoint)]
        cmd += args.extra
        print("+", " ".join(cmd), flush=True)
        rc = subprocess.call(cmd)
        if rc != 0:
            return rc
        if results_dir.exists():
            shutil.rmtree(results_dir)
        results_dir.mkdir(parents=True)
        for name in REPORT_FILES:
            if (out / name).is_file():
                shutil.copy2(out / name, results_dir / name)
        if (out / "plots").is_dir():
            shutil.copytree(out / "plots", results_dir / "plots")
    print(f"report copied to {results_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
