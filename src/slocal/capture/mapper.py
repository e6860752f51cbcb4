"""``map_scene``: a video, a photo folder or an RGB-D scene's colour images -> a COLMAP scene slocal reads.

The scene is written under the data root in the layout ``slocal.data.colmap``
loads: ``images/``, ``sparse/0/`` (pycolmap's binary model), ``queries.txt``
(held-out images registered in the same model, so ``bench`` has poses to
compare with), ``scale.txt`` when the scale is known, and ``map.json`` (the
summary). It is built in a hidden folder next to its final place and renamed
when complete (``slocal.io.atomic_dir``), under a lock on the scene that a
second run does not wait for: a killed run leaves only its hidden folder,
which the next run removes, and no reader ever sees half a scene.

Sources: a video file (frames sampled by time and sharpness,
``slocal.capture.video``; one camera), a folder of photos (cameras grouped by
size and EXIF focal length, ``slocal.capture.photos``), or a 7-Scenes /
12Scenes folder (its colour images; its query split becomes the queries and its
depth the scale). Queries (``queries``): a second video, a folder of photos, a
text file of image names, or a glob pattern over the source's image names.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from slocal.capture.config import MIN_IMAGES, MapConfig, ScaleRequest
from slocal.capture.pairs import resolve_strategy, select_pairs
from slocal.capture.photos import DEFAULT_FOCAL_FACTOR, PHOTO_SUFFIXES, Photo, copy_photo, list_photos, read_photo
from slocal.capture.retrieval import bow_index
from slocal.capture.scale import fit_similarity, scale_from_depth, scale_from_distance
from slocal.capture.sfm import (
    CameraGroup,
    extract_features,
    match_pairs,
    model_stats,
    read_descriptors,
    reconstruct,
    self_calibrate,
)
from slocal.capture.video import VIDEO_SUFFIXES, VideoSample, is_video, open_video, sample_video
from slocal.data.colmap import QUERIES_FILE, SCALE_FILE, load_colmap_scene, read_scale
from slocal.data.registry import detect_format, load_scene, undistort_cache_dir
from slocal.data.scene import Frame
from slocal.errors import SlocalError
from slocal.io import atomic_dir, process_lock, write_json, write_text

log = logging.getLogger(__name__)

SUMMARY_FILE = "map.json"
MAP_VERSION = 1
_RGBD_FORMATS = ("7scenes", "12scenes")
# The retrieval vocabulary only ranks images for pair selection: a 50 000-descriptor sample and five
# k-means iterations train it in about a second here (the SIFT baseline's map uses more).
_VOCAB_SAMPLES = 50_000
_VOCAB_ITERATIONS = 5


def check_scene_id(scene_id: str) -> None:
    """A scene id is a relative path inside the data root (``apt1/kitchen``), without ``..``."""
    parts = PurePosixPath(scene_id).parts
    if not parts or scene_id.startswith("/") or any(p in ("..", ".") for p in parts):
        raise SlocalError(f"scene name must be a relative path inside the data root, got {scene_id!r}")


def lock_path(data_root: str | Path, scene_id: str) -> Path:
    """The lock a ``slocal map`` run holds on a scene: ``.<name>.map.lock`` beside the scene folder."""
    target = Path(data_root) / scene_id
    return target.with_name(f".{target.name}.map.lock")


@dataclass
class _Images:
    """What the import step put into ``images/``: names in capture order, their cameras, the sampling."""

    mapping: list[str] = field(default_factory=list)
    query: list[str] = field(default_factory=list)
    groups: list[CameraGroup] = field(default_factory=list)
    videos: dict[str, dict] = field(default_factory=dict)
    rgbd_frames: dict[str, Frame] = field(default_factory=dict)  # image name -> source frame (scene sources)
    frame_times: dict[str, dict[str, float]] = field(default_factory=dict)  # video prefix -> {kept frame: time s}


def _source_kind(source: Path) -> str:
    if not source.exists():
        raise SlocalError("source not found", source)
    if source.is_dir():
        return "scene" if detect_format(source) in _RGBD_FORMATS else "photos"
    if is_video(source):
        return "video"
    raise SlocalError(
        f"not a video ({', '.join(VIDEO_SUFFIXES)}) nor a folder of photos or an RGB-D scene folder", source
    )


def _photo_groups(photos: list[Photo], label: str) -> list[CameraGroup]:
    by_key: dict[str, list[Photo]] = {}
    for p in photos:
        by_key.setdefault(p.camera_key, []).append(p)
    return [
        CameraGroup(tuple(p.name for p in ps), ps[0].width, ps[0].height, ps[0].focal_px, ps[0].focal_source, label)
        for ps in by_key.values()
    ]


def _import_photos(folder: Path, names: list[str], images_dir: Path, prefix: str = "") -> tuple[list[str], list]:
    photos = []
    for name in names:
        photo = read_photo(folder / name, (prefix + name) if prefix else name)
        copy_photo(folder / name, images_dir / photo.name, photo)
        photos.append(photo)
    return [p.name for p in photos], _photo_groups(photos, f"photos in {folder.name}")


def _import_video(video: Path, images_dir: Path, prefix: str, config: MapConfig, out: _Images) -> list[str]:
    sample: VideoSample = sample_video(
        video, images_dir, prefix, config.fps, config.max_side, config.blur_ratio, config.blur_window
    )
    names = [f.name for f in sample.kept]
    if names:
        w, h = sample.size
        # Videos carry no focal length: COLMAP's default prior, refined by the mapper.
        f = DEFAULT_FOCAL_FACTOR * max(w, h)
        out.groups.append(CameraGroup(tuple(names), w, h, f, "default", f"video {video.name}"))
    out.videos[prefix] = sample.summary()
    out.frame_times[prefix] = {f.name: f.time_s for f in sample.kept}
    return names


def _resolve_image(spec: str, images: _Images) -> str:
    """An image named in ``--distance``: its name in ``images/``, or ``<video stem>@<seconds>`` for a
    video's kept frame nearest that time (the user knows when in the video they stood where)."""
    names = images.mapping + images.query
    if spec in names:
        return spec
    prefix, _, when = spec.rpartition("@")
    if prefix in images.frame_times and images.frame_times[prefix]:
        try:
            t = float(when.rstrip("s"))
        except ValueError:
            t = math.nan
        if math.isfinite(t):
            times = images.frame_times[prefix]
            return min(times, key=lambda name: abs(times[name] - t))
    raise SlocalError(
        f"--distance: no image {spec!r} in the scene (images are named like {names[0]!r}"
        + (f"; a video frame by time: {next(iter(images.frame_times))}@12.5" if images.frame_times else "")
        + ")"
    )


def _query_selection(spec: str, names: list[str], source: Path) -> set[str]:
    """Names of the source's images a list file or a glob pattern selects as queries."""
    listing = Path(spec)
    if listing.is_file():
        wanted = [line.strip() for line in listing.read_text().splitlines() if line.strip() and line[0] != "#"]
        missing = sorted(set(wanted) - set(names))
        if missing:
            raise SlocalError(f"{len(missing)} listed image(s) are not in {source}, e.g. {missing[0]!r}", listing)
        return set(wanted)
    chosen = {n for n in names if fnmatch.fnmatch(n, spec)}
    if not chosen:
        raise SlocalError(f"--queries {spec!r} matches no image of the source (names as '{names[0]}')", source)
    return chosen


def _separate_queries(queries: str | None) -> bool:
    """Whether the queries are their own images (a video or a folder) rather than a selection of the source's."""
    return queries is not None and (is_video(Path(queries)) or Path(queries).is_dir())


def _photo_plan(source: Path, queries: str | None) -> tuple[list[str], set[str]]:
    """A photo folder's photos and those the queries select; refuses an empty folder or too few mapping photos."""
    names = list_photos(source)
    if not names:
        raise SlocalError(f"no photos ({', '.join(PHOTO_SUFFIXES)}) in the folder", source)
    picked = _query_selection(queries, names, source) if queries and not _separate_queries(queries) else set()
    if len(names) - len(picked) < MIN_IMAGES:
        raise SlocalError(
            f"found {len(names) - len(picked)} mapping photo(s); a model needs at least {MIN_IMAGES}", source
        )
    return names, picked


def _precheck(source: Path, kind: str, queries: str | None) -> None:
    """The checks that need no writing, before the lock is taken: a bad input then leaves nothing behind."""
    if kind == "video":
        open_video(source)[0].close()
    elif kind == "photos":
        _photo_plan(source, queries)
    if queries is not None and is_video(Path(queries)):
        open_video(Path(queries))[0].close()
    elif queries is not None and Path(queries).is_dir() and not list_photos(Path(queries)):
        raise SlocalError("no photos in the queries folder", Path(queries))
    elif queries is not None and kind == "video" and not _separate_queries(queries):
        raise SlocalError("the queries of a video are a second video or a folder of photos", Path(queries))


def _import(source: Path, kind: str, queries: str | None, images_dir: Path, config: MapConfig) -> _Images:
    """Put the source's images (and the queries) into ``images_dir``; fill names, cameras and sampling."""
    out = _Images()
    query_path = Path(queries) if queries else None
    separate = _separate_queries(queries)
    if kind == "video":
        out.mapping = _import_video(source, images_dir, source.stem, config, out)
    elif kind == "photos":
        names, picked = _photo_plan(source, queries)
        all_names, groups = _import_photos(source, names, images_dir)
        out.groups.extend(groups)
        out.mapping = [n for n in all_names if n not in picked]
        out.query = [n for n in all_names if n in picked]
    else:
        scene = load_scene(source.parent, source.name)
        frames = {f.image_path.relative_to(source).as_posix(): f for f in scene.mapping + scene.query}
        query_names = {f.image_path.relative_to(source).as_posix() for f in scene.query}
        if queries and not separate:
            query_names = _query_selection(queries, sorted(frames), source)
        elif separate:
            query_names = set()
        all_names = sorted(frames)
        for name in all_names:
            copy_photo(source / name, images_dir / name, read_photo(source / name, name))
        # The scene's own colour intrinsics are the starting focal lengths (COLMAP refines them).
        by_camera: dict[tuple, list[str]] = {}
        for name in all_names:
            c = frames[name].camera
            by_camera.setdefault((c.width, c.height, c.fx), []).append(name)
        out.groups.extend(
            CameraGroup(tuple(ns), w, h, f, "scene intrinsics", f"colour camera of {source.name}")
            for (w, h, f), ns in by_camera.items()
        )
        out.mapping = [n for n in all_names if n not in query_names]
        out.query = [n for n in all_names if n in query_names]
        out.rgbd_frames = {n: frames[n] for n in all_names}
    if separate:
        if is_video(query_path):
            prefix = query_path.stem if query_path.stem != source.stem else query_path.stem + "-queries"
            out.query = _import_video(query_path, images_dir, prefix, config, out)
        else:
            names = list_photos(query_path)
            prefix = query_path.name + "/"
            if any(n.startswith(prefix) for n in out.mapping):
                prefix = query_path.name + "-queries/"
            out.query, groups = _import_photos(query_path, names, images_dir, prefix)
            out.groups.extend(groups)
    if len(out.mapping) < MIN_IMAGES:
        raise SlocalError(
            f"found {len(out.mapping)} mapping image(s); a model needs at least {MIN_IMAGES}"
            + (" (record a longer video, or raise --fps)" if kind == "video" else ""),
            source,
        )
    return out


def _scale(rec, request: ScaleRequest, images: _Images) -> dict:
    """The scene's scale and where it came from (``slocal.capture.scale``)."""
    centres = {im.name: np.asarray(im.projection_center()) for im in rec.images.values() if im.has_pose}
    if request.metres_per_unit is not None:
        return {"source": "given", "metres_per_unit": float(request.metres_per_unit)}
    if request.distance is not None:
        a, b, metres = request.distance
        for name in (a, b):
            if name not in centres:
                raise SlocalError(
                    f"--distance: image {name!r} did not register in the model; pick two registered images "
                    f"(map.json lists those that did not)"
                )
        s = scale_from_distance(centres[a], centres[b], metres)
        return {"source": "distance", "metres_per_unit": s, "detail": f"{a} to {b}: {metres:g} m"}
    if images.rgbd_frames:
        names = [n for n in images.rgbd_frames if n in centres]
        frames = [images.rgbd_frames[n] for n in names]
        model_N3 = np.array([centres[n] for n in names])
        metric_N3 = np.array([f.world_from_cam[:3, 3] for f in frames])
        fit = fit_similarity(model_N3, metric_N3)
        residual = np.linalg.norm(fit.apply(model_N3) - metric_N3, axis=1)
        poses = {"metres_per_unit": fit.scale, "median_residual_m": float(np.median(residual)), "images": len(names)}
        if all(f.has_depth for f in frames):
            s, n, spread = scale_from_depth(rec, frames, names)
            return {
                "source": "depth",
                "metres_per_unit": s,
                "detail": f"median of {n} sensor/model depth ratios, relative spread {spread:.3f}",
                "poses_check": poses,
            }
        return {"source": "poses", "metres_per_unit": fit.scale, "detail": "similarity over camera centres", **poses}
    return {"source": "unknown", "metres_per_unit": None}


def _remove_files(images_dir: Path, names: list[str]) -> None:
    for name in names:
        (images_dir / name).unlink(missing_ok=True)
    for folder, subdirs, files in os.walk(images_dir, topdown=False):
        if folder != str(images_dir) and not subdirs and not files:
            os.rmdir(folder)


def map_scene(
    source: str | Path,
    data_root: str | Path,
    scene_id: str,
    config: MapConfig = MapConfig(),
    queries: str | Path | None = None,
    scale: ScaleRequest = ScaleRequest(),
    runs_root: str | Path = "runs",
    overwrite: bool = False,
    on_stage: Callable[[str], None] | None = None,
) -> dict:
    """Reconstruct a scene from a video or photos with pycolmap and write it under the data root.

    Args:
        source: a video file, a folder of photos, or a 7-Scenes / 12Scenes folder.
        data_root: where scenes live; the scene is ``data_root / scene_id``.
        scene_id: its id (a relative path).
        config: sampling, matching and mapping settings.
        queries: held-out images (see the module docstring); None: none (a scene
            source keeps its own query split).
        scale: the scale the user gives; otherwise the source's (depth or poses) or unknown.
        runs_root: runs folder (the loader's cache of undistorted images, filled by the final check).
        overwrite: replace an existing scene folder.
        on_stage: called with each stage's name as it starts (tests use it to interrupt a run).

    Returns:
        The summary, also written as ``map.json`` in the scene folder.

    Raises:
        SlocalError: a bad source (missing, empty, undecodable, too few images), an
            existing scene without ``overwrite``, a scene another run is mapping, or
            a reconstruction that registers too few images.
    """
    check_scene_id(scene_id)
    source = Path(source)
    queries = str(queries) if queries is not None else None  # a path or a glob / list spec: text from here on
    kind = _source_kind(source)
    _precheck(source, kind, queries)
    target = Path(data_root) / scene_id
    seconds: dict[str, float] = {}
    start = time.perf_counter()

    def stage(name: str) -> None:
        seconds[name] = time.perf_counter()
        if on_stage is not None:
            on_stage(name)

    def done(name: str) -> None:
        seconds[name] = round(time.perf_counter() - seconds[name], 3)

    with process_lock(lock_path(data_root, scene_id), f"the scene {scene_id}", timeout_s=0):
        if target.exists() and not overwrite:
            raise SlocalError("scene folder exists; pass --overwrite to replace it", target)
        with atomic_dir(target) as part:
            images_dir, work = part / "images", part / ".work"
            work.mkdir()
            stage("import")
            images = _import(source, kind, queries, images_dir, config)
            done("import")
            names = images.mapping + images.query
            if scale.distance is not None:
                a, b, metres = scale.distance
                scale = ScaleRequest(distance=(_resolve_image(a, images), _resolve_image(b, images), metres))

            stage("features")
            keypoints = extract_features(
                work / "database.db",
                images_dir,
                images.groups,
                config.camera_model,
                config.sift_max_side,
                config.max_features,
            )
            done("features")

            stage("pairs")
            strategy = resolve_strategy(config.pairs, len(names), config.exhaustive_max)
            bow = None
            if "retrieval" in strategy:
                _, _, bow = bow_index(
                    read_descriptors(work / "database.db", names),
                    config.vocab_size,
                    _VOCAB_ITERATIONS,
                    _VOCAB_SAMPLES,
                    config.seed,
                )
            pairs = [
                (names[i], names[j])
                for i, j in select_pairs(len(names), strategy, config.overlap, bow, config.retrieval_k)
            ]
            done("pairs")

            stage("matching")
            verified = match_pairs(work / "database.db", pairs, work, config.seed)
            done("matching")
            if verified == 0:
                raise SlocalError(
                    f"no pair of the {len(names)} images could be matched (too little overlap or texture)", source
                )

            if config.self_calibration:
                stage("self-calibration")
                images.groups = self_calibrate(work / "database.db", images.groups)
                done("self-calibration")

            stage("mapping")
            rec = reconstruct(work / "database.db", images_dir, work / "models", config.mapper, len(names), config.seed)
            done("mapping")
            registered = {im.name for im in rec.images.values() if im.has_pose} if rec is not None else set()
            mapping_ok = [n for n in images.mapping if n in registered]
            if len(mapping_ok) < MIN_IMAGES:
                raise SlocalError(
                    f"only {len(mapping_ok)} of {len(images.mapping)} mapping images registered in one model; "
                    f"a model needs at least {MIN_IMAGES} (too little overlap between the images?)",
                    source,
                )

            stage("write")
            unregistered = [n for n in names if n not in registered]
            _remove_files(images_dir, unregistered)
            (part / "sparse" / "0").mkdir(parents=True)
            rec.write(part / "sparse" / "0")
            query_ok = [n for n in images.query if n in registered]
            if images.query:
                write_text(part / QUERIES_FILE, "".join(f"{n}\n" for n in query_ok))
            scale_info = _scale(rec, scale, images)
            if scale_info["metres_per_unit"] is not None:
                write_text(part / SCALE_FILE, f"{scale_info['metres_per_unit']:.9g}\n")
            done("write")

            stage("check")
            loaded = load_colmap_scene(part, scene_id, undistort_cache_dir(runs_root, scene_id))
            expected_scale = read_scale(part / SCALE_FILE) if (part / SCALE_FILE).is_file() else None
            if (len(loaded.mapping), len(loaded.query)) != (len(mapping_ok), len(query_ok)) or (
                loaded.metres_per_unit != expected_scale
            ):
                raise SlocalError("the written scene does not read back as mapped (a bug: please report it)", part)
            done("check")
            seconds["total"] = round(time.perf_counter() - start, 3)

            summary = {
                "version": MAP_VERSION,
                "scene": scene_id,
                "path": str(target),
                "source": str(source),
                "source_kind": kind,
                "queries_source": queries,
                "images": {"mapping": len(images.mapping), "query": len(images.query)},
                "registered": {"mapping": len(mapping_ok), "query": len(query_ok), "total": len(registered)},
                "unregistered": unregistered,
                "videos": images.videos,
                "cameras": [
                    {
                        "label": g.label,
                        "images": len(g.names),
                        "size": [g.width, g.height],
                        "start_focal_px": round(g.focal_px, 2),
                        "focal_source": g.focal_source,
                        **({"focal_pairs": g.focal_pairs} if g.focal_source == "two-view" else {}),
                    }
                    for g in images.groups
                ],
                "keypoints_mean": round(float(np.mean(list(keypoints.values()))), 1),
                "pairs": {"strategy": strategy, "matched": len(pairs), "verified": verified},
                "mapper": config.mapper,
                "model": model_stats(rec),
                "scale": scale_info,
                "units": "m" if scale_info["metres_per_unit"] is not None else "model units",
                "seconds": seconds,
                "config": asdict(config),
            }
            write_json(part / SUMMARY_FILE, summary)
            shutil.rmtree(work)
    log.info("map: wrote %s (%d of %d images registered)", target, len(registered), len(names))
    return summary
