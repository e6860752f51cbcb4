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

The cost has more than one basin: depth scale and the offset along the optical axis trade against
each other, and on redkitchen-gap two runs whose SIFT tracks differed by 13 of 6 756 ended 0.8 and
4.2 cm apart in z, 1.45 and 1.15 px median, from the same start. So the solve starts from several
depth scales on a seeded subset of the observations, keeps the start whose solution costs least, and
refines it on all of them. The tracks themselves no longer change between runs: they differed
because pycolmap's threaded matching dropped matches at random, and the SfM map now matches on one
thread (``slocal.data.colmap.DETERMINISTIC_THREADS``), so one scene gives one rig.

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
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from slocal.data.rig import RIG_MODES, DepthRegistration, apply_depth_registration, needs_registration, poses_of
from slocal.data.scene import Scene
from slocal.errors import SlocalError
from slocal.geometry.pose import invert
from slocal.io import process_lock, read_json, write_json
from slocal.runs import scene_dir
from slocal.teach.sfm.config import SfmTeacherConfig
from slocal.teach.sfm.map import build_sfm_map

log = logging.getLogger(__name__)

RIG_VERSION = 3  # 2: multi-start solve; 3: tracks from single-threaded (reproducible) matching


@dataclass(frozen=True)
class RigConfig:
    """Settings of the rig estimation.

    Attributes:
        loss_scale_px: Cauchy loss scale of the reprojection residuals.
        newton_steps: steps that move a lifted point along its colour ray onto the depth surface.
        max_depth_jump: relative spread of the four depth pixels around a sample beyond which the
            sample straddles an edge and is not used.
        estimate_scale: fit a depth scale too (else 1).
        max_pairs: observation pairs used at most (a seeded subset beyond it).
        start_scales: depth scales the solve starts from (the best start's solution is refined).
        start_pairs: observation pairs of the seeded subset the starts are solved on.
    """

    loss_scale_px: float = 2.0
    newton_steps: int = 6
    max_depth_jump: float = 0.03
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
    """Reprojection residuals of the lifted observations as a function of the rig parameters."""

    def __init__(self, scene: Scene, tracks: Tracks, config: RigConfig):
        frames = scene.mapping
        self.config = config
        self.tracks = tracks
        self.cams = [f.camera for f in frames]
        self.dcam = frames[0].depth_camera
        self.depths = np.stack([f.read_depth() for f in frames])
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
        return D[0] * (1 - a) * (1 - b) + D[1] * a * (1 - b) + D[2] * (1 - a) * b + D[3] * a * b, ok

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

    def residuals(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) reprojection residuals in pixels and (N,) validity."""
        t = self.tracks
        cam_from_depth, scale = self.rig(p)
        world_from_cam, world_from_depth = self.frame_poses(cam_from_depth)
        ray_d, origin_d = self.depth_rays(cam_from_depth, world_from_cam, world_from_depth)
        kb = self.K_b
        dc = self.dcam
        z = np.full(len(ray_d), 2.0)
        ok = np.ones(len(ray_d), bool)
        for _ in range(self.config.newton_steps):
            X = z[:, None] * ray_d + origin_d
            with np.errstate(divide="ignore", invalid="ignore"):
                u = dc.fx * X[:, 0] / X[:, 2] + dc.cx
                v = dc.fy * X[:, 1] / X[:, 2] + dc.cy
            D, ok = self._depth(t.frame_a, u, v)
            z = np.where(ok, z + (scale * D - X[:, 2]) / ray_d[:, 2], z)
        X_depth = z[:, None] * ray_d + origin_d
        Wd = world_from_depth[t.frame_a]
        X_world = np.einsum("nij,nj->ni", Wd[:, :3, :3], X_depth) + Wd[:, :3, 3]
        Cb = invert_batch(world_from_cam[t.frame_b])
        X_b = np.einsum("nij,nj->ni", Cb[:, :3, :3], X_world) + Cb[:, :3, 3]
        ok &= (X_b[:, 2] > 0.05) & (z > 0.05)
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = np.stack([kb[:, 0] * X_b[:, 0] / X_b[:, 2] + kb[:, 2], kb[:, 1] * X_b[:, 1] / X_b[:, 2] + kb[:, 3]], 1)
        res = np.where(ok[:, None], uv - t.xy_b, 0.0)
        return res, ok

    def flat(self, p: np.ndarray) -> np.ndarray:
        return self.residuals(p)[0].ravel()


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
    keep = np.sort(np.random.default_rng(seed).choice(len(tracks.frame_a), size, replace=False))
    return Tracks(tracks.frame_a[keep], tracks.xy_a[keep], tracks.frame_b[keep], tracks.xy_b[keep], tracks.num_tracks)


def solve_rig(problem: RigProblem, x0: np.ndarray, f_scale: float):
    """scipy's least_squares on the problem's residuals from ``x0`` (Cauchy loss of scale ``f_scale`` px)."""
    return least_squares(problem.flat, x0, loss="cauchy", f_scale=f_scale, diff_step=1e-4)


def multi_start(full: RigProblem, config: RigConfig, n: int) -> tuple[np.ndarray, list[dict]]:
    """The start (one per ``config.start_scales``) whose solution on a subset of the pairs costs least."""
    problem = full.on(subset(full.tracks, config.start_pairs))
    starts = []
    for scale in config.start_scales if n > 6 else (1.0,):
        x0 = np.zeros(n)
        if n > 6:
            x0[6] = np.log(scale)
        solution = solve_rig(problem, x0, config.loss_scale_px)
        starts.append({"start_scale": scale, "cost": float(solution.cost), "x": solution.x})
    best = min(starts, key=lambda s: s["cost"])
    return best["x"], [{k: v for k, v in s.items() if k != "x"} for s in starts]


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
    problem = RigProblem(scene, tracks, config)
    n = 7 if config.estimate_scale else 6
    before = error_stats(*problem.residuals(np.zeros(n)))
    if before["valid"] < 200:
        raise SlocalError(
            f"scene {scene.id}: only {before['valid']} track observations meet valid depth; "
            "too few to estimate the colour-depth rig",
            scene.root,
        )
    x0, starts = multi_start(problem, config, n)
    solution = solve_rig(problem, x0, config.loss_scale_px)
    after = error_stats(*problem.residuals(solution.x))
    cam_from_depth, scale = problem.rig(solution.x)
    stats = {
        "tracks": tracks.num_tracks,
        "observation_pairs": len(tracks.frame_a),
        "before": before,
        "after": after,
        "starts": starts,
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


def registered_scene(
    scene: Scene, runs_root: str | Path, mode: str | DepthRegistration = "auto", config: RigConfig = RigConfig()
) -> Scene:
    """The scene with its colour-depth rig applied, as every step that reads depth or poses needs it.

    Args:
        mode: ``auto`` estimates (once, cached) where the loader says depth is not registered
            (7-Scenes); ``estimate`` does so for any RGB-D scene; ``off`` keeps the scene as loaded;
            a ``DepthRegistration`` (a rig file, the one a model file records) is applied as given,
            nothing estimated.

    Raises:
        SlocalError: an unknown mode, ``estimate`` or a given rig on a scene without depth, or a given rig
            on a scene already registered through another.
    """
    if isinstance(mode, DepthRegistration):
        if not scene.has_depth:
            raise SlocalError(f"scene {scene.id} has no depth for every mapping frame: no rig to apply", scene.root)
        applied = scene.extra.get("depth_registration")
        if applied is None:
            return apply_depth_registration(scene, mode)
        if DepthRegistration.from_dict(applied).same_as(mode):
            return scene
        raise SlocalError(f"scene {scene.id} already went through another colour-depth rig", scene.root)
    if mode not in RIG_MODES:
        raise SlocalError(
            f"unknown depth registration mode {mode!r}; choose one of {', '.join(RIG_MODES)} or a rig file"
        )
    if mode == "off" or "depth_registration" in scene.extra:
        return scene
    if mode == "auto" and not needs_registration(scene):
        return scene
    return apply_depth_registration(scene, ensure_depth_registration(scene, runs_root, config))
