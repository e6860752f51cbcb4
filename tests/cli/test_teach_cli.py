"""``slocal teach`` with teacher settings from the command line (``--teacher-option``)."""

from __future__ import annotations

import json

from helpers.cli_run import lines, run_slocal


def test_teacher_options_reach_the_teacher_and_its_cache(cli_data, tmp_path):
    common = ["--scene", "tiny", "--teacher", "depth", "--data-root", cli_data, "--runs", tmp_path / "runs", "--json"]
    plain = run_slocal("teach", *common)
    smoothed = run_slocal("teach", *common, "--teacher-option", "smooth_px=3", "--teacher-option", "max_side=64")
    assert plain.returncode == 0, plain.stderr
    assert smoothed.returncode == 0, smoothed.stderr
    a, b = json.loads(plain.stdout), json.loads(smoothed.stdout)
    assert a["directory"] != b["directory"]  # other settings, other cached targets
    assert b["frames"] == a["frames"] and b["points"] < a["points"] / 3  # targets 64 px wide, not 128


def test_a_bad_teacher_option_is_one_line(cli_data, tmp_path):
    r = run_slocal(
        "teach", "--scene", "tiny", "--data-root", cli_data, "--runs", tmp_path, "--teacher-option", "smooth_px=4"
    )
    assert r.returncode == 1 and len(lines(r.stderr)) == 1, r.stderr
    assert "smooth_px must be odd" in r.stderr
