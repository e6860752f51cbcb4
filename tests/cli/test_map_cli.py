"""`slocal map` through the real CLI on a rendered walk-through video of the procedural room.

One module fixture drives the whole story once: a first `map` run is caught
mid-way (while it holds the scene), a second run is refused with one line, the
first is killed with SIGKILL, and a rerun then maps the video. The tests check
each step, then distill a tiny student on the mapped scene and localize its
queries: video -> map -> distill -> localize without any download.
"""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from helpers.cli_run import leftovers, lines, run_slocal, start_slocal, wait_for
from helpers.distill_fixtures import TINY_STUDENT, tiny_train
from slocal.capture.scale import fit_similarity
from slocal.data import load_scene
from slocal.data.synth import SynthConfig, SynthWorld
from slocal.data.synth.video import read_video_poses, render_video, walk_poses
from slocal.distill.config import to_plain

pytestmark = pytest.mark.slow

# A small, quick room video: 48 frames of 192 x 144 over one loop, 8 query frames on another path.
ROOM = SynthConfig(color_size=(192, 144), depth_size=(96, 72), focal=156.0, seed=5)
WALK_S, WALK_FPS = 19.2, 2.5
QUERY_S, QUERY_FPS = 4.0, 2.0


def _partial(data: Path) -> list[Path]:
    return sorted(data.glob(".room.partial-*"))


@pytest.fixture(scope="module")
def mapped(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("map-cli")
    walk = render_video(root / "walk.mp4", ROOM, WALK_S, WALK_FPS, "walk")
    queries = render_video(root / "queries.mp4", ROOM, QUERY_S, QUERY_FPS, "queries")
    data, runs = root / "data", root / "runs"
    # Two frames 1.2 s apart on the true path: their distance scales the model.
    truth = read_video_poses(walk.poses_path)
    a, b = 3, 6
    metres = float(np.linalg.norm(truth[a][1][:3, 3] - truth[b][1][:3, 3]))
    # One image by name, one by its time in the video (frame 6 is shown at 2.4 s).
    pair = [f"walk/frame-{a:06d}.jpg", f"walk@{b / WALK_FPS:g}", metres]
    args = ["map", walk.path, "--scene", "room", "--queries", queries.path, "--fps", WALK_FPS, "--distance", *pair]
    # Neighbours in time + retrieval (the default above 60 images), so the loop must be closed by retrieval.
    args += ["--pairs", "sequential+retrieval", "--data-root", data, "--runs", runs]
    out = {"root": root, "data": data, "runs": runs, "walk": walk, "queries": queries, "metres": metres}

    first = start_slocal(*args, log=root / "first.log")
    # Caught once it is building the scene: its hidden folder exists and it holds the lock.
    assert wait_for(lambda: any(_partial(data)), first, timeout=120), (root / "first.log").read_text()
    # Frozen there, lock held: on a loaded machine the second run's cold start can outlast this small map,
    # and a first run that had finished would publish the scene before the kill.
    os.kill(first.pid, signal.SIGSTOP)
    second = run_slocal(*args, timeout=120)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    out["second"] = second
    out["after_kill"] = {
        "published": (data / "room").exists(),
        "partial": _partial(data),
        "returncode": first.returncode,
    }
    rerun = run_slocal(*args, "--json", timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    out["summary"] = json.loads(rerun.stdout)
    return out


def test_a_second_run_is_refused_while_the_first_holds_the_scene(mapped):
    second = mapped["second"]
    err = lines(second.stderr)
    assert second.returncode == 1 and len(err) == 1, second.stderr
    assert err[0].startswith("error: ") and "in use by another slocal process" in err[0] and ".room.map.lock" in err[0]


def test_kill_9_leaves_no_readable_scene_and_the_rerun_succeeds(mapped):
    after = mapped["after_kill"]
    assert after["returncode"] == -signal.SIGKILL
    assert not after["published"] and len(after["partial"]) == 1  # only the hidden folder, which no reader lists
    # The rerun removed the killed run's folder and left nothing half-written.
    data = mapped["data"]
    assert _partial(data) == [] and leftovers(data) == [] and leftovers(mapped["runs"]) == []
    written = sorted(p.name for p in (data / "room").iterdir())
    assert written == ["images", "map.json", "queries.txt", "scale.txt", "sparse"]


def test_the_video_maps_to_the_true_path_with_the_given_scale(mapped):
    s = mapped["summary"]
    assert s["source_kind"] == "video" and s["images"]["mapping"] == int(WALK_S * WALK_FPS)
    assert s["registered"]["mapping"] >= 0.9 * s["images"]["mapping"]
    assert s["registered"]["query"] >= 0.75 * s["images"]["query"]
    assert s["model"]["mean_reprojection_error_px"] < 1.0 and s["model"]["mean_track_length"] > 3
    assert s["scale"]["source"] == "distance" and set(s["seconds"]) >= {"features", "matching", "mapping", "total"}
    # A video has no focal length: the walk's own image pairs gave its starting value (the room's camera: 156 px),
    # where COLMAP's default (1.2 x 192 px) let one mapper seed in 40 bend the model.
    walk_camera = next(c for c in s["cameras"] if c["label"] == "video walk.mp4")
    assert walk_camera["focal_source"] == "two-view" and walk_camera["focal_pairs"] >= 8
    assert walk_camera["start_focal_px"] == pytest.approx(ROOM.focal, rel=0.05)
    scene = load_scene(mapped["data"], "room", runs_root=mapped["runs"])
    assert scene.metres_per_unit == pytest.approx(s["scale"]["metres_per_unit"], rel=1e-6)
    assert len(scene.query) == s["registered"]["query"]
    # Camera centres in metres (the given scale) against the rendered path, up to a rigid motion.
    truth = {
        "walk": read_video_poses(mapped["walk"].poses_path),
        "queries": read_video_poses(mapped["queries"].poses_path),
    }
    frames = scene.mapping + scene.query
    model_m = np.array([f.world_from_cam[:3, 3] for f in frames]) * scene.metres_per_unit
    true_m = np.array([truth[f.name.split("/")[0]][int(f.name[-10:-4])][1][:3, 3] for f in frames])
    fit = fit_similarity(model_m, true_m)
    assert fit.scale == pytest.approx(1.0, abs=0.05)  # the measured distance gave the metric scale
    assert np.median(np.linalg.norm(fit.apply(model_m) - true_m, axis=1)) < 0.02


def test_video_map_distill_localize(mapped, tmp_path):
    common = ["--scene", "room", "--data-root", mapped["data"], "--runs", mapped["runs"]]
    train = {k: v for k, v in to_plain(tiny_train(val_frames=0)).items() if k not in ("minutes", "iterations")}
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"student": to_plain(TINY_STUDENT), "train": train}))
    r = run_slocal(
        "distill", "--student", "cnn", "--config", config, "--iterations", 3, "--device", "cpu", "--json", *common
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["teacher"] == "colmap"
    # The mapped queries, as photos outside the scene: a 3-iteration student may not localize them,
    # what matters is that each ran through the mapped scene's model and was reported.
    queries = mapped["data"] / "room" / "images" / "queries"
    r = run_slocal("localize", queries, "--student", "cnn-small", "--json", *common)
    assert r.returncode in (0, 1), r.stderr
    results = json.loads(r.stdout)
    expected = (mapped["data"] / "room" / "queries.txt").read_text().split()
    assert sorted("queries/" + d["name"] for d in results) == sorted(expected)
    assert all(d["error"] is None for d in results)


def _photo(path: Path, rgb: np.ndarray, focal_35mm: int | None = None) -> None:
    exif = Image.Exif()
    if focal_35mm is not None:
        exif.get_ifd(0x8769)[0xA405] = focal_35mm  # FocalLengthIn35mmFilm
    Image.fromarray(rgb).save(path, exif=exif, quality=95)


def test_photos_that_do_not_register_are_listed_and_the_rest_kept(tmp_path):
    config = SynthConfig(color_size=(240, 180), depth_size=(120, 90), focal=195.0, seed=2)
    world = SynthWorld(config)
    photos = tmp_path / "photos"
    photos.mkdir()
    f35 = round(config.focal * math.hypot(36, 24) / math.hypot(*config.color_size))  # as a phone writes it
    for i, pose in enumerate(walk_poses(config, 120)[:12]):
        rgb, _ = world.render_color(config.color_camera, pose)
        _photo(photos / f"IMG_{i:04d}.jpg", np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8), f35)
    _photo(photos / "IMG_9000.jpg", np.full((180, 240, 3), 128, np.uint8))  # no texture: no feature
    _photo(photos / "IMG_9001.jpg", np.random.default_rng(0).integers(0, 256, (180, 240, 3), np.uint8))  # no match
    data, runs = tmp_path / "data", tmp_path / "runs"
    r = run_slocal("map", photos, "--scene", "room", "--json", "--data-root", data, "--runs", runs)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["unregistered"] == ["IMG_9000.jpg", "IMG_9001.jpg"]
    assert s["registered"] == {"mapping": 12, "query": 0, "total": 12} and s["pairs"]["strategy"] == "exhaustive"
    # One camera for the twelve EXIF photos (its focal length from the 35 mm equivalent), others for the rest.
    exif_camera = next(c for c in s["cameras"] if c["images"] == 12)
    assert exif_camera["focal_source"] == "exif-35mm"
    assert exif_camera["start_focal_px"] == pytest.approx(config.focal, rel=0.01)
    assert s["scale"] == {"source": "unknown", "metres_per_unit": None} and s["units"] == "model units"
    scene = load_scene(data, "room", runs_root=runs)
    assert len(scene.mapping) == 12 and scene.metres_per_unit is None
    assert sorted(p.name for p in (data / "room" / "images").iterdir()) == [f"IMG_{i:04d}.jpg" for i in range(12)]
    assert not (data / "room" / "queries.txt").exists()
