"""Helpers shared by the benchmark scripts: paths, machine description, result writing, per-cell errors."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from slocal.bench.machine import machine_info
from slocal.bench.metrics import ACCURACY_THRESHOLDS
from slocal.bench.report import code_text
from slocal.distill.buffer import pass_targets
from slocal.distill.model_file import read_model_payload
from slocal.geometry.camera import pixel_centers
from slocal.io import read_image, write_json, write_text

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
# The shared data the tests also read: $SLOCAL_SHARED, else ../shared beside the repository.
SHARED_DATA = Path(os.environ.get("SLOCAL_SHARED", REPO.parent / "shared")) / "data"
SEVEN_SCENES = SHARED_DATA / "7scenes-mini"
# The files of a `slocal bench --out` report that the benchmarks keep in benchmarks/results/.
REPORT_FILES = ("results.json", "results.md", "results.csv", "per_query.json")


class CliRun(NamedTuple):
    """One ``slocal`` command as a benchmark ran it."""

    output: dict | None  # its --json output (None when run without --json)
    command: str  # as a user would type it
    seconds: float  # wall time
    load_before: list[float]  # load averages (1, 5, 15 min) at the start
    load_after: list[float]  # and at the end


def run_cli(args: list[str], json_out: bool = True) -> CliRun:
    """Run ``slocal ARGS`` (with ``--json`` unless ``json_out`` is False) in a subprocess; exit on failure."""
    cmd = [sys.executable, "-m", "slocal_cli.main", *args, *(["--json"] if json_out else [])]
    shown = shlex.join(["slocal", *cmd[3:]])
    print(f"$ {shown}", file=sys.stderr, flush=True)
    load_before = list(os.getloadavg())
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"`{shown}` failed with exit code {proc.returncode}")
    output = json.loads(proc.stdout) if json_out else None
    return CliRun(output, shown, seconds, load_before, list(os.getloadavg()))


def command_line() -> str:
    """The command that ran this script, as typed from the repository root."""
    return " ".join(shlex.quote(a) for a in ["python", *sys.argv])


def write_results(name: str, payload: dict, markdown: str) -> tuple[Path, Path]:
    """Write ``results/<name>.json`` (payload + machine, date, command, load) and ``results/<name>.md``.

    The machine holds the code's commit and dirty flag (``machine_info()["code"]``); the Markdown's
    ``{header}`` states them with the date, command and machine.
    """
    meta = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "machine": machine_info(),
        "loadavg_at_end": list(os.getloadavg()),
    }
    json_path = write_json(RESULTS / f"{name}.json", {**meta, **payload})
    header = (
        f"- code: {code_text(meta['machine'].get('code'))}\n"
        f"- date (UTC): {meta['date']}\n- command: `{meta['command']}`\n"
        f"- machine: {meta['machine'].get('cpu', '?')}, {meta['machine'].get('cores', '?')} cores"
        f"{', GPU ' + meta['machine']['gpu'] if meta['machine'].get('gpu') else ''}; "
        f"load average at end {', '.join(f'{v:.2f}' for v in meta['loadavg_at_end'])}\n\n"
    )
    md_path = write_text(RESULTS / f"{name}.md", markdown.replace("{header}", header))
    return json_path, md_path


def frame_cell_errors(model, frames, targets_by_name: dict) -> np.ndarray:
    """Distance (metres) between a student's coordinates and the teacher's targets at every cell that has one.

    Args:
        model: a loaded student (``load_model``).
        frames: the frames to predict (each with its image, camera and pose).
        targets_by_name: the teacher's ``FrameTargets`` by frame name.

    Returns:
        (N,) errors of all cells with a target, over all frames.
    """
    errors = []
    for frame in frames:
        out = model.predict(read_image(frame.image_path), frame.camera)
        _, coords, valid = cell_targets(frame, targets_by_name[frame.name], out.camera, out.stride)
        errors.append(np.linalg.norm(np.asarray(out.coords_hw3).reshape(-1, 3)[valid] - coords[valid], axis=1))
    return np.concatenate(errors) if errors else np.zeros(0)


def cell_targets(frame, targets, camera, stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A frame's teacher targets at the centres of the student's cells, exactly as the buffer samples them.

    Args:
        frame: the mapping frame (its pose gives the targets' origin).
        targets: its ``FrameTargets``.
        camera: the camera the student saw the frame with (``StudentOutput.camera``).
        stride: the student's output stride.

    Returns:
        uv_N2 (cell centres, float64), target_N3 (world) and valid_N.
    """
    uv = pixel_centers(camera.width, camera.height, stride).reshape(-1, 2).astype(np.float64)
    # An unwarped pass, no centre offset.
    target, valid, _, _ = pass_targets(targets, camera, np.eye(2), uv, np.zeros(3), 1.0, frame.world_from_cam[:3, 3])
    return uv, target, valid


def held_out_frames(model_path: Path) -> set[str]:
    """Names of the mapping frames a model was trained without; exits when it was trained on all of them."""
    names = set(read_model_payload(model_path)["train"]["validation_frames"])
    if not names:
        raise SystemExit(f"{model_path}: trained without validation frames (train.val_stretch / val_frames)")
    return names


# (metres, degrees) of the 5 cm / 5 deg accuracy, as ``ACCURACY_THRESHOLDS`` counts it.
MAX_5CM5DEG = next((t, r) for name, t, r in ACCURACY_THRESHOLDS if name == "acc_5cm5deg")


def hits_5cm5deg(results) -> np.ndarray:
    """(N,) bool: which poses lie within 5 cm and 5 deg of the ground truth (``MAX_5CM5DEG``)."""
    return hits_within(results, *MAX_5CM5DEG)


def hits_within(results, max_t_m: float, max_r_deg: float) -> np.ndarray:
    """(N,) bool: which poses lie within ``max_t_m`` (scene units) and ``max_r_deg`` of the ground truth."""
    return np.array([r.t_err_m < max_t_m and r.r_err_deg < max_r_deg for r in results], dtype=bool)


def paired_vs_first(hits: np.ndarray, first_hits: np.ndarray, tag: str = "5cm5deg") -> dict:
    """Pose-by-pose comparison with the first row's hits: won, lost (within the ``tag`` threshold) and the sign test."""
    won, lost = int((hits & ~first_hits).sum()), int((first_hits & ~hits).sum())
    return {f"won_{tag}_vs_first": won, f"lost_{tag}_vs_first": lost, "sign_test_p": sign_test_p(won, lost)}


def closer_vs_first(t_err: np.ndarray, first_t_err: np.ndarray) -> dict:
    """Pose-by-pose comparison of position errors with the first row's: poses closer and farther, the sign test.

    Every pose counts (no threshold), so it separates two precise recipes that put the same poses within a
    threshold. Failed poses carry an infinite error; ties (both failed) are left out.
    """
    closer, farther = int((t_err < first_t_err).sum()), int((t_err > first_t_err).sum())
    return {"closer_vs_first": closer, "farther_vs_first": farther, "closer_sign_test_p": sign_test_p(closer, farther)}


def turned_less_vs_first(r_err: np.ndarray, first_r_err: np.ndarray) -> dict:
    """``closer_vs_first`` for rotation errors: poses turned less and more than the first row's, the sign test."""
    c = closer_vs_first(r_err, first_r_err)
    return {
        "turned_less_vs_first": c["closer_vs_first"],
        "turned_more_vs_first": c["farther_vs_first"],
        "turned_sign_test_p": c["closer_sign_test_p"],
    }


def sign_test_p(won: int, lost: int) -> float:
    """Two-sided exact sign test on the discordant pairs (won vs lost), the paired test for binary outcomes."""
    n, k = won + lost, min(won, lost)
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n)
