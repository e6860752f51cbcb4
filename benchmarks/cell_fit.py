"""How well students fit the frames they were trained on, and the frames held out of training.

For each model: the distance between its coordinates and the depth teacher's targets at
every cell that has one, on every ``--every``-th training frame and on the model's own
validation frames (if it was trained with ``val_stretch`` / ``val_frames``). Training frames
only, never queries: a student that cannot fit its own training frames lacks features that
tell the scene's places apart, which no amount of novel views will fix.

Usage::

    python benchmarks/cell_fit.py --scene synth-room --data-root data --runs runs \\
        --name cell_fit_synth_room new=runs/synth-room/students/ace-lite0/model.pt old=/tmp/old/model.pt

Results: ``benchmarks/results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from common import frame_cell_errors, write_results
from slocal.data import load_scene
from slocal.distill.model_file import read_model_payload
from slocal.localize.localizer import load_model
from slocal.teach import make_teacher
from slocal.teach.targets import load_targets, targets_dir


def summary(errors_m: np.ndarray) -> dict:
    if errors_m.size == 0:
        return {"cells": 0}
    return {
        "cells": int(errors_m.size),
        "median_cm": float(np.median(errors_m) * 100),
        "pct_5cm": float(np.mean(errors_m < 0.05) * 100),
        "pct_10cm": float(np.mean(errors_m < 0.10) * 100),
    }


def fit_row(label: str, model_path: Path, scene, targets: dict, every: int) -> dict:
    payload = read_model_payload(model_path)
    held_out = set(payload["train"].get("validation_frames") or [])
    train = [f for f in scene.mapping if f.name not in held_out][::every]
    val = [f for f in scene.mapping if f.name in held_out]
    model = load_model(model_path)
    return {
        "label": label,
        "model": str(model_path),
        # Models from before the setting existed used all three levels.
        "encoder_levels": payload["student"].get("encoder_levels") or [8, 16, 32],
        "image_size": payload["image_size"],
        "iterations": payload["train"].get("iterations"),
        "train_frames": len(train),
        "val_frames": len(val),
        "train": summary(frame_cell_errors(model, train, targets)),
        "val": summary(frame_cell_errors(model, val, targets)),
    }


def cells(s: dict) -> str:
    return "–" if not s.get("cells") else f"{s['median_cm']:.1f} / {s['pct_5cm']:.0f} / {s['pct_10cm']:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "models", nargs="+", help="LABEL=PATH of model files distilled on the scene with the depth teacher"
    )
    parser.add_argument("--scene", required=True)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--runs", type=Path, required=True, help="runs folder holding the scene's depth targets")
    parser.add_argument("--every", type=int, default=3, help="use every N-th training frame")
    parser.add_argument("--name", required=True, help="results file name in benchmarks/results/")
    args = parser.parse_args()
    models = []
    for item in args.models:
        label, sep, path = item.partition("=")
        if not sep or not path:
            parser.error(f"expected LABEL=PATH, got {item!r}")
        models.append((label, Path(path)))
    scene = load_scene(args.data_root, args.scene)
    targets = load_targets(targets_dir(args.runs, scene, make_teacher("depth"))).by_name()
    rows = [fit_row(label, path, scene, targets, args.every) for label, path in models]
    lines = [
        f"# Cell fit on {args.scene}: training frames and held-out frames (never queries)\n",
        "{header}",
        "Distance between the student's coordinates and the depth teacher's targets at every cell with a "
        f"target; one training frame in {args.every}, and the model's validation frames if it has any.\n",
        "| model | encoder levels | input | iterations | training frames | cells: median cm / % < 5 cm / % < 10 cm "
        "| held-out frames | cells: median cm / % < 5 cm / % < 10 cm |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {'/'.join(map(str, r['encoder_levels'] or []))} | "
            f"{r['image_size'][0]}x{r['image_size'][1]} "
            f"| {r['iterations']} | {r['train_frames']} | {cells(r['train'])} | {r['val_frames']} | {cells(r['val'])} |"
        )
    lines.append("\nModels:\n")
    lines += [f"- {r['label']}: `{r['model']}`" for r in rows]
    write_results(args.name, {"scene": args.scene, "rows": rows}, "\n".join(lines) + "\n")
    print("\n".join(lines[3:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
