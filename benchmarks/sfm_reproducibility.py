"""Does one scene give one SfM map, and so one colour-depth rig? Build the rig's tracks several times and compare.

Each run builds, from scratch, the SIFT tracks a 7-Scenes scene's colour-depth rig is solved on
(``teach.rig.sift_tracks``: SIFT, pose-neighbour matching and fixed-pose triangulation of the mapping
frames) and records their number and a digest of their observation pairs; the solve that follows is
deterministic, so equal tracks give an equal rig. ``--match-threads``
overrides the matcher's threads (``slocal.data.colmap.DETERMINISTIC_THREADS``, 1) to show what threaded
matching does; triangulation stays on one thread either way, SIFT extraction uses ``SfmTeacherConfig``'s
two.

Usage::

    python benchmarks/sfm_reproducibility.py --scene redkitchen --repeats 3 --match-threads 2 \\
        --name 2026-12-06-reproducible/rig_match_threads2

Results: ``benchmarks/results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import SEVEN_SCENES, write_results
from slocal.data import load_scene
from slocal.teach.rig import RigConfig, sift_tracks
from slocal.teach.sfm import verify


def tracks_digest(tracks) -> str:
    """A digest of the observation pairs (frames and image points) the rig is solved on."""
    h = hashlib.sha256()
    for a in (tracks.frame_a, tracks.xy_a, tracks.frame_b, tracks.xy_b):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:12]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", default="redkitchen")
    parser.add_argument("--data-root", type=Path, default=SEVEN_SCENES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--match-threads", type=int, default=verify.DETERMINISTIC_THREADS)
    parser.add_argument("--name", default="sfm_reproducibility")
    args = parser.parse_args()
    verify.DETERMINISTIC_THREADS = args.match_threads  # the name match_and_verify reads at each call
    scene = load_scene(args.data_root, args.scene)
    config = RigConfig()
    rows = []
    for run in range(args.repeats):
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="sfm-repro-") as tmp:
            tracks = sift_tracks(scene, Path(tmp), config.max_pairs)
        rows.append(
            {
                "run": run,
                "tracks": tracks.num_tracks,
                "observation_pairs": len(tracks.frame_a),
                "digest": tracks_digest(tracks),
                "seconds": time.perf_counter() - t0,
            }
        )
        print(rows[-1], flush=True)
    digests = {r["digest"] for r in rows}
    lines = [
        f"# The SfM map of {args.scene}'s mapping frames, built {args.repeats} times\n",
        "{header}",
        f"Matching on {args.match_threads} thread(s), triangulation on one, SIFT extraction on two. "
        f"{len(digests)} distinct set(s) of tracks in {args.repeats} runs.\n",
        "| run | tracks | observation pairs | digest | s |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['run']} | {r['tracks']} | {r['observation_pairs']} | `{r['digest']}` | {r['seconds']:.0f} |"
        for r in rows
    ]
    payload = {"scene": args.scene, "match_threads": args.match_threads, "distinct": len(digests), "rows": rows}
    write_results(args.name, payload, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
