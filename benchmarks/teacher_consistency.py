"""Multi-view consistency of teachers' targets, per teacher and per pose reference, without ground truth.

For each setting (the dataset's poses as loaded, with the colour-depth rig, or pose files) and teacher:

- ``slocal teach``'s own measurement (``slocal.teach.consistency``: sampled targets against the targets
  that overlapping mapping frames give at their reprojection) and the share of pixels labelled;
- **track consistency** (unless ``--no-tracks``): SIFT tracks over the mapping frames' colour images
  (``slocal.teach.rig.sift_tracks``: the SfM teacher's matching, verified with the poses) tie image
  points of two frames to one scene point; the distance between frame a's target at ``xy_a`` and frame
  b's at ``xy_b`` (``FrameTargets.sample``; colour pixels scaled to the target camera) says whether the
  targets sit on the right *pixels*, not only on one surface. A fused surface agrees with itself in 3D
  nearly by construction, so this is the measurement that compares it with per-frame depth;
- for a teacher that reports its own stats (the fused teacher's time split and how each frame's own
  depth compares with the fused surface), those, when the targets were built in this run.

Seconds include building the targets unless they were cached (``--runs``); the load average is recorded
before and after each teacher.

A teacher may carry options of its config (``name:key=value:key=value``), e.g.
``depth:cross_check_views=1`` for the depth teacher with its multi-view check.

Usage::

    python benchmarks/teacher_consistency.py --scene redkitchen-gap --teachers depth,sfm \\
        --poses results/2026-12-05-precision/pseudo_gt_redkitchen-gap.txt --runs RUNS \\
        --name 2026-12-05-precision/teacher_consistency_gap
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np

from common import SEVEN_SCENES, write_results
from slocal.data import load_scene
from slocal.data.scene import Scene
from slocal.teach import ensure_targets, make_teacher
from slocal.teach.consistency import THRESHOLDS
from slocal.teach.frame_targets import FrameTargets
from slocal.teach.rig import Tracks, registered_scene, sift_tracks


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def cached_tracks(scene: Scene, runs: Path, max_pairs: int) -> Tracks:
    """``sift_tracks`` of the scene, kept in the runs folder by scene fingerprint (a SIFT map takes minutes)."""
    key = hashlib.sha256(f"{scene.fingerprint}|{max_pairs}".encode()).hexdigest()[:10]
    path = runs / "teacher_consistency" / f"tracks-{scene.id.replace('/', '_')}-{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return Tracks(z["frame_a"], z["xy_a"], z["frame_b"], z["xy_b"], int(z["num_tracks"]))
    t0 = time.perf_counter()
    tracks = sift_tracks(scene, path.parent / f"sfm-{key}", max_pairs)
    logging.info(
        "SIFT tracks: %d tracks, %d pairs (%.0f s)", tracks.num_tracks, len(tracks.frame_a), time.perf_counter() - t0
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        frame_a=tracks.frame_a,
        xy_a=tracks.xy_a,
        frame_b=tracks.frame_b,
        xy_b=tracks.xy_b,
        num_tracks=tracks.num_tracks,
    )
    return tracks


def summary(d_cm: np.ndarray) -> dict:
    if not d_cm.size:
        return {}
    return {"median": float(np.median(d_cm)), **{f"within_{k}": float(np.mean(d_cm < k) * 100) for k in THRESHOLDS}}


def track_consistency(scene: Scene, frames: tuple[FrameTargets, ...], tracks: Tracks) -> dict:
    """Distance between the targets two frames give at the two ends of a SIFT track pair (each pair once).

    Returns:
        ``median`` and ``within_1/2/5`` (cm), ``pairs`` compared, ``labelled_pct`` (pairs where both ends
        have a target, % of all track pairs); ``full_conf``: the same over the pairs whose both ends have
        the teacher's full confidence (all of them for the depth teacher; for the fused teacher, where
        each frame's own depth agrees with the surface).
    """
    by_name = {t.name: t for t in frames}
    once = tracks.frame_a < tracks.frame_b
    fa, xa, fb, xb = tracks.frame_a[once], tracks.xy_a[once], tracks.frame_b[once], tracks.xy_b[once]
    ends = {}
    for side, f_idx, xy in (("a", fa, xa), ("b", fb, xb)):
        coords = np.full((len(f_idx), 3), np.nan)
        valid = np.zeros(len(f_idx), bool)
        full = np.zeros(len(f_idx), bool)
        for i in np.unique(f_idx):
            frame = scene.mapping[i]
            t = by_name.get(frame.name)
            if t is None:
                continue
            sel = f_idx == i
            # Tracks are in the colour image's pixels; the target camera is that camera rescaled.
            scale = np.array([t.camera.width / frame.camera.width, t.camera.height / frame.camera.height])
            c, conf, v = t.sample(xy[sel] * scale, origin_3=frame.world_from_cam[:3, 3])
            coords[sel], valid[sel] = c, v
            full[sel] = v & (conf >= 0.999 * t.conf_HW.max())
        ends[side] = (coords, valid, full)
    both = ends["a"][1] & ends["b"][1]
    d = np.linalg.norm(ends["a"][0] - ends["b"][0], axis=1) * 100 * (scene.metres_per_unit or 1.0)
    out = {"pairs": int(both.sum()), "labelled_pct": 100.0 * both.mean() if len(both) else 0.0, **summary(d[both])}
    full = ends["a"][2] & ends["b"][2]
    out["full_conf"] = {"pairs": int(full.sum()), **summary(d[full])}
    return out


def within(d: dict) -> str:
    return " / ".join(f"{d.get(f'within_{k}', 0):.0f}" for k in THRESHOLDS) if "median" in d else "-"


def parse_teacher(spec: str) -> tuple[str, dict]:
    """``depth:cross_check_views=1`` -> ("depth", {"cross_check_views": "1"}) (``make_teacher`` coerces the values)."""
    name, *options = spec.split(":")
    pairs = [o.split("=", 1) for o in options]
    if any(len(p) != 2 for p in pairs):
        raise SystemExit(f"teacher {spec!r}: options are key=value, separated by ':'")
    return name, dict(pairs)


def median(d: dict) -> str:
    return f"{d['median']:.2f}" if "median" in d else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", default="redkitchen-gap")
    parser.add_argument("--data-root", type=Path, default=SEVEN_SCENES)
    parser.add_argument("--teachers", default="depth,sfm")
    parser.add_argument("--poses", type=Path, action="append", default=[])
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--no-tracks", action="store_true", help="skip the SIFT track consistency")
    parser.add_argument("--max-pairs", type=int, default=300_000, help="SIFT track observation pairs at most")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = [("dataset poses, rig off", [], "off"), ("dataset poses, rig (auto)", [], "auto")]
    if args.poses:
        settings.append((f"pose files {', '.join(p.name for p in args.poses)}, rig (auto)", args.poses, "auto"))
    rows = []
    for label, poses, mode in settings:
        scene = registered_scene(load_scene(args.data_root, args.scene, pose_files=poses), args.runs, mode)
        tracks = None if args.no_tracks else cached_tracks(scene, args.runs, args.max_pairs)
        for name in args.teachers.split(","):
            teacher_name, options = parse_teacher(name)
            teacher = make_teacher(teacher_name, **options)
            load_before = loadavg()
            start = time.perf_counter()
            targets = ensure_targets(scene, teacher, args.runs)
            row = {
                "setting": label,
                "teacher": name,
                "seconds": time.perf_counter() - start,
                "loadavg_before": load_before,
                "loadavg_after": loadavg(),
                "registration": scene.extra.get("depth_registration", "none"),
                **targets.stats["consistency"],
            }
            if tracks is not None:
                row["track_consistency"] = track_consistency(scene, targets.frames, tracks)
            if targets.stats.get("teacher_stats"):  # the teacher's own stats, kept in the cache's index
                row["teacher_stats"] = targets.stats["teacher_stats"]
            rows.append(row)
    lines = [
        f"# Teacher consistency on {args.scene}\n",
        "{header}",
        "Sampled targets of each mapping frame against the targets of up to four overlapping mapping frames at "
        "their reprojection (occluded points left out), and (track) frame a's target at one end of a SIFT track "
        "pair against frame b's at the other; no ground truth. Seconds include building the targets unless they "
        "were cached; load: 1-minute load average before / after.\n",
        "| setting | teacher | median cm | % within 1 / 2 / 5 cm | points | pairs | % pixels labelled "
        "| track median cm | track % within 1 / 2 / 5 cm (pairs) | s | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tr = r.get("track_consistency", {})
        lines.append(
            f"| {r['setting']} | {r['teacher']} | {median(r)} | {within(r)} | {r['points_compared']} | {r['pairs']} "
            f"| {r['labelled_pct']:.1f} | {median(tr)} | {within(tr)} ({tr.get('pairs', 0)}) | {r['seconds']:.0f} "
            f"| {r['loadavg_before'][0]:.1f} / {r['loadavg_after'][0]:.1f} |"
        )
    for r in rows:
        s = r.get("teacher_stats", {})
        if "integrate_s" in s:
            lines.append(
                f"\n{r['setting']}, {r['teacher']}: integration {s['integrate_s']:.1f} s, mesh {s['mesh_s']:.1f} s, "
                f"rendering {s['render_s']:.1f} s ({s['frames_integrated']} frames, {s['triangles']} triangles); "
                f"own depth agrees {s['agree_pct']:.1f} %, missing (filled) {s['fill_pct']:.1f} %, "
                f"disagrees {s['disagree_pct']:.1f} %, back faces {s['back_pct']:.1f} % of surface hits."
            )
        if "kept_pct" in s:
            lines.append(
                f"\n{r['setting']}, {r['teacher']}: cross-check kept {s['kept_pct']:.1f} % of the targets "
                f"({s['unseen_pct']:.1f} % that no partner saw, kept unchecked), moved them "
                f"{s['mean_shift_mm']:.1f} mm on average; {s['unchecked_frames']} frames without a partner."
            )
    write_results(args.name, {"scene": args.scene, "rows": rows}, "\n".join(lines) + "\n")
    print("\n".join(lines).replace("{header}", ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
