"""Whether the colour-depth rig solve ends where it starts, and how much it moves with the observations.

Builds the SIFT tracks of a 7-Scenes scene's mapping frames once (``teach.rig.sift_tracks``) and the
library's problem over them (``RigProblem.observed``: the observations chosen at the identity rig), then

- solves on all pairs from each of ``RigConfig.start_scales`` (depth scale 0.9, 1.0, 1.1): the rigs
  should agree to well below what the data can tell apart;
- runs the library's solve (``multi_start`` on a subset, the cheapest start refined on all pairs) on
  seeded subsets of the pairs: how much the rig moves when the observations change a little, the
  precision the data give it.

Rig files given with ``--rigs`` (earlier cached estimates) are listed beside them with their distance
to the all-pairs solution from scale 1.

Usage::

    python benchmarks/rig_starts.py --scene redkitchen --rigs old/depth-x.json --name 2026-12-07-rig/rig_starts

Results: ``benchmarks/results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import SEVEN_SCENES, write_results
from slocal.data import load_scene
from slocal.geometry.pose import pose_error
from slocal.io import read_json
from slocal.teach.rig import RigConfig, RigProblem, error_stats, multi_start, sift_tracks, solve_rig, subset


def describe(problem: RigProblem, x: np.ndarray, cost: float | None = None) -> dict:
    T, scale = problem.rig(x)
    return {
        "cost": cost,
        **error_stats(*problem.residuals(x)),
        "cam_from_depth": T.tolist(),
        "translation_cm": (T[:3, 3] * 100).tolist(),
        "rotation_deg": float(np.degrees(np.linalg.norm(x[:3]))),
        "depth_scale": scale,
    }


def apart(a: dict, b: dict) -> tuple[float, float]:
    """(cm, deg) between two rigs' ``cam_from_depth``."""
    t_m, r_deg = pose_error(np.array(a["cam_from_depth"]), np.array(b["cam_from_depth"]))
    return t_m * 100, r_deg


def rig_row(label: str, d: dict, ref: dict | None, seconds: float | None = None) -> str:
    cm, deg = apart(d, ref) if ref is not None else (0.0, 0.0)
    cost = f"{d['cost']:.1f}" if d.get("cost") is not None else "–"
    median = f"{d['median_px']:.3f}" if "median_px" in d else "–"
    return (
        f"| {label} | {cost} | {median} | {', '.join(f'{v:+.3f}' for v in d['translation_cm'])} | "
        f"{d['rotation_deg']:.3f} | {d['depth_scale']:.4f} | {cm:.3f} | {deg:.3f} | "
        f"{f'{seconds:.0f}' if seconds is not None else '–'} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", default="redkitchen")
    parser.add_argument("--data-root", type=Path, default=SEVEN_SCENES)
    parser.add_argument("--poses", type=Path, nargs="*", default=[])
    parser.add_argument("--rigs", type=Path, nargs="*", default=[], help="earlier cached rig files to list")
    parser.add_argument("--subsets", type=int, default=3, help="seeded subsets of the observation pairs")
    parser.add_argument("--fraction", type=float, default=0.8, help="share of the pairs in each subset")
    parser.add_argument("--name", default="rig_starts")
    args = parser.parse_args()
    scene = load_scene(args.data_root, args.scene, pose_files=tuple(args.poses))
    config = RigConfig()
    with tempfile.TemporaryDirectory(prefix="rig-starts-") as tmp:
        tracks = sift_tracks(scene, Path(tmp), config.max_pairs)
    problem = RigProblem(scene, tracks, config).observed(7)
    pairs = len(problem.tracks.frame_a)

    starts = []
    for scale in config.start_scales:
        x0 = np.zeros(7)
        x0[6] = np.log(scale)
        t0 = time.perf_counter()
        solution = solve_rig(problem, x0, config.loss_scale_px)
        starts.append({"start_scale": scale, **describe(problem, solution.x, float(solution.cost))})
        starts[-1]["seconds"] = time.perf_counter() - t0
        print(starts[-1]["start_scale"], starts[-1]["translation_cm"], flush=True)
    ref = starts[config.start_scales.index(1.0)]

    subsets = []
    for seed in range(1, args.subsets + 1):
        sub = problem.on(subset(problem.tracks, int(args.fraction * pairs), seed))
        t0 = time.perf_counter()
        x0, sub_starts, spread = multi_start(sub, config, 7)
        solution = solve_rig(sub, x0, config.loss_scale_px)
        subsets.append(
            {
                "subset_seed": seed,
                **describe(sub, solution.x, float(solution.cost)),
                "starts_spread": spread,
                "seconds": time.perf_counter() - t0,
            }
        )
        print(seed, subsets[-1]["translation_cm"], spread, flush=True)

    earlier = []
    for path in args.rigs:
        d = read_json(path)
        T = np.array(d["cam_from_depth"])
        rotvec_deg = float(np.degrees(np.arccos(np.clip((np.trace(T[:3, :3]) - 1) / 2, -1, 1))))
        earlier.append(
            {
                "rig": str(path),
                "cam_from_depth": T.tolist(),
                "translation_cm": (T[:3, 3] * 100).tolist(),
                "rotation_deg": rotvec_deg,
                "depth_scale": float(d["depth_scale"]),
            }
        )

    header = "| rig | cost | median px | t cm | rot ° | depth scale | Δ cm | Δ ° | s |\n" + "|---" * 9 + "|"
    lines = [
        f"# The colour-depth rig of {args.scene}: where the solve ends\n",
        "{header}",
        f"SIFT tracks of the mapping frames: {tracks.num_tracks}; {len(tracks.frame_a)} observation pairs, "
        f"{pairs} of them chosen at the identity rig (valid raw depth, {2 * config.depth_blur_px:g} px from "
        f"holes and edges). Depth read through a {config.depth_blur_px:g} px Gaussian. Poses: "
        f"{', '.join(p.name for p in args.poses) or 'the dataset'}. Cost: least_squares' Cauchy cost "
        f"(scale {config.loss_scale_px} px); Δ: distance to the all-pairs solve from depth scale 1.\n",
        "## All pairs, one solve from each start\n",
        header,
        *[rig_row(f"start {s['start_scale']:g}", s, ref, s["seconds"]) for s in starts],
        "",
        f"## Seeded subsets of {args.fraction:.0%} of the pairs (the library's solve)\n",
        header,
        *[rig_row(f"subset {s['subset_seed']}", s, ref, s["seconds"]) for s in subsets],
        "",
        "Starts on each subset's 40 000-pair sample ended at most "
        + "; ".join(
            f"{s['starts_spread']['translation_cm']:.2g} cm / {s['starts_spread']['rotation_deg']:.2g}° apart"
            for s in subsets
        )
        + ".\n",
    ]
    if earlier:
        lines += ["## Earlier cached rigs\n", header, *[rig_row(f"`{e['rig']}`", e, ref) for e in earlier], ""]
    payload = {"scene": args.scene, "pairs": pairs, "starts": starts, "subsets": subsets, "earlier": earlier}
    write_results(args.name, payload, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
