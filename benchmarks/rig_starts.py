"""How the colour-depth rig solve depends on where it starts and on which observations it sees.

Builds the SIFT tracks of a 7-Scenes scene's mapping frames once (``teach.rig.sift_tracks``), then, on
seeded subsets of the observation pairs (the run-to-run variation of pycolmap's threaded matching
before the map matched on one thread, which changed 13 of 6 756 tracks between two runs on
redkitchen-gap), solves the rig
from one start (depth scale 1, the code before c83582f) and with the multi-start solve
(``RigConfig.start_scales``), and reports each solution's cost, reprojection error and rig. Rig
files given with ``--rigs`` (e.g. two cached estimates that disagreed) are scored on the same pairs.

Usage::

    python benchmarks/rig_starts.py --scene redkitchen-gap \\
        --poses benchmarks/results/2026-12-05-precision/pseudo_gt_redkitchen-gap.txt \\
        --rigs /tmp/a/depth-x.json /tmp/b/depth-x.json --name 2026-12-05-finish/rig_starts

Results: ``benchmarks/results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from common import SEVEN_SCENES, write_results
from slocal.data import load_scene
from slocal.io import read_json
from slocal.teach.rig import RigConfig, RigProblem, error_stats, multi_start, sift_tracks, solve_rig, subset


def rig_vector(path: Path) -> np.ndarray:
    """The solver's parameters (rotation vector, translation in cm, log depth scale) of a cached rig file."""
    d = read_json(path)
    T = np.array(d["cam_from_depth"])
    return np.r_[Rotation.from_matrix(T[:3, :3]).as_rotvec(), T[:3, 3] * 100.0, np.log(d["depth_scale"])]


def describe(problem: RigProblem, x: np.ndarray) -> dict:
    res, ok = problem.residuals(x)
    e2 = (res**2).sum(1) / problem.config.loss_scale_px**2
    T, scale = problem.rig(x)
    return {
        "cost": float(0.5 * problem.config.loss_scale_px**2 * np.log1p(e2).sum()),  # least_squares' Cauchy cost
        **error_stats(res, ok),
        "translation_cm": (T[:3, 3] * 100).round(2).tolist(),
        "rotation_deg": float(np.degrees(np.linalg.norm(x[:3]))),
        "depth_scale": scale,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", default="redkitchen-gap")
    parser.add_argument("--data-root", type=Path, default=SEVEN_SCENES)
    parser.add_argument("--poses", type=Path, nargs="*", default=[])
    parser.add_argument("--rigs", type=Path, nargs="*", default=[], help="cached rig files to score")
    parser.add_argument("--subsets", type=int, default=3, help="seeded subsets of the observation pairs")
    parser.add_argument("--fraction", type=float, default=0.8, help="share of the pairs in each subset")
    parser.add_argument("--name", default="rig_starts")
    args = parser.parse_args()
    scene = load_scene(args.data_root, args.scene, pose_files=tuple(args.poses))
    config = RigConfig()
    with tempfile.TemporaryDirectory(prefix="rig-starts-") as tmp:
        tracks = sift_tracks(scene, Path(tmp), config.max_pairs)
    full = RigProblem(scene, tracks, config)
    scored = [{"rig": str(p), **describe(full, rig_vector(p))} for p in args.rigs]
    rows = []
    for seed in range(1, args.subsets + 1):
        problem = full.on(subset(tracks, int(args.fraction * len(tracks.frame_a)), seed))
        t0 = time.perf_counter()
        one = solve_rig(problem, np.zeros(7), config.loss_scale_px)
        t1 = time.perf_counter()
        x0, starts = multi_start(problem, config, 7)
        multi = solve_rig(problem, x0, config.loss_scale_px)
        t2 = time.perf_counter()
        rows.append(
            {
                "subset_seed": seed,
                "one_start": {**describe(problem, one.x), "seconds": t1 - t0},
                "multi_start": {**describe(problem, multi.x), "seconds": t2 - t1, "starts": starts},
            }
        )
        print(rows[-1], flush=True)
    lines = [
        f"# The colour-depth rig of {args.scene}: one start against the multi-start solve\n",
        "{header}",
        f"SIFT tracks of the mapping frames: {tracks.num_tracks} ({len(tracks.frame_a)} observation pairs). "
        f"Poses: {', '.join(p.name for p in args.poses) or 'the dataset'}. Cost: least_squares' Cauchy cost "
        f"(scale {config.loss_scale_px} px) on the pairs the row names; lower is a better fit.\n",
    ]
    if scored:
        lines += [
            "Cached rig files scored on all pairs:\n",
            "| rig | cost | median px | p90 px | t cm | rot ° | scale |",
        ]
        lines.append("|---|---|---|---|---|---|---|")
        for s in scored:
            lines.append(
                f"| `{s['rig']}` | {s['cost']:.0f} | {s['median_px']:.2f} | {s['p90_px']:.2f} | "
                f"{', '.join(f'{v:+.2f}' for v in s['translation_cm'])} | {s['rotation_deg']:.2f} | "
                f"{s['depth_scale']:.3f} |"
            )
        lines.append("")
    lines += [
        f"Seeded subsets of {args.fraction:.0%} of the pairs:\n",
        "| subset | solve | cost | median px | p90 px | t cm | rot ° | scale | s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for key in ("one_start", "multi_start"):
            s = r[key]
            lines.append(
                f"| {r['subset_seed']} | {key.replace('_', ' ')} | {s['cost']:.0f} | {s['median_px']:.2f} | "
                f"{s['p90_px']:.2f} | {', '.join(f'{v:+.2f}' for v in s['translation_cm'])} | "
                f"{s['rotation_deg']:.2f} | {s['depth_scale']:.3f} | {s['seconds']:.0f} |"
            )
    write_results(args.name, {"scene": args.scene, "scored": scored, "rows": rows}, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
