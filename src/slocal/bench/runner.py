"""Run the benchmark: every method on every scene's queries, compared with ground truth.

Methods are students (``cnn``, ``vit`` or any other student name, distilled on
demand when ``<runs>/<scene>/students/<name>/model.pt`` is missing) and the
baselines ``sift`` (``slocal.bench.sift``: SIFT + SfM map) and ``dust3r``
(``slocal.bench.dust3r_baseline``: DUSt3R on the query and a retrieved
mapping image). A student's name followed by ``+flow`` (``ace+flow``) is that
student with its poses finished by flow to the nearest mapping images
(``slocal.localize.refine``). A scene or method that fails with a
``SlocalError`` (bad input, missing model, ...) is reported in its row
(``failed``: why) while the others still run; any other exception is a bug and
propagates.

A scene id naming a folder of scenes (a home of rooms, ``slocal.data.find_rooms``) is
benched as one: each student localizes every room's queries among all the rooms
(``slocal.bench.rooms``), and the row adds room recognition to the pose accuracy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slocal.bench.dust3r_baseline import Dust3rBaseline, Dust3rBaselineConfig
from slocal.bench.machine import machine_info
from slocal.bench.metrics import QueryResult, query_result, summarize
from slocal.bench.report import average_rows, finalize_rows, is_student, markdown_table, scene_slug, write_report
from slocal.bench.rooms import home_student_row
from slocal.bench.sift import SiftConfig, SiftLocalizer
from slocal.bench.view import view_scene
from slocal.data import find_rooms, find_scenes, load_scene
from slocal.data.scene import Frame, Scene
from slocal.distill.config import DEFAULT_STUDENT
from slocal.distill.config_files import default_model_path
from slocal.distill.rig_source import resolve_depth_registration
from slocal.distill.trainer import distill_student
from slocal.errors import SlocalError
from slocal.geometry.pnp import PnpConfig
from slocal.io import read_image
from slocal.localize.localizer import Localizer, load_model, student_pnp
from slocal.localize.refine import student_refiner
from slocal.progress import progress_bar
from slocal.teach import (
    default_teacher,
    differing_settings,
    make_teacher,
    non_default_settings,
    parse_settings,
    teacher_options,
)
from slocal.teach.rig import registered_scene
from slocal.teach.targets import cached_stats

log = logging.getLogger(__name__)

# What a user wants to compare: the default student and the SIFT baseline. ``dust3r`` is asked for by
# name (without a checkpoint it runs random weights and reports timing only, ~13 s a query on a CPU).
DEFAULT_METHODS = (DEFAULT_STUDENT, "sift")
# A student's method name with this suffix: its poses finished by ``FlowRefiner``.
REFINE_SUFFIX = "+flow"


@dataclass(frozen=True)
class BenchConfig:
    """Benchmark settings.

    Attributes:
        methods: students by name and/or ``sift``, ``dust3r``.
        teacher: teacher for students distilled here (None: the scene's default).
        teacher_settings: ``KEY=VALUE`` fields of that teacher's config (``--teacher-option``); an
            existing student taught with other settings is refused.
        distill_minutes: training budget of students distilled here (None: the trainer's default).
        distill_missing: distill a student that is missing; otherwise report the row as failed.
        checkpoint: DUSt3R checkpoint for the ``dust3r`` baseline (None: random weights, timing only).
        device: torch device for students and DUSt3R.
        pnp: RANSAC settings of the feature-matching baselines (SIFT, DUSt3R).
        ransac_points: the students' RANSAC on this many of their matches (0: all; None: ``DENSE_PNP``'s).
        ransac_threshold_px: the students' inlier threshold (pixels at 640 px width; None: each
            student's own, ``slocal.localize.localizer.student_pnp``).
        max_queries: use at most this many queries per scene, evenly spaced (None: all).
        timing_queries: queries a timing-only baseline is timed on.
        metres_per_unit: scale of every scene's units (None: what each scene says).
        pose_files: pseudo ground truth replacing the poses (one scene only).
        depth_registration: the colour-depth rig (``slocal.teach.rig.registered_scene``): ``auto``
            estimates it where the loader says depth is not registered (7-Scenes), ``off`` keeps
            the scene as loaded, ``estimate`` does so for any RGB-D scene; a rig or model file's path
            applies the rig it holds (``slocal.distill.rig_source``).
    """

    methods: tuple[str, ...] = DEFAULT_METHODS
    teacher: str | None = None
    teacher_settings: tuple[str, ...] = ()
    distill_minutes: float | None = None
    distill_missing: bool = True
    checkpoint: Path | None = None
    device: str = "cpu"
    pnp: PnpConfig = PnpConfig()
    ransac_points: int | None = None
    ransac_threshold_px: float | None = None
    max_queries: int | None = None
    timing_queries: int = 3
    metres_per_unit: float | None = None
    pose_files: tuple[Path, ...] = ()
    depth_registration: str = "auto"


def reference_poses(scene: Scene) -> str:
    """What the query poses are, as the report states it (pose files, a rig conversion)."""
    if "pose_files" in scene.extra:
        text = "pose files " + ", ".join(Path(p).name for p in scene.extra["pose_files"])
    else:
        text = f"{scene.format} poses"
    reg = scene.extra.get("depth_registration")
    if reg:
        t = ", ".join(f"{v:+.1f}" for v in reg["depth_from_colour_translation_cm"])
        source = "estimated on the mapping frames" if reg["source"] == "estimated" else f"given ({reg['source']})"
        rig = (
            f"the colour-depth rig {source}: depth camera at ({t}) cm in the colour frame, "
            f"turned {reg['rotation_deg']:.2f}°, depth scale {reg['depth_scale']:.3f}"
        )
        if reg["poses_of"] == "depth":
            text += f" (the depth camera's, moved to the colour camera through {rig})"
        else:
            text += f"; depth rendered into the colour camera through {rig}"
    return text


@dataclass(eq=False)
class BenchResult:
    """What ``run_bench`` produced: the rows, per-query results and the written files."""

    rows: list[dict]
    per_query: dict[tuple[str, str], list[QueryResult]]
    paths: dict
    markdown: str
    failures: list[str] = field(default_factory=list)


def select_queries(frames: Sequence[Frame], max_queries: int | None) -> list[Frame]:
    """All frames, or ``max_queries`` of them evenly spaced (first and last included)."""
    frames = list(frames)
    if max_queries is None or len(frames) <= max_queries:
        return frames
    idx = np.unique(np.linspace(0, len(frames) - 1, max_queries).round().astype(int))
    return [frames[i] for i in idx]


def _timed_read(frame: Frame) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    rgb = read_image(frame.image_path)
    return rgb, (time.perf_counter() - start) * 1e3


def ransac_settings(pnp: PnpConfig) -> dict:
    """The RANSAC settings a row was localized with (threshold in pixels at 640 px width)."""
    return {
        "ransac_threshold_px": pnp.threshold_px,
        "ransac_max_iterations": pnp.max_iterations,
        "ransac_points": pnp.ransac_points,
        "refine_px": pnp.refine_px,
    }


def _baseline_query(localize: Callable, frame: Frame) -> QueryResult:
    """Run a baseline's ``localize(rgb, camera) -> (PnpResult, timings_ms)`` on one query."""
    rgb, load_ms = _timed_read(frame)
    start = time.perf_counter()
    result, timings = localize(rgb, frame.camera)
    total = (time.perf_counter() - start) * 1e3 + load_ms
    # Baselines name their PnP stage differently; "ransac" makes the columns comparable.
    stages = {("ransac" if k == "pnp" else k): float(v) for k, v in timings.items() if k not in ("load", "total")}
    ms = {"load": load_ms, **stages, "total": total}
    return query_result(
        frame.name, result.cam_from_world if result.success else None, frame.cam_from_world, result.num_inliers, ms
    )


def ensure_student(scene: Scene, name: str, runs_root: Path, config: BenchConfig) -> tuple[Path, dict]:
    """The student file for ``scene``, distilling it first when missing.

    Returns:
        The model path and extra row fields (``distill_minutes``, training time, when trained here).
    """
    path = default_model_path(runs_root, scene.id, name)
    if path.is_file():
        return path, {}
    if not config.distill_missing:
        raise SlocalError(
            f"no {name} student for scene {scene.id} (run `slocal distill --scene {scene.id} --student {name}`)", path
        )
    log.info("%s: distilling the missing %s student", scene.id, name)
    teacher, options = requested_teacher(scene, config)
    result = distill_student(
        scene,
        runs_root,
        name,
        teacher=teacher,
        minutes=config.distill_minutes,
        device=config.device,
        teacher_options=options,
    )
    if not path.is_file():
        raise SlocalError(f"distillation finished but wrote no model at {path}", path)
    return path, {"distill_minutes": result.train_seconds / 60.0}


def requested_teacher(scene: Scene, config: BenchConfig, name: str | None = None) -> tuple[str, dict]:
    """A teacher's name and ``make_teacher`` options as this bench asks for them.

    Args:
        name: the teacher (e.g. the one a model file names); None: the one students of ``scene`` are
            distilled from here (``config.teacher``, else the scene's default).
    """
    name = name or config.teacher or default_teacher(scene)
    return name, teacher_options(name, config.checkpoint, config.device, config.teacher_settings)


def run_student(
    scene: Scene, name: str, queries: Sequence[Frame], runs_root: Path, config: BenchConfig, refine: bool = False
) -> tuple[dict, list[QueryResult]]:
    """Localize ``queries`` with the scene's ``name`` student.

    Args:
        refine: finish every pose by flow to the nearest mapping images (``FlowRefiner`` on the
            targets of the teacher the student learned from).
    """
    path, extra = ensure_student(scene, name, runs_root, config)
    model = load_model(path, device=config.device, expect_scene=scene.id, expect_fingerprint=scene.fingerprint)
    teacher = getattr(model, "teacher", None) or None
    if config.teacher is not None and teacher is not None and teacher != config.teacher:
        raise SlocalError(
            f"the existing {name} student was distilled from the {teacher} teacher, not {config.teacher}; "
            "remove it or use another --runs folder",
            path,
        )
    if "distill_minutes" not in extra:
        minutes = (getattr(model, "train_info", None) or {}).get("minutes")
        if minutes is not None:
            extra["distill_minutes"] = float(minutes)
    pnp = student_pnp(model, config.ransac_points, config.ransac_threshold_px)
    teacher_name, options = requested_teacher(scene, config, teacher)
    settings = getattr(model, "teacher_settings", None) or {}
    refiner = student_refiner(scene, model, runs_root, options=options) if refine else None
    localizer = Localizer(model, pnp, refiner=refiner)
    results, refined = [], 0
    label = name + (REFINE_SUFFIX if refine else "")
    for frame in progress_bar(queries, f"{scene.id} {label}"):
        loc = localizer.localize_image(frame.image_path, frame.camera)
        refined += loc.refined
        results.append(query_result(frame.name, loc.cam_from_world, frame.cam_from_world, loc.num_inliers, loc.ms))
    if config.teacher_settings and settings:
        wanted = make_teacher(teacher_name, **options).settings()
        if wanted != settings:
            differ = differing_settings(wanted, settings)
            raise SlocalError(
                f"the existing {name} student's {teacher_name} teacher had other settings "
                f"({', '.join(f'{k}={settings.get(k)}' for k in differ)}) than --teacher-option asks for; "
                "remove it or use another --runs folder",
                path,
            )
    consistency = getattr(model, "teacher_consistency", None)
    if consistency is None and not settings:
        # A model file from before the teacher's settings were recorded: the cached targets of the
        # settings asked for here are the best guess of what it learned from.
        consistency = (cached_stats(scene, make_teacher(teacher_name, **options), runs_root) or {}).get("consistency")
    row = {
        "teacher": teacher_name,
        "teacher_options": non_default_settings(teacher_name, settings),
        "teacher_consistency": consistency,
        "map_mb": getattr(model, "file_mb", path.stat().st_size / 2**20),
        "num_params": getattr(model, "num_params", None),
        "student": getattr(model, "name", None),
        "model": str(path),
        **ransac_settings(pnp),
        **extra,
    }
    if refiner is not None:
        row.update(refine="flow", n_refined=refined, refine_keyframes=len(refiner.keyframes))
    return row, results


def run_sift(
    scene: Scene, queries: Sequence[Frame], runs_root: Path, config: BenchConfig
) -> tuple[dict, list[QueryResult]]:
    """Localize ``queries`` with the SIFT + SfM-map baseline."""
    sift = SiftLocalizer.build(scene, runs_root, SiftConfig(pnp=config.pnp))
    results = [_baseline_query(sift.localize, f) for f in progress_bar(queries, f"{scene.id} sift")]
    return {"teacher": None, "map_mb": sift.map_mb, **ransac_settings(config.pnp)}, results


def run_dust3r(
    scene: Scene, queries: Sequence[Frame], runs_root: Path, config: BenchConfig
) -> tuple[dict, list[QueryResult]]:
    """Localize ``queries`` with the DUSt3R baseline.

    Without a checkpoint the network has random weights (``timing_only``): only
    ``config.timing_queries`` queries are run and only their timings are reported.
    """
    baseline = Dust3rBaseline.build(scene, config.checkpoint, config.device, Dust3rBaselineConfig(pnp=config.pnp))
    row: dict = {
        "teacher": None,
        "map_mb": baseline.map_mb,
        "timing_only": bool(baseline.timing_only),
        **ransac_settings(config.pnp),
    }
    if baseline.timing_only:
        queries = select_queries(queries, config.timing_queries)
        row.update(n_timed=len(queries), timing_note=baseline.timing_note)
    results = [_baseline_query(baseline.localize, f) for f in progress_bar(queries, f"{scene.id} dust3r")]
    return row, results


def run_home(
    home: str, scenes: Sequence[Scene], method: str, runs_root: Path, config: BenchConfig
) -> tuple[dict, list[QueryResult]]:
    """One (home, student) row: room recognition and the accuracy of the queries placed in the right room."""
    if not is_student(method):
        raise SlocalError(
            f"{home} is a folder of rooms: room recognition is measured for students; "
            f"bench {method} on the rooms themselves (--scenes {','.join(s.id for s in scenes)})"
        )
    models, minutes = {}, []
    for scene in scenes:
        models[scene.id], extra = ensure_student(scene, method, runs_root, config)
        if "distill_minutes" in extra:
            minutes.append(extra["distill_minutes"])
    queries = {scene.id: select_queries(scene.query, config.max_queries) for scene in scenes}
    row, results, pnp = home_student_row(
        home,
        {s.id: s for s in scenes},
        models,
        queries,
        config.device,
        config.ransac_points,
        config.ransac_threshold_px,
    )
    teachers = {default_teacher(s) for s in scenes} if config.teacher is None else {config.teacher}
    row = {
        "scene": home,
        "method": method,
        "teacher": teachers.pop() if len(teachers) == 1 else "mixed",
        **row,
        **ransac_settings(pnp),
    }
    if minutes:
        row["distill_minutes"] = sum(minutes) / len(minutes)
    return row, results


def _load_home(data_root: Path, home: str, rooms: Sequence[str], runs_root: Path, config: BenchConfig) -> list[Scene]:
    scenes = [
        load_scene(data_root, room, runs_root=runs_root, metres_per_unit=config.metres_per_unit) for room in rooms
    ]
    empty = [s.id for s in scenes if not s.query]
    if empty:
        raise SlocalError(f"rooms of {home} without query frames: {', '.join(empty)}", data_root / home)
    if config.pose_files:
        raise SlocalError(f"--poses replaces one scene's poses, not those of the rooms of {home}")
    return scenes


def run_method(
    scene: Scene, method: str, queries: Sequence[Frame], runs_root: Path, config: BenchConfig
) -> tuple[dict, list[QueryResult]]:
    """One (scene, method) row and its per-query results."""
    if method == "sift":
        row, results = run_sift(scene, queries, runs_root, config)
    elif method == "dust3r":
        row, results = run_dust3r(scene, queries, runs_root, config)
    elif method.endswith(REFINE_SUFFIX):
        row, results = run_student(scene, method.removesuffix(REFINE_SUFFIX), queries, runs_root, config, refine=True)
    else:
        row, results = run_student(scene, method, queries, runs_root, config)
    stats = summarize(results, scene.metres_per_unit)
    if row.get("timing_only"):
        # A few timed queries say nothing about accuracy: report timings only.
        stats = {k: (None if k.startswith(("median_", "acc_")) or k == "n_failed" else v) for k, v in stats.items()}
        stats["n_queries"] = len(queries)
    return {"scene": scene.id, "method": method, **stats, **row}, results


def resolve_scenes(data_root: Path, scenes: Sequence[str] | None) -> list[str]:
    """The requested scenes, or every scene under the data root (12Scenes protocol)."""
    if scenes:
        return list(scenes)
    found = [scene_id for scene_id, _ in find_scenes(data_root)]
    if not found:
        raise SlocalError("no scenes found under the data root", data_root)
    return found


def run_bench(
    data_root: str | Path,
    runs_root: str | Path,
    scenes: Sequence[str] | None,
    methods: Sequence[str],
    teacher: str | None,
    out_dir: str | Path,
    config: BenchConfig = BenchConfig(),
    command: str = "",
) -> BenchResult:
    """Benchmark ``methods`` on ``scenes`` and write the report into ``out_dir``.

    Args:
        data_root: folder holding the scenes.
        runs_root: folder with (or for) students and caches.
        scenes: scene ids; None or empty: every scene under ``data_root``, plus an
            ``average`` row per method as in the published 12Scenes tables.
        methods: e.g. ``("cnn", "vit", "sift", "dust3r")``; overrides ``config.methods``.
        teacher: teacher for students distilled here; overrides ``config.teacher``.
        out_dir: report folder (results.json/.csv/.md, per_query.json, plots/).
        config: other settings.
        command: the command line, recorded in results.json.
    """
    data_root, runs_root = Path(data_root), Path(runs_root)
    config = BenchConfig(**{**config.__dict__, "methods": tuple(methods), "teacher": teacher})
    unknown = [m for m in config.methods if not m or "/" in m]
    if unknown or not config.methods:
        raise SlocalError(f"invalid method list {list(methods)!r}")
    parse_settings(config.teacher_settings)  # a malformed one stops the run before any scene
    rig = resolve_depth_registration(config.depth_registration)  # so does a missing rig file
    scene_ids = resolve_scenes(data_root, scenes)
    if config.pose_files and len(scene_ids) != 1:
        raise SlocalError(f"--poses replaces one scene's poses; give exactly one scene, not {len(scene_ids)}")
    rows: list[dict] = []
    per_query: dict[tuple[str, str], list[QueryResult]] = {}
    failures: list[str] = []
    scales: dict[str, float | None] = {}
    viewed: list[Scene] = []
    for scene_id in scene_ids:
        rooms = find_rooms(data_root, scene_id) if (data_root / scene_id).is_dir() else []
        if rooms:
            try:
                home_scenes = _load_home(data_root, scene_id, rooms, runs_root, config)
            except SlocalError as exc:
                log.error("home %s failed: %s", scene_id, exc)
                failures.append(f"{scene_id}: {exc}")
                rows += [{"scene": scene_id, "method": m, "failed": str(exc)} for m in config.methods]
                continue
            # The home's rows and each room's plots (rooms share their units: ``home_scale``).
            scales[scene_id] = home_scenes[0].metres_per_unit
            scales.update({s.id: s.metres_per_unit for s in home_scenes})
            for method in config.methods:
                try:
                    row, results = run_home(scene_id, home_scenes, method, runs_root, config)
                except SlocalError as exc:
                    log.error("%s / %s failed: %s", scene_id, method, exc)
                    failures.append(f"{scene_id} / {method}: {exc}")
                    rows.append({"scene": scene_id, "method": method, "failed": str(exc)})
                    continue
                rows.append(row)
                per_query[(scene_id, method)] = results
            continue
        try:
            scene = load_scene(
                data_root,
                scene_id,
                runs_root=runs_root,
                metres_per_unit=config.metres_per_unit,
                pose_files=config.pose_files,
            )
            if not scene.query:
                raise SlocalError(f"scene {scene_id} has no query frames", scene.root)
            scene = registered_scene(scene, runs_root, rig)
        except SlocalError as exc:
            log.error("scene %s failed: %s", scene_id, exc)
            failures.append(f"{scene_id}: {exc}")
            rows += [{"scene": scene_id, "method": m, "failed": str(exc)} for m in config.methods]
            continue
        scales[scene_id] = scene.metres_per_unit
        viewed.append(scene)
        queries = select_queries(scene.query, config.max_queries)
        for method in config.methods:
            try:
                row, results = run_method(scene, method, queries, runs_root, config)
            except SlocalError as exc:
                # Only slocal's own errors (bad input, missing model, ...) make a failed row; anything
                # else is a bug and stops the bench with its traceback rather than hiding in a row.
                reason = str(exc)
                log.error("%s / %s failed: %s", scene_id, method, reason)
                log.debug("traceback", exc_info=True)
                failures.append(f"{scene_id} / {method}: {reason}")
                rows.append({"scene": scene_id, "method": method, "failed": reason})
                continue
            rows.append({**row, "reference": reference_poses(scene)})
            if not row.get("timing_only"):
                per_query[(scene_id, method)] = results
    if not scenes:
        rows += average_rows(rows)
    full = finalize_rows(rows)
    paths = write_report(out_dir, full, machine_info(), command, per_query, scales)
    paths["views"] = [
        view_scene(
            scene,
            Path(out_dir) / f"view_{scene_slug(scene.id)}.html",
            runs_root,
            bench_dir=out_dir if "per_query" in paths else None,
        )
        for scene in viewed
    ]
    return BenchResult(full, per_query, paths, markdown_table(full), failures)


__all__ = ["BenchConfig", "BenchResult", "DEFAULT_METHODS", "run_bench", "select_queries"]
