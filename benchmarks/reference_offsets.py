"""Where two references of one scene put the same cameras: the check to make before tuning to an offset.

A student's error that is the same in every frame's camera frame is either the student's or the
reference's. This script compares the references themselves, frame by frame, with no model involved:
the first reference (``--poses``, e.g. the SfM pseudo ground truth) against the dataset's poses as
loaded and moved to the colour camera through the rig (``cross_reference.references``). Frames are
grouped as a student with ``train.val_stretch`` sees them: the mapping frames it trains on, the
held-out stretch it is validated on, and the queries.

Per group: the other reference's camera centre minus the first's, in the first's camera frame
(x right, y down, z forward; mean and spread, cm) and the rotation between them (median, deg). Each
comparison is made twice: in the world frames as given (the pseudo ground truth is aligned on all
mapping frames) and after a similarity refitted on the training frames' centres only, so the
held-out stretch and the queries show how the reference disagrees where it was not fitted.

Rotations: a common world rotation (an alignment's) and a common camera rotation (a rig's) are
fitted jointly on the training frames, and a world rotation alone beside them. Where the cameras'
orientations vary little the joint fit trades one for the other; a world rotation alone that leaves
about as little per frame says the rotation is the alignment's (a similarity fitted on the centres
of a thin trajectory leaves the rotation about its long axis ill-determined).

Usage::

    python benchmarks/reference_offsets.py --scene redkitchen-gap \\
        --poses results/2026-12-05-precision/pseudo_gt_redkitchen-gap.txt --runs RUNS --val-stretch 0.15 \\
        --name 2026-12-05-finish/reference_offsets_gap
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from common import SEVEN_SCENES, write_results
from cross_reference import references
from slocal.capture.scale import fit_similarity
from slocal.distill.data import split_mapping
from slocal.geometry.pose import orthonormalize, pose_error, to_homogeneous


def frame_groups(scene, val_stretch: float) -> dict[str, list[str]]:
    """Frame names per group, as the trainer splits them (``split_mapping``)."""
    train_scene, held_out = split_mapping(scene, 0, val_stretch)
    groups = {"mapping, trained on": [f.name for f in train_scene.mapping]}
    if held_out:
        groups["mapping, held-out stretch"] = [f.name for f in held_out]
    groups["queries"] = [f.name for f in scene.query]
    return groups


def poses_by_name(scene) -> dict[str, np.ndarray]:
    return {f.name: f.world_from_cam for f in scene.mapping + scene.query}


def _nearest_rotation(M_33: np.ndarray) -> np.ndarray:
    return orthonormalize(to_homogeneous(M_33, np.zeros(3)))[:3, :3]


def common_rotations(first: dict, other: dict, names: list[str], iterations: int = 100, camera: bool = True):
    """``R_world, R_cam`` minimising the angles between ``R_world @ R_other @ R_cam`` and ``R_first`` (chordal).

    A world rotation is an alignment's; a camera rotation is a rig's (or a principal point's); what is
    left is how the references disagree frame by frame. Alternates the two closed-form steps; with
    ``camera`` off, ``R_cam`` stays the identity (the world rotation alone, one closed-form step).
    """
    R_w, R_c = np.eye(3), np.eye(3)
    pairs = [(first[n][:3, :3], other[n][:3, :3]) for n in names if n in first and n in other]
    for _ in range(iterations if camera else 1):
        R_w = _nearest_rotation(sum(A @ (B @ R_c).T for A, B in pairs))
        if camera:
            R_c = _nearest_rotation(sum((R_w @ B).T @ A for A, B in pairs))
    return R_w, R_c


def _angle_deg(R_a_33: np.ndarray, R_b_33: np.ndarray) -> float:
    """The angle between two rotations (``pose_error``'s; it does not depend on the poses' direction)."""
    return pose_error(to_homogeneous(R_a_33, np.zeros(3)), to_homogeneous(R_b_33, np.zeros(3)))[1]


def offsets(first: dict, other: dict, names: list[str], sim=None, rotations=None) -> dict:
    """``other``'s centres minus ``first``'s in ``first``'s camera frames (cm), rotation between them (deg).

    With ``rotations`` (``common_rotations``), also the angle left per frame once they are taken away.
    """
    rows, angles, left = [], [], []
    R_w, R_c = rotations if rotations is not None else (None, None)
    for name in names:
        if name not in first or name not in other:
            continue
        A, B = first[name], other[name]
        R_b, c_b = B[:3, :3], B[:3, 3]
        if sim is not None:
            R_b, c_b = sim.R_33 @ R_b, sim.apply(c_b[None])[0]
        rows.append(A[:3, :3].T @ (c_b - A[:3, 3]) * 100.0)
        angles.append(_angle_deg(A[:3, :3], R_b))
        if rotations is not None:
            left.append(_angle_deg(A[:3, :3], R_w @ B[:3, :3] @ R_c))
    if not rows:
        return {"frames": 0}
    a = np.array(rows)
    return {
        "frames": len(rows),
        "mean_cm": a.mean(0).tolist(),
        "std_cm": a.std(0).tolist(),
        "median_dist_cm": float(np.median(np.linalg.norm(a, axis=1))),
        "median_deg": float(np.median(angles)),
        "median_deg_after_common_rotations": float(np.median(left)) if left else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", default="redkitchen-gap")
    parser.add_argument("--data-root", type=Path, default=SEVEN_SCENES)
    parser.add_argument("--poses", type=Path, action="append", required=True, help="the first reference's pose file")
    parser.add_argument("--runs", type=Path, required=True, help="runs folder for the rig estimate (cached)")
    parser.add_argument("--val-stretch", type=float, default=0.15, help="the held-out stretch, as train.val_stretch")
    parser.add_argument("--name", required=True)
    args = parser.parse_args()

    refs = references(args)
    (first_name, first_scene), *others = refs.items()
    first = poses_by_name(first_scene)
    groups = frame_groups(first_scene, args.val_stretch)
    train_names = groups["mapping, trained on"]
    rows, rotation_notes, rotation_fits = [], [], []
    for other_name, other_scene in others:
        other = poses_by_name(other_scene)
        shared = [n for n in train_names if n in other]
        refit = fit_similarity(np.array([other[n][:3, 3] for n in shared]), np.array([first[n][:3, 3] for n in shared]))
        rotations = common_rotations(first, other, train_names)
        for alignment, sim in (("as given", None), ("refitted on the training frames", refit)):
            for group, names in groups.items():
                stats = offsets(first, other, names, sim, rotations if sim is None else None)
                rows.append({"reference": other_name, "alignment": alignment, "group": group, **stats})
        world_deg, cam_deg = (_angle_deg(np.eye(3), R) for R in rotations)
        world_only = common_rotations(first, other, train_names, camera=False)
        world_only_deg = _angle_deg(np.eye(3), world_only[0])
        left_world_only = offsets(first, other, train_names, rotations=world_only)["median_deg_after_common_rotations"]
        rotation_notes.append(
            f"{other_name}: world {world_deg:.2f}°, camera {cam_deg:.2f}°; a world rotation alone "
            f"{world_only_deg:.2f}°, leaving {left_world_only:.2f}° per training frame"
        )
        rotation_fits.append(
            {
                "reference": other_name,
                "world_deg": world_deg,
                "camera_deg": cam_deg,
                "world_only_deg": world_only_deg,
                "world_only_left_deg_training_frames": left_world_only,
            }
        )

    def vec(v):
        return ", ".join(f"{x:+.1f}" for x in v)

    lines = [
        f"# {args.scene}: where the references put the same cameras\n",
        "{header}",
        f"First reference: {first_name}. Each row: the other reference's camera centre minus the first's, in the "
        "first's camera frame (x right, y down, z forward), mean and spread over the group's frames; the rotation "
        f"between them (median). Groups as a student with `val_stretch: {args.val_stretch}` sees the mapping frames. "
        "*° left*: the rotation per frame once a common world rotation and a common camera rotation, fitted on the "
        f"training frames, are taken away (fitted jointly; where the cameras' orientations vary little the two trade "
        f"off, so read them together: {'; '.join(rotation_notes)}).\n",
        "| reference | alignment | frames | n | mean x, y, z cm | std x, y, z cm | median distance cm | median ° "
        "| median ° left |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if not r["frames"]:
            continue
        left = (
            "-" if r["median_deg_after_common_rotations"] is None else f"{r['median_deg_after_common_rotations']:.2f}"
        )
        lines.append(
            f"| {r['reference']} | {r['alignment']} | {r['group']} | {r['frames']} | {vec(r['mean_cm'])} | "
            f"{vec(r['std_cm'])} | {r['median_dist_cm']:.1f} | {r['median_deg']:.2f} | {left} |"
        )
    payload = {
        "scene": args.scene,
        "first_reference": first_name,
        "val_stretch": args.val_stretch,
        "rows": rows,
        "rotation_fits": rotation_fits,
    }
    write_results(args.name, payload, "\n".join(lines) + "\n")
    print("\n".join(lines).replace("{header}", ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
