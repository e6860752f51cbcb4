"""Is the depth teacher's disagreement across views noise, or a bias of the depth sensor?

The teach report's consistency (``slocal.teach.consistency``) compares each frame's targets with what
overlapping frames give at their reprojection. This script takes the same comparisons
(``compare_pairs``: the same sampling and partners) and asks what the disagreement is made of:

- the **signed** disagreement ``s`` along the partner camera's optical axis: the depth at which the
  partner camera sees frame i's target minus the depth of its own target there (cm);
- how ``|s|`` grows with depth (a structured-light sensor's noise grows with the square of the depth);
- whether a **fixed pattern over the image** explains it: a multiplicative depth error ``beta(cell)`` per
  cell of a ``grid`` over the image (and, beside it, a radial polynomial), as in the disparity distortion
  reported for the Kinect. If the sensor measures ``(1 + beta) * true depth``, then
  ``s ~ z_i * beta(cell_i) - z_j * beta(cell_j)``. The model is fitted (robust linear least squares) on
  the pairs between even-numbered mapping frames and judged on the pairs between odd-numbered ones: the
  consistency there before and after each frame's targets are moved along their rays by the fitted
  ``beta``.

The depth teacher reads depth through the scene's colour-depth rig (``--rig``, default ``auto``, cached
in ``--runs``); the grid's cells are cells of the target image (the colour camera; the rig turns the
depth camera by under a degree, so a depth-image pattern lands on about the same cells).

Usage::

    python benchmarks/depth_bias.py --scene redkitchen --runs /tmp/runs --name 2026-12-07-depth-bias/redkitchen
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.optimize import least_squares

from common import SEVEN_SCENES, write_results
from slocal.data import load_scene
from slocal.geometry.pose import transform_points
from slocal.teach import ensure_targets, make_teacher
from slocal.teach.consistency import compare_pairs, multiview_consistency
from slocal.teach.frame_targets import FrameTargets
from slocal.teach.rig import registered_scene

DEPTH_BINS_M = (0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 10.0)


def collect(scene, frames, samples_per_frame: int, seed: int) -> dict[str, np.ndarray]:
    """Per compared point (same surface, both targets valid): frame indices, depths, image positions, s."""
    cams = {f.name: f for f in scene.mapping}
    rows = []
    for pair in compare_pairs(scene, frames, samples_per_frame=samples_per_frame, seed=seed):
        ti, tj = frames[pair.i], frames[pair.j]
        keep = pair.same_N
        X_i, X_j = pair.points_N3[keep], pair.partner_N3[keep]
        cfw_i, cfw_j = cams[ti.name].cam_from_world, cams[tj.name].cam_from_world
        Xi_in_i, Xi_in_j, Xj_in_j = (
            transform_points(cfw_i, X_i),
            transform_points(cfw_j, X_i),
            transform_points(cfw_j, X_j),
        )
        H, W = ti.valid_HW.shape
        row, col = np.divmod(pair.pixels_N[keep], W)
        uv_j, _ = tj.camera.project(Xi_in_j)
        rows.append(
            np.c_[
                np.full(len(X_i), pair.i),
                np.full(len(X_i), pair.j),
                Xi_in_i[:, 2],
                Xj_in_j[:, 2],
                (col + 0.5) / W,
                (row + 0.5) / H,
                uv_j[:, 0] / tj.camera.width,
                uv_j[:, 1] / tj.camera.height,
                100.0 * (Xi_in_j[:, 2] - Xj_in_j[:, 2]),
                100.0 * np.linalg.norm(X_i - X_j, axis=1),
            ]
        )
    a = np.concatenate(rows)
    names = ("i", "j", "z_i", "z_j", "u_i", "v_i", "u_j", "v_j", "s_cm", "dist_cm")
    out = {k: a[:, c] for c, k in enumerate(names)}
    out["i"], out["j"] = out["i"].astype(int), out["j"].astype(int)
    return out


def grid_cells(u: np.ndarray, v: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    gx, gy = grid
    return np.clip((v * gy).astype(int), 0, gy - 1) * gx + np.clip((u * gx).astype(int), 0, gx - 1)


def radial_features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(N, 3): 1, r^2, r^4 with r the distance from the image centre in half-diagonals (aspect 4:3)."""
    r2 = ((u - 0.5) ** 2 * 16 + (v - 0.5) ** 2 * 9) / (0.25 * 16 + 0.25 * 9)
    return np.c_[np.ones_like(r2), r2, r2**2]


class BiasModel:
    """``beta`` (percent of the depth) as a function of image position: per grid cell, or radial."""

    def __init__(self, kind: str, grid: tuple[int, int] = (8, 6)):
        self.kind, self.grid = kind, grid
        self.n = grid[0] * grid[1] if kind == "grid" else 3

    def features(self, u: np.ndarray, v: np.ndarray) -> sp.csr_matrix:
        if self.kind == "grid":
            cells = grid_cells(u, v, self.grid)
            return sp.csr_matrix((np.ones(len(u)), (np.arange(len(u)), cells)), shape=(len(u), self.n))
        return sp.csr_matrix(radial_features(u, v))

    def fit(self, d: dict, f_scale_cm: float, ridge: float) -> np.ndarray:
        A = sp.diags(d["z_i"]) @ self.features(d["u_i"], d["v_i"]) - sp.diags(d["z_j"]) @ self.features(
            d["u_j"], d["v_j"]
        )
        # A small pull towards 0 fixes what the pairs do not (an overall scale is the rig's, not this model's).
        A = sp.vstack([A, ridge * np.sqrt(len(d["s_cm"]) / self.n) * sp.identity(self.n)]).tocsr()
        b = np.r_[d["s_cm"], np.zeros(self.n)]
        fit = least_squares(
            lambda x: A @ x - b, np.zeros(self.n), jac=lambda x: A, loss="soft_l1", f_scale=f_scale_cm, tr_solver="lsmr"
        )
        return fit.x

    def beta(self, x: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.asarray(self.features(u, v) @ x).ravel()


def corrected_targets(frames, scene, model: BiasModel, x: np.ndarray) -> tuple[FrameTargets, ...]:
    """Each target moved along its colour ray to ``1 / (1 + beta)`` of its distance from the camera."""
    centres = {f.name: f.world_from_cam[:3, 3] for f in scene.mapping}
    out = []
    for t in frames:
        H, W = t.valid_HW.shape
        v, u = np.mgrid[0:H, 0:W]
        beta = model.beta(x, (u.ravel() + 0.5) / W, (v.ravel() + 0.5) / H).reshape(H, W, 1)
        c = centres[t.name]
        out.append(replace(t, coords_HW3=(c + (t.coords_HW3 - c) / (1 + beta / 100)).astype(np.float32)))
    return tuple(out)


def consistency_row(model: str, scene, frames) -> dict:
    c = multiview_consistency(scene, frames)  # the teach report's own sampling
    return {"model": model, **{k: c[k] for k in ("median", "within_1", "within_2", "within_5", "points_compared")}}


def select(d: dict, mask: np.ndarray) -> dict:
    return {k: v[mask] for k, v in d.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", default="redkitchen")
    parser.add_argument("--data-root", type=Path, default=SEVEN_SCENES)
    parser.add_argument("--poses", type=Path, action="append", default=[], help="pose files instead of the dataset's")
    parser.add_argument("--rig", default="auto", choices=("auto", "estimate", "off"))
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=2000, help="target pixels sampled per frame")
    parser.add_argument("--grid", type=int, nargs=2, default=(8, 6), metavar=("GX", "GY"))
    parser.add_argument("--f-scale-cm", type=float, default=1.0, help="robust loss scale of the fit")
    parser.add_argument("--ridge", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    scene = registered_scene(load_scene(args.data_root, args.scene, pose_files=args.poses), args.runs, args.rig)
    targets = ensure_targets(scene, make_teacher("depth"), args.runs)
    frames = tuple(targets.frames)
    d = collect(scene, frames, args.samples, args.seed)
    even_i, even_j = d["i"] % 2 == 0, d["j"] % 2 == 0
    train, test = select(d, even_i & even_j), select(d, ~even_i & ~even_j)
    logging.info(
        "%d compared points: %d between even frames (fit), %d between odd ones (judged)",
        len(d["s_cm"]),
        len(train["s_cm"]),
        len(test["s_cm"]),
    )

    odd = tuple(t for k, t in enumerate(frames) if k % 2)
    rows = [{**consistency_row("none", scene, odd), "median_abs_s_cm": float(np.median(np.abs(test["s_cm"])))}]
    fitted = {}
    for kind in ("radial", "grid"):
        model = BiasModel(kind, tuple(args.grid))
        x = model.fit(train, args.f_scale_cm, args.ridge)
        fitted[kind] = x
        s_left = test["s_cm"] - (
            test["z_i"] * model.beta(x, test["u_i"], test["v_i"])
            - test["z_j"] * model.beta(x, test["u_j"], test["v_j"])
        )
        rows.append(
            {
                **consistency_row(kind, scene, corrected_targets(odd, scene, model, x)),
                "median_abs_s_cm": float(np.median(np.abs(s_left))),
                "params": x.tolist(),
            }
        )

    by_depth = []
    for lo, hi in zip(DEPTH_BINS_M[:-1], DEPTH_BINS_M[1:]):
        m = (d["z_i"] >= lo) & (d["z_i"] < hi)
        if m.sum() >= 100:
            by_depth.append(
                {
                    "z_m": [lo, hi],
                    "points": int(m.sum()),
                    "median_abs_s_cm": float(np.median(np.abs(d["s_cm"][m]))),
                    "median_cm": float(np.median(d["dist_cm"][m])),
                }
            )

    # As an angle seen from frame i: is the disagreement spread over all frames, or a few frames' own?
    angle_deg = np.degrees(d["dist_cm"] / (100.0 * d["z_i"]))
    per_frame = np.array(
        [
            np.median(angle_deg[(d["i"] == k) | (d["j"] == k)])
            for k in range(len(frames))
            if ((d["i"] == k) | (d["j"] == k)).any()
        ]
    )
    frame_spread = {q: float(np.percentile(per_frame, q)) for q in (10, 50, 90, 100)}

    reg = scene.extra.get("depth_registration", "none")
    payload = {
        "scene": args.scene,
        "poses": [str(p) for p in args.poses],
        "rig": args.rig,
        "registration": str(reg),
        "frames": len(frames),
        "grid": list(args.grid),
        "rows": rows,
        "by_depth": by_depth,
        "angle_deg_per_frame_percentiles": frame_spread,
        "angle_deg_median": float(np.median(angle_deg)),
    }
    gx, gy = args.grid
    beta = np.asarray(fitted["grid"]).reshape(gy, gx)
    lines = [
        f"# Depth teacher's disagreement across views on {args.scene}: noise or a sensor pattern?\n",
        "{header}",
        f"{len(frames)} mapping frames, depth through the rig ({args.rig}); {len(d['s_cm'])} compared points "
        "(the teach report's sampling and partners, same surface). *s*: the partner camera's depth of frame i's "
        "target minus the depth of its own target there. Fitted on pairs of even-numbered frames, judged on "
        "pairs of odd-numbered ones: the teach report's consistency among the odd-numbered frames, before and "
        "after their targets are moved along their rays by the fitted beta, and the signed disagreement the "
        "model leaves on the odd pairs.\n",
        "| depth model | points judged (3D) | median abs s cm (model's own fit) | consistency median cm "
        "| % within 1 / 2 / 5 cm |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['points_compared']} | {r['median_abs_s_cm']:.2f} | {r['median']:.2f} "
            f"| {r['within_1']:.0f} / {r['within_2']:.0f} / {r['within_5']:.0f} |"
        )
    k = fitted["radial"]
    lines += [
        f"\nRadial model: beta = {k[0]:+.3f} {k[1]:+.3f} r^2 {k[2]:+.3f} r^4 % of the depth (r in half-diagonals).\n",
        f"Grid model, beta per cell (% of the depth; {gx} x {gy} cells, top row first):\n",
        "| " + " | ".join(f"c{c}" for c in range(gx)) + " |",
        "|" + "---|" * gx,
    ]
    lines += ["| " + " | ".join(f"{b:+.2f}" for b in row) + " |" for row in beta]
    lines += [
        "\nBy the depth of frame i's target (all pairs):\n",
        "| depth m | points | median abs s cm | median 3D cm |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {b['z_m'][0]:.1f}–{b['z_m'][1]:.1f} | {b['points']} | {b['median_abs_s_cm']:.2f} | {b['median_cm']:.2f} |"
        for b in by_depth
    ]
    lines.append(
        f"\nAs an angle seen from frame i (distance / depth): {payload['angle_deg_median']:.2f}° median over all "
        "points; per frame (the median over its pairs), percentiles 10 / 50 / 90 / 100: "
        + " / ".join(f"{v:.2f}" for v in frame_spread.values())
        + "°.\n"
    )
    write_results(args.name, payload, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
