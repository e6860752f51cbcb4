"""Benchmark reports: results.json / .csv / .md, per-query errors and PNG plots.

``results.json`` has exactly the top-level keys ``rows``, ``machine``,
``command`` and ``units`` (per scene: ``m``, or ``model units`` for a scene
without a known scale, whose rows carry ``median_t_units`` and no cm numbers);
the machine holds the date and, as ``code``, the commit of the code and its dirty
flag (``slocal.bench.machine``); ``results.md`` ends with them and the command, and
``results.csv`` carries ``commit``, ``dirty`` and ``date`` on every row;
every row has at least ``ROW_FIELDS`` (None where a value does
not apply, e.g. accuracies of a timing-only row). A home of rooms' row adds
``room_recognition`` (%), ``n_room_right``, ``n_rooms``, ``rooms`` and
``room_ratio_median``; its accuracies and median errors are over the queries
placed in the right room (``n_room_right`` of ``n_queries``). Non-finite numbers (a median
error that is infinite because most queries failed) are written as null in
JSON and as ``inf`` in CSV.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from slocal.bench.metrics import ACCURACY_THRESHOLDS, QueryResult, units_name
from slocal.distill.config import DEFAULT_STUDENT
from slocal.geometry.pose import invert
from slocal.io import atomic_path, write_json, write_text

log = logging.getLogger(__name__)

ROW_FIELDS = (
    "scene",
    "method",
    "teacher",
    "n_queries",
    "median_t_cm",
    "median_r_deg",
    "acc_10cm5deg",
    "acc_5cm5deg",
    "acc_2cm2deg",
    "acc_1cm1deg",
    "ms_per_query",
    "map_mb",
)
AVERAGE_SCENE = "average"
BASELINES = ("sift", "dust3r")
PREFERRED_REFERENCE = DEFAULT_STUDENT


def scene_slug(scene: str) -> str:
    """A file-name-safe version of a scene id (``apt1/kitchen`` -> ``apt1_kitchen``)."""
    return scene.replace("/", "_").replace("\\", "_")


def is_student(method: str) -> bool:
    return method not in BASELINES


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_safe(obj):
    """Make rows JSON-safe: numpy scalars to Python, non-finite floats to None."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    return _finite_or_none(obj)


def complete_row(row: Mapping) -> dict:
    """``row`` with every field of ``ROW_FIELDS`` present (None when missing), schema fields first.

    ``failed`` (None, or why the row has no result) and ``timing_only`` are always present too.
    """
    out = {k: row.get(k) for k in ROW_FIELDS}
    out.update({k: v for k, v in row.items() if k not in out})
    out.setdefault("timing_only", False)
    out.setdefault("failed", None)
    return out


def _reference_ms(rows: Sequence[Mapping]) -> float | None:
    students = [r for r in rows if is_student(r["method"]) and r.get("ms_per_query") and not r.get("failed")]
    if not students:
        return None
    preferred = [r for r in students if r["method"] == PREFERRED_REFERENCE]
    return float((preferred or students)[0]["ms_per_query"])


def add_speed_vs_student(rows: list[dict]) -> None:
    """Set ``speedup_vs_student`` = ms of the method / ms of the scene's reference student.

    The reference is the ``cnn`` student if the scene has one, else its first
    student row. A value of 12 means the method is 12 times slower than the student.
    """
    for scene in dict.fromkeys(r["scene"] for r in rows):
        scene_rows = [r for r in rows if r["scene"] == scene]
        ref = _reference_ms(scene_rows)
        for r in scene_rows:
            ms = r.get("ms_per_query")
            r["speedup_vs_student"] = float(ms) / ref if ref and ms else None


def average_rows(rows: Sequence[Mapping]) -> list[dict]:
    """One row per method averaging its per-scene numbers, as the published 12Scenes tables do.

    Only methods with a result on every scene that produced any result get an
    average (otherwise it would average different scene sets).
    """
    numeric = (
        "median_t_cm",
        "median_r_deg",
        *(n for n, _, _ in ACCURACY_THRESHOLDS),
        "ms_per_query",
        "ms_p95",
        "map_mb",
    )
    scenes = list(dict.fromkeys(r["scene"] for r in rows if not r.get("failed")))
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mrows = [r for r in rows if r["method"] == method and not r.get("failed")]
        if len(scenes) < 2 or {r["scene"] for r in mrows} != set(scenes):
            continue
        avg: dict = {
            "scene": AVERAGE_SCENE,
            "method": method,
            "teacher": mrows[0].get("teacher") if len({r.get("teacher") for r in mrows}) == 1 else "mixed",
            "n_queries": sum(int(r.get("n_queries") or 0) for r in mrows),
            "timing_only": any(r.get("timing_only") for r in mrows),
            "n_scenes": len(mrows),
            "units": mrows[0].get("units") if len({r.get("units") for r in mrows}) == 1 else "mixed",
        }
        for key in numeric:
            values = [r.get(key) for r in mrows]
            avg[key] = float(np.mean(values)) if all(v is not None for v in values) else None
        out.append(avg)
    return out


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isinf(value):
            return "∞"
        return f"{value:.{digits}f}"
    return str(value)


def _median_t_text(row: Mapping) -> str:
    """The median translation error with its unit: ``1.2 cm``, or ``0.0140 units`` without a metric scale."""
    if row.get("units") == "model units":
        value = row.get("median_t_units")
        return "–" if value is None else ("∞" if math.isinf(value) else f"{value:.4g} units")
    value = row.get("median_t_cm")
    return "–" if value is None else ("∞" if isinstance(value, float) and math.isinf(value) else f"{_fmt(value)} cm")


def _cam_err_text(row: Mapping) -> str:
    """``+1.2, -0.4, +3.0 cm (n 18)``: the mean camera-frame error over the queries within 10 cm / 5°."""
    mean = row.get("mean_cam_err")
    if not mean:
        return "–"
    unit = "cm" if row.get("units") != "model units" else "× 0.01 units"
    return f"{', '.join(f'{v:+.1f}' for v in mean)} {unit} (n {row.get('n_cam_err')})"


def teacher_label(row: dict) -> str:
    """The row's teacher with the settings it changed: ``depth (smooth_px=15)``."""
    options = row.get("teacher_options") or {}
    extra = ", ".join(f"{k}={v}" for k, v in options.items())
    return f"{row.get('teacher')} ({extra})" if extra else str(row.get("teacher"))


def speed_text(ratio: float | None, is_reference: bool) -> str:
    """``×12 slower`` / ``×2.0 faster`` / ``reference`` for a ms ratio to the student."""
    if is_reference:
        return "reference"
    if ratio is None:
        return "–"
    if 0.95 <= ratio <= 1.05:
        return "×1.0 (same)"
    if ratio > 1:
        return f"×{ratio:.0f} slower" if ratio >= 10 else f"×{ratio:.1f} slower"
    inv = 1.0 / ratio
    return f"×{inv:.0f} faster" if inv >= 10 else f"×{inv:.1f} faster"


def markdown_table(rows: Sequence[Mapping]) -> str:
    """The results as a Markdown table, with failed rows and notes listed below it."""
    header = [
        "scene",
        "method",
        "teacher",
        "queries",
        "median t",
        "median r (°)",
        "mean error in camera frame x, y, z",
        "10cm,5° (%)",
        "5cm,5° (%)",
        "2cm,2° (%)",
        "1cm,1° (%)",
        "ms/query (p50)",
        "ms p95",
        "speed vs student",
        "map MB",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    notes = []
    for scene in dict.fromkeys(r["scene"] for r in rows):
        scene_rows = [r for r in rows if r["scene"] == scene]
        ref = _reference_ms(scene_rows)
        ref_seen = False
        for r in scene_rows:
            if r.get("failed"):
                notes.append(f"- {r['scene']} / {r['method']}: FAILED — {r['failed']}")
                lines.append(
                    f"| {r['scene']} | {r['method']} | {_fmt(r.get('teacher'))} | FAILED |" + " – |" * (len(header) - 4)
                )
                continue
            is_ref = not ref_seen and ref is not None and is_student(r["method"]) and r.get("ms_per_query") == ref
            ref_seen |= is_ref
            method = r["method"] + (" (timing only)" if r.get("timing_only") else "")
            queries = _fmt(r.get("n_queries"))
            if r.get("timing_only"):
                n_timed = r.get("n_timed", r.get("n_queries"))
                queries = f"{n_timed} timed"
                notes.append(
                    f"- {r['scene']} / {r['method']}: timing only, {n_timed} of {r.get('n_queries')} "
                    f"queries timed ({r.get('timing_note') or 'accuracy not measured'})"
                )
            cells = [
                r["scene"],
                method,
                teacher_label(r) if r.get("teacher") else _fmt(None),
                queries,
                _median_t_text(r),
                _fmt(r.get("median_r_deg"), 2),
                _cam_err_text(r),
                *(_fmt(r.get(n)) for n, _, _ in ACCURACY_THRESHOLDS),
                _fmt(r.get("ms_per_query")),
                _fmt(r.get("ms_p95")),
                speed_text(r.get("speedup_vs_student"), is_ref),
                _fmt(r.get("map_mb"), 2),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    for scene, reference in dict.fromkeys((r["scene"], r["reference"]) for r in rows if r.get("reference")):
        notes.append(f"- {scene}: errors against {reference}")
    for r in rows:
        c = r.get("teacher_consistency") or {}
        if "median" in c:
            notes.append(
                f"- {r['scene']} / {r['method']}: taught by {teacher_label(r)}, whose targets agree across mapping "
                f"views to {c['median']:.2f} {c['unit']} median ({c['within_1']:.0f} / {c['within_2']:.0f} / "
                f"{c['within_5']:.0f} % within 1 / 2 / 5 {c['unit']}); {c['labelled_pct']:.0f} % of pixels labelled"
            )
    if any(r.get("mean_cam_err") for r in rows):
        notes.append(
            "- mean error in camera frame: the estimated minus the true camera centre in the true camera's frame "
            "(x right, y down, z forward), averaged over the queries within 10 cm / 5° (n): the systematic part"
        )
    for r in rows:
        if r.get("room_recognition") is not None and not r.get("failed"):
            notes.append(
                f"- {r['scene']} / {r['method']}: a home of {r.get('n_rooms')} rooms ({r.get('rooms')}): "
                f"{_fmt(r['room_recognition'])} % of the queries placed in the right room "
                f"({r.get('n_room_right')} of {r.get('n_queries')}; median best / runner-up inlier ratio "
                f"{_fmt(r.get('room_ratio_median'))}); errors and accuracies over those {r.get('n_room_right')}"
            )
    for scene in dict.fromkeys(r["scene"] for r in rows if r.get("units") == "model units"):
        notes.append(
            f"- {scene}: errors in model units (the scene has no metric scale); give --metres-per-unit "
            "or a scale.txt for cm and the cm/° accuracies"
        )
    settings = dict.fromkeys(
        f"{r['ransac_threshold_px']:g} px at 640 px width, at most {r['ransac_max_iterations']} iterations{_subset(r)}"
        for r in rows
        if r.get("ransac_threshold_px") is not None and not r.get("failed")
    )
    if len(settings) > 1:
        by_method = {
            r["method"]: f"{r['ransac_threshold_px']:g} px / {r['ransac_max_iterations']}{_subset(r)}"
            for r in rows
            if r.get("ransac_threshold_px") is not None
        }
        notes.append("- RANSAC (threshold / max iterations): " + ", ".join(f"{m} {v}" for m, v in by_method.items()))
    elif settings:
        notes.append(f"- RANSAC: {next(iter(settings))} for every method")
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + "\n".join(notes) + "\n"
    return text


def csv_text(rows: Sequence[Mapping], measured: Mapping | None = None) -> str:
    """Rows as CSV: the schema fields first, then any extra field in order of appearance.

    Args:
        measured: columns repeated on every row, last (``measured_columns``: commit, dirty, date).
    """
    measured = dict(measured or {})
    fields = list(ROW_FIELDS)
    for r in rows:
        fields += [k for k in r if k not in fields and k not in measured]
    fields += list(measured)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        values = {**r, **measured}
        writer.writerow({k: ("" if values.get(k) is None else values.get(k)) for k in fields})
    return buf.getvalue()


def code_text(code: Mapping | None) -> str:
    """The code a result measured, in words: ``commit <sha> (clean)`` / ``(dirty: uncommitted changes)``,
    or the package version and ``commit unknown`` outside a git checkout."""
    code = code or {}
    if not code.get("commit"):
        return f"slocal {code.get('package') or 'version unknown'}, commit unknown (not run from a git checkout)"
    dirty = {True: "dirty: uncommitted changes", False: "clean", None: "dirty flag unknown"}[code.get("dirty")]
    return f"commit {code['commit']} ({dirty})"


def measured_columns(machine: Mapping) -> dict:
    """``commit``, ``dirty`` and ``date`` of a run, from ``machine_info()`` (None where unknown)."""
    code = machine.get("code") or {}
    return {"commit": code.get("commit"), "dirty": code.get("dirty"), "date": machine.get("date")}


def provenance_markdown(machine: Mapping, command: str) -> str:
    """What a results file measured, as Markdown list items: code, date, machine, command."""
    where = f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores"
    if machine.get("gpu"):
        where += f", GPU {machine['gpu']}"
    return (
        f"- code: {code_text(machine.get('code'))}\n- date (UTC): {machine.get('date') or 'unknown'}\n"
        f"- machine: {where}\n- command: `{command}`\n"
    )


def per_query_rows(
    per_query: Mapping[tuple[str, str], Sequence[QueryResult]], scales: Mapping[str, float | None] | None = None
) -> list[dict]:
    """One JSON-safe entry per (scene, method, query) with errors, timings and camera centres.

    ``t_err_units`` is in scene units; ``t_err_cm`` is None for a scene whose ``scales`` entry is None.
    """
    out = []
    for (scene, method), results in per_query.items():
        scale = (scales or {}).get(scene, 1.0)
        for q in results:
            rooms = {} if q.room is None else {"room": q.room, "room_est": q.room_est, "room_ratio": q.room_ratio}
            out.append(
                json_safe(
                    {
                        "scene": scene,
                        "method": method,
                        "image": q.image,
                        **rooms,
                        "success": q.success,
                        "t_err_cm": None if scale is None else q.t_err_m * scale * 100.0,
                        "t_err_units": q.t_err_m,
                        "r_err_deg": q.r_err_deg,
                        "inliers": q.num_inliers,
                        "ms": q.ms,
                        "center_gt": None
                        if q.cam_from_world_gt is None
                        else invert(q.cam_from_world_gt)[:3, 3].tolist(),
                        "center_est": None
                        if q.cam_from_world_est is None
                        else invert(q.cam_from_world_est)[:3, 3].tolist(),
                    }
                )
            )
    return out


def _save_figure(fig, path: Path) -> Path:
    """Lay out, write atomically and close ``fig`` (closed even when writing fails)."""
    try:
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        _pyplot().close(fig)
    return path


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend.

    Imported lazily: matplotlib costs about a second and only the plots need it,
    and the backend must be chosen before pyplot is first imported.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_cumulative_errors(
    scene: str, results: Mapping[str, Sequence[QueryResult]], path: Path, metres_per_unit: float | None = 1.0
) -> Path:
    """Cumulative translation and rotation error curves of every method on one scene.

    Translation in cm when the scene's scale is known, else in model units.

    The y value at error x is the percentage of *all* queries with an error <= x,
    so failed queries keep a curve below 100 %.
    """
    plt = _pyplot()
    fig, (ax_t, ax_r) = plt.subplots(1, 2, figsize=(10, 4))
    metric = metres_per_unit is not None
    t_factor = 100.0 * metres_per_unit if metric else 1.0
    t_max, r_max = (10.0 if metric else 0.0), 5.0
    for method, qs in results.items():
        t = np.sort([q.t_err_m * t_factor for q in qs])
        r = np.sort([q.r_err_deg for q in qs])
        finite_t, finite_r = t[np.isfinite(t)], r[np.isfinite(r)]
        if finite_t.size:
            cap = 100.0 if metric else math.inf
            t_max = max(t_max, min(cap, float(np.percentile(finite_t, 90)) * 1.5))
            r_max = max(r_max, min(45.0, float(np.percentile(finite_r, 90)) * 1.5))
        y = np.arange(1, len(qs) + 1) / len(qs) * 100.0
        ax_t.step(np.concatenate([[0.0], t]), np.concatenate([[0.0], y]), where="post", label=method)
        ax_r.step(np.concatenate([[0.0], r]), np.concatenate([[0.0], y]), where="post", label=method)
    for ax, xmax, xlabel, marks in (
        (
            ax_t,
            max(t_max, 1e-6),
            "translation error (cm)" if metric else "translation error (model units)",
            (1, 2, 5, 10) if metric else (),
        ),
        (ax_r, r_max, "rotation error (°)", (1, 2, 5)),
    ):
        for m in marks:  # the accuracy thresholds of the table
            ax.axvline(m, color="0.7", lw=0.6, ls="--", zorder=0)
        ax.set_xlim(0, xmax)
        ax.set_ylim(0, 100)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("queries within error (%)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(f"{scene}: cumulative pose error")
    return _save_figure(fig, path)


def plot_positions(scene: str, results: Mapping[str, Sequence[QueryResult]], path: Path, units: str = "m") -> Path:
    """Top-down view of ground-truth vs estimated camera centres of one scene.

    The view spans the two world axes along which the ground-truth centres vary
    most; estimates far outside the ground-truth extent fall outside the plot.
    """
    plt = _pyplot()
    first = next(iter(results.values()))
    gt = np.array([invert(q.cam_from_world_gt)[:3, 3] for q in first if q.cam_from_world_gt is not None])
    axes = np.sort(np.argsort(gt.var(axis=0))[::-1][:2]) if len(gt) else np.array([0, 2])
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot(gt[:, axes[0]], gt[:, axes[1]], "k.-", lw=0.5, ms=5, label="ground truth")
    for method, qs in results.items():
        est, ref = [], []
        for q in qs:
            if q.cam_from_world_est is not None and q.cam_from_world_gt is not None:
                est.append(invert(q.cam_from_world_est)[:3, 3])
                ref.append(invert(q.cam_from_world_gt)[:3, 3])
        if not est:
            continue
        est_a, ref_a = np.array(est)[:, axes], np.array(ref)[:, axes]
        (line,) = ax.plot(est_a[:, 0], est_a[:, 1], "x", ms=6, label=f"{method} ({len(est)}/{len(qs)})")
        for e, g in zip(est_a, ref_a):
            ax.plot([g[0], e[0]], [g[1], e[1]], "-", color=line.get_color(), lw=0.6, alpha=0.7)
    if len(gt):
        lo, hi = gt[:, axes].min(0), gt[:, axes].max(0)
        margin = 0.15 * max(float((hi - lo).max()), 0.1)
        ax.set_xlim(lo[0] - margin, hi[0] + margin)
        ax.set_ylim(lo[1] - margin, hi[1] + margin)
    ax.set_aspect("equal", adjustable="box")
    names = "xyz"
    ax.set_xlabel(f"world {names[axes[0]]} ({units})")
    ax.set_ylabel(f"world {names[axes[1]]} ({units})")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(f"{scene}: camera centres (top-down)")
    return _save_figure(fig, path)


def finalize_rows(rows: Sequence[Mapping]) -> list[dict]:
    """Rows with every schema field and ``speedup_vs_student`` filled in (idempotent)."""
    full = [complete_row(r) for r in rows]
    add_speed_vs_student(full)
    return full


def write_report(
    out_dir: str | Path,
    rows: Sequence[Mapping],
    machine: Mapping,
    command: str,
    per_query: Mapping[tuple[str, str], Sequence[QueryResult]] | None = None,
    scales: Mapping[str, float | None] | None = None,
) -> dict[str, Path | list[Path]]:
    """Write results.json/.csv/.md, per_query.json and the plots.

    Args:
        out_dir: folder to write into (created).
        rows: one row per (scene, method), plus any average rows.
        machine: ``slocal.bench.machine.machine_info()`` (its ``code`` and ``date`` are also
            written into results.md and results.csv).
        command: the command line that produced the results.
        per_query: per-query results by (scene, method), for plots; timing-only
            and failed methods should be left out.
        scales: metres per unit of each scene (None: unknown); scenes not listed are metric.

    Returns:
        Paths by kind: ``json``, ``csv``, ``md``, ``per_query``, ``plots`` (list).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    full = finalize_rows(rows)
    scales = dict(scales or {})
    units = {scene: units_name(scales.get(scene, 1.0)) for scene in dict.fromkeys(r["scene"] for r in full)}
    payload = {"rows": json_safe(full), "machine": json_safe(dict(machine)), "command": command, "units": units}
    paths: dict[str, Path | list[Path]] = {
        "json": write_json(out_dir / "results.json", payload),
        "csv": write_text(out_dir / "results.csv", csv_text(full, measured_columns(machine))),
        "md": write_text(out_dir / "results.md", markdown_table(full) + "\n" + provenance_markdown(machine, command)),
    }
    plots: list[Path] = []
    if per_query:
        paths["per_query"] = write_json(out_dir / "per_query.json", per_query_rows(per_query, scales))
        for scene, by_method in _plot_groups(per_query):
            slug = scene_slug(scene)
            scale = scales.get(scene, 1.0)
            plots.append(
                plot_cumulative_errors(scene, by_method, out_dir / "plots" / f"{slug}_cumulative_errors.png", scale)
            )
            plots.append(
                plot_positions(
                    scene, by_method, out_dir / "plots" / f"{slug}_positions.png", "m" if scale is not None else "units"
                )
            )
    paths["plots"] = plots
    return paths


def _plot_groups(
    per_query: Mapping[tuple[str, str], Sequence[QueryResult]],
) -> list[tuple[str, dict[str, list[QueryResult]]]]:
    """(scene, results by method) to plot: one group per scene, and per room of a home (each room has its own frame)."""
    groups: dict[str, dict[str, list[QueryResult]]] = {}
    for (scene, method), results in per_query.items():
        for q in results:
            groups.setdefault(q.room or scene, {}).setdefault(method, []).append(q)
    return [(scene, by_method) for scene, by_method in groups.items() if by_method]


def _subset(row: dict) -> str:
    """How a row's RANSAC used its matches, when not plainly all of them (``PnpConfig``)."""
    text = f" on {row['ransac_points']} matches, then poselib on all" if row.get("ransac_points") else ""
    if row.get("refine_px"):
        text += f", final refinement at {row['refine_px']:g} px"
    return text
