"""The bad-input corpus: broken variants of one good tiny scene, each with the CLI command that reads it.

Every case is a data root of its own (``<corpus>/<case>/``) holding a copy of
the good scene with one thing broken, plus any extra file the command needs
(a broken model, a config). Nothing is committed: the tests build the corpus
in a temporary folder (``tests/cli/test_bad_inputs.py``), and running this file
writes it for inspection::

    cd tests && python -m helpers.bad_corpus [OUT]   # default: tests/data/bad/ (git-ignored)

Each case names the file the one-line error must name and words it must contain.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from slocal.capture.video import write_video

SCENE = "tiny"  # scene id of every case's copy of the good scene (that of the good model)
OTHER = "other"  # a second copy under another id, for "a model of another scene"


@dataclass(frozen=True)
class Good:
    """The good inputs the cases start from."""

    scene: Path  # a 12Scenes folder (written by slocal synth)
    model: Path | None = None  # a student trained on it (model.pt)
    onnx: Path | None = None  # that student exported to ONNX


@dataclass(frozen=True)
class Case:
    """One bad input.

    Attributes:
        name: the case (its folder name).
        build: ``build(case_dir, good) -> (cli args, the file the error must name)``;
            ``{data}`` and ``{runs}`` in the args stand for the case's data root and runs folder.
        words: what the error line must say, lower case.
        needs_model: the case needs ``good.model`` / ``good.onnx``.
    """

    name: str
    build: Callable[[Path, Good], tuple[list[str], Path]]
    words: tuple[str, ...]
    needs_model: bool = False


def _copy_scene(case_dir: Path, good: Good, scene_id: str = SCENE) -> Path:
    dst = case_dir / "data" / scene_id
    shutil.copytree(good.scene, dst)
    return dst


def _frame(scene: Path, kind: str, mapping: bool = True) -> Path:
    """A file of one frame: the first mapping frame (after the query frames of sequence0), or the first query."""
    first_mapping = int(scene.joinpath("split.txt").read_text().split("start=")[2].split()[0])
    return scene / "data" / f"frame-{first_mapping + 1 if mapping else 0:06d}.{kind}"


def _teach(scene_file: Path) -> tuple[list[str], Path]:
    return ["teach", "--scene", SCENE, "--data-root", "{data}", "--runs", "{runs}"], scene_file


def _localize(image: Path, model: Path, scene: str = SCENE, *extra: str) -> tuple[list[str], Path]:
    return ["localize", str(image), "--scene", scene, "--model", str(model), "--data-root", "{data}", *extra], image


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _edit_info(scene: Path, edit: Callable[[list[str]], list[str]]) -> Path:
    info = scene / "info.txt"
    info.write_text("\n".join(edit(info.read_text().splitlines())) + "\n")
    return info


def _set_key(key: str, value: str) -> Callable[[list[str]], list[str]]:
    return lambda rows: [f"{key} = {value}" if r.split("=")[0].strip() == key else r for r in rows]


def _write_pose(path: Path, T: np.ndarray) -> Path:
    path.write_text("\n".join(" ".join(f"{v:.9g}" for v in row) for row in T) + "\n")
    return path


def _pose_with(value: float) -> Callable[[Path, Good], tuple[list[str], Path]]:
    def build(d: Path, good: Good) -> tuple[list[str], Path]:
        pose = _frame(_copy_scene(d, good), "pose.txt")
        T = np.loadtxt(pose)
        T[0, 3] = value
        return _teach(_write_pose(pose, T))

    return build


def _not_rotation(d: Path, good: Good) -> tuple[list[str], Path]:
    pose = _frame(_copy_scene(d, good), "pose.txt")
    T = np.loadtxt(pose)
    T[:3, :3] *= 1.5
    return _teach(_write_pose(pose, T))


def _depth(d: Path, good: Good, image: np.ndarray) -> tuple[list[str], Path]:
    path = _frame(_copy_scene(d, good), "depth.png")
    cv2.imwrite(str(path), image)
    return _teach(path)


def _depth_8bit(d: Path, good: Good) -> tuple[list[str], Path]:
    raw = cv2.imread(str(_frame(good.scene, "depth.png")), cv2.IMREAD_UNCHANGED)
    return _depth(d, good, (raw // 256).astype(np.uint8))


def _depth_wrong_size(d: Path, good: Good) -> tuple[list[str], Path]:
    raw = cv2.imread(str(_frame(good.scene, "depth.png")), cv2.IMREAD_UNCHANGED)
    return _depth(d, good, cv2.resize(raw, (raw.shape[1] // 2, raw.shape[0] // 2), interpolation=cv2.INTER_NEAREST))


def _info(edit: Callable[[list[str]], list[str]]) -> Callable[[Path, Good], tuple[list[str], Path]]:
    return lambda d, good: _teach(_edit_info(_copy_scene(d, good), edit))


def _split_beyond(d: Path, good: Good) -> tuple[list[str], Path]:
    scene = _copy_scene(d, good)
    split = scene / "split.txt"
    last = split.read_text().splitlines()[-1]
    start, end = (int(last.split(k)[1].split()[0].rstrip("]")) for k in ("start=", "end="))
    split.write_text(
        split.read_text().replace(last, f"sequence1 [frames={end - start + 11}]  [start={start} ; end={end + 10}]")
    )
    return _teach(split)


def _colmap_missing_image(d: Path, good: Good) -> tuple[list[str], Path]:
    """A COLMAP text model of two registered images, one of them absent from images/."""
    scene = d / "data" / SCENE
    (scene / "sparse" / "0").mkdir(parents=True)
    (scene / "images").mkdir()
    shutil.copy(_frame(good.scene, "color.jpg"), scene / "images" / "a.jpg")
    img = cv2.imread(str(scene / "images" / "a.jpg"))
    h, w = img.shape[:2]
    sparse = scene / "sparse" / "0"
    (sparse / "cameras.txt").write_text(f"1 PINHOLE {w} {h} {0.8 * w} {0.8 * w} {w / 2} {h / 2}\n")
    (sparse / "images.txt").write_text("1 1 0 0 0 0 0 0 1 a.jpg\n\n2 1 0 0 0 0.1 0 0 1 b.jpg\n\n")
    (sparse / "points3D.txt").write_text("")
    return _teach(scene / "images" / "b.jpg")


def _colour(d: Path, good: Good, broken: Callable[[Path], Path]) -> tuple[list[str], Path]:
    return _teach(broken(_frame(_copy_scene(d, good), "color.jpg")))


def _query_png(d: Path, good: Good, keep: float) -> tuple[list[str], Path]:
    _copy_scene(d, good)
    png = d / "query.png"
    cv2.imwrite(str(png), cv2.imread(str(_frame(good.scene, "color.jpg", mapping=False))))
    return _localize(_truncate(png, keep), good.model)


def _model_truncated(d: Path, good: Good, keep: float = 0.6) -> tuple[list[str], Path]:
    scene = _copy_scene(d, good)
    model = d / "model.pt"
    shutil.copy(good.model, model)
    args, _ = _localize(_frame(scene, "color.jpg", mapping=False), _truncate(model, keep))
    return args, model


def _of_other_scene(which: str) -> Callable[[Path, Good], tuple[list[str], Path]]:
    def build(d: Path, good: Good) -> tuple[list[str], Path]:
        other = _copy_scene(d, good, OTHER)
        model = good.model if which == "pt" else good.onnx
        args, _ = _localize(_frame(other, "color.jpg", mapping=False), model, OTHER)
        return args, model

    return build


def _config(text: str) -> Callable[[Path, Good], tuple[list[str], Path]]:
    def build(d: Path, good: Good) -> tuple[list[str], Path]:
        _copy_scene(d, good)
        cfg = d / "bad.yaml"
        cfg.write_text(text)
        return [
            "distill",
            "--scene",
            SCENE,
            "--config",
            str(cfg),
            "--iterations",
            "1",
            "--device",
            "cpu",
            "--data-root",
            "{data}",
            "--runs",
            "{runs}",
        ], cfg

    return build


def _zero_focal_option(d: Path, good: Good) -> tuple[list[str], Path]:
    scene = _copy_scene(d, good)
    image = _frame(scene, "color.jpg", mapping=False)
    return _localize(image, good.model, SCENE, "--intrinsics", "0,0,32,24")


def _info_line(key: str) -> Callable[[list[str]], list[str]]:
    return lambda rows: [r for r in rows if r.split("=")[0].strip() != key]


def _info_3x3(rows: list[str]) -> list[str]:
    key = "m_calibrationColorIntrinsic"
    return [f"{key} = 100 0 32 0 100 24 0 0 1" if r.split("=")[0].strip() == key else r for r in rows]


def _info_zero_focal(rows: list[str]) -> list[str]:
    key = "m_calibrationColorIntrinsic"
    out = []
    for r in rows:
        if r.split("=")[0].strip() == key:
            values = r.split("=")[1].split()
            values[0] = values[5] = "0"
            r = f"{key} = {' '.join(values)}"
        out.append(r)
    return out


def _map(source: Path, *extra: str, scene: str = "mapped") -> list[str]:
    return ["map", str(source), "--scene", scene, *extra, "--data-root", "{data}", "--runs", "{runs}"]


def _photos(d: Path, good: Good, n: int) -> Path:
    """A folder of ``n`` colour images of the good scene, as a user's photo folder."""
    folder = d / "photos"
    folder.mkdir()
    for src in sorted((good.scene / "data").glob("*.color.jpg"))[:n]:
        shutil.copyfile(src, folder / src.name)
    return folder


def _map_photos(n: int, *extra: str) -> Callable[[Path, Good], tuple[list[str], Path]]:
    def build(d: Path, good: Good) -> tuple[list[str], Path]:
        folder = _photos(d, good, n)
        return _map(folder, *extra), folder

    return build


def _map_photo_truncated(d: Path, good: Good) -> tuple[list[str], Path]:
    folder = _photos(d, good, 4)
    return _map(folder), _truncate(sorted(folder.iterdir())[2])


def _video(d: Path, frames: int = 6) -> Path:
    rng = np.random.default_rng(0)
    write_video((rng.integers(0, 255, (48, 64, 3), np.uint8) for _ in range(frames)), d / "walk.mp4", 5)
    return d / "walk.mp4"


def _map_video_garbage(d: Path, good: Good) -> tuple[list[str], Path]:
    path = d / "walk.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return _map(path), path


def _map_video_truncated(d: Path, good: Good) -> tuple[list[str], Path]:
    return _map(_truncate(_video(d))), d / "walk.mp4"


def _map_scene_exists(d: Path, good: Good) -> tuple[list[str], Path]:
    existing = _copy_scene(d, good)
    return _map(_photos(d, good, 4), scene=SCENE), existing


CASES: tuple[Case, ...] = (
    Case("colour_jpeg_truncated", lambda d, g: _colour(d, g, _truncate), ("truncated",)),
    Case("colour_jpeg_empty", lambda d, g: _colour(d, g, lambda p: _truncate(p, 0.0)), ("empty",)),
    Case("query_png_truncated", lambda d, g: _query_png(d, g, 0.5), ("truncated",), needs_model=True),
    Case("query_png_empty", lambda d, g: _query_png(d, g, 0.0), ("empty",), needs_model=True),
    Case("depth_png_truncated", lambda d, g: _teach(_truncate(_frame(_copy_scene(d, g), "depth.png"))), ("truncated",)),
    Case("depth_png_empty", lambda d, g: _teach(_truncate(_frame(_copy_scene(d, g), "depth.png"), 0.0)), ("empty",)),
    Case("depth_8bit", _depth_8bit, ("16-bit",)),
    Case("depth_wrong_size", _depth_wrong_size, ("depth is", "expected")),
    Case("pose_nan", _pose_with(float("nan")), ("inf/nan",)),
    Case("pose_inf", _pose_with(float("inf")), ("inf/nan",)),
    Case("pose_not_rotation", _not_rotation, ("rotation",)),
    Case("info_missing_key", _info(_info_line("m_colorWidth")), ("missing key", "m_colorwidth")),
    Case("info_3x3_matrix", _info(_info_3x3), ("16 numbers",)),
    Case("info_zero_focal", _info(_info_zero_focal), ("fx=0",)),
    Case("split_names_missing_frames", _split_beyond, ("no pose file",)),
    Case("colmap_image_missing", _colmap_missing_image, ("missing",)),
    Case("model_truncated", _model_truncated, ("not a readable",), needs_model=True),
    Case(
        "model_empty",
        lambda d, g: _model_truncated(d, g, 0.0),
        ("not a slocal model file", "empty (0 bytes)"),
        needs_model=True,
    ),
    Case("model_of_other_scene", _of_other_scene("pt"), ("trained for scene",), needs_model=True),
    Case("onnx_of_other_scene", _of_other_scene("onnx"), ("trained for scene",), needs_model=True),
    Case("config_wrong_type", _config("train:\n  batch_size: two\n"), ("batch_size",)),
    Case("config_unknown_key", _config("train:\n  lr0: 0.1\n"), ("lr0",)),
    Case("intrinsics_zero_focal_option", _zero_focal_option, ("fx=0",), needs_model=True),
    Case("map_empty_folder", _map_photos(0), ("no photos",)),
    Case("map_two_photos", _map_photos(2), ("found 2 mapping photo", "at least 3")),
    Case("map_queries_leave_two", _map_photos(4, "--queries", "*-00000[0-1].color.jpg"), ("at least 3",)),
    Case("map_queries_match_nothing", _map_photos(4, "--queries", "nothing*"), ("matches no image",)),
    Case("map_photo_truncated", _map_photo_truncated, ("truncated",)),
    Case("map_video_undecodable", _map_video_garbage, ("cannot decode video",)),
    Case("map_video_truncated", _map_video_truncated, ("cannot decode video",)),
    Case("map_scene_exists", _map_scene_exists, ("exists", "--overwrite")),
)


def build_corpus(root: Path, good: Good, cases: tuple[Case, ...] = CASES) -> dict[str, tuple[list[str], Path]]:
    """Write every case under ``root``; returns each case's CLI args (placeholders filled) and the file to name."""
    out = {}
    for case in cases:
        if case.needs_model and (good.model is None or good.onnx is None):
            continue
        d = root / case.name
        d.mkdir(parents=True)
        args, named = case.build(d, good)
        fill = {"{data}": str(d / "data"), "{runs}": str(d / "runs")}
        out[case.name] = ([fill.get(a, a) for a in args], named)
    return out


if __name__ == "__main__":
    from helpers.distill_fixtures import TINY_SCENE  # run as ``python -m helpers.bad_corpus`` from tests/
    from slocal.data.synth import render_scene

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "data" / "bad"
    if target.exists():
        shutil.rmtree(target)
    render_scene(target / "_good" / SCENE, TINY_SCENE)
    for name, (args, named) in build_corpus(target, Good(target / "_good" / SCENE)).items():
        print(f"{name}: slocal {' '.join(args)}  -> names {named}")
