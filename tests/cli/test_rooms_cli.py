"""A home of rooms through the real CLI: localize names each photo's room, bench reports room recognition."""

import json
import shutil

import pytest

from helpers.cli_run import lines, run_many
from helpers.rooms_home import HOME, ROOMS
from slocal.data import load_scene


@pytest.mark.slow  # the tiny home's students (about 20 s, once per session) and five CLI runs
def test_localize_and_bench_a_home_of_two_rooms(tiny_home, tmp_path):
    data, runs = tiny_home
    photos = {}
    for room in ROOMS:
        frame = load_scene(data, room).query[0]
        photos[room] = tmp_path / f"{room.split('/')[1]}.jpg"
        shutil.copy(frame.image_path, photos[room])
    partial = tmp_path / "partial-runs"
    shutil.copytree(runs / "home" / "kitchen", partial / "home" / "kitchen")
    roots = ["--data-root", data, "--runs", runs]
    images = list(photos.values())
    out = tmp_path / "poses" / "home.txt"
    bench_out = tmp_path / "bench"
    jobs = [
        ["localize", *images, "--scene", HOME, *roots],
        ["localize", *images, "--scene", HOME, "--json", "--out", out, *roots],
        ["localize", *images, "--scene", HOME, "--data-root", data, "--runs", partial],
        ["bench", "--scenes", HOME, "--methods", "ace", "--no-distill", "--out", bench_out, *roots],
        ["bench", "--scenes", HOME, "--methods", "sift", "--no-distill", "--out", tmp_path / "sift", *roots],
    ]
    text, as_json, missing, bench, sift = run_many(jobs, tmp_path / "jobs")

    # Text: `path room qw qx qy qz tx ty tz inliers room_ratio`, the right room for each photo.
    assert text.returncode == 0, text.stderr
    printed = lines(text.stdout)
    assert len(printed) == 2
    for line, (room, photo) in zip(printed, photos.items()):
        fields = line.split()
        assert fields[0] == str(photo) and fields[1] == room and len(fields) == 11, line
        assert int(fields[9]) >= 20 and float(fields[10]) >= 1.4, line

    # JSON and --out: the same rooms, the check inliers of both rooms, and the rooms file.
    assert as_json.returncode == 0, as_json.stderr
    entries = json.loads(as_json.stdout)
    assert [e["room"] for e in entries] == list(ROOMS)
    for e in entries:
        assert set(e["room_inliers"]) == set(ROOMS) and e["room_ratio"] >= 1.4 and e["success"]
    rooms_file = out.with_name("home_rooms.txt")
    assert [line.split()[:2] for line in lines(rooms_file.read_text())] == [
        [str(photo), room] for room, photo in photos.items()
    ]
    sidecar = json.loads(out.with_name("home.json").read_text())
    assert sidecar["scene"] == HOME and set(sidecar["rooms"]) == set(ROOMS)
    assert sidecar["rooms_file"] == str(rooms_file) and sidecar["localized"] == 2
    assert len(lines(out.read_text())) == 2  # hloc's own format, unchanged: 8 fields a line
    assert all(len(line.split()) == 8 for line in lines(out.read_text()))

    # A room without a student: one line naming it and the command that makes its student.
    assert missing.returncode == 1 and missing.stdout == ""
    err = lines(missing.stderr)
    assert len(err) == 1 and err[0].startswith("error: ") and "living/students/ace-lite0/model.pt" in err[0], err
    assert "1 of the 2 rooms of home have no ace student" in err[0]
    assert "room home/living: run `slocal distill --scene home/living --student ace`" in err[0]

    # Bench: room recognition, and the accuracy of the queries placed in the right room.
    assert bench.returncode == 0, bench.stderr
    (row,) = json.loads((bench_out / "results.json").read_text())["rows"]
    assert row["scene"] == HOME and row["method"] == "ace" and row["failed"] is None
    assert row["n_rooms"] == 2 and row["rooms"] == "home/kitchen, home/living" and row["n_queries"] == 4
    assert row["room_recognition"] == 100.0 * row["n_room_right"] / 4 and row["n_room_right"] == 4
    assert row["room_ratio_median"] >= 1.4 and row["shared_encoder"] is True
    assert row["ms_encoder"] > 0 and row["ms_check"] > 0 and row["median_t_cm"] is not None
    assert "mean_cam_err" in row and row["n_cam_err"] <= row["n_room_right"]  # the systematic part, placed right
    per_query = json.loads((bench_out / "per_query.json").read_text())
    assert sorted((q["room"], q["room_est"]) for q in per_query) == sorted((r, r) for r in ROOMS for _ in range(2))
    assert "placed in the right room (4 of 4" in (bench_out / "results.md").read_text()
    plots = sorted(p.name for p in (bench_out / "plots").iterdir())
    assert plots == sorted(f"home_{r.split('/')[1]}_{k}.png" for r in ROOMS for k in ("cumulative_errors", "positions"))
    # A baseline has no room recognition: a failed row that says what to run instead.
    assert sift.returncode == 1
    (sift_row,) = json.loads((tmp_path / "sift" / "results.json").read_text())["rows"]
    assert "room recognition is measured for students" in sift_row["failed"]
    assert "--scenes home/kitchen,home/living" in sift_row["failed"]
