"""Which colour focal length makes 7-Scenes colour images consistent with depth and poses?

For pairs of mapping frames (A, B), back-project A's colour pixels with A's
registered depth (depth camera from ``camera-intrinsics.txt``) under a trial
colour focal length f, reproject them into B with the same f, and measure the
mean absolute grey-level difference. The right f minimises it. This is why the
7-Scenes loader reads ``camera-intrinsics.txt`` as the depth camera only.

    python benchmarks/colour_focal_7scenes.py --data-root ../shared/data/7scenes-mini --scene redkitchen
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import cv2
import numpy as np
from scipy.ndimage import map_coordinates

from common import write_results
from slocal.data import load_scene
from slocal.geometry import Camera, pixel_centers, transform_points
from slocal.io import read_image


def grey(path) -> np.ndarray:
    return cv2.cvtColor(read_image(path), cv2.COLOR_RGB2GRAY).astype(np.float32)


def photometric_error(frame_a, frame_b, camera: Camera) -> float:
    """Mean |grey(A) - grey(B at reprojection)| over A's pixels with depth that land inside B."""
    a = replace(frame_a, camera=camera)
    depth = a.depth_at(camera).reshape(-1)
    uv = pixel_centers(camera.width, camera.height).reshape(-1, 2)
    ok = depth > 0
    world = transform_points(a.world_from_cam, camera.backproject(uv[ok], depth[ok]))
    uv_b, z_b = camera.project(transform_points(frame_b.cam_from_world, world))
    inside = (z_b > 0) & (uv_b[:, 0] >= 0.5) & (uv_b[:, 0] < camera.width - 0.5)
    inside &= (uv_b[:, 1] >= 0.5) & (uv_b[:, 1] < camera.height - 0.5)
    # Pixel centres sit at +0.5 (slocal.geometry.camera); map_coordinates indexes pixel centres at integers.
    values_b = map_coordinates(grey(frame_b.image_path), [uv_b[inside, 1] - 0.5, uv_b[inside, 0] - 0.5], order=1)
    values_a = grey(frame_a.image_path).reshape(-1)[ok][inside]
    return float(np.mean(np.abs(values_a - values_b)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data/7scenes-mini")
    parser.add_argument("--scene", default="redkitchen")
    parser.add_argument("--focals", default="505,515,525,535,545,565,585")
    parser.add_argument("--gap", type=int, default=3, help="frame index gap between the two views of a pair")
    args = parser.parse_args()

    scene = load_scene(args.data_root, args.scene)
    frames = scene.mapping
    pairs = [(i, i + args.gap) for i in range(0, len(frames) - args.gap, 10)]
    cam0 = frames[0].camera
    rows = []
    for f in (float(v) for v in args.focals.split(",")):
        camera = Camera(cam0.width, cam0.height, f, f, cam0.cx, cam0.cy)
        errors = [photometric_error(frames[i], frames[j], camera) for i, j in pairs]
        rows.append({"colour_f": f, "mean_abs_grey_error": float(np.mean(errors))})
    best = min(rows, key=lambda r: r["mean_abs_grey_error"])
    table = "\n".join(f"| {r['colour_f']:.0f} | {r['mean_abs_grey_error']:.3f} |" for r in rows)
    md = (
        f"# Colour focal length of 7-Scenes `{args.scene}` (photometric consistency)\n\n{{header}}"
        f"{len(pairs)} mapping-frame pairs {args.gap} frames apart; depth camera f = {frames[0].depth_camera.fx:g}.\n\n"
        f"| colour f (px) | mean abs grey error (0-255) |\n|---|---|\n{table}\n\n"
        f"Best: f = {best['colour_f']:.0f} px.\n"
    )
    write_results(
        f"colour_focal_{args.scene}",
        {"scene": args.scene, "pairs": pairs, "rows": rows, "best_f": best["colour_f"]},
        md,
    )
    print(md.replace("{header}", ""))


if __name__ == "__main__":
    main()
