"""``slocal map``: a video or a folder of photos -> a COLMAP scene under the data root (pycolmap SfM)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slocal.capture.config import MapConfig, ScaleRequest
from slocal.capture.mapper import map_scene
from slocal.capture.pairs import STRATEGIES
from slocal.capture.sfm import MAPPERS
from slocal_cli.common import (
    DEFAULT_DATA,
    DEFAULT_RUNS,
    DataRoot,
    JsonOut,
    RunsRoot,
    Verbose,
    handle_errors,
    print_json,
)

_D = MapConfig()


def _summary_lines(s: dict) -> list[str]:
    reg, img, model = s["registered"], s["images"], s["model"]
    scale = s["scale"]
    scale_text = (
        f"{scale['metres_per_unit']:.6g} m per unit ({scale['source']}"
        + (f": {scale['detail']}" if scale.get("detail") else "")
        + ")"
        if scale["metres_per_unit"] is not None
        else "unknown: errors in model units (give --metres-per-unit or --distance A B METRES)"
    )
    lines = [
        f"scene={s['scene']} path={s['path']}",
        f"registered {reg['mapping']}/{img['mapping']} mapping and {reg['query']}/{img['query']} query images; "
        f"{model['points3D']} points, mean track length {model['mean_track_length']:.2f}, "
        f"mean reprojection error {model['mean_reprojection_error_px']:.2f} px",
        f"pairs: {s['pairs']['strategy']}, {s['pairs']['matched']} matched, {s['pairs']['verified']} verified; "
        f"mapper: {s['mapper']}",
        f"scale: {scale_text}",
        "seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in s["seconds"].items()),
    ]
    for video in s["videos"].values():
        lines.append(
            f"video {Path(video['video']).name}: {video['kept_frames']} frames kept of {video['decoded_frames']} "
            f"decoded ({video['duration_s']:.1f} s), {video['blurred_slots_skipped']} blurred time slots skipped"
        )
    for camera in s["cameras"]:
        source = camera["focal_source"] + (f", {camera['focal_pairs']} pairs" if "focal_pairs" in camera else "")
        lines.append(
            f"camera ({camera['label']}): {camera['images']} images, starting focal length "
            f"{camera['start_focal_px']:.1f} px ({source})"
        )
    if s["unregistered"]:
        shown = ", ".join(s["unregistered"][:20]) + (" ..." if len(s["unregistered"]) > 20 else "")
        lines.append(f"not registered ({len(s['unregistered'])}): {shown}")
    return lines


@handle_errors
def map_command(
    source: Annotated[
        Path,
        typer.Argument(
            help="A video file, a folder of photos, or a 7-Scenes/12Scenes folder (its colour images).",
            show_default=False,
        ),
    ],
    scene: Annotated[str, typer.Option("--scene", "-s", help="Scene id to create under the data root.")],
    queries: Annotated[
        str | None,
        typer.Option(
            "--queries",
            "-q",
            help="Held-out images, registered into the same model and listed in queries.txt: a second video, "
            "a folder of photos, a text file of image names, or a glob over the source's names ('seq-02/*').",
        ),
    ] = None,
    fps: Annotated[float, typer.Option("--fps", help="Video: frames kept per second (the sharpest of each slot).")] = (
        _D.fps
    ),
    max_side: Annotated[int, typer.Option("--max-side", help="Video: longer side of the kept frames.")] = _D.max_side,
    blur_ratio: Annotated[
        float,
        typer.Option(
            "--blur-ratio",
            help="Video: skip a time slot whose sharpest frame scores below this fraction of its neighbours' median "
            "sharpness, as blurred (0: keep all).",
        ),
    ] = _D.blur_ratio,
    pairs: Annotated[str, typer.Option("--pairs", help=f"Pairs to match: {', '.join(STRATEGIES)}.")] = _D.pairs,
    mapper: Annotated[str, typer.Option("--mapper", help=f"COLMAP mapper: {', '.join(MAPPERS)}.")] = _D.mapper,
    camera_model: Annotated[str, typer.Option("--camera-model", help="COLMAP camera model.")] = _D.camera_model,
    self_calibration: Annotated[
        bool,
        typer.Option(
            "--self-calibration/--no-self-calibration",
            help="Start a camera without a focal length (video, photos without EXIF) at the one its own image pairs "
            "give, rather than COLMAP's default.",
        ),
    ] = _D.self_calibration,
    metres_per_unit: Annotated[
        float | None, typer.Option("--metres-per-unit", help="The scale, if you know it.", min=1e-12)
    ] = None,
    distance: Annotated[
        tuple[str, str, float] | None,
        typer.Option(
            "--distance",
            help="IMG_A IMG_B METRES: measured distance between two images' camera centres (names as in images/; "
            "a video's frame by time as STEM@SECONDS, e.g. walk@3.5 walk@12 2.4).",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seeds COLMAP's RANSAC, mapper and the retrieval.")] = _D.seed,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing scene folder.")] = False,
    json_out: JsonOut = False,
    data_root: DataRoot = DEFAULT_DATA,
    runs: RunsRoot = DEFAULT_RUNS,
    verbose: Verbose = False,
) -> None:
    """Reconstruct a video or photos with pycolmap (SIFT, matching, mapping) into DATA_ROOT/SCENE (COLMAP layout)."""
    config = MapConfig(
        fps=fps,
        max_side=max_side,
        blur_ratio=blur_ratio,
        pairs=pairs,
        mapper=mapper,
        camera_model=camera_model,
        self_calibration=self_calibration,
        seed=seed,
    )
    summary = map_scene(
        source,
        data_root,
        scene,
        config,
        queries=queries,
        scale=ScaleRequest(metres_per_unit, distance),
        runs_root=runs,
        overwrite=overwrite,
    )
    if json_out:
        print_json(summary)
    else:
        typer.echo("\n".join(_summary_lines(summary)))
