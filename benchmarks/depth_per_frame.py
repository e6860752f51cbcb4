"""Is the depth teacher's disagreement across views a per-frame error: a depth scale, or a pose?

The thirteenth session found no fixed pattern over the image (``depth_bias.py``) and every frame alike.
Two per-frame models are left, each a correction a teacher could make without mixing other frames'
depth into a frame's targets:

- **scale**: frame k's depth reads ``1 + beta_k`` times too far (a sensor whose scale drifts with
  temperature); its targets move along their colour rays by ``beta_k``;
- **rigid**: frame k's points sit off by a small rotation about its camera centre and a translation (a
  pose error of the tracker, or of the rig in that frame).

Both are fitted (iteratively reweighted least squares, Huber at 1 cm, a prior of 1 % / 0.57 deg / 1 cm
per frame that also pins the rigid model's gauge) on the teach report's pair comparisons
(``consistency.compare_pairs``) drawn with one sampling seed, and judged on comparisons drawn with
another (other pixels of the same frames): the median distance between the two frames' corrected
targets, before and after. The distances are computed on the compared points themselves, so a rigid
correction, which moves targets off their pixels, is judged on the same footing as a scale.

Usage::

    python benchmarks/depth_per_frame.py --scene redkitchen --runs RUNS --name 2026-12-07-per-frame/redkitchen
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from common import SEVEN_SCENES, write_results
from slocal.data import load_scene
from slocal.teach import ensure_targets, make_teacher
from slocal.teach.consistency import compare_pairs
from slocal.teach.rig import registered_scene

HUBER_CM = 1.0
MODELS = {"scale": 1, "rigid": 6}  # parameters per frame


def gather(scene, frames, samples: int, seed: int) -> tuple[np.ndarray, ...]:
    """Frame indices and world points (metres) of every compared pair on one surface."""
    i, j, X_i, X_j = [], [], [], []
    for pair in compare_pairs(scene, frames, samples_per_frame=samples, seed=seed):
        keep = pair.same_N
        i.append(np.full(keep.sum(), pair.i))
        j.append(np.full(keep.sum(), pair.j))
        X_i.append(pair.points_N3[keep])
        X_j.append(pair.partner_N3[keep])
    return tuple(np.concatenate(a) for a in (i, j, X_i, X_j))


def shift_design(model: str, frame: np.ndarray, a_cm: np.ndarray, n_frames: int) -> sp.csr_matrix:
    """(3M, n_frames * p): the shift (cm) of points ``a_cm`` (from their camera centres) per frame parameter.

    scale: beta in %, shift a * beta / 100; rigid: rotation in 0.01 rad (omega x a), translation in cm.
    """
    M = len(frame)
    p = MODELS[model]
    rows, cols, vals = [], [], []
    r = np.arange(3 * M).reshape(M, 3)
    if model == "scale":
        for ax in range(3):
            rows.append(r[:, ax])
            cols.append(frame * p)
            vals.append(a_cm[:, ax] / 100)
    else:
        ax_, ay, az = a_cm[:, 0] / 100, a_cm[:, 1] / 100, a_cm[:, 2] / 100
        # omega x a = (wy az - wz ay, wz ax - wx az, wx ay - wy ax)
        cross = {(0, 1): az, (0, 2): -ay, (1, 0): -az, (1, 2): ax_, (2, 0): ay, (2, 1): -ax_}
        for (row, c), v in cross.items():
            rows.append(r[:, row])
            cols.append(frame * p + c)
            vals.append(v)
        for ax in range(3):
            rows.append(r[:, ax])
            cols.append(frame * p + 3 + ax)
            vals.append(np.ones(M))
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(3 * M, n_frames * p)
    )


def corrected(model: str, x: np.ndarray, frame: np.ndarray, X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    a_cm = (X - centres[frame]) * 100
    return X + (shift_design(model, frame, a_cm, len(centres)) @ x).reshape(-1, 3) / 100


def fit(model: str, data: tuple[np.ndarray, ...], centres: np.ndarray) -> np.ndarray:
    """Per-frame parameters minimising the Huber distance between corrected partners (IRLS)."""
    i, j, X_i, X_j = data
    n = len(centres) * MODELS[model]
    A = shift_design(model, i, (X_i - centres[i]) * 100, len(centres)) - shift_design(
        model, j, (X_j - centres[j]) * 100, len(centres)
    )
    A = sp.vstack([A, sp.identity(n)]).tocsr()  # the prior, one unit per parameter
    b = np.r_[-((X_i - X_j) * 100).ravel(), np.zeros(n)]
    w = np.ones(A.shape[0])
    for _ in range(8):
        Aw = sp.diags(w) @ A
        # The normal equations are small (a few parameters per frame): solve them directly.
        x = np.linalg.solve((A.T @ Aw).toarray(), Aw.T @ b)
        r = np.abs(A @ x - b)
        w = np.where(r < HUBER_CM, 1.0, HUBER_CM / np.maximum(r, 1e-9))
        w[-n:] = 1.0  # the prior is not a measurement: no robust down-weighting
    return x


def summary(d_cm: np.ndarray) -> dict:
    return {"median_cm": float(np.median(d_cm)), **{f"within_{k}": float(np.mean(d_cm < k) * 100) for k in (1, 2, 5)}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", default="redkitchen")
    parser.add_argument("--data-root", type=Path, default=SEVEN_SCENES)
    parser.add_argument("--poses", type=Path, action="append", default=[], help="pose files instead of the dataset's")
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=2000, help="target pixels sampled per frame")
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    scene = registered_scene(load_scene(args.data_root, args.scene, pose_files=args.poses), args.runs, "auto")
    frames = tuple(ensure_targets(scene, make_teacher("depth"), args.runs).frames)
    by_name = {f.name: f for f in scene.mapping}
    centres = np.stack([by_name[t.name].world_from_cam[:3, 3] for t in frames])
    fit_data, judge = gather(scene, frames, args.samples, seed=1), gather(scene, frames, args.samples, seed=0)
    i, j, X_i, X_j = judge
    rows = [{"model": "none", **summary(np.linalg.norm(X_i - X_j, axis=1) * 100)}]
    for model in MODELS:
        x = fit(model, fit_data, centres).reshape(len(frames), MODELS[model])
        d = np.linalg.norm(
            corrected(model, x.ravel(), i, X_i, centres) - corrected(model, x.ravel(), j, X_j, centres), axis=1
        )
        row = {"model": model, **summary(d * 100)}
        if model == "scale":
            row["params"] = {"beta_pct_p10_50_90": np.percentile(x[:, 0], [10, 50, 90]).tolist()}
        else:
            # A rotation and translation common to all frames moves the whole scene (the gauge the prior
            # pins): each frame's own correction is its difference from that motion.
            omega = x[:, :3].mean(0)
            tau = x[:, 3:] - np.cross(omega / 100, centres * 100)
            own_rot = np.degrees(np.linalg.norm(x[:, :3] - omega, axis=1) / 100)
            own_tau = np.linalg.norm(tau - tau.mean(0), axis=1)
            row["params"] = {
                "common_rotation_deg": [float(np.degrees(np.linalg.norm(omega) / 100))],
                "own_rotation_deg_p10_50_90": np.percentile(own_rot, [10, 50, 90]).tolist(),
                "own_translation_cm_p10_50_90": np.percentile(own_tau, [10, 50, 90]).tolist(),
            }
        rows.append(row)
        logging.info("%s", row)

    payload = {
        "scene": args.scene,
        "poses": [str(p) for p in args.poses],
        "registration": str(scene.extra.get("depth_registration", "none")),
        "frames": len(frames),
        "fit_points": len(fit_data[0]),
        "judged_points": len(i),
        "rows": rows,
    }
    lines = [
        f"# Depth teacher's disagreement on {args.scene}: a per-frame scale or pose?\n",
        "{header}",
        f"{len(frames)} mapping frames, per-frame depth through the rig (auto); poses: "
        f"{', '.join(p.name for p in args.poses) or 'the dataset'}. Fitted on {len(fit_data[0])} compared points "
        f"(sampling seed 1), judged on {len(i)} others (seed 0): the distance between a frame's target and its "
        "partner's, each corrected by its own frame's parameters.\n",
        "| per-frame model | median cm | % within 1 / 2 / 5 cm | fitted parameters (p10 / p50 / p90 over frames) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        params = "; ".join(f"{k} " + " / ".join(f"{v:.3f}" for v in vals) for k, vals in r.get("params", {}).items())
        lines.append(
            f"| {r['model']} | {r['median_cm']:.3f} | {r['within_1']:.0f} / {r['within_2']:.0f} / {r['within_5']:.0f} "
            f"| {params or '-'} |"
        )
    write_results(args.name, payload, "\n".join(lines) + "\n")
    print("\n".join(lines).replace("{header}", ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
