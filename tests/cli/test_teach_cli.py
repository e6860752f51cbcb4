"""``slocal teach`` with teacher settings from the command line (``--teacher-option``)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from slocal.data import load_scene
from slocal.teach import make_teacher
from slocal.teach.targets import targets_dir
from slocal_cli.main import app

runner = CliRunner()


def test_teacher_options_reach_the_teacher_and_its_cache(cli_data, tmp_path):
    runs = tmp_path / "runs"
    r = runner.invoke(
        app,
        ["teach", "--scene", "tiny", "--teacher", "depth", "--data-root", str(cli_data), "--runs", str(runs), "--json",
         "--teacher-option", "smooth_px=3", "--teacher-option", "max_side=64"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    scene = load_scene(cli_data, "tiny")
    assert out["directory"] == str(targets_dir(runs, scene, make_teacher("depth", smooth_px=3, max_side=64)))
    assert out["directory"] != str(targets_dir(runs, scene, make_teacher("depth", max_side=64)))
    # Targets 64 px wide (the images are 128 px): at most 64 x 48 per frame.
    assert 0.5 * 64 * 48 * out["frames"] < out["points"] <= 64 * 48 * out["frames"]


def test_a_bad_teacher_option_is_one_line(cli_data, tmp_path):
    args = ["teach", "--scene", "tiny", "--data-root", str(cli_data), "--runs", str(tmp_path)]
    r = runner.invoke(app, [*args, "--teacher-option", "smooth_px=4"])
    assert r.exit_code == 1
    err = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and "smooth_px must be odd" in err[0], r.stderr
