import base64
import json
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from helpers.colmap_room import write_room_colmap
from helpers.student_standin import OracleStudent
from slocal.bench.view import build_figure, frustum_lines, teacher_points, view_scene
from slocal.data import load_scene
from slocal.errors import SlocalError
from slocal.teach import ensure_targets, load_targets, make_teacher
from slocal.teach.targets import targets_dir

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


def _page_figure(html) -> tuple[dict[str, dict], dict]:
    """The figure a page draws, from its ``Plotly.newPlot(id, traces, layout, ...)`` call: traces by name, layout."""
    text = html.read_text()
    start = text.index("Plotly.newPlot(") + len("Plotly.newPlot(")
    assert text.count("Plotly.newPlot(") == 1
    decoder = json.JSONDecoder()
    args, pos = [], start
    for _ in range(3):  # the div id, the traces, the layout
        pos = len(text) - len(text[pos:].lstrip(" \n,"))
        value, pos = decoder.raw_decode(text, pos)
        args.append(value)
    return {t["name"]: t for t in args[1]}, args[2]


def _xyz(trace) -> np.ndarray:
    """A trace's points (N, 3); plotly writes arrays as lists or as base64 typed arrays ({dtype, bdata})."""

    def array(v):
        if isinstance(v, dict):
            return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).astype(np.float64)
        return np.array([np.nan if x is None else x for x in v], np.float64)

    return np.stack([array(trace[k]) for k in "xyz"], 1)


def test_page_holds_the_cameras_points_and_query_errors(room_view):
    """What the page draws, read from its embedded figure data: holds where no browser can render it."""
    scene, html, _ = room_view
    traces, layout = _page_figure(html)
    assert layout["title"]["text"].startswith("room: 6 mapping, 2 query frames")
    # Cameras: one frustum per mapping frame (8 segments of 3 points), each starting at the camera centre.
    cams = _xyz(traces["mapping cameras (6)"])
    assert cams.shape == (6 * 8 * 3, 3)
    centres = np.array([f.world_from_cam[:3, 3] for f in scene.mapping])
    np.testing.assert_allclose(cams[::24], centres, atol=1e-9)
    # Teacher points: as many as the legend says, exactly the cached targets' subsample.
    (name,) = [n for n in traces if n.startswith("teacher points (colmap, ")]
    teacher = _xyz(traces[name])
    xyz, _ = teacher_points(scene, load_targets(targets_dir(html.parent / "runs", scene, make_teacher("colmap"))))
    assert len(teacher) == int(name.split(", ")[1].rstrip(")")) == len(xyz) > 100
    np.testing.assert_allclose(teacher, xyz, atol=1e-9)
    # The student's points for the first query: one per stride-8 cell of its 64x48 input, all finite.
    (name,) = [n for n in traces if n.startswith("student points (")]
    assert len(_xyz(traces[name])) == (64 // 8) * (48 // 8) and np.isfinite(_xyz(traces[name])).all()
    # Query errors: ground truth at the query centres, and one segment per query from it to its estimate.
    gt = np.array([f.world_from_cam[:3, 3] for f in scene.query])
    np.testing.assert_allclose(_xyz(traces["queries: ground truth (cnn)"]), gt, atol=1e-9)
    np.testing.assert_allclose(_xyz(traces["cnn: estimates (2/2)"]), gt + 0.3, atol=1e-9)
    errors = _xyz(traces["cnn: errors"]).reshape(2, 3, 3)  # (query, [gt, estimate, break], xyz)
    np.testing.assert_allclose(errors[:, 0], gt, atol=1e-9)
    np.testing.assert_allclose(errors[:, 1] - errors[:, 0], 0.3, atol=1e-9)
    assert np.isnan(errors[:, 2]).all()


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
