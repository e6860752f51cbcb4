"""`slocal map` on redkitchen-split's 120 images without their poses, against the 7-Scenes poses (issue 30, 6a/6b).

The 100 mapping images (seq-01) and 20 queries (seq-02) of
``7scenes-mini/redkitchen-split`` are given to ``slocal map`` as a photo folder
(symlinks; no poses, no intrinsics), the queries held out with
``--queries 'seq-02/*'``; variants differ in the pairs matched and the mapper.
The ``video`` variant writes the mapping images as an H.264 video at their
7.5 frames per second (every 4th frame of the 30 Hz recording) and the queries
as a second video, and maps those (``--fps 7.5``: one slot per frame; blurred
slots are skipped as for any video).

Accuracy: the camera centres of the model are mapped onto the 7-Scenes poses by
a similarity fitted on the mapping images only; errors in cm for mapping images
and queries. The 7-Scenes poses are the depth camera's, and the colour camera
that was mapped sits a few cm from it, so a second row fits the similarity
jointly with a constant offset of the colour camera in the depth camera's frame
(``slocal.capture.scale.fit_similarity_with_offset``). Orientation errors are
after the same rotation.

Usage::

    python benchmarks/map_redkitchen.py                          # the default variants (about 30 minutes here)
    python benchmarks/map_redkitchen.py --variants seqret-incremental,seqret-global
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pycolmap
from scipy.spatial.transform import Rotation

from common import SEVEN_SCENES, SHARED_DATA, run_cli, write_results
from slocal.capture.scale import fit_similarity, fit_similarity_with_offset
from slocal.capture.video import write_video
from slocal.data import load_scene
from slocal.io import read_image

SCENE = "redkitchen-split"
RESULTS = "2026-12-05-map/redkitchen_photos"
VARIANTS = {
    "seqret-incremental": ["--pairs", "sequential+retrieval", "--mapper", "incremental"],
    "seqret-global": ["--pairs", "sequential+retrieval", "--mapper", "global"],
    "retrieval-incremental": ["--pairs", "retrieval", "--mapper", "incremental"],
    "exhaustive-incremental": ["--pairs", "exhaustive", "--mapper", "incremental"],
    "exhaustive-global": ["--pairs", "exhaustive", "--mapper", "global"],
    "video": ["--fps", "7.5"],
    "rgbd-scene": [],
    # COLMAP's default starting focal length for the photos (no EXIF) and the video, instead of the two-view one.
    "seqret-incremental-colmap-focal": [
        "--pairs",
        "sequential+retrieval",
        "--mapper",
        "incremental",
        "--no-self-calibration",
    ],
    "video-colmap-focal": ["--fps", "7.5", "--no-self-calibration"],
}
DEFAULT_VARIANTS = (
    "seqret-incremental",
    "seqret-global",
    "retrieval-incremental",
    "exhaustive-incremental",
    "video",
    "rgbd-scene",
)


def scrub(obj, paths: dict[str, str]):
    """``obj`` with each local path prefix replaced by a placeholder (results name no folder of this machine)."""
    if isinstance(obj, dict):
        return {k: scrub(v, paths) for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub(v, paths) for v in obj]
    if isinstance(obj, str):
        for path, label in paths.items():
            obj = obj.replace(path, label)
    return obj


def _scale_text(scale: dict) -> str:
    if scale["metres_per_unit"] is None:
        return "unknown"
    return f"{scale['metres_per_unit']:.4f} m/unit ({scale['source']})"


def _errors_cm(pred_N3: np.ndarray, gt_N3: np.ndarray) -> np.ndarray:
    return 100.0 * np.linalg.norm(pred_N3 - gt_N3, axis=1)


def _stats(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {"n": 0}
    return {
        "n": int(len(values)),
        "median": round(float(np.median(values)), 3),
        "p90": round(float(np.percentile(values, 90)), 3),
        "max": round(float(np.max(values)), 3),
    }


def alignment(rec, gt_by_name: dict[str, np.ndarray], mapping: set[str]) -> dict:
    """Camera centre / orientation errors after the similarity (plain and with the colour camera's offset)."""
    names = sorted(im.name for im in rec.images.values() if im.has_pose and im.name in gt_by_name)
    by_name = {im.name: im for im in rec.images.values()}
    C = np.array([by_name[n].projection_center() for n in names])
    R_wc = np.array([np.asarray(by_name[n].cam_from_world().rotation.matrix()).T for n in names])
    T = np.array([gt_by_name[n] for n in names])
    is_map = np.array([n in mapping for n in names])
    out = {}
    for row, sim in (
        ("similarity", fit_similarity(C[is_map], T[is_map, :3, 3])),
        ("similarity + colour offset", fit_similarity_with_offset(C[is_map], T[is_map])),
    ):
        target = T[:, :3, 3] + T[:, :3, :3] @ sim.offset_3
        err = _errors_cm(sim.apply(C), target)
        # gt_from_pred rotation of each camera; with the offset, also a constant camera-frame rotation
        # (the colour camera is turned a little against the depth camera), fitted on the mapping images.
        rel = Rotation.from_matrix(np.einsum("nji,njk->nik", T[:, :3, :3], sim.R_33 @ R_wc))
        rot_offset = rel[np.flatnonzero(is_map)].mean() if row != "similarity" else Rotation.identity()
        rot = np.degrees((rel * rot_offset.inv()).magnitude())
        out[row] = {
            "metres_per_unit": round(sim.scale, 6),
            "offset_cm": [round(100 * float(v), 2) for v in sim.offset_3],
            "rotation_offset_deg": round(float(np.degrees(rot_offset.magnitude())), 3),
            "mapping_cm": _stats(err[is_map]),
            "query_cm": _stats(err[~is_map]),
            "all_cm": _stats(err),
            "mapping_deg": _stats(rot[is_map]),
            "query_deg": _stats(rot[~is_map]),
        }
    return out


def make_videos(scene, folder: Path) -> tuple[Path, Path, dict[str, str]]:
    """The mapping and query images as two videos; returns them and frame name -> image name."""
    names = {}
    paths = []
    for split, frames, fps in (("rk_mapping", scene.mapping, 7.5), ("rk_queries", scene.query, 6.0)):
        path = folder / f"{split}.mp4"
        write_video((read_image(f.image_path) for f in frames), path, fps)
        for i, f in enumerate(frames):
            names[f"{split}/frame-{i:06d}.jpg"] = f.image_path.relative_to(scene.root).as_posix()
        paths.append(path)
    return paths[0], paths[1], names


def load_reference():
    """redkitchen-split, its 7-Scenes ``world_from_cam`` per image path (relative to the scene) and its mapping images.

    Exits with a one-line message (status 1) when the shared data is absent.
    """
    if not (SEVEN_SCENES / SCENE).is_dir():
        raise SystemExit(f"{SCENE} not found under {SEVEN_SCENES}")
    scene = load_scene(SEVEN_SCENES, SCENE)
    gt = {f.image_path.relative_to(scene.root).as_posix(): f.world_from_cam for f in scene.mapping + scene.query}
    mapping_names = {f.image_path.relative_to(scene.root).as_posix() for f in scene.mapping}
    return scene, gt, mapping_names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--variants", default=",".join(DEFAULT_VARIANTS), help=f"comma-separated of {', '.join(VARIANTS)}"
    )
    parser.add_argument("--results-name", default=RESULTS)
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}")
    scene, gt, mapping_names = load_reference()

    rows = {}
    load_start = list(os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="map-redkitchen-") as tmp:
        tmp = Path(tmp)
        local = {str(tmp): "$TMP", str(SHARED_DATA): "../shared/data"}
        photos = tmp / "photos"
        for name in gt:
            (photos / name).parent.mkdir(parents=True, exist_ok=True)
            (photos / name).symlink_to(scene.root / name)
        data, runs = tmp / "data", tmp / "runs"
        for variant in variants:
            scene_id = f"rk-{variant}"
            common = ["--scene", scene_id, "--data-root", str(data), "--runs", str(runs)]
            rename = {}
            if variant.startswith("video"):
                video, query_video, rename = make_videos(scene, tmp)
                summary, cmd, seconds, load0, load1 = run_cli(
                    ["map", str(video), "--queries", str(query_video), *VARIANTS[variant], *common]
                )
            elif variant == "rgbd-scene":
                # The 7-Scenes folder itself: its split gives the queries, its depth the scale.
                summary, cmd, seconds, load0, load1 = run_cli(["map", str(scene.root), *VARIANTS[variant], *common])
            else:
                summary, cmd, seconds, load0, load1 = run_cli(
                    ["map", str(photos), "--queries", "seq-02/*", *VARIANTS[variant], *common]
                )
            rec = pycolmap.Reconstruction(str(data / scene_id / "sparse" / "0"))
            gt_here = {
                n: gt[rename.get(n, n)] for n in (im.name for im in rec.images.values()) if rename.get(n, n) in gt
            }
            mapping_here = {n for n in gt_here if rename.get(n, n) in mapping_names}
            rows[variant] = {
                "command": cmd,
                "wall_s": round(seconds, 1),
                "loadavg_start": load0,
                "loadavg_end": load1,
                "summary": summary,
                "alignment": alignment(rec, gt_here, mapping_here),
            }
            print(json.dumps({variant: rows[variant]["alignment"]}, indent=1), file=sys.stderr)

    lines = [
        "# slocal map: redkitchen-split's 120 images without poses vs the 7-Scenes poses",
        "",
        "{header}",
        "100 mapping images (seq-01) + 20 held-out queries (seq-02) as a photo folder (`--queries 'seq-02/*'`), "
        "or as two videos (`video`). Camera centres after a similarity fitted on the mapping images; the second "
        "row fits it jointly with a constant offset of the colour camera in the depth camera's frame (the "
        "7-Scenes poses are the depth camera's). Wall times on a shared 2-core machine (load average at start/end "
        "in the JSON); stage seconds from map.json.",
        "",
        "| variant | registered map / query | pairs matched / verified | points | track | reproj px | "
        "features s | pairs s | matching s | mapping s | total s | load start-end | scale (slocal map) | "
        "starting focal px (source) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, r in rows.items():
        s = r["summary"]
        sec = s["seconds"]
        lines.append(
            f"| {variant} | {s['registered']['mapping']}/{s['images']['mapping']} / "
            f"{s['registered']['query']}/{s['images']['query']} | {s['pairs']['matched']} / {s['pairs']['verified']} | "
            f"{s['model']['points3D']} | {s['model']['mean_track_length']:.2f} | "
            f"{s['model']['mean_reprojection_error_px']:.2f} | {sec['features']:.0f} | {sec['pairs']:.0f} | "
            f"{sec['matching']:.0f} | {sec['mapping']:.0f} | {sec['total']:.0f} | "
            f"{r['loadavg_start'][0]:.1f}-{r['loadavg_end'][0]:.1f} | {_scale_text(s['scale'])} | "
            + ", ".join(f"{c['start_focal_px']:.1f} ({c['focal_source']})" for c in s["cameras"])
            + " |"
        )
    lines += [
        "",
        "| variant | fit | m/unit | offset cm | rotation offset deg | mapping cm median / p90 / max | "
        "query cm median / max | mapping deg median | query deg median |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, r in rows.items():
        for fit, a in r["alignment"].items():
            m, q = a["mapping_cm"], a["query_cm"]
            lines.append(
                f"| {variant} | {fit} | {a['metres_per_unit']:.4f} | {a['offset_cm']} | "
                f"{a['rotation_offset_deg']:.2f} | "
                f"{m['median']:.2f} / {m['p90']:.2f} / {m['max']:.2f} | "
                + (f"{q['median']:.2f} / {q['max']:.2f}" if q["n"] else "-")
                + f" | {a['mapping_deg']['median']:.2f} | "
                + (f"{a['query_deg']['median']:.2f}" if a["query_deg"]["n"] else "-")
                + " |"
            )
    payload = scrub({"scene": SCENE, "loadavg_at_start": load_start, "variants": rows}, local)
    json_path, md_path = write_results(args.results_name, payload, scrub("\n".join(lines) + "\n", local))
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
