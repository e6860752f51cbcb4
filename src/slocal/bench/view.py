"""``slocal view``: one self-contained HTML page showing a scene, its targets, a student and a bench run.

The page is a plotly 3D figure with plotly.js embedded (no server, no
network): the teacher's points (subsampled, in the colour of the image pixel
they came from), the student's predicted points for one frame, the mapping
cameras as frusta, and the queries' ground-truth and estimated camera centres
joined by error lines (from a bench folder's ``per_query.json``).

Why plotly and not three.js by hand: plotly ships a tested WebGL 3D scatter
with orbit controls and legend toggles, and ``write_html(include_plotlyjs=True)``
inlines it, so the page works offline.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import plotly.graph_objects as go

from slocal.data.scene import Frame, Scene
from slocal.errors import SlocalError
from slocal.geometry.camera import pixel_centers
from slocal.geometry.pose import transform_points
from slocal.io import atomic_path, read_image, read_json
from slocal.teach.targets import TargetSet, load_targets

log = logging.getLogger(__name__)

MAX_TEACHER_POINTS = 20000
MAX_FRUSTA = 150


def _scatter3d(xyz_N3: np.ndarray, **style) -> go.Scatter3d:
    """A Plotly 3D trace of the points (or polyline vertices) ``xyz_N3``."""
    return go.Scatter3d(x=xyz_N3[:, 0], y=xyz_N3[:, 1], z=xyz_N3[:, 2], **style)


def find_targets(runs_root: str | Path, scene: Scene, teacher: str | None = None) -> TargetSet | None:
    """The most recent complete target set of ``scene`` under ``runs_root`` (of ``teacher`` if given)."""
    folder = Path(runs_root) / scene.id / "targets"
    if not folder.is_dir():
        return None
    found = []
    for index in folder.glob("*/index.json"):
        data = read_json(index)
        if data.get("scene_fingerprint") == scene.fingerprint and (teacher is None or data.get("teacher") == teacher):
            found.append((index.stat().st_mtime, index.parent))
    return load_targets(max(found)[1]) if found else None


def _pixel_colours(frame: Frame, uv_N2: np.ndarray, width: int, height: int) -> np.ndarray:
    """RGB colours (uint8, (N, 3)) of the frame's image at coordinates of a ``width`` x ``height`` grid."""
    rgb = read_image(frame.image_path)
    small = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    cols = np.clip(np.floor(uv_N2[:, 0]).astype(int), 0, width - 1)
    rows = np.clip(np.floor(uv_N2[:, 1]).astype(int), 0, height - 1)
    return small[rows, cols]


def _rgb_strings(colours_N3: np.ndarray) -> list[str]:
    return [f"rgb({r},{g},{b})" for r, g, b in colours_N3.tolist()]


def teacher_points(
    scene: Scene, targets: TargetSet, max_points: int = MAX_TEACHER_POINTS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Subsampled target points (N, 3) and their image colours (N, 3) uint8."""
    frames = {f.name: f for f in scene.mapping}
    per_frame = max(1, max_points // max(1, len(targets.frames)))
    rng = np.random.default_rng(seed)
    xyz, colours = [], []
    for t in targets.frames:
        rows, cols = np.nonzero(t.valid_HW)
        if len(rows) > per_frame:
            keep = rng.choice(len(rows), per_frame, replace=False)
            rows, cols = rows[keep], cols[keep]
        xyz.append(t.coords_HW3[rows, cols])
        uv = np.stack([cols + 0.5, rows + 0.5], 1)
        colours.append(
            _pixel_colours(frames[t.name], uv, t.camera.width, t.camera.height)
            if t.name in frames
            else np.full((len(rows), 3), 128, np.uint8)
        )
    if not xyz:
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    return np.concatenate(xyz).astype(np.float64), np.concatenate(colours)


def student_points(model, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    """The student's predicted points (N, 3) for one frame and the image colours at their cells."""
    rgb = read_image(frame.image_path)
    out = model.predict(rgb, frame.camera.scaled(rgb.shape[1], rgb.shape[0]))
    cam, s = out.camera, int(out.stride)
    uv = pixel_centers(cam.width, cam.height, s).reshape(-1, 2)
    xyz = np.asarray(out.coords_hw3, np.float64).reshape(-1, 3)
    ok = np.isfinite(xyz).all(1)
    return xyz[ok], _pixel_colours(frame, uv[ok], cam.width, cam.height)


def frustum_lines(frames: Sequence[Frame], size: float) -> np.ndarray:
    """Line segments of camera frusta as one (K, 3) polyline with NaN breaks (plotly's convention)."""
    segs = []
    for f in frames:
        c = f.camera
        corners = np.array([[0, 0], [c.width, 0], [c.width, c.height], [0, c.height]], np.float64)
        pts_cam = c.backproject(corners, np.full(4, size))
        world = transform_points(f.world_from_cam, np.vstack([[0, 0, 0], pts_cam]))
        o, a, b, cc, d = world
        for p, q in ((o, a), (o, b), (o, cc), (o, d), (a, b), (b, cc), (cc, d), (d, a)):
            segs += [p, q, [np.nan] * 3]
    return np.array(segs, np.float64).reshape(-1, 3)


def bench_centres(bench_dir: str | Path, scene_id: str) -> dict[str, list[dict]]:
    """Per method, the queries of ``scene_id`` in a bench folder's ``per_query.json``."""
    rows = read_json(Path(bench_dir) / "per_query.json")
    out: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("scene") == scene_id and r.get("center_gt") is not None:
            out.setdefault(r["method"], []).append(r)
    return out


def build_figure(
    scene: Scene,
    targets: TargetSet | None = None,
    model=None,
    frame: Frame | None = None,
    bench: dict[str, list[dict]] | None = None,
    max_points: int = MAX_TEACHER_POINTS,
):
    """The plotly figure (see the module docstring); every part is optional but the cameras."""
    traces = []
    centres = np.array([f.world_from_cam[:3, 3] for f in scene.mapping])
    extent = float(np.linalg.norm(centres.max(0) - centres.min(0))) if len(centres) > 1 else 1.0
    if targets is not None:
        xyz, rgb = teacher_points(scene, targets, max_points)
        traces.append(
            _scatter3d(
                xyz,
                mode="markers",
                name=f"teacher points ({targets.teacher}, {len(xyz)})",
                marker={"size": 1.5, "color": _rgb_strings(rgb)},
            )
        )
    if model is not None and frame is not None:
        xyz, rgb = student_points(model, frame)
        traces.append(
            _scatter3d(
                xyz,
                mode="markers",
                name=f"student points ({frame.name})",
                marker={"size": 2.5, "color": _rgb_strings(rgb), "line": {"width": 0}},
            )
        )
        lines = frustum_lines([frame], 0.08 * max(extent, 1e-6))
        traces.append(
            _scatter3d(
                lines,
                mode="lines",
                name=f"frame {frame.name}",
                line={"color": "magenta", "width": 4},
            )
        )
    step = max(1, len(scene.mapping) // MAX_FRUSTA)
    lines = frustum_lines(scene.mapping[::step], 0.04 * max(extent, 1e-6))
    traces.append(
        _scatter3d(
            lines,
            mode="lines",
            name=f"mapping cameras ({len(scene.mapping[::step])})",
            line={"color": "royalblue", "width": 2},
        )
    )
    palette = ["red", "darkorange", "green", "purple", "brown"]
    for k, (method, rows) in enumerate((bench or {}).items()):
        gt = np.array([r["center_gt"] for r in rows], np.float64)
        traces.append(
            _scatter3d(
                gt,
                mode="markers",
                name=f"queries: ground truth ({method})",
                marker={"size": 4, "color": "black", "symbol": "circle"},
            )
        )
        est = [r for r in rows if r.get("center_est") is not None]
        if est:
            e = np.array([r["center_est"] for r in est], np.float64)
            g = np.array([r["center_gt"] for r in est], np.float64)
            seg = np.stack([g, e, np.full_like(g, np.nan)], 1).reshape(-1, 3)
            colour = palette[k % len(palette)]
            traces.append(
                _scatter3d(
                    e,
                    mode="markers",
                    name=f"{method}: estimates ({len(est)}/{len(rows)})",
                    marker={"size": 4, "color": colour, "symbol": "x"},
                )
            )
            traces.append(
                _scatter3d(
                    seg,
                    mode="lines",
                    name=f"{method}: errors",
                    line={"color": colour, "width": 3},
                )
            )
    unit = (
        "m"
        if scene.metres_per_unit == 1.0
        else ("units" if scene.metres_per_unit is None else f"units of {scene.metres_per_unit:g} m")
    )
    fig = go.Figure(traces)
    fig.update_layout(
        title=f"{scene.id}: {len(scene.mapping)} mapping, {len(scene.query)} query frames ({unit})",
        scene={"aspectmode": "data", "xaxis_title": "x", "yaxis_title": "y", "zaxis_title": "z"},
        margin={"l": 0, "r": 0, "t": 40, "b": 0},
        legend={"itemsizing": "constant"},
    )
    return fig


def write_view(path: str | Path, fig) -> Path:
    """Write the figure as one self-contained HTML file (plotly.js inlined), atomically."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise SlocalError("the view is an HTML page; give a .html file name", path)
    with atomic_path(path) as tmp:
        fig.write_html(str(tmp), include_plotlyjs=True, full_html=True)
    return path


def view_scene(
    scene: Scene,
    out: str | Path,
    runs_root: str | Path | None = None,
    teacher: str | None = None,
    model=None,
    frame_name: str | None = None,
    bench_dir: str | Path | None = None,
    max_points: int = MAX_TEACHER_POINTS,
) -> Path:
    """Build and write the view of a scene; returns the HTML file.

    Args:
        scene: the scene.
        out: the .html file to write.
        runs_root: where its cached targets are (none shown when None or not computed yet).
        teacher: show this teacher's targets (default: the most recent).
        model: a loaded student (``slocal.localize.localizer.load_model``) whose points to show.
        frame_name: the frame the student predicts (default: the first query, else the first mapping frame).
        bench_dir: a bench folder whose ``per_query.json`` gives the query estimates.
    """
    targets = find_targets(runs_root, scene, teacher) if runs_root is not None else None
    if teacher is not None and targets is None:
        raise SlocalError(
            f"no cached {teacher} targets for scene {scene.id}; run `slocal teach --scene {scene.id} --teacher "
            f"{teacher}`",
            runs_root,
        )
    frame = scene.frame(frame_name) if frame_name else (scene.query or scene.mapping)[0]
    bench = bench_centres(bench_dir, scene.id) if bench_dir is not None else None
    return write_view(out, build_figure(scene, targets, model, frame if model is not None else None, bench, max_points))
