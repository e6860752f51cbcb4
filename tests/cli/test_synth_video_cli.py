"""`slocal synth NAME --video`: the room's walk-through videos instead of its scene folder."""

import json

from helpers.cli_run import lines, run_slocal
from slocal.data.synth.video import read_video_poses


def test_synth_writes_the_walk_and_query_videos_only(tmp_path):
    data = tmp_path / "data"
    videos = ["--video", tmp_path / "room.mp4", "--query-video", tmp_path / "room-q.mp4"]
    r = run_slocal("synth", "room", *videos, "--video-seconds", 1, "--video-fps", 4, "--json", "--data-root", data)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [v["frames"] for v in out["videos"]] == [4, 8]  # the query walk lasts a quarter, at least 2 s
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "room-q.mp4",
        "room-q.poses.txt",
        "room.mp4",
        "room.poses.txt",
    ]
    assert len(read_video_poses(tmp_path / "room.poses.txt")) == 4 and not data.exists()


def test_query_video_needs_video(tmp_path):
    r = run_slocal("synth", "room", "--query-video", tmp_path / "q.mp4", "--data-root", tmp_path / "data")
    assert r.returncode == 1 and lines(r.stderr) == ["error: --query-video needs --video"]
