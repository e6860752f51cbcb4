"""Estimate an RGB-D scene's colour-depth rig from its mapping frames (``slocal.data.rig``).

Why it matters: a depth teacher that reads depth through the colour camera's intrinsics, as if the
two cameras shared one optical centre, gives each colour pixel the point that the *depth* camera saw
through it. On 7-Scenes the two sit centimetres apart, so the same surface point gets a different
target in every view, by an amount that turns with the camera.

How: SIFT tracks across the mapping frames' colour images (the SfM teacher's matching, verified
with the known poses) tie image points together. For a candidate rig ``cam_from_depth`` (rotation,
translation) and depth scale ``s``, each observation is lifted along its colour ray until it meets
the depth surface of its own frame (a few Newton steps on the bilinearly sampled depth image), moved
to the world, and reprojected into the colour images of the track's other frames. The rig minimises
those reprojection errors (pixels, Cauchy loss: occlusions and wrong matches do not pull) with
scipy's ``least_squares``. Only mapping frames take part.

The solve is start-independent (c.f. ``benchmarks/rig_starts.py``). Two things once made it stop where it
started, three starts ending up to 0.8 cm / 0.5 deg apart: observations that crossed the depth-edge test
while the rig moved dropped out of the cost (stepping it, and rewarding rigs that moved observations off
the depth), and the quantised depth, interpolated bilinearly, left the cost rough at sub-pixel scale, so
the trust region shrank before it reached the minimum. So the observations are chosen once, at the
identity rig, with the edge test on the raw depth, and the solve reads a smoothed copy of the depth
(holes filled from the nearest valid pixel, then a Gaussian of ``depth_blur_px``), through which each
chosen observation keeps a residual that changes smoothly with the rig. The solve still starts from
several depth scales on a seeded subset (the cheapest start is refined on all pairs) and reports how
far apart the starts ended. The tracks themselves do not change between runs either: pycolmap's threaded
matching dropped matches at random, and the SfM map matches on one thread
(``slocal.data.colmap.DETERMINISTIC_THREADS``), so one scene gives one rig.

Data whose depth is registered come out at identity (tested on the procedural room, and with an
offset injected there, recovered).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from slocal.data.rig import DepthRegistration, apply_depth_registration, needs_registration, poses_of
from slocal.data.scene import Scene
from slocal.errors import SlocalError
from slocal.geometry.pose import invert, pose_error
from slocal.io import process_lock, read_json, write_json
from slocal.runs import scene_dir
from slocal.teach.sfm.config import SfmTeacherConfig
from slocal.teach.sfm.map import build_sfm_map

log = logging.getLogger(__name__)

RIG_VERSION = 4  # 2: multi-start solve; 3: single-threaded (reproducible) tracks; 4: smooth, fixed-set cost
MODES = ("auto", "estimate", "off")


@dataclass(frozen=True)
class RigConfig:
    """Settings of the rig estimation.

    Attributes:
        loss_scale_px: Cauchy loss scale of the reprojection residuals.
        newton_steps: steps that move a lifted point along its colour ray onto the depth surface.
        max_depth_jump: relative spread of the four depth pixels around a sample beyond which the
            sample straddles an edge: such observations (at the identity rig) are left out of the solve.
        depth_blur_px: Gaussian sigma (depth pixels) of the depth the solve reads, after its holes are
            filled from the nearest valid pixel (smooths the quantised depth; 0: raw depth, holes filled).
        estimate_scale: fit a depth scale too (else 1).
        max_pairs: observation pairs used at most (a seeded subset beyond it).
        start_scales: depth scales the solve starts from (the best start's solution is refined).
        start_pairs: observation pairs of the seeded subset the starts are solved on.
    """

    loss_scale_px: float = 2.0
    newton_steps: int = 6
    max_depth_jump: float = 0.03
    depth_blur_px: float = 1.5
    estimate_scale: bool = True
    max_pairs: int = 300_000
    start_scales: tuple[float, ...] = (0.9, 1.0, 1.1)
    start_pairs: int = 40_000


@dataclass(frozen=True, eq=False)
class Tracks:
    """Observation pairs of SIFT tracks: image point ``a`` of one frame and ``b`` of another, same track."""

    frame_a: np.ndarray
    xy_a: np.ndarray
    frame_b: np.ndarray
    xy_b: np.ndarray
    num_tracks: int

    def take(self, keep: np.ndarray) -> Tracks:
        """The observation pairs ``keep`` selects (a boolean mask or indices)."""
        return Tracks(self.frame_a[keep], self.xy_a[keep], self.frame_b[keep], self.xy_b[keep], self.num_tracks)


def sift_tracks(scene: Scene, workdir: Path, max_pairs: int, seed: int = 0) -> Tracks:
    """All ordered observation pairs of the SfM teacher's tracks over the mapping frames."""
    sfm = build_sfm_map(scene, SfmTeacherConfig(), workdir)
    index = {f.name: i for i, f in enumerate(scene.mapping)}
    rec = sfm.reconstruction
    frame_a, xy_a, frame_b, xy_b = [], [], [], []
    for point in rec.points3D.values():
        obs = [
            (index[sfm.frame(e.image_id).name], rec.images[e.image_id].points2D[e.point2D_idx].xy)
            for e in point.track.elements
        ]
        for a, (fa, pa) in enumerate(obs):
            for b, (fb, pb) in enumerate(obs):
                if a != b and fa != fb:
                    frame_a.append(fa)
                    xy_a.append(pa)
                    frame_b.append(fb)
                    xy_b.append(pb)
    if not frame_a:
        raise SlocalError(f"scene {scene.id}: no SIFT track to estimate the colour-depth rig from", scene.root)
    keep = np.arange(len(frame_a))
    if len(keep) > max_pairs:
        keep = np.sort(np.random.default_rng(seed).choice(keep, max_pairs, replace=False))
    return Tracks(
        np.asarray(frame_a)[keep],
        np.asarray(xy_a, np.float64)[keep],
        np.asarray(frame_b)[keep],
        np.asarray(xy_b, np.float64)[keep],
        len(rec.points3D),
    )


class RigProblem:
    """Reprojection residuals of the lifted observations as a function of the rig parameters.

    ``residuals`` reads the smoothed depth and keeps every observation it is given; ``observed`` is
    the problem over those that meet valid depth away from edges at the identity rig, the set a solve
    runs on.
    """

    def __init__(self, scene: Scene, tracks: Tracks, config: RigConfig):
        frames = scene.mapping
        self.config = config
        self.tracks = tracks
        self.cams = [f.camera for f in frames]
        self.dcam = frames[0].depth_camera
        self.depths = np.stack([f.read_depth() for f in frames])
        self.smooth_depths = np.stack([smooth_depth(d, config.depth_blur_px) for d in self.depths])
        # Where the smoothing mixed depth across an edge or a hole: no observation is chosen there.
        margin = int(np.ceil(2 * config.depth_blur_px))
        self.near_edge = np.stack([depth_edges(d, config.max_depth_jump, margin) for d in self.depths])
        self.poses = np.stack([f.world_from_cam for f in frames])
        self.poses_of = poses_of(scene)
        self.K = np.array([[c.fx, c.fy, c.cx, c.cy] for c in self.cams])
        self.K_a, self.K_b = self.K[tracks.frame_a], self.K[tracks.frame_b]

    def on(self, tracks: Tracks) -> RigProblem:
        """The same problem over other observation pairs (the frames' depth is not read again)."""
        other = copy.copy(self)
        other.tracks = tracks
        other.K_a, other.K_b = self.K[tracks.frame_a], self.K[tracks.frame_b]
        return other

    def rig(self, p: np.ndarray) -> tuple[np.ndarray, float]:
        T = np.eye(4)
        T[:3, :3] = Rotation.from_rotvec(p[:3]).as_matrix()
        T[:3, 3] = p[3:6] / 100.0
        return T, float(np.exp(p[6])) if len(p) > 6 else 1.0

    def _depth(self, k: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw depth of frames ``k`` at depth-image points (u, v), bilinear, and whether it is usable there.

        Usable: inside the image, all four pixels valid, their spread below ``max_depth_jump``, and
        none within ``2 * depth_blur_px`` of a hole or a depth edge.
        """
        H, W = self.depths.shape[1:]
        x, y = u - 0.5, v - 0.5
        with np.errstate(invalid="ignore"):
            x0, y0 = np.floor(x), np.floor(y)
            ok = np.isfinite(x) & np.isfinite(y) & (x0 >= 0) & (y0 >= 0) & (x0 < W - 1) & (y0 < H - 1)
        x0 = np.where(ok, x0, 0).astype(np.int64)
        y0 = np.where(ok, y0, 0).astype(np.int64)
        a, b = np.where(ok, x - x0, 0), np.where(ok, y - y0, 0)
        d = self.depths
        D = np.stack([d[k, y0, x0], d[k, y0, x0 + 1], d[k, y0 + 1, x0], d[k, y0 + 1, x0 + 1]])
        ok &= (D > 0).all(0) & (D.max(0) - D.min(0) < self.config.max_depth_jump * D.mean(0))
        e = self.near_edge
        ok &= ~(e[k, y0, x0] | e[k, y0, x0 + 1] | e[k, y0 + 1, x0] | e[k, y0 + 1, x0 + 1])
        return D[0] * (1 - a) * (1 - b) + D[1] * a * (1 - b) + D[2] * (1 - a) * b + D[3] * a * b, ok

    def _smooth_depth(self, k: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Smoothed depth of frames ``k`` at (u, v), bilinear, points outside clamped to the border."""
        d = self.smooth_depths
        H, W = d.shape[1:]
        x = np.clip(np.nan_to_num(u - 0.5), 0, W - 1 - 1e-6)
        y = np.clip(np.nan_to_num(v - 0.5), 0, H - 1 - 1e-6)
        x0, y0 = x.astype(np.int64), y.astype(np.int64)
        a, b = x - x0, y - y0
        return (
            d[k, y0, x0] * (1 - a) * (1 - b)
            + d[k, y0, x0 + 1] * a * (1 - b)
            + d[k, y0 + 1, x0] * (1 - a) * b
            + d[k, y0 + 1, x0 + 1] * a * b
        )

    def frame_poses(self, cam_from_depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``world_from_cam`` and ``world_from_depth`` of every mapping frame under a rig, (N, 4, 4) each.

        The stored poses belong to one of the two cameras (``poses_of``); the rig gives the other's.
        """
        if self.poses_of == "depth":
            return self.poses @ invert(cam_from_depth), self.poses
        return self.poses, self.poses @ cam_from_depth

    def depth_rays(
        self, cam_from_depth: np.ndarray, world_from_cam: np.ndarray, world_from_depth: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The colour rays of the ``a`` observations in their frame's depth camera: directions (M, 3), origins.

        One rig places the depth camera alike in every frame, so the poses are not needed here (a
        variant that places the two cameras per frame uses them).
        """
        t, ka = self.tracks, self.K_a
        depth_from_cam = invert(cam_from_depth)
        ray_c = np.stack([(t.xy_a[:, 0] - ka[:, 2]) / ka[:, 0], (t.xy_a[:, 1] - ka[:, 3]) / ka[:, 1]], 1)
        return np.c_[ray_c, np.ones(len(ray_c))] @ depth_from_cam[:3, :3].T, depth_from_cam[:3, 3]

    def lift(self, p: np.ndarray, raw: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The ``a`` observations lifted along their colour rays onto their frame's depth surface.

        Args:
            raw: read the raw depth and test it (``_depth``); else the smoothed depth, no test.

        Returns:
            (M, 3) points in the depth camera's frame and (M,) whether the depth was usable.
        """
        cam_from_depth, scale = self.rig(p)
        world_from_cam, world_from_depth = self.frame_poses(cam_from_depth)
        ray_d, origin_d = self.depth_rays(cam_from_depth, world_from_cam, world_from_depth)
        frames, dc = self.tracks.frame_a, self.dcam
        z = np.full(len(ray_d), 2.0)
        ok = np.ones(len(ray_d), bool)
        for _ in range(self.config.newton_steps):
            X = z[:, None] * ray_d + origin_d
            with np.errstate(divide="ignore", invalid="ignore"):
                u = dc.fx * X[:, 0] / X[:, 2] + dc.cx
                v = dc.fy * X[:, 1] / X[:, 2] + dc.cy
            if raw:
                D, ok = self._depth(frames, u, v)
            else:
                D = self._smooth_depth(frames, u, v)
            z = np.where(ok, z + (scale * D - X[:, 2]) / ray_d[:, 2], z)
        return z[:, None] * ray_d + origin_d, ok & (z > 0.05)

    def residuals(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(M, 2) reprojection residuals in pixels and (M,) whether the point lies in front of camera ``b``.

        Every observation keeps its residual whatever the rig (a point behind camera ``b`` is
        projected as if 5 cm in front), so the cost changes smoothly with ``p``.
        """
        t = self.tracks
        cam_from_depth, _ = self.rig(p)
        world_from_cam, world_from_depth = self.frame_poses(cam_from_depth)
        X_depth, _ = self.lift(p)
        Wd = world_from_depth[t.frame_a]
        X_world = np.einsum("nij,nj->ni", Wd[:, :3, :3], X_depth) + Wd[:, :3, 3]
        Cb = invert_batch(world_from_cam[t.frame_b])
        X_b = np.einsum("nij,nj->ni", Cb[:, :3, :3], X_world) + Cb[:, :3, 3]
        in_front = X_b[:, 2] > 0.05
        z_b = np.maximum(X_b[:, 2], 0.05)
        kb = self.K_b
        uv = np.stack([kb[:, 0] * X_b[:, 0] / z_b + kb[:, 2], kb[:, 1] * X_b[:, 1] / z_b + kb[:, 3]], 1)
        return uv - t.xy_b, in_front

    def observed(self, n: int) -> RigProblem:
        """The problem over the observations usable at the identity rig: raw depth valid and away from
        edges, and in front of camera ``b`` (``n`` parameters: 6, or 7 with the depth scale)."""
        _, usable = self.lift(np.zeros(n), raw=True)
        res, in_front = self.on(self.tracks.take(usable)).residuals(np.zeros(n))
        keep = np.flatnonzero(usable)[in_front & np.isfinite(res).all(1)]
        return self.on(self.tracks.take(keep))

    def flat(self, p: np.ndarray) -> np.ndarray:
        return self.residuals(p)[0].ravel()


def depth_edges(depth_HW: np.ndarray, max_jump: float, margin_px: int) -> np.ndarray:
    """(H, W) True at holes and at depth edges (neighbours more than ``max_jump`` apart, relatively),
    grown by ``margin_px``."""
    d = depth_HW.astype(np.float64)
    bad = ~(d > 0)
    for axis in (0, 1):
        a, b = np.moveaxis(d, axis, 0)[1:], np.moveaxis(d, axis, 0)[:-1]
        with np.errstate(invalid="ignore"):
            jump = np.abs(a - b) > max_jump * np.minimum(a, b)
        view = np.moveaxis(bad, axis, 0)
        view[1:] |= jump
        view[:-1] |= jump
    return ndimage.binary_dilation(bad, iterations=margin_px) if margin_px > 0 else bad


def smooth_depth(depth_HW: np.ndarray, sigma_px: float) -> np.ndarray:
    """Depth with its holes filled from the nearest valid pixel, then Gaussian-smoothed (float64).

    What the rig's solve samples: defined everywhere and smooth, so that an observation's residual
    changes smoothly with the rig (observations near holes and edges were left out at the start).
    """
    depth = depth_HW.astype(np.float64)
    holes = ~(depth > 0)
    if holes.all():
        return np.zeros_like(depth)
    if holes.any():
        rows, cols = ndimage.distance_transform_edt(holes, return_distances=False, return_indices=True)
        depth = depth[rows, cols]
    return ndimage.gaussian_filter(depth, sigma_px) if sigma_px > 0 else depth


def invert_batch(T_N44: np.ndarray) -> np.ndarray:
    R = T_N44[:, :3, :3]
    out = np.zeros_like(T_N44)
    out[:, :3, :3] = R.transpose(0, 2, 1)
    out[:, :3, 3] = -np.einsum("nji,nj->ni", R, T_N44[:, :3, 3])
    out[:, 3, 3] = 1.0
    return out


def subset(tracks: Tracks, size: int, seed: int = 0) -> Tracks:
    """A seeded subset of ``size`` observation pairs (all of them when there are fewer)."""
    if len(tracks.frame_a) <= size:
        return tracks
    return tracks.take(np.sort(np.random.default_rng(seed).choice(len(tracks.frame_a), size, replace=False)))


def solve_rig(problem: RigProblem, x0: np.ndarray, f_scale: float):
    """scipy's least_squares on the problem's residuals from ``x0`` (Cauchy loss of scale ``f_scale`` px)."""
    return least_squares(problem.flat, x0, loss="cauchy", f_scale=f_scale, diff_step=1e-4)


def multi_start(full: RigProblem, config: RigConfig, n: int) -> tuple[np.ndarray, list[dict], dict]:
    """The start (one per ``config.start_scales``) whose solution on a subset of the pairs costs least.

    Returns:
        Its parameters, each start's cost and rig, and how far apart the starts ended
        (``translation_cm`` and ``rotation_deg`` at most between two, ``depth_scale`` the range).
    """
    problem = full.on(subset(full.tracks, config.start_pairs))
    starts, solutions = [], []
    for scale in config.start_scales if n > 6 else (1.0,):
        x0 = np.zeros(n)
        if n > 6:
            x0[6] = np.log(scale)
        solution = solve_rig(problem, x0, config.loss_scale_px)
        T, s = problem.rig(solution.x)
        solutions.append((T, s, solution.x))
        starts.append(
            {
                "start_scale": scale,
                "cost": float(solution.cost),
                "translation_cm": (T[:3, 3] * 100).tolist(),
                "rotation_deg": float(np.degrees(np.linalg.norm(solution.x[:3]))),
                "depth_scale": s,
            }
        )
    spread = {"translation_cm": 0.0, "rotation_deg": 0.0, "depth_scale": 0.0}
    for i, (Ti, si, _) in enumerate(solutions):
        for Tj, sj, _ in solutions[i + 1 :]:
            t_m, r_deg = pose_error(Ti, Tj)
            spread["translation_cm"] = max(spread["translation_cm"], t_m * 100)
            spread["rotation_deg"] = max(spread["rotation_deg"], r_deg)
            spread["depth_scale"] = max(spread["depth_scale"], abs(si - sj))
    best = int(np.argmin([s["cost"] for s in starts]))
    return solutions[best][2], starts, spread


def error_stats(res: np.ndarray, ok: np.ndarray) -> dict:
    """Valid residuals, their median and 90th percentile (pixels)."""
    e = np.linalg.norm(res[ok], axis=1)
    return {"valid": int(ok.sum()), "median_px": float(np.median(e)), "p90_px": float(np.percentile(e, 90))}


def estimate_depth_registration(
    scene: Scene, config: RigConfig = RigConfig(), workdir: str | Path | None = None
) -> DepthRegistration:
    """Estimate ``cam_from_depth`` and the depth scale from the scene's mapping frames.

    Raises:
        SlocalError: the scene has no depth, or too few tracks to estimate from.
    """
    if not scene.has_depth:
        raise SlocalError(f"scene {scene.id} has no depth for every mapping frame: no rig to estimate", scene.root)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="slocal-rig-") as tmp:
        tracks = sift_tracks(scene, Path(workdir) if workdir is not None else Path(tmp), config.max_pairs)
    t_tracks = time.perf_counter() - t0
    n = 7 if config.estimate_scale else 6
    problem = RigProblem(scene, tracks, config).observed(n)
    if len(problem.tracks.frame_a) < 200:
        raise SlocalError(
            f"scene {scene.id}: only {len(problem.tracks.frame_a)} track observations meet valid depth; "
            "too few to estimate the colour-depth rig",
            scene.root,
        )
    before = error_stats(*problem.residuals(np.zeros(n)))
    x0, starts, spread = multi_start(problem, config, n)
    solution = solve_rig(problem, x0, config.loss_scale_px)
    after = error_stats(*problem.residuals(solution.x))
    cam_from_depth, scale = problem.rig(solution.x)
    stats = {
        "tracks": tracks.num_tracks,
        "observation_pairs": len(tracks.frame_a),
        "before": before,
        "after": after,
        "starts": starts,
        "starts_spread": spread,
        "seconds_tracks": t_tracks,
        "seconds_total": time.perf_counter() - t0,
        "frames": len(scene.mapping),
    }
    reg = DepthRegistration(cam_from_depth, scale, poses_of(scene), "estimated", stats)
    log.info(
        "%s: colour-depth rig: depth camera at (%s) cm in the colour frame, %.2f deg, depth scale %.4f; "
        "reprojection %.2f -> %.2f px median over %d observation pairs (%.0f s)",
        scene.id,
        ", ".join(f"{v:+.2f}" for v in reg.translation_cm),
        reg.rotation_deg,
        scale,
        before["median_px"],
        after["median_px"],
        after["valid"],
        stats["seconds_total"],
    )
    return reg


def rig_cache_path(runs_root: str | Path, scene: Scene, config: RigConfig) -> Path:
    """``<runs>/<scene>/rig/depth-<key>.json``; the key hashes the settings and the scene."""
    blob = json.dumps({"config": asdict(config), "scene": scene.fingerprint, "version": RIG_VERSION}, sort_keys=True)
    return scene_dir(runs_root, scene.id) / "rig" / f"depth-{hashlib.sha256(blob.encode()).hexdigest()[:10]}.json"


def ensure_depth_registration(
    scene: Scene, runs_root: str | Path, config: RigConfig = RigConfig(), overwrite: bool = False
) -> DepthRegistration:
    """The cached rig of ``scene``, estimated first if missing (under a process lock)."""
    path = rig_cache_path(runs_root, scene, config)
    with process_lock(path.with_suffix(".lock"), f"the colour-depth rig of {scene.id}"):
        if path.is_file() and not overwrite:
            return DepthRegistration.from_dict(read_json(path))
        reg = estimate_depth_registration(scene, config)
        write_json(path, reg.to_dict())
        return reg


def registered_scene(scene: Scene, runs_root: str | Path, mode: str = "auto", config: RigConfig = RigConfig()) -> Scene:
    """The scene with its colour-depth rig applied, as every step that reads depth or poses needs it.

    Args:
        mode: ``auto`` estimates (once, cached) where the loader says depth is not registered
            (7-Scenes); ``estimate`` does so for any RGB-D scene; ``off`` keeps the scene as loaded.

    Raises:
        SlocalError: an unknown mode, or ``estimate`` on a scene without depth.
    """
    if mode not in MODES:
        raise SlocalError(f"unknown depth registration mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode == "off" or "depth_registration" in scene.extra:
        return scene
    if mode == "auto" and not needs_registration(scene):
        return scene
    return apply_depth_registration(scene, ensure_depth_registration(scene, runs_root, config))
