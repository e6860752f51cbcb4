"""Network + RANSAC milliseconds per query, measured with less noise than one bench run gives.

``slocal bench`` times every query once, and on a shared 2-core machine one pass over 20
queries moves by several milliseconds from run to run. This script decodes the query images
once (decoding is not part of the network + RANSAC budget), then localizes every query
``--passes`` times with each RANSAC setting, the settings interleaved within each pass so that
a slow minute of the machine falls on all of them alike. It reports the median and 90th
percentile over all those localizations of the network (preprocessing included), RANSAC, and
their per-query sum. Queries only; no accuracy is chosen from it.

Usage::

    python benchmarks/query_time.py --scene redkitchen-split --ransac-points 320 0 \\
        runs/bench/seed0/redkitchen-split/students/ace-lite0/model.pt

Results go to ``benchmarks/results/query_time_cpu.{json,md}`` (or ``--name``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from common import SEVEN_SCENES, write_results
from slocal.data import load_scene
from slocal.geometry.pnp import DENSE_PNP
from slocal.io import read_image
from slocal.localize.localizer import Localizer, load_model, student_pnp

WARMUP = 3  # localizations per setting before timing (sessions, caches)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="student model files (model.pt or .onnx)")
    parser.add_argument("--scene", default="redkitchen-split")
    parser.add_argument("--data-root", type=Path, default=SEVEN_SCENES)
    parser.add_argument(
        "--ransac-points",
        type=int,
        nargs="+",
        default=[DENSE_PNP.ransac_points or 0],
        help="RANSAC subsets to time (0: all matches)",
    )
    parser.add_argument("--passes", type=int, default=3, help="localizations of every query per setting")
    parser.add_argument("--device", default="cpu", help="torch device for .pt students (cpu, cuda)")
    parser.add_argument("--name", default="query_time_cpu", help="results file name in benchmarks/results/")
    args = parser.parse_args()
    if args.passes < 1:
        raise SystemExit("--passes must be >= 1")
    scene = load_scene(args.data_root, args.scene)
    queries = [(frame.name, read_image(frame.image_path), frame.camera) for frame in scene.query]
    rows = []
    for model_path in args.models:
        model = load_model(model_path, device=args.device, expect_scene=args.scene)
        localizers = {n: Localizer(model, student_pnp(model, n)) for n in args.ransac_points}
        ms = {n: {"network": [], "ransac": []} for n in localizers}
        for localizer in localizers.values():
            for name, rgb, camera in queries[:WARMUP]:
                localizer.localize(rgb, camera, image=name)
        for _ in range(args.passes):
            for n, localizer in localizers.items():
                for name, rgb, camera in queries:
                    loc = localizer.localize(rgb, camera, image=name)
                    ms[n]["network"].append(loc.ms["network"])
                    ms[n]["ransac"].append(loc.ms["ransac"])
        for n, times in ms.items():
            network, ransac = np.asarray(times["network"]), np.asarray(times["ransac"])
            both = network + ransac
            rows.append(
                {
                    "model": str(model_path),
                    "ransac_points": n or None,
                    "localizations": len(both),
                    **{
                        f"{k}_p50": float(np.median(v))
                        for k, v in (("network", network), ("ransac", ransac), ("sum", both))
                    },
                    **{
                        f"{k}_p90": float(np.quantile(v, 0.9))
                        for k, v in (("network", network), ("ransac", ransac), ("sum", both))
                    },
                }
            )
            print(rows[-1], flush=True)
    lines = [
        f"# Network + RANSAC per query on `{args.scene}` ({len(queries)} queries × {args.passes} passes per setting, "
        f"network on {args.device})\n",
        "{header}",
        "Images decoded once beforehand; network includes resizing and normalising the image. Settings interleaved "
        "within each pass. p50 / p90 over all localizations of a model and setting.\n",
        "| model | RANSAC on | localizations | network ms p50 / p90 | RANSAC ms p50 / p90 | network + RANSAC ms p50 "
        "/ p90 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['model']}` | {r['ransac_points'] or 'all'} | {r['localizations']} | {r['network_p50']:.1f} / "
            f"{r['network_p90']:.1f} "
            f"| {r['ransac_p50']:.1f} / {r['ransac_p90']:.1f} | {r['sum_p50']:.1f} / {r['sum_p90']:.1f} |"
        )
    write_results(
        args.name,
        {"scene": args.scene, "passes": args.passes, "device": args.device, "rows": rows},
        "\n".join(lines) + "\n",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
