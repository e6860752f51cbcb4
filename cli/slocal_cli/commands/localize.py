"""``slocal localize``: the pose of query images (any photos, no scene needed) from a distilled student."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slocal.data import load_scene
from slocal.distill.config import DEFAULT_STUDENT
from slocal.distill.config_files import default_model_path
from slocal.distill.rig_source import model_depth_registration
from slocal.errors import SlocalError
from slocal.localize.localizer import Localizer, load_model, student_pnp, trained_students
from slocal.localize.queries import Query, QueryPose, localize_queries, read_intrinsics_list, write_hloc_poses
from slocal.localize.refine import FlowRefiner, student_refiner
from slocal.localize.rooms import CANDIDATES, home_rooms, load_rooms
from slocal.teach.rig import registered_scene
from slocal_cli.common import (
    DEFAULT_DATA,
    DEFAULT_RUNS,
    DataRoot,
    JsonOut,
    RansacPoints,
    RansacThreshold,
    RunsRoot,
    Verbose,
    handle_errors,
    print_json,
)
from slocal_cli.options import StudentName

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def expand_images(paths: list[Path]) -> list[tuple[str, Path]]:
    """(name, file) pairs: files as given (name = the path as typed); folders replaced by the
    .jpg/.jpeg/.png files under them, sorted, named relative to the folder (hloc's convention)."""
    out: list[tuple[str, Path]] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise SlocalError(f"folder contains no {'/'.join(IMAGE_SUFFIXES)} images", p)
            out.extend((f.relative_to(p).as_posix(), f) for f in found)
        elif not p.is_file():
            raise SlocalError("image not found", p)
        else:
            out.append((str(p), p))
    return out


def parse_intrinsics(text: str) -> tuple[float, float, float, float]:
    """``fx,fy,cx,cy`` -> four floats."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise SlocalError(f"--intrinsics must be four numbers fx,fy,cx,cy, got {text!r}")
    return values  # type: ignore[return-value]


def refiner_for(predictor, model: Path, data_root: Path, runs: Path) -> FlowRefiner:
    """The flow refiner of a student on its scene as it was trained (its colour-depth rig applied)."""
    scene = load_scene(data_root, predictor.scene_id, runs_root=runs)
    if getattr(predictor, "depth_registration", None):
        # Read through the model file, so a malformed record is an error naming it.
        scene = registered_scene(scene, runs, model_depth_registration(model))
    trained_on = getattr(predictor, "scene_fingerprint", None)
    if trained_on is not None and scene.fingerprint != trained_on:
        raise SlocalError(
            f"the student was trained on another version of {scene.id} than the one under {data_root}; "
            "--refine needs its mapping images",
            model,
        )
    return student_refiner(scene, predictor, runs)


def _listed_camera(cameras: dict, name: str, path: Path, list_file: Path):
    if name in cameras:
        return cameras[name]
    # hloc lists name images relative to an image root, which may lie above the folder given here.
    full = path.resolve().as_posix()
    matches = [key for key in cameras if full.endswith("/" + key)]
    if len(matches) == 1:
        return cameras[matches[0]]
    raise SlocalError(f"no line for image {name!r} (a list name must equal it or end its path)", list_file)


@handle_errors
def localize(
    images: Annotated[
        list[Path],
        typer.Argument(
            help="Query images, or folders of .jpg/.jpeg/.png images (searched recursively).", show_default=False
        ),
    ],
    scene: Annotated[
        str | None,
        typer.Option(
            "--scene",
            "-s",
            help="Scene id: finds the default student under --runs, and refuses a --model of another scene "
            "(default: the model's own scene). A folder of scenes (a home: apt1 holding apt1/kitchen, "
            "apt1/living, ...) tries every room's student and prints the room beside the pose.",
        ),
    ] = None,
    student: StudentName = DEFAULT_STUDENT,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model", "-m", help="Student file (.pt or .onnx) (default: RUNS/SCENE/students/STUDENT/model.pt)."
        ),
    ] = None,
    intrinsics: Annotated[
        str | None,
        typer.Option(
            "--intrinsics",
            help="fx,fy,cx,cy in pixels, the same for every image (default: the student's training camera, rescaled "
            "to each image).",
        ),
    ] = None,
    intrinsics_list: Annotated[
        Path | None,
        typer.Option(
            "--intrinsics-list",
            help="hloc-style list, one line per image: 'name MODEL W H params...' (any COLMAP model; distortion is "
            "removed on the fly).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Write the poses in hloc's format ('name qw qx qy qz tx ty tz', cam_from_world) plus "
            "OUT_STEM.json with inliers, timings and failures (and, in a home, OUT_STEM_rooms.txt: each image's room).",
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="torch device for .pt students (cpu, cuda).")] = "cpu",
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads", help="CPU threads for the network (torch and onnxruntime) (default: their choice).", min=1
        ),
    ] = None,
    ransac_points: RansacPoints = None,
    ransac_threshold: RansacThreshold = None,
    refine: Annotated[
        bool,
        typer.Option(
            "--refine",
            help="Finish each pose by optical flow to the nearest mapping images and their teacher targets "
            "(needs the scene under --data-root and a .pt student; targets cached under --runs).",
        ),
    ] = False,
    json_out: JsonOut = False,
    data_root: DataRoot = DEFAULT_DATA,  # the rooms of a home, the mapping images of --refine
    runs: RunsRoot = DEFAULT_RUNS,
    verbose: Verbose = False,
) -> None:
    """Estimate cam_from_world for each image; prints `name qw qx qy qz tx ty tz inliers` per image.

    With --scene naming a home (a folder of rooms, each with its student), each line is
    `name room qw qx qy qz tx ty tz inliers room_ratio`: the room the image was placed in, its pose in
    that room's frame, and how sure the room is (the chosen room's check inliers over the runner-up's:
    1 is a tie, 10 a clear choice). --out then also writes OUT_STEM_rooms.txt (`name room room_ratio`).

    An image that cannot be read is reported on stderr (one line naming it); one that RANSAC cannot
    localize prints `name FAILED inliers` (`name room FAILED inliers` in a home); the others go on,
    and the exit code is 1 when any image has no pose.
    """
    if intrinsics and intrinsics_list:
        raise SlocalError("give --intrinsics or --intrinsics-list, not both")
    named = expand_images(images)
    fixed = parse_intrinsics(intrinsics) if intrinsics else None
    cameras = read_intrinsics_list(intrinsics_list) if intrinsics_list else None
    rooms = []
    if model is None:
        if scene is None:
            raise SlocalError("give --model, or --scene to use the scene's default student under --runs")
        model = default_model_path(runs, scene, student)
        if not model.is_file():
            rooms = home_rooms(data_root, runs, scene, student)
            if not rooms:
                trained = trained_students(runs, scene)
                hint = (
                    f"trained for it: {', '.join(trained)} (pass --student {trained[0]})"
                    if trained
                    else f"run `slocal distill --scene {scene} --student {student}` first or pass --model"
                )
                raise SlocalError(f"no {student} student for scene {scene}; {hint}", model)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if refine and rooms:
        raise SlocalError(f"--refine localizes in one scene, and {scene} is a home of rooms")
    if rooms:
        localizer = load_rooms(
            rooms, device=device, threads=threads, ransac_points=ransac_points, ransac_threshold_px=ransac_threshold
        )
        if len(rooms) > CANDIDATES and (data_root / scene).is_dir():
            # Rank the rooms by their mapping images, so that only the likeliest are checked.
            localizer.describe_from_scenes({r.scene_id: load_scene(data_root, r.scene_id) for r in rooms})
        predictor = localizer  # for its reference_camera: the one all rooms were mapped with
        extra = {"scene": scene, "rooms": {r.scene_id: str(r.model) for r in rooms}}
    else:
        # The model file holds its scene id and training camera: no scene is loaded here.
        predictor = load_model(model, device=device, expect_scene=scene, threads=threads)
        refiner = refiner_for(predictor, model, data_root, runs) if refine else None
        localizer = Localizer(predictor, student_pnp(predictor, ransac_points, ransac_threshold), refiner=refiner)
        extra = {"model": str(model), "scene": predictor.scene_id, "refine": "flow" if refine else None}
    queries = []
    for name, path in named:
        if cameras is not None:
            camera = _listed_camera(cameras, name, path, intrinsics_list)
        else:
            camera = fixed if fixed is not None else predictor.reference_camera
        queries.append(Query(name, path, camera))
    results = localize_queries(localizer, queries)

    if out is not None:
        write_hloc_poses(out, results, extra)
    if json_out:
        print_json([r.to_dict() for r in results])
    for r in results:
        if r.error:
            # An image that could not be used: its one line on stderr, nothing on stdout.
            typer.echo(f"error: {r.error}", err=True)
            continue
        if not json_out:
            typer.echo(result_line(r))
    if not all(r.success for r in results):
        raise typer.Exit(1)


def result_line(r: QueryPose) -> str:
    """``name [room] qw qx qy qz tx ty tz inliers [room_ratio]``, or ``name [room] FAILED inliers``."""
    head = f"{r.path} {r.room}" if r.room is not None else str(r.path)
    if not r.success:
        return f"{head} FAILED {r.num_inliers}"
    q = r.to_dict()
    values = " ".join(f"{v:.6f}" for v in (*q["qvec"], *q["tvec"]))
    if r.room is None:
        return f"{head} {values} {r.num_inliers}"
    ratio = "none" if r.room_ratio is None else f"{r.room_ratio:.2f}"
    return f"{head} {values} {r.num_inliers} {ratio}"
