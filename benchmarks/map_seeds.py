"""How often `slocal map` gets the procedural room's walk-through video right, over many seeds.

The video of ``tests/cli/test_map_cli.py`` (48 walk frames of 192 x 144, 8 query frames on another path)
is rendered once and mapped with ``--seed`` 0..N-1 (which seeds the retrieval vocabulary, the
verification's RANSAC and the mapper), with and without the starting focal length from the video's
own image pairs (``MapConfig.self_calibration``). Per run: registered frames, the camera centres'
median distance to the rendered path after a similarity fitted on the walk frames (a bent model
shows here even when every frame registers), the starting and refined focal lengths (the room's
camera: 156 px) and the mapping stage's time.

Usage::

    python benchmarks/map_seeds.py --seeds 40 --name 2026-12-06-map-focal/map_seeds
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pycolmap

from common import write_results
from slocal.capture.config import MapConfig
from slocal.capture.mapper import map_scene
from slocal.capture.scale import fit_similarity
from slocal.data.synth import SynthConfig
from slocal.data.synth.video import read_video_poses, render_video

# tests/cli/test_map_cli.py's room and videos.
ROOM = SynthConfig(color_size=(192, 144), depth_size=(96, 72), focal=156.0, seed=5)
WALK_S, WALK_FPS, QUERY_S, QUERY_FPS = 19.2, 2.5, 4.0, 2.0
BENT_CM = 2.0


def centre_error_cm(model_dir: Path, truth: dict) -> float:
    """Median distance (cm) of the registered cameras to the rendered path, after a similarity on the walk frames."""
    rec = pycolmap.Reconstruction(model_dir)
    images = [im for im in rec.images.values() if im.has_pose]
    model = np.array([im.projection_center() for im in images])
    true = np.array([truth[im.name.split("/")[0]][int(im.name[-10:-4])][1][:3, 3] for im in images])
    walk = np.array([im.name.startswith("walk/") for im in images])
    fit = fit_similarity(model[walk], true[walk])
    return 100.0 * float(np.median(np.linalg.norm(fit.apply(model) - true, axis=1)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        walk = render_video(root / "walk.mp4", ROOM, WALK_S, WALK_FPS, "walk")
        queries = render_video(root / "queries.mp4", ROOM, QUERY_S, QUERY_FPS, "queries")
        truth = {"walk": read_video_poses(walk.poses_path), "queries": read_video_poses(queries.poses_path)}
        for self_calibration in (False, True):
            for seed in range(args.seeds):
                config = MapConfig(
                    fps=WALK_FPS, pairs="sequential+retrieval", self_calibration=self_calibration, seed=seed
                )
                out = root / f"run-{self_calibration}-{seed}"
                start = time.perf_counter()
                s = map_scene(walk.path, out / "data", "room", config, queries=queries.path, runs_root=out / "runs")
                seconds = time.perf_counter() - start
                walk_camera = next(c for c in s["cameras"] if c["label"] == "video walk.mp4")
                refined = s["model"]["cameras"][0]["params"][0]
                rows.append(
                    {
                        "self_calibration": self_calibration,
                        "seed": seed,
                        "mapping_registered": s["registered"]["mapping"],
                        "mapping_images": s["images"]["mapping"],
                        "query_registered": s["registered"]["query"],
                        "centre_error_cm": centre_error_cm(out / "data" / "room" / "sparse" / "0", truth),
                        "start_focal_px": walk_camera["start_focal_px"],
                        "refined_focal_px": refined,
                        "reprojection_px": s["model"]["mean_reprojection_error_px"],
                        "mapping_s": s["seconds"]["mapping"],
                        "total_s": seconds,
                    }
                )
                print(rows[-1], flush=True)
    summary = []
    for self_calibration in (False, True):
        sel = [r for r in rows if r["self_calibration"] == self_calibration]
        bad = [r for r in sel if r["mapping_registered"] < r["mapping_images"] or r["centre_error_cm"] > BENT_CM]
        summary.append(
            {
                "self_calibration": self_calibration,
                "runs": len(sel),
                "failed": len(bad),
                "failed_seeds": [r["seed"] for r in bad],
                "median_centre_error_cm": float(np.median([r["centre_error_cm"] for r in sel])),
                "median_mapping_s": float(np.median([r["mapping_s"] for r in sel])),
                "start_focal_px": sorted({r["start_focal_px"] for r in sel}),
            }
        )
    table = "\n".join(
        f"| {'two-view' if s['self_calibration'] else 'COLMAP default'} | {s['runs']} | {s['failed']} "
        f"({', '.join(map(str, s['failed_seeds'])) or 'none'}) | {s['median_centre_error_cm']:.2f} | "
        f"{', '.join(f'{f:.1f}' for f in s['start_focal_px'])} | {s['median_mapping_s']:.1f} |"
        for s in summary
    )
    failed = "\n".join(
        f"- seed {r['seed']} ({'two-view' if r['self_calibration'] else 'default'}): "
        f"{r['mapping_registered']}/{r['mapping_images']} walk frames, centres {r['centre_error_cm']:.1f} cm "
        f"off the path, focal refined to {r['refined_focal_px']:.1f} px, {r['reprojection_px']:.2f} px reprojection"
        for r in rows
        if r["mapping_registered"] < r["mapping_images"] or r["centre_error_cm"] > BENT_CM
    )
    markdown = (
        "# `slocal map` on the procedural room's walk video, over seeds\n\n{header}"
        f"The test video ({int(WALK_S * WALK_FPS)} walk frames of {ROOM.color_size[0]} x {ROOM.color_size[1]}, "
        f"{int(QUERY_S * QUERY_FPS)} query frames; true focal length {ROOM.focal:.0f} px), mapped with `--pairs "
        f"sequential+retrieval` and `--seed` 0..{args.seeds - 1}. A run *fails* when a walk frame does not register "
        f"or the camera centres lie more than {BENT_CM:.0f} cm (median) from the rendered path after a similarity "
        "fitted on the walk frames.\n\n"
        "| starting focal length | runs | failed (seeds) | median centre error cm | starting focal px | "
        "median mapping s |\n|---|---|---|---|---|---|\n" + table + "\n\n" + (failed or "No run failed.") + "\n"
    )
    write_results(args.name, {"rows": rows, "summary": summary}, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
