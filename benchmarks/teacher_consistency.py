"""Multi-view consistency of teachers' targets, per teacher and per pose reference, without ground truth.

For each setting (the dataset's poses as loaded, with the colour-depth rig, or pose files) and teacher,
``slocal teach``'s own measurement (``slocal.teach.consistency``: sampled targets against the targets
that overlapping mapping frames give at their reprojection) and the share of pixels labelled.

Usage::

    python benchmarks/teacher_consistency.py --scene redkitchen-gap --teachers depth,sfm \\
        --poses results/2026-12-05-precision/pseudo_gt_redkitchen-gap.txt --runs RUNS \\
        --name 2026-12-05-precision/teacher_consistency_gap
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import SEVEN_SCENES, write_results
from slocal.data import load_scene
from slocal.teach import ensure_targets, make_teacher
from slocal.teach.rig import registered_scene


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", default="redkitchen-gap")
    parser.add_argument("--data-root", type=Path, default=SEVEN_SCENES)
    parser.add_argument("--teachers", default="depth,sfm")
    parser.add_argument("--poses", type=Path, action="append", default=[])
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    settings = [("dataset poses, rig off", [], "off"), ("dataset poses, rig (auto)", [], "auto")]
    if args.poses:
        settings.append((f"pose files {', '.join(p.name for p in args.poses)}, rig (auto)", args.poses, "auto"))
    rows = []
    for label, poses, mode in settings:
        scene = registered_scene(load_scene(args.data_root, args.scene, pose_files=poses), args.runs, mode)
        for name in args.teachers.split(","):
            start = time.perf_counter()
            targets = ensure_targets(scene, make_teacher(name), args.runs)
            c = targets.stats["consistency"]
            rows.append({"setting": label, "teacher": name, "seconds": time.perf_counter() - start, **c})
    lines = [
        f"# Teacher consistency on {args.scene}\n",
        "{header}",
        "Sampled targets of each mapping frame against the targets of up to four overlapping mapping frames at "
        "their reprojection (occluded points left out); no ground truth. Seconds include building the targets "
        "unless they were cached.\n",
        "| setting | teacher | median cm | % within 1 / 2 / 5 cm | points | pairs | % pixels labelled | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['teacher']} | {r.get('median', float('nan')):.2f} | "
            f"{r.get('within_1', 0):.0f} / {r.get('within_2', 0):.0f} / {r.get('within_5', 0):.0f} | "
            f"{r['points_compared']} | {r['pairs']} | {r['labelled_pct']:.1f} | {r['seconds']:.0f} |"
        )
    write_results(args.name, {"scene": args.scene, "rows": rows}, "\n".join(lines) + "\n")
    print("\n".join(lines).replace("{header}", ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
