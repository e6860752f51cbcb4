import json
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from colmap_room import write_room_colmap
from slocal.bench.view import build_figure, frustum_lines, view_scene
from slocal.data import load_scene
from slocal.errors import SlocalError
from slocal.teach import ensure_targets, make_teacher
from student_standin import OracleStudent

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
PLOT_BACKGROUND = np.array([246, 236, 229])  # plotly's 3D axis planes (#E5ECF6), BGR
FRUSTUM_BLUE = np.array([225, 105, 65])  # royalblue, BGR


@pytest.fixture(scope="module")
def room_view(tmp_path_factory):
    root = tmp_path_factory.mktemp("view")
    room = write_room_colmap(root / "data" / "room", n_mapping=6, n_query=2)
    scene = load_scene(root / "data", "room")
    ensure_targets(scene, make_teacher("colmap"), root / "runs")
    bench = root / "bench"
    bench.mkdir()
    rows = []
    for f in scene.query:
        c = f.world_from_cam[:3, 3]
        rows.append(
            {
                "scene": "room",
                "method": "cnn",
                "image": f.name,
                "center_gt": c.tolist(),
                "center_est": (c + 0.3).tolist(),
            }
        )
    (bench / "per_query.json").write_text(json.dumps(rows))
    oracle = OracleStudent(scene_id="room", image_size=(64, 48))
    oracle.cam_from_world = scene.query[0].cam_from_world
    html = view_scene(scene, root / "view.html", root / "runs", model=oracle, bench_dir=bench)
    return scene, html, room


def test_figure_has_every_layer(room_view):
    scene, html, _ = room_view
    text = html.read_text()
    # plotly.js inlined: no script is loaded from anywhere.
    assert "<script" in text and not re.search(r"<script[^>]*\bsrc=", text) and len(text) > 1_000_000
    for name in (
        "teacher points (colmap",
        "student points (query",
        "mapping cameras (6)",
        "cnn: estimates (2",
        "cnn: errors",
    ):
        assert name in text, name


def test_frusta_start_at_the_camera_centres(room_view):
    scene, _, _ = room_view
    lines = frustum_lines(scene.mapping[:2], 0.1)
    assert lines.shape == (2 * 8 * 3, 3)
    np.testing.assert_allclose(lines[0], scene.mapping[0].world_from_cam[:3, 3])
    np.testing.assert_allclose(lines[24], scene.mapping[1].world_from_cam[:3, 3])


def test_missing_teacher_targets_is_a_clear_error(room_view, tmp_path):
    scene, _, _ = room_view
    with pytest.raises(SlocalError, match="no cached sfm targets"):
        view_scene(scene, tmp_path / "v.html", tmp_path / "runs", teacher="sfm")
    assert build_figure(scene).data  # cameras alone still make a figure


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (Debian: apt-get install chromium) to render the page")
def test_view_renders_in_headless_chromium(room_view, tmp_path):
    _, html, _ = room_view
    shot = tmp_path / "shot.png"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--hide-scrollbars",
        "--window-size=1000,800",
        "--virtual-time-budget=10000",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        html.resolve().as_uri(),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=180)
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (800, 1000)
    # The WebGL scene drew its axis planes and the camera frusta: not a blank or error page.
    background = np.all(np.abs(img.astype(int) - PLOT_BACKGROUND) <= 3, axis=2).mean()
    frusta = np.all(np.abs(img.astype(int) - FRUSTUM_BLUE) <= 40, axis=2).sum()
    assert background > 0.1 and frusta > 50, (background, frusta)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 200  # points in many image colours
