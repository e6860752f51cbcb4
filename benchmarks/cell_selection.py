"""Which of a student's cells make its pose error? PnP on chosen subsets of the cells, on validation frames only.

For each model, on its own held-out mapping frames (never the queries), every frame is localized with the
default RANSAC (``DENSE_PNP``, several RANSAC seeds) from:

- ``all``: every cell (what ``slocal localize`` does);
- ``inner-K``: the cells at least K cells from the image border (the border ring's receptive field reaches
  into the encoder's padding);
- ``confident-P``: the fraction P of the cells a confidence ranks highest. The confidence is a linear map
  of the head's last hidden features to a log error, fitted after training (Laplace likelihood,
  ``d / sigma + log sigma``) on the residuals of the model's *training* frames: what an uncertainty output
  trained beside the coordinates could learn at best from the same features;
- ``oracle-P``: the fraction P of the cells nearest their depth targets. Not realisable (it reads the
  ground truth): the ceiling of any cell selection.

It also tabulates the cells' error by distance to the image border. Depth-taught scenes only; ``ace``
students only (the confidence reads the head's hidden features).

Usage::

    python benchmarks/cell_selection.py --scene synth-room --data-root data --runs runs \\
        --name cell_selection_room runs/tuning/default-seed0/model.pt runs/tuning/default-seed1/model.pt

Results: ``benchmarks/results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from common import SEVEN_SCENES, cell_targets, held_out_frames, hits_5cm5deg, paired_vs_first, write_results
from slocal.bench.metrics import accuracy_summary, query_result
from slocal.data import load_scene
from slocal.distill.encoder import encode
from slocal.geometry.camera import Camera
from slocal.geometry.pnp import DENSE_PNP, solve_pnp
from slocal.io import read_image
from slocal.localize.localizer import load_model
from slocal.teach import make_teacher
from slocal.teach.targets import load_targets, targets_dir

BORDER_RINGS = (1, 2, 3)
FRACTIONS = (0.75, 0.5)


@dataclass(frozen=True)
class FrameCells:
    """One frame's cells: hidden features (N, C), predictions and targets (N, 3), error (N,; nan without target)."""

    name: str
    camera: Camera
    cam_from_world: np.ndarray
    uv_N2: np.ndarray
    hidden_NC: torch.Tensor
    pred_N3: np.ndarray
    error_N: np.ndarray
    border_N: np.ndarray


def frame_cells(student, frame, targets) -> FrameCells:
    rgb, camera = student.prepare(read_image(frame.image_path), frame.camera)
    x = torch.from_numpy(student.preprocess_network_input(rgb))
    net = student.module
    with torch.inference_mode():
        hidden_hwC = net.head(encode(net.encoder, x, "levels"))[0]
        coords_hw3 = net.final(hidden_hwC).numpy() + student.centre
    h, w = coords_hw3.shape[:2]
    uv, target, valid = cell_targets(frame, targets[frame.name], camera, student.stride)
    pred = coords_hw3.reshape(-1, 3).astype(np.float64)
    error = np.where(valid, np.linalg.norm(pred - target, axis=1), np.nan)
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    border = np.minimum(np.minimum(jj, w - 1 - jj), np.minimum(ii, h - 1 - ii)).reshape(-1)
    return FrameCells(frame.name, camera, frame.cam_from_world, uv, hidden_hwC.reshape(h * w, -1), pred, error, border)


def fit_confidence(frames: list[FrameCells], seed: int = 0, steps: int = 600) -> torch.nn.Linear:
    """Linear log-error model on the hidden features, fitted by the Laplace likelihood on the cells with a target."""
    hidden = torch.cat([f.hidden_NC for f in frames])
    error = torch.from_numpy(np.concatenate([f.error_N for f in frames])).float()
    ok = torch.isfinite(error)
    hidden, error = hidden[ok], error[ok].clamp(min=1e-3)
    g = torch.Generator().manual_seed(seed)
    linear = torch.nn.Linear(hidden.shape[1], 1)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.constant_(linear.bias, float(error.log().mean()))
    opt = torch.optim.Adam(linear.parameters(), lr=1e-2)
    for _ in range(steps):
        idx = torch.randint(0, len(error), (8192,), generator=g)
        log_sigma = linear(hidden[idx])[:, 0]
        loss = (error[idx] * torch.exp(-log_sigma) + log_sigma).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return linear


def selections(cells: FrameCells, linear: torch.nn.Linear) -> dict[str, np.ndarray]:
    """Cell indices (in image order) of every selection."""
    n = len(cells.error_N)
    out = {"all": np.arange(n)}
    for k in BORDER_RINGS:
        out[f"inner-{k}"] = np.flatnonzero(cells.border_N >= k)
    with torch.inference_mode():
        log_sigma = linear(cells.hidden_NC)[:, 0].numpy()
    oracle_error = np.where(np.isfinite(cells.error_N), cells.error_N, np.inf)
    for p in FRACTIONS:
        keep = int(round(p * n))
        out[f"confident-{p:g}"] = np.sort(np.argsort(log_sigma, kind="stable")[:keep])
        out[f"oracle-{p:g}"] = np.sort(np.argsort(oracle_error, kind="stable")[:keep])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="ace model files trained with validation frames")
    parser.add_argument("--scene", default="redkitchen-split")
    parser.add_argument("--data-root", type=Path, default=SEVEN_SCENES)
    parser.add_argument("--runs", type=Path, required=True, help="runs folder holding the scene's depth targets")
    parser.add_argument("--ransac-seeds", type=int, default=5, help="RANSAC seeds per frame, poses pooled")
    parser.add_argument("--name", required=True, help="results file name in benchmarks/results/")
    args = parser.parse_args()
    torch.manual_seed(0)
    scene = load_scene(args.data_root, args.scene)
    targets = load_targets(targets_dir(args.runs, scene, make_teacher("depth"))).by_name()
    poses: dict[str, list] = {}
    border_errors: list[tuple[np.ndarray, np.ndarray]] = []
    for path in args.models:
        held_out = held_out_frames(path)
        student = load_model(path)
        if student.config.arch != "ace":
            raise SystemExit(
                f"{path}: an {student.config.arch!r} student; this script reads the hidden features of 'ace' heads"
            )
        linear = fit_confidence([frame_cells(student, f, targets) for f in scene.mapping if f.name not in held_out])
        for frame in (f for f in scene.mapping if f.name in held_out):
            cells = frame_cells(student, frame, targets)
            border_errors.append((cells.border_N, cells.error_N))
            for label, idx in selections(cells, linear).items():
                for seed in range(args.ransac_seeds):
                    r = solve_pnp(cells.uv_N2[idx], cells.pred_N3[idx], cells.camera, replace(DENSE_PNP, seed=seed))
                    pose = r.cam_from_world if r.success else None
                    poses.setdefault(label, []).append(
                        query_result(f"{path}:{frame.name}#{seed}", pose, cells.cam_from_world, r.num_inliers, {})
                    )
    first = hits_5cm5deg(poses["all"])
    rows = []
    for label, results in poses.items():
        s = accuracy_summary(results)
        rows.append(
            {
                "selection": label,
                "poses": len(results),
                "pct_10cm5deg": s["acc_10cm5deg"],
                "pct_5cm5deg": s["acc_5cm5deg"],
                "pct_2cm2deg": s["acc_2cm2deg"],
                "median_cm": s["median_t_cm"],
                "median_deg": s["median_r_deg"],
                **paired_vs_first(hits_5cm5deg(results), first),
            }
        )
    border = np.concatenate([b for b, _ in border_errors])
    error = np.concatenate([e for _, e in border_errors])
    rings = []
    for k in range(5):
        m = np.isfinite(error) & ((border == k) if k < 4 else (border >= k))
        if not m.any():  # e.g. 7-Scenes' depth has no registered targets on the outermost ring
            continue
        rings.append(
            {
                "ring": f"{k}" if k < 4 else f">= {k}",
                "cells": int(m.sum()),
                "median_cm": float(np.median(error[m]) * 100),
                "pct_10cm": float(np.mean(error[m] < 0.10) * 100),
            }
        )
    lines = [
        f"# Which cells make the pose error: PnP on subsets of the cells, validation frames of {args.scene} (never "
        "the queries)\n",
        "{header}",
        f"{len(args.models)} model(s), each localized on its held-out mapping frames with `DENSE_PNP` and "
        f"{args.ransac_seeds} "
        f"RANSAC seed(s) per frame ({rows[0]['poses']} poses per selection; *vs all*: poses within 5 cm / 5° that the "
        "selection gains and loses against all cells, with the sign test's p). `confident-P`: a linear log-error model "
        "of the head's hidden features fitted on the training frames' residuals; `oracle-P`: the cells nearest their "
        "depth targets (reads the ground truth, a ceiling only).\n",
        "| selection | poses | % @10cm5° | % @5cm5° | % @2cm2° | median cm / ° | vs all @5cm5° |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['selection']} | {r['poses']} | {r['pct_10cm5deg']:.0f} | {r['pct_5cm5deg']:.0f} | "
            f"{r['pct_2cm2deg']:.0f} "
            f"| {r['median_cm']:.1f} / {r['median_deg']:.2f} "
            f"| +{r['won_5cm5deg_vs_first']} / −{r['lost_5cm5deg_vs_first']} (p {r['sign_test_p']:.2f}) |"
        )
    lines += [
        "",
        "Cells' error on the held-out frames by distance to the image border (in cells):",
        "",
        "| ring | cells | median cm | % within 10 cm |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['ring']} | {r['cells']} | {r['median_cm']:.1f} | {r['pct_10cm']:.0f} |" for r in rings]
    lines += ["", "Models:", ""] + [f"- `{p}`" for p in args.models]
    write_results(
        args.name,
        {"scene": args.scene, "ransac_seeds": args.ransac_seeds, "rows": rows, "rings": rings},
        "\n".join(lines) + "\n",
    )
    print("\n".join(lines[3:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
