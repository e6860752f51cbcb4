"""An SfM pseudo ground truth for a 7-Scenes scene: poses from the colour images alone.

7-Scenes' poses come from KinectFusion tracking of the *depth* camera. On a stretch that was never
mapped they can disagree with their neighbours by centimetres, and they are the depth camera's,
not the colour camera's that a localizer sees. This script makes the reference that the 7-Scenes
SfM pseudo ground truth (Brachmann et al., ICCV 2021) made: COLMAP (pycolmap) over all the
scene's colour images with free poses and one shared pinhole camera, then a similarity to the
7-Scenes frame **fitted on the mapping frames only**, so the result is metric and lives where the
dataset's poses live. Queries never enter the fit.

The camera: one shared pinhole with the 7-Scenes colour focal length (525 px, principal point at the
centre) held fixed, as the published pseudo ground truth did and as slocal's 7-Scenes loader models
the colour camera; a radial term or a free focal length changes the reprojection error by 0.02 px
on redkitchen-gap (0.76 against 0.78 px), and a free focal length alone drifts to 545 px there,
absorbing the lens's slight barrel distortion (``--camera-model``, ``--refine-focal``).

The fit: a similarity over the mapping frames' camera centres. The colour camera sits a few
centimetres from the depth camera whose poses 7-Scenes stores, an offset that turns with the
camera; fitting it jointly with the similarity (``c_gt + R_gt t_off = s R c_sfm + t``) is reported
as a diagnostic only: on a trajectory that mostly pans it is ill-conditioned (it gave 18 cm on
redkitchen-gap). The depth camera's offset is estimated where it is observable, from depth and
colour together (``slocal.teach.rig``).

Output: ``<out>.txt`` in the pseudo ground-truth format that ``--poses`` reads
(``name qw qx qy qz tx ty tz f``, ``cam_from_world`` of the colour camera, metres), and a report
(``.md``/``.json`` beside it) of the reconstruction, the alignment, and how far each query's
7-Scenes pose lies from the pseudo ground truth, in the query camera's frame.

Usage::

    python benchmarks/pseudo_gt_7scenes.py --scene redkitchen-gap
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pycolmap

from common import SEVEN_SCENES, write_results
from slocal.data import load_scene
from slocal.geometry.pose import invert, rotmat_to_qvec
from slocal.io import write_text

log = logging.getLogger("pseudo_gt")


def reconstruct(
    scene, workdir: Path, camera_model: str, refine_focal: bool, threads: int
) -> tuple[pycolmap.Reconstruction, dict]:
    """COLMAP over every colour image of the scene (mapping and query), one shared camera, free poses."""
    frames = scene.mapping + scene.query
    image_root = scene.root
    names = [f.image_path.relative_to(image_root).as_posix() for f in frames]
    db = workdir / "database.db"
    f0 = frames[0].camera
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = camera_model
    # The prior: the 7-Scenes colour focal length the loader assumes, principal point at the centre.
    reader.camera_params = ",".join(
        str(v) for v in ([f0.fx, f0.cx, f0.cy] if camera_model == "SIMPLE_PINHOLE" else [f0.fx, f0.cx, f0.cy, 0.0])
    )
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = threads
    timings = {}
    t0 = time.perf_counter()
    pycolmap.extract_features(
        db,
        image_root,
        image_names=names,
        camera_mode=pycolmap.CameraMode.SINGLE,
        reader_options=reader,
        extraction_options=extraction,
    )
    timings["features_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = threads
    pycolmap.match_exhaustive(db, matching_options=matching)
    timings["matching_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = threads
    options.ba_refine_principal_point = False
    options.ba_refine_focal_length = refine_focal
    models = pycolmap.incremental_mapping(db, image_root, workdir / "sparse", options)
    timings["mapping_s"] = time.perf_counter() - t0
    if not models:
        raise SystemExit("COLMAP reconstructed nothing")
    rec = max(models.values(), key=lambda r: r.num_reg_images())
    return rec, timings


def sfm_world_from_cam(rec: pycolmap.Reconstruction) -> dict[str, np.ndarray]:
    """Image name -> world_from_cam (4, 4) in the reconstruction's frame."""
    out = {}
    for image in rec.images.values():
        if image.has_pose:
            out[image.name] = invert(_as44(np.asarray(image.cam_from_world().matrix())))
    return out


def _as44(T_34: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3] = T_34[:3]
    return T


def fit_similarity(c_src_N3: np.ndarray, c_gt_N3: np.ndarray, R_gt_N33: np.ndarray, iterations: int = 200):
    """Sim(3) ``(s, R, t)`` and camera-frame offset ``t_off`` with ``c_gt + R_gt t_off ~ s R c_src + t``.

    Returns:
        (s, R_33, t_3, t_off_3, residual_N) with the centre residuals in metres.
    """
    t_off = np.zeros(3)
    for _ in range(iterations):
        target = c_gt_N3 + R_gt_N33 @ t_off
        sim = pycolmap.estimate_sim3d(c_src_N3, target)
        if sim is None:
            raise SystemExit("Sim(3) estimation failed")
        s, R, t = float(sim.scale), np.asarray(sim.rotation.matrix()), np.asarray(sim.translation)
        mapped = s * c_src_N3 @ R.T + t
        t_new = np.linalg.lstsq(R_gt_N33.reshape(-1, 3), (mapped - c_gt_N3).reshape(-1), rcond=None)[0]
        moved = np.linalg.norm(t_new - t_off)
        t_off = t_new
        if moved < 1e-8:
            break
    residual = np.linalg.norm(s * c_src_N3 @ R.T + t - (c_gt_N3 + R_gt_N33 @ t_off), axis=1)
    return s, R, t, t_off, residual


def rotation_offset_deg(R_a_N33: np.ndarray, R_b_N33: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean camera-frame rotation ``R_off`` with ``R_b ~ R_a R_off`` (chordal mean) and each frame's angle to it."""
    M = np.einsum("nji,njk->ik", R_a_N33, R_b_N33)
    U, _, Vt = np.linalg.svd(M)
    R_off = U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt
    rel = np.einsum("nji,njk->nik", R_a_N33 @ R_off, R_b_N33)
    angles = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    return R_off, angles


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", default="redkitchen-gap")
    parser.add_argument("--data-root", type=Path, default=SEVEN_SCENES)
    parser.add_argument("--name", default=None, help="results name (default 2026-12-05-precision/pseudo_gt_<scene>)")
    parser.add_argument("--camera-model", default="SIMPLE_PINHOLE", choices=["SIMPLE_PINHOLE", "SIMPLE_RADIAL"])
    parser.add_argument("--refine-focal", action="store_true", help="refine the focal length in bundle adjustment")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="keep the COLMAP database and model here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    name = args.name or f"2026-12-05-precision/pseudo_gt_{args.scene}"

    scene = load_scene(args.data_root, args.scene)
    workdir = Path(tempfile.mkdtemp(prefix="pgt-")) if args.keep is None else args.keep
    workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    rec, timings = reconstruct(scene, workdir, args.camera_model, args.refine_focal, args.threads)
    timings["total_s"] = time.perf_counter() - t_start
    by_image = sfm_world_from_cam(rec)
    name_of = {f.image_path.relative_to(scene.root).as_posix(): f.name for f in scene.mapping + scene.query}
    sfm = {name_of[k]: v for k, v in by_image.items() if k in name_of}
    missing = [f.name for f in scene.mapping + scene.query if f.name not in sfm]

    mapping = [f for f in scene.mapping if f.name in sfm]
    queries = [f for f in scene.query if f.name in sfm]
    c_src = np.stack([sfm[f.name][:3, 3] for f in mapping])
    c_gt = np.stack([f.world_from_cam[:3, 3] for f in mapping])
    R_gt = np.stack([f.world_from_cam[:3, :3] for f in mapping])
    sim = pycolmap.estimate_sim3d(c_src, c_gt)
    if sim is None:
        raise SystemExit("Sim(3) estimation failed")
    s, R, t = float(sim.scale), np.asarray(sim.rotation.matrix()), np.asarray(sim.translation)
    residual = np.linalg.norm(s * c_src @ R.T + t - c_gt, axis=1)
    _, _, _, t_off_joint, residual_joint = fit_similarity(c_src, c_gt, R_gt)
    t_off = np.zeros(3)

    def metric(world_from_cam_sfm: np.ndarray) -> np.ndarray:
        out = np.eye(4)
        out[:3, :3] = R @ world_from_cam_sfm[:3, :3]
        out[:3, 3] = s * R @ world_from_cam_sfm[:3, 3] + t
        return out

    pgt = {n: metric(T) for n, T in sfm.items()}
    camera = rec.cameras[next(iter(rec.cameras))]
    focal = float(camera.params[0])
    lines = ["# SfM pseudo ground truth: name qw qx qy qz tx ty tz f (cam_from_world of the colour camera, metres)"]
    for f in scene.mapping + scene.query:
        if f.name not in pgt:
            continue
        cam_from_world = invert(pgt[f.name])
        q = rotmat_to_qvec(cam_from_world[:3, :3])
        tv = cam_from_world[:3, 3]
        rel = f.image_path.relative_to(scene.root).as_posix()
        lines.append(f"{rel} " + " ".join(f"{v:.9f}" for v in (*q, *tv)) + f" {focal:.4f}")
    pose_file = Path(__file__).resolve().parent / "results" / f"{name}.txt"
    write_text(pose_file, "\n".join(lines) + "\n")

    # Where each 7-Scenes pose lies from the pseudo ground truth, in that camera's frame (the
    # colour centre moved by the fitted offset first). Mapping frames: the fit's residual;
    # queries: never fitted, so what remains is the 7-Scenes pose's own error (or the SfM's).
    def camera_frame_offsets(frames) -> np.ndarray:
        rows = []
        for f in frames:
            c_colour_gt = f.world_from_cam[:3, 3] + f.world_from_cam[:3, :3] @ t_off
            d = pgt[f.name][:3, 3] - c_colour_gt
            rows.append(pgt[f.name][:3, :3].T @ d)
        return np.array(rows) * 100

    R_off, angles = rotation_offset_deg(np.stack([pgt[f.name][:3, :3] for f in mapping]), R_gt)
    _, q_angles = rotation_offset_deg(
        np.stack([pgt[f.name][:3, :3] for f in queries]), np.stack([f.world_from_cam[:3, :3] for f in queries])
    )
    off_map, off_q = camera_frame_offsets(mapping), camera_frame_offsets(queries)
    q_angle_to_map_offset = []
    for f in queries:
        rel = (pgt[f.name][:3, :3] @ R_off).T @ f.world_from_cam[:3, :3]
        q_angle_to_map_offset.append(float(np.degrees(np.arccos(np.clip((np.trace(rel) - 1) / 2, -1, 1)))))

    payload = {
        "scene": args.scene,
        "camera_model": args.camera_model,
        "registered": len(sfm),
        "images": len(scene.mapping) + len(scene.query),
        "missing": missing,
        "points3D": rec.num_points3D(),
        "mean_track_length": float(rec.compute_mean_track_length()),
        "mean_reprojection_error_px": float(rec.compute_mean_reprojection_error()),
        "focal_px": focal,
        "camera_params": [float(v) for v in camera.params],
        "timings_s": timings,
        "sim3": {"scale_m_per_unit": s, "R": R.tolist(), "t": t.tolist()},
        "joint_fit_diagnostic": {
            "t_off_cm": (t_off_joint * 100).tolist(),
            "centre_residual_median_cm": float(np.median(residual_joint) * 100),
        },
        "mapping_centre_residual_cm": {
            "median": float(np.median(residual) * 100),
            "p90": float(np.percentile(residual, 90) * 100),
        },
        "camera_frame_offset_cm": {
            "mapping_mean": off_map.mean(0).tolist(),
            "mapping_std": off_map.std(0).tolist(),
            "query_mean": off_q.mean(0).tolist(),
            "query_std": off_q.std(0).tolist(),
            "query_norm_median": float(np.median(np.linalg.norm(off_q, axis=1))),
        },
        "rotation_offset_deg": {
            "mapping_mean_offset": float(np.degrees(np.arccos(np.clip((np.trace(R_off) - 1) / 2, -1, 1)))),
            "mapping_spread_median": float(np.median(angles)),
            "query_to_mapping_offset_median": float(np.median(q_angle_to_map_offset)),
            "query_own_offset_spread_median": float(np.median(q_angles)),
        },
        "pose_file": pose_file.name,
    }
    fmt3 = lambda v: ", ".join(f"{x:+.1f}" for x in v)  # noqa: E731
    md = (
        f"# SfM pseudo ground truth of {args.scene}\n\n{{header}}"
        f"COLMAP (pycolmap {pycolmap.__version__}) over the {payload['images']} colour images, free poses, one shared "
        f"{args.camera_model} camera (principal point fixed at the centre, focal length "
        f"{'refined' if args.refine_focal else 'fixed'}), exhaustive matching, incremental mapping; "
        f"{payload['registered']} registered ({', '.join(missing) or 'none missing'}), "
        f"{payload['points3D']} points, track length {payload['mean_track_length']:.1f}, reprojection error "
        f"{payload['mean_reprojection_error_px']:.2f} px, f = {focal:.1f} px; "
        f"{timings['total_s'] / 60:.1f} min ({timings['features_s']:.0f} s features, {timings['matching_s']:.0f} s "
        f"matching, {timings['mapping_s']:.0f} s mapping).\n\n"
        f"Similarity fitted on the {len(mapping)} mapping frames' centres only: scale {s:.5f} m per unit; "
        f"mapping centres after the fit: {payload['mapping_centre_residual_cm']['median']:.2f} cm median, "
        f"{payload['mapping_centre_residual_cm']['p90']:.2f} cm p90 (diagnostic: fitted jointly with a camera-frame "
        f"offset of the colour centre, t_off = ({fmt3(t_off_joint * 100)}) cm, "
        f"{np.median(residual_joint) * 100:.2f} cm median).\n\n"
        "Where the 7-Scenes camera centres lie from the pseudo ground truth's, in the pseudo ground truth's camera "
        "frame (x right, y down, z forward):\n\n"
        "| frames | pseudo GT minus 7-Scenes centre, camera frame, mean (cm) | std (cm) |\n|---|---|---|\n"
        f"| mapping ({len(mapping)}) | {fmt3(off_map.mean(0))} | {fmt3(off_map.std(0))} |\n"
        f"| queries ({len(queries)}) | {fmt3(off_q.mean(0))} | {fmt3(off_q.std(0))} |\n\n"
        f"Rotation: the 7-Scenes camera frame is turned {payload['rotation_offset_deg']['mapping_mean_offset']:.2f}° "
        f"from the colour camera's on average over the mapping frames (spread {np.median(angles):.2f}° median); "
        f"the queries' 7-Scenes rotations lie {np.median(q_angle_to_map_offset):.2f}° (median) from that offset.\n\n"
        f"Pose file: `{pose_file.name}` (load with `--poses`).\n"
    )
    write_results(name, payload, md)
    if args.keep is None:
        shutil.rmtree(workdir, ignore_errors=True)
    log.info("wrote %s", pose_file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
