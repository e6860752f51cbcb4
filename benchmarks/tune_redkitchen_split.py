"""Choose the mapping recipe on validation frames carved from the mapping set, never on the queries.

Every variant is ``slocal distill`` on ``redkitchen-split`` with a YAML override from
``benchmarks/tuning/`` plus ``val_stretch`` (the last 15 % of the mapping trajectory,
15 frames, held out as one stretch: 26 cm / 2.2 deg median from the nearest training
camera, like the queries' 28 cm / 11 deg). The student never sees those frames; the
table reports how well it localizes them. The queries are not read.

Usage::

    python benchmarks/tune_redkitchen_split.py frozen-320 tuned-320      # variants by file name
    python benchmarks/tune_redkitchen_split.py --minutes 8 --seed 1 tuned-320
    python benchmarks/tune_redkitchen_split.py --scene synth-room --data-root data --minutes 5 \\
        --name tune_synth_room fused3-l816          # any scene with depth targets, e.g. the demo's room

Results (machine, date, command, every variant's validation numbers) go to
``benchmarks/results/tune_redkitchen_split.{json,md}`` (``--name``); variants already in
that file are kept unless run again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from common import REPO, RESULTS, SEVEN_SCENES, frame_cell_errors, write_results
from slocal.data import load_scene
from slocal.distill.config import ENCODER_STRIDES, BufferTrainConfig
from slocal.distill.model_file import read_model_payload
from slocal.localize.localizer import load_model
from slocal.teach import make_teacher
from slocal.teach.targets import load_targets, targets_dir

VARIANTS = Path(__file__).resolve().parent / "tuning"
VAL_STRETCH = 0.15
# Settings shown in the table, read back from each model file (what it was really trained with).
RECIPE_KEYS = ("buffer_passes", "view_passes", "view_translation", "view_rotation", "view_neighbours", "reproj_weight")


def run_variant(name: str, args, runs: Path) -> dict:
    override = yaml.safe_load((VARIANTS / f"{name}.yaml").read_text()) or {}
    student = override.pop("preset", "ace-lite0")
    held_out = {"val_frames": args.val_frames, "val_stretch": 0.0} if args.val_frames else {"val_stretch": VAL_STRETCH}
    override.setdefault("train", {}).update(**held_out, val_every_s=1e9, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / f"{name}.yaml"
        config.write_text(yaml.safe_dump(override))
        out = runs / "tuning" / f"{name}-seed{args.seed}{'-every' if args.val_frames else ''}" / "model.pt"
        if args.reuse and out.is_file():
            print(f"reusing {out}", flush=True)
            return _row(name, student, args.seed, override, out) | cell_errors(out, args.data_root, runs, args.scene)
        cmd = [
            sys.executable,
            "-m",
            "slocal_cli.main",
            "distill",
            "--scene",
            args.scene,
            "--student",
            student,
            "--config",
            str(config),
            "--minutes",
            str(args.minutes),
            "--data-root",
            str(args.data_root),
            "--runs",
            str(runs),
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return _row(name, student, args.seed, override, out) | cell_errors(out, args.data_root, runs, args.scene)


def cell_errors(model_path: Path, data_root: Path, runs: Path, scene_id: str) -> dict:
    """Per-cell error of the student's coordinates on the validation frames, against the depth teacher's targets.

    Finer-grained than pose accuracy on 15 frames (one frame is a 7-point step): every
    cell with a target counts, so two variants that localize the same frames can still
    be told apart by how close their predictions are.
    """
    names = set(read_model_payload(model_path)["train"]["validation_frames"])
    scene = load_scene(data_root, scene_id)
    targets = load_targets(targets_dir(runs, scene, make_teacher("depth"))).by_name()
    e = frame_cell_errors(load_model(model_path), [f for f in scene.mapping if f.name in names], targets)
    return {"cell_median_cm": float(np.median(e) * 100), "cell_pct_10cm": float(np.mean(e < 0.10) * 100)}


def _row(name: str, student: str, seed: int, override: dict, out: Path) -> dict:
    payload = read_model_payload(out)
    train = payload["train"]
    val = train["validation"][-1]
    # Models trained before a setting existed ran with its default.
    recipe = {k: train["settings"].get(k, getattr(BufferTrainConfig(), k)) for k in RECIPE_KEYS} | {
        "max_side": payload["student"]["max_side"],
        "tune_encoder": payload["student"].get("tune_encoder", False),
        "encoder_levels": list(payload["student"].get("encoder_levels", ENCODER_STRIDES)),
    }
    return {
        "variant": name,
        "student": student,
        "seed": seed,
        "override": override,
        "recipe": recipe,
        "minutes": train["minutes"],
        "encode_minutes": train.get("encode_minutes"),
        "iterations": train["iterations"],
        "validation_frames": len(train["validation_frames"]),
        **{k: val[k] for k in val if k != "iteration"},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", help=f"names of YAML files in {VARIANTS}")
    parser.add_argument("--minutes", type=float, default=8.0, help="whole mapping budget per variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scene", default="redkitchen-split", help="a scene with depth targets")
    parser.add_argument("--name", default="tune_redkitchen_split", help="results file name in benchmarks/results/")
    parser.add_argument("--data-root", type=Path, default=SEVEN_SCENES)
    parser.add_argument("--runs", type=Path, default=REPO / "runs")
    parser.add_argument(
        "--reuse", action="store_true", help="take a variant's existing model instead of training it again"
    )
    parser.add_argument(
        "--val-frames",
        type=int,
        default=0,
        help="hold out this many evenly spaced mapping frames instead of the trajectory's last stretch "
        "(validation between mapping frames: what a scene whose queries sit between them, like the demo's room, asks)",
    )
    args = parser.parse_args()
    new_rows = [run_variant(name, args, args.runs) for name in args.variants]
    # Read the earlier rows only now: another run of this script may have written them meanwhile.
    previous = RESULTS / f"{args.name}.json"
    rows = json.loads(previous.read_text())["rows"] if previous.is_file() else []
    done = {_row_key(r) for r in new_rows}
    rows = [r for r in rows if _row_key(r) not in done] + new_rows
    lines = [
        f"# Recipe choice on validation frames of {args.scene} (never the queries)\n",
        "{header}",
        (
            f"Held out: {args.val_frames} evenly spaced mapping frames; "
            if args.val_frames
            else f"Held out: the last {VAL_STRETCH:.0%} of the mapping trajectory as one stretch (frames in name "
            "order); "
        )
        + "each variant is trained on the rest for the stated budget (encoding included) on this CPU. "
        "Validation PnP: what the code of the row's commit used (10 px / 10 000 iterations up to 672bc6a, "
        "`DENSE_PNP` = 20 px / 500 after, RANSAC on 320 of the matches then poselib on all from 197230b, 25 px from "
        "9c11696). `xstrong-pushpull` is `views-xstrong` after the faster renderer (1bd649d). "
        "Cells: the student's coordinates at every validation cell with a depth target, against that target "
        "(recorded from f6bf0e7 on).\n",
        "| variant | student | seed | side | encoder levels | passes (views, max move) | tuned enc. | minutes | "
        "iterations | val frames "
        "| % @10cm5° | % @5cm5° | median cm / ° | cells: median cm / % within 10 cm |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["variant"], r["seed"])):
        c = r["recipe"]
        moves = f", {c['view_translation']:g} m / {c['view_rotation']:g}°" if c["view_passes"] else ""
        moves += f", +{c['view_neighbours']} frames" if c.get("view_neighbours") else ""
        views = f"{c['buffer_passes']} ({c['view_passes']}{moves})"
        lines.append(
            f"| {r['variant']} | {r['student']} | {r['seed']} | {c['max_side']} | "
            f"{'/'.join(map(str, c.get('encoder_levels', (8, 16, 32))))} "
            f"| {views} | {'yes' if c['tune_encoder'] else 'no'} "
            f"| {r['minutes']:.1f} | {r['iterations']} | {r['validation_frames']} "
            f"| {r['pct_10cm5deg']:.0f} | {r['pct_5cm5deg']:.0f} | {r['median_cm']:.1f} / {r['median_deg']:.2f} "
            f"| {_cells(r)} |"
        )
    lines.append("\nVariant files (`benchmarks/tuning/*.yaml`, on top of the student preset):\n")
    for r in sorted(rows, key=lambda r: (r["variant"], r["seed"])):
        lines.append(f"- `{r['variant']}` seed {r['seed']}: `{json.dumps(r['override'])}`")
    write_results(args.name, {"scene": args.scene, "val_stretch": VAL_STRETCH, "rows": rows}, "\n".join(lines) + "\n")
    return 0


def _row_key(row: dict) -> tuple:
    """A row is replaced only by a run of the same variant, seed, budget and held-out frames."""
    return row["variant"], row["seed"], round(row["minutes"], 1), row["override"]["train"].get("val_frames", 0)


def _cells(row: dict) -> str:
    if "cell_median_cm" not in row:  # rows from before the cell errors were recorded
        return "–"
    return f"{row['cell_median_cm']:.1f} / {row['cell_pct_10cm']:.0f}"


if __name__ == "__main__":
    sys.exit(main())
