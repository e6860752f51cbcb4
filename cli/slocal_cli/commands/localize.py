"""``slocal localize``: the pose of query images from a distilled student."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slocal.data import load_scene
from slocal.errors import SlocalError
from slocal.geometry import rotmat_to_qvec
from slocal.localize.localizer import Localizer, default_model_path, load_model
from slocal_cli.common import DEFAULT_DATA, DEFAULT_RUNS, DataRoot, JsonOut, RunsRoot, Verbose, handle_errors, print_json

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def expand_images(paths: list[Path]) -> list[Path]:
    """Files as given; folders replaced by the .jpg/.jpeg/.png files inside them, sorted."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise SlocalError(f"folder contains no {'/'.join(IMAGE_SUFFIXES)} images", p)
            out.extend(found)
        elif not p.is_file():
            raise SlocalError("image not found", p)
        else:
            out.append(p)
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


@handle_errors
def localize(
    images: Annotated[list[Path], typer.Argument(help="Query images, or folders of .jpg/.jpeg/.png images.", show_default=False)],
    scene: Annotated[str, typer.Option("--scene", "-s", help="Scene id relative to the data root, e.g. apt1/kitchen.")],
    model: Annotated[Path | None, typer.Option("--model", "-m", help="Student file (.pt or .onnx) (default: the scene's default student under --runs).")] = None,
    intrinsics: Annotated[str | None, typer.Option("--intrinsics", help="fx,fy,cx,cy of the query images in pixels (default: the scene's camera, rescaled to the image size).")] = None,
    device: Annotated[str, typer.Option("--device", help="torch device for .pt students (cpu, cuda).")] = "cpu",
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads for the network (torch and onnxruntime) (default: their choice).", min=1)] = None,
    json_out: JsonOut = False,
    data_root: DataRoot = DEFAULT_DATA,
    runs: RunsRoot = DEFAULT_RUNS,
    verbose: Verbose = False,
) -> None:
    """Estimate cam_from_world for each image; prints `name qw qx qy qz tx ty tz inliers` per image."""
    paths = expand_images(images)
    fx_fy_cx_cy = parse_intrinsics(intrinsics) if intrinsics else None
    scene_camera = None
    if fx_fy_cx_cy is None:
        sc = load_scene(data_root, scene)
        frames = sc.query or sc.mapping
        if not frames:
            raise SlocalError(f"scene {scene} has no frames to take the camera from; pass --intrinsics", sc.root)
        scene_camera = frames[0].camera
    model_path = model if model is not None else default_model_path(runs, scene)
    if model is None and not model_path.is_file():
        raise SlocalError(f"no student for scene {scene}; run `slocal distill --scene {scene}` first or pass --model", model_path)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    localizer = Localizer(load_model(model_path, device=device, expect_scene=scene, threads=threads))

    records = []
    for path in paths:
        loc = localizer.localize_image(path, camera=scene_camera, intrinsics=fx_fy_cx_cy)
        record: dict = {"image": str(path), "success": loc.success, "inliers": loc.num_inliers, "ms": loc.ms}
        if loc.success:
            T = loc.cam_from_world
            record.update(cam_from_world=T.tolist(), qvec=rotmat_to_qvec(T[:3, :3]).tolist(), tvec=T[:3, 3].tolist())
        else:
            record.update(cam_from_world=None, qvec=None, tvec=None)
        records.append(record)
        if not json_out:
            if loc.success:
                values = " ".join(f"{v:.6f}" for v in (*record["qvec"], *record["tvec"]))
                typer.echo(f"{path} {values} {loc.num_inliers}")
            else:
                typer.echo(f"{path} FAILED {loc.num_inliers}")
    if json_out:
        print_json(records)
