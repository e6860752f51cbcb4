"""``slocal synth``: render the procedural demo scene into the data root."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Annotated

import typer

from slocal.data.synth import ROOMS, SynthConfig, render_scene
from slocal.data.synth.video import render_video
from slocal.errors import SlocalError
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

_DEFAULTS = SynthConfig()


@handle_errors
def synth(
    name: Annotated[str, typer.Argument(help="Scene id to create under the data root, e.g. demo.", show_default=False)],
    frames: Annotated[int, typer.Option("--frames", help="Number of mapping frames.")] = _DEFAULTS.mapping_frames,
    queries: Annotated[int, typer.Option("--queries", help="Number of query frames.")] = _DEFAULTS.query_frames,
    seed: Annotated[int, typer.Option("--seed", help="Seed of textures, furniture, paths and noise.")] = _DEFAULTS.seed,
    room: Annotated[
        int,
        typer.Option(
            "--room",
            help="Room layout: "
            + "; ".join(f"{k} = {v.name}" for k, v in sorted(ROOMS.items()))
            + ". Two rooms under one folder (home/kitchen, home/living --room 2) make a home to localize in.",
        ),
    ] = _DEFAULTS.room,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the frames of an existing scene.")] = False,
    video: Annotated[
        Path | None,
        typer.Option(
            "--video",
            help="Instead of the scene folder, write a walk-through video of the same room (e.g. room.mp4, H.264) "
            "with its true camera path beside it (room.poses.txt): input for `slocal map`.",
        ),
    ] = None,
    query_video: Annotated[
        Path | None,
        typer.Option("--query-video", help="With --video: also a second walk on another path, for `map --queries`."),
    ] = None,
    video_seconds: Annotated[float, typer.Option("--video-seconds", help="Length of the walk-through video.")] = 40.0,
    video_fps: Annotated[float, typer.Option("--video-fps", help="Frame rate of the videos.")] = 10.0,
    json_out: JsonOut = False,
    data_root: DataRoot = DEFAULT_DATA,
    runs: RunsRoot = DEFAULT_RUNS,
    verbose: Verbose = False,
) -> None:
    """Render a textured synthetic room (RGB-D, 12Scenes layout) to DATA_ROOT/NAME: a demo needing no download."""
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or any(p in ("..", ".") for p in parts):
        raise SlocalError(f"scene name must be a relative path inside the data root, got {name!r}")
    config = SynthConfig(mapping_frames=frames, query_frames=queries, seed=seed, room=room)
    if video is not None:
        _videos(name, config, video, query_video, video_seconds, video_fps, json_out)
        return
    if query_video is not None:
        raise SlocalError("--query-video needs --video")
    result = render_scene(data_root / name, config, overwrite=overwrite, scene_id=name)
    summary = {
        "scene": name,
        "room": room,
        "path": str(result.path),
        "mapping": result.mapping,
        "query": result.query,
        "seconds": round(result.seconds, 3),
    }
    if json_out:
        print_json(summary)
    else:
        typer.echo(
            f"scene={name} path={result.path} mapping={result.mapping} query={result.query} "
            f"seconds={result.seconds:.1f} ({result.frames_per_second:.1f} frames/s)"
        )


def _videos(
    name: str, config: SynthConfig, video: Path, query_video: Path | None, seconds: float, fps: float, json_out: bool
) -> None:
    """``--video``: the walk-through (and query) videos of the room, not the scene folder."""
    results = [render_video(video, config, seconds, fps, "walk")]
    if query_video is not None:
        results.append(render_video(query_video, config, max(seconds / 4, 2.0), fps, "queries"))
    summary = {
        "room": name,
        "videos": [
            {"path": str(r.path), "poses": str(r.poses_path), "frames": r.frames, "seconds": round(r.seconds, 3)}
            for r in results
        ],
    }
    if json_out:
        print_json(summary)
    else:
        for r in results:
            typer.echo(f"video={r.path} frames={r.frames} poses={r.poses_path} seconds={r.seconds:.1f}")
