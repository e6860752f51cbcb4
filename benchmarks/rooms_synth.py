"""A home of procedural rooms: is each query placed in its room, and what do more rooms cost per query.

Builds, with the product's own commands (subprocesses), a home of two different synth rooms and a
third room beside it::

    slocal synth home/kitchen --queries Q                   (room layout 1, the demo room)
    slocal synth home/living --room 2 --queries Q           (room layout 2)
    slocal synth extra/bedroom --seed 7 --queries Q         (layout 1, other textures and furniture)
    slocal distill --scene S --iterations N                 (each room: the default ace student)
    slocal bench --scenes home --methods ace --no-distill   (room recognition, accuracy of those placed right)

then times, in this one process, localizing the decoded query images of home/kitchen and home/living:

- ``1 room``: each room's own ``Localizer`` on its own queries (what a one-room user runs);
- ``2 rooms``: ``RoomLocalizer`` over the two rooms (one shared encoder pass, the room check, one
  final RANSAC) on the same queries;
- ``2 rooms, separate``: the two rooms' own ``Localizer`` one after the other, the room with most
  inliers kept (N single-room localizers: what sharing saves);
- ``3 rooms`` and ``3 rooms, separate``: the same with the bedroom too (``RoomLocalizer`` ranks the
  rooms by descriptor and checks the top two unless unsure).

The cases alternate within every pass (their order rotated from pass to pass), so a slow minute of
this shared machine falls on all of them alike; ratios are per pass and over all passes. Milliseconds
are network + RANSAC (``ms["total"]`` of an image already decoded). Results go to
``benchmarks/results/<name>.{json,md}`` and the bench report beside them.

Usage::

    python benchmarks/rooms_synth.py --work /path/to/scratch --iterations 3000 --passes 5 \\
        --name 2026-12-05-rooms/rooms_synth
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import REPORT_FILES, RESULTS, write_results
from slocal.data import load_scene
from slocal.distill.config_files import default_model_path
from slocal.distill.model_file import read_model_payload
from slocal.io import read_image
from slocal.localize.localizer import Localizer, load_model
from slocal.localize.rooms import RoomLocalizer

HOME = ("home/kitchen", "home/living")
EXTRA = "extra/bedroom"
SYNTH = {"home/kitchen": [], "home/living": ["--room", "2"], EXTRA: ["--seed", "7"]}
WARMUP = 3


def slocal(*args: object, stdout=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "slocal_cli.main", *(str(a) for a in args)]
    print("$", shlex.join(["slocal", *cmd[3:]]), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, stdout=stdout, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"`{shlex.join(['slocal', *cmd[3:]])}` failed with exit code {proc.returncode}")
    return proc


def rooms_of(args) -> tuple[str, ...]:
    return (*HOME, EXTRA) if args.extra_room else HOME


def prepare(args) -> dict:
    """Render the rooms and distill their students where missing; what each student was trained with."""
    data, runs = args.work / "data", args.work / "runs"
    info = {}
    for room in rooms_of(args):
        extra = SYNTH[room]
        if not (data / room / "info.txt").is_file():
            slocal("synth", room, "--queries", args.queries, *extra, "--data-root", data)
        model = default_model_path(runs, room)
        if not model.is_file():
            slocal("distill", "--scene", room, "--iterations", args.iterations, "--data-root", data, "--runs", runs)
        train = read_model_payload(model)["train"]
        if int(train["iterations"]) != args.iterations:
            raise SystemExit(f"{model} was trained for {train['iterations']} iterations, not {args.iterations}")
        info[room] = {
            "model": str(model.relative_to(args.work)),
            "iterations": int(train["iterations"]),
            "minutes": train.get("minutes"),
            "encode_minutes": train.get("encode_minutes"),
        }
    return info


def bench_home(args) -> dict:
    """``slocal bench`` on the two-room home; its report files copied under the results."""
    out = args.work / "bench_home"
    if out.exists():
        shutil.rmtree(out)
    data, runs = args.work / "data", args.work / "runs"
    slocal(
        "bench",
        "--scenes",
        "home",
        "--methods",
        "ace",
        "--no-distill",
        "--data-root",
        data,
        "--runs",
        runs,
        "--out",
        out,
    )
    keep = RESULTS / args.name
    keep.mkdir(parents=True, exist_ok=True)
    for name in REPORT_FILES:
        if (out / name).is_file():
            shutil.copy(out / name, keep / name)
    (row,) = json.loads((out / "results.json").read_text())["rows"]
    return row


class Separate:
    """N single-room localizers one after the other; the room with most inliers kept."""

    def __init__(self, localizers: dict[str, Localizer]):
        self.localizers = localizers

    def localize(self, rgb, camera) -> tuple[str, dict]:
        results = {room: loc.localize(rgb, camera) for room, loc in self.localizers.items()}
        room = max(results, key=lambda r: results[r].num_inliers)
        keys = ("network", "ransac", "total")
        return room, {k: sum(r.ms[k] for r in results.values()) for k in keys}


STAGES = ("encoder", "heads", "check", "network", "ransac", "total")


def time_cases(args) -> dict:
    data, runs = args.work / "data", args.work / "runs"
    scenes = {room: load_scene(data, room) for room in rooms_of(args)}
    queries = [(room, read_image(f.image_path), f.camera) for room in HOME for f in scenes[room].query]
    models = {room: load_model(default_model_path(runs, room), expect_scene=room) for room in scenes}
    single = {room: Localizer(models[room]) for room in scenes}
    # The same students with their sessions' threads sleeping between runs, as the rooms' sessions
    # are (localize/rooms.py): the like-for-like one-room time, spinning being the only difference.
    sleeping = {}
    for room in HOME:
        model = load_model(default_model_path(runs, room), expect_scene=room)
        session = model.module._ort
        session.spinning = False
        session._sessions.clear()
        width, height = model.image_size
        session.session((1, 3, height, width))
        sleeping[room] = Localizer(model)
    two = RoomLocalizer({room: models[room] for room in HOME})
    cases = {
        "1 room": lambda room, rgb, cam: (room, single[room].localize(rgb, cam).ms),
        "1 room, threads sleeping": lambda room, rgb, cam: (room, sleeping[room].localize(rgb, cam).ms),
        "2 rooms": lambda room, rgb, cam: _room_and_ms(two.localize(rgb, cam)),
        "2 rooms, separate": lambda room, rgb, cam, s=Separate({r: single[r] for r in HOME}): s.localize(rgb, cam),
    }
    three = None
    if args.extra_room:
        three = RoomLocalizer(models)
        three.describe_from_scenes(scenes)
        cases["3 rooms"] = lambda room, rgb, cam: _room_and_ms(three.localize(rgb, cam))
        cases["3 rooms, separate"] = lambda room, rgb, cam, s=Separate(single): s.localize(rgb, cam)
    for run in cases.values():
        for room, rgb, cam in queries[:WARMUP]:
            run(room, rgb, cam)
    ms = {name: [] for name in cases}
    right = {name: [] for name in cases}
    names = list(cases)
    for p in range(args.passes):
        order = names[p % len(names) :] + names[: p % len(names)]
        for name in order:
            for room, rgb, cam in queries:
                placed, t = cases[name](room, rgb, cam)
                ms[name].append(t)
                right[name].append(placed == room)
        last = len(queries)
        print(
            f"pass {p + 1}: " + ", ".join(f"{n} {np.median([m['total'] for m in ms[n][-last:]]):.1f}" for n in names),
            flush=True,
        )
    n = len(queries)
    base = np.asarray([m["total"] for m in ms["1 room"]]).reshape(args.passes, n)
    base_sleeping = np.asarray([m["total"] for m in ms["1 room, threads sleeping"]]).reshape(args.passes, n)
    rows = []
    for name in names:
        per_pass = np.asarray([m["total"] for m in ms[name]]).reshape(args.passes, n)
        rows.append(
            {
                "case": name,
                "localizations": int(per_pass.size),
                "ms_p50": float(np.median(per_pass)),
                "ms_p90": float(np.quantile(per_pass, 0.9)),
                "ratio_to_1_room": float(np.median(per_pass) / np.median(base)),
                "ratio_per_pass": [float(np.median(a) / np.median(b)) for a, b in zip(per_pass, base)],
                "ratio_to_1_room_sleeping": float(np.median(per_pass) / np.median(base_sleeping)),
                "room_right_pct": 100.0 * float(np.mean(right[name])),
                # Median of each stage on its own (they need not add up to the total's median).
                "stages_ms_p50": {
                    k: float(np.median([m[k] for m in ms[name]])) for k in STAGES if all(k in m for m in ms[name])
                },
            }
        )
    payload = {"queries_timed": n, "passes": args.passes, "rows": rows}
    if three is not None:
        # Room recognition of three rooms on every room's queries (the bedroom's too), and how often the
        # descriptor alone ranks the right room first.
        all_queries = [(room, read_image(f.image_path), f.camera) for room in scenes for f in scenes[room].query]
        three_right, top1, checked = [], [], []
        for room, rgb, cam in all_queries:
            loc = three.localize(rgb, cam)
            three_right.append(loc.room == room)
            checked.append(len(loc.room_inliers))
            features = {k: e(rgb, cam) for k, e in three.encoders.items()}
            top1.append(three._ranked(features)[0] == room)
        payload["three_rooms"] = {
            "queries": len(all_queries),
            "room_right_pct": 100.0 * float(np.mean(three_right)),
            "descriptor_top1_pct": 100.0 * float(np.mean(top1)),
            "rooms_checked_mean": float(np.mean(checked)),
        }
    return payload


def _room_and_ms(loc) -> tuple[str, dict]:
    return loc.room, loc.ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for the data, students and bench")
    parser.add_argument("--iterations", type=int, default=3000, help="head iterations of each room's student")
    parser.add_argument("--queries", type=int, default=30, help="query frames rendered per room")
    parser.add_argument("--passes", type=int, default=5, help="timed passes over the queries per case")
    parser.add_argument(
        "--note", default=None, help="a line recorded with the results (e.g. where the students came from)"
    )
    parser.add_argument(
        "--extra-room",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a third room (extra/bedroom, not in the home) for the 3-room cases",
    )
    parser.add_argument("--name", default="2026-12-05-rooms/rooms_synth", help="results name under benchmarks/results/")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch/onnxruntime threads of the timing (default: torch's)"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_start = list(os.getloadavg())
    start = time.time()
    students = prepare(args)
    bench = bench_home(args)
    timing = time_cases(args)
    payload = {
        "loadavg_at_start": load_start,
        "threads": torch.get_num_threads(),
        "wall_s": time.time() - start,
        "note": args.note,
        "students": students,
        "bench_home": {
            k: bench.get(k)
            for k in (
                "n_queries",
                "n_rooms",
                "room_recognition",
                "n_room_right",
                "room_ratio_median",
                "median_t_cm",
                "median_r_deg",
                "acc_10cm5deg",
                "acc_5cm5deg",
                "acc_2cm2deg",
                "ms_per_query",
                "ms_encoder",
                "ms_heads",
                "ms_check",
            )
        },
        **timing,
    }
    b = payload["bench_home"]
    lines = [
        "# A home of two procedural rooms: room recognition and time per query\n",
        "{header}",
        f"- load average at start {', '.join(f'{v:.2f}' for v in load_start)} (the machine is shared); "
        f"{torch.get_num_threads()} torch / onnxruntime threads in the timing",
        f"- students: the default `ace` (ace-lite0) per room, `slocal distill --iterations {args.iterations}` "
        f"(not minutes: the same model however loaded the machine is); {args.queries} query frames per room"
        + (f"\n- note: {args.note}" if args.note else "")
        + "\n",
        "## Room recognition (`slocal bench --scenes home --methods ace`)\n",
        "| home | queries | placed in the right room | median best / runner-up inliers | "
        "median cm / ° (placed right) | % @10cm5° / 5cm5° / 2cm2° (placed right) | ms/query p50 |",
        "|---|---|---|---|---|---|---|",
        f"| home (kitchen: layout 1, living: layout 2) | {b['n_queries']} | {b['room_recognition']:.1f} % "
        f"({b['n_room_right']} of {b['n_queries']}) | {b['room_ratio_median']:.1f} | "
        f"{b['median_t_cm']:.1f} / {b['median_r_deg']:.2f} | {b['acc_10cm5deg']:.0f} / {b['acc_5cm5deg']:.0f} / "
        f"{b['acc_2cm2deg']:.0f} | {b['ms_per_query']:.1f} |",
        "",
        f"## Time per query (network + RANSAC, images decoded beforehand; {timing['queries_timed']} queries of the "
        f"two rooms x {args.passes} passes per case, cases alternating)\n",
        "| case | localizations | ms p50 | ms p90 | p50 / 1 room | per pass | p50 / 1 room, threads sleeping | "
        "placed right |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in timing["rows"]:
        lines.append(
            f"| {r['case']} | {r['localizations']} | {r['ms_p50']:.1f} | {r['ms_p90']:.1f} | "
            f"{r['ratio_to_1_room']:.2f} | {', '.join(f'{v:.2f}' for v in r['ratio_per_pass'])} | "
            f"{r['ratio_to_1_room_sleeping']:.2f} | {r['room_right_pct']:.1f} % |"
        )
    lines += [
        "",
        "Median per stage (ms; each stage's own median): "
        + "; ".join(
            f"{r['case']}: " + ", ".join(f"{k} {v:.1f}" for k, v in r["stages_ms_p50"].items()) for r in timing["rows"]
        ),
        "",
    ]
    t3 = timing.get("three_rooms")
    if t3 is not None:
        lines += [
            f"Three rooms on all {t3['queries']} queries of the three rooms: {t3['room_right_pct']:.1f} % placed "
            f"right; the descriptor alone ranks the right room first for {t3['descriptor_top1_pct']:.1f} %; "
            f"{t3['rooms_checked_mean']:.2f} rooms checked per query on average.",
            "",
        ]
    write_results(args.name, payload, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
