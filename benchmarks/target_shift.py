"""How one target set differs from another of the same scene, per stretch of the mapping trajectory.

For two target caches of one scene (e.g. the depth teacher without and with ``cross_check_views``),
each mapping frame's mean difference ``B - A`` over the pixels both label, in that frame's camera
axes (x right, y down, z forward), and the share of A's targets that B keeps; averaged over
consecutive groups of frames in trajectory order. A teacher change that moves targets the same way
in every camera (a systematic shift) shows here; one that only removes or averages targets does not.

Usage::

    python benchmarks/target_shift.py --scene redkitchen-gap --name 2026-12-06-crosscheck/target_shift_gap \\
        RUNS/redkitchen-gap/targets/depth-761406eb4b RUNS/redkitchen-gap/targets/depth-dfaa3c362e \\
        --poses results/2026-12-05-precision/pseudo_gt_redkitchen-gap.txt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from common import SEVEN_SCENES, write_results
from slocal.data import load_scene
from slocal.teach import load_targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="target cache folder A (the reference)")
    parser.add_argument("b", type=Path, help="target cache folder B (the change)")
    parser.add_argument("--scene", default="redkitchen-gap")
    parser.add_argument("--data-root", type=Path, default=SEVEN_SCENES)
    parser.add_argument("--poses", type=Path, nargs="*", default=[], help="pose files the targets were made with")
    parser.add_argument("--groups", type=int, default=5, help="groups of consecutive frames")
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    scene = load_scene(args.data_root, args.scene, pose_files=args.poses)
    a, b = load_targets(args.a).by_name(), load_targets(args.b).by_name()
    to_cm = 100.0 * (scene.metres_per_unit or 1.0)
    frames = []
    for frame in scene.mapping:
        if frame.name not in a or frame.name not in b:
            continue
        ta, tb = a[frame.name], b[frame.name]
        both = ta.valid_HW & tb.valid_HW
        diff = (tb.coords_HW3[both] - ta.coords_HW3[both]).astype(np.float64) @ frame.cam_from_world[:3, :3].T
        frames.append(
            {
                "name": frame.name,
                "mean_shift_cam_cm": (diff.mean(0) * to_cm).tolist(),
                "kept_pct": 100.0 * tb.valid_HW.sum() / max(ta.valid_HW.sum(), 1),
            }
        )
    groups = []
    for chunk in np.array_split(np.arange(len(frames)), args.groups):
        sel = [frames[i] for i in chunk]
        groups.append(
            {
                "frames": f"{chunk[0]}-{chunk[-1]}",
                "mean_shift_cam_cm": np.mean([f["mean_shift_cam_cm"] for f in sel], axis=0).tolist(),
                "kept_pct": float(np.mean([f["kept_pct"] for f in sel])),
            }
        )
    lines = [
        f"# Target shift on {args.scene}: `{args.b.name}` against `{args.a.name}`\n",
        "{header}",
        "Per group of consecutive mapping frames (trajectory order, frames both caches label): the mean of B - A over "
        "the pixels both label, in each frame's camera axes (x right, y down, z forward), and the share of A's "
        "targets that B keeps.\n",
        "| frames | mean shift x, y, z (cm) | % of A's targets kept |",
        "|---|---|---|",
    ]
    for g in groups:
        x, y, z = g["mean_shift_cam_cm"]
        lines.append(f"| {g['frames']} | {x:+.2f}, {y:+.2f}, {z:+.2f} | {g['kept_pct']:.0f} |")
    write_results(args.name, {"scene": args.scene, "groups": groups, "frames": frames}, "\n".join(lines) + "\n")
    print("\n".join(lines).replace("{header}", ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
