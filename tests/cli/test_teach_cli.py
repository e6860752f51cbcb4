"""``slocal teach`` with teacher settings from the command line (``--teacher-option``)."""

from __future__ import annotations

import json

from helpers.cli_run import lines, run_slocal
from slocal.data import load_scene
from slocal.teach import make_teacher
from slocal.teach.targets import targets_dir


def test_teacher_options_reach_the_teacher_and_its_cache(cli_data, tmp_path):
    runs = tmp_path / "runs"
    r = run_slocal(
        "teach", "--scene", "tiny", "--teacher", "depth", "--data-root", cli_data, "--runs", runs, "--json",
        "--teacher-option", "smooth_px=3", "--teacher-option", "max_side=64",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    scene = load_scene(cli_data, "tiny")
    assert out["directory"] == str(targets_dir(runs, scene, make_teacher("depth", smooth_px=3, max_side=64)))
    assert out["directory"] != str(targets_dir(runs, scene, make_teacher("depth", max_side=64)))
    # Targets 64 px wide (the images are 128 px): at most 64 x 48 per frame.
    assert 0.5 * 64 * 48 * out["frames"] < out["points"] <= 64 * 48 * out["frames"]


def test_a_bad_teacher_option_is_one_line(cli_data, tmp_path):
    r = run_slocal(
        "teach", "--scene", "tiny", "--data-root", cli_data, "--runs", tmp_path, "--teacher-option", "smooth_px=4"
    )
    assert r.returncode == 1 and len(lines(r.stderr)) == 1, r.stderr
    assert "smooth_px must be odd" in r.stderr
