import json

from typer.testing import CliRunner

import slocal.bench.runner as bench_runner
from helpers.student_standin import SceneOracleStudent
from slocal.data import load_scene
from slocal.distill.config_files import default_model_path
from slocal_cli.main import app

runner = CliRunner()


def test_bench_prints_table_and_plot_paths(tiny_twelve_scenes, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    path = default_model_path(runs, "apt0/tiny", "cnn")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"stand-in")
    monkeypatch.setattr(
        bench_runner,
        "load_model",
        lambda p, device="cpu", expect_scene=None, **kw: SceneOracleStudent(
            load_scene(tiny_twelve_scenes, expect_scene)
        ),
    )
    out = tmp_path / "out"
    args = [
        "bench",
        "--scenes",
        "apt0/tiny",
        "--methods",
        "cnn",
        "--data-root",
        str(tiny_twelve_scenes),
        "--runs",
        str(runs),
        "--out",
        str(out),
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "| apt0/tiny | cnn | depth | 2 |" in r.stdout and "reference" in r.stdout
    assert "plot: " in r.stdout and "apt0_tiny_positions.png" in r.stdout
    data = json.loads((out / "results.json").read_text())
    assert data["command"].startswith("slocal ") and data["rows"][0]["acc_1cm1deg"] == 100.0
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["rows"][0]["method"] == "cnn"
    # A malformed teacher option is one line; a well-formed one is part of the recorded command.
    r = runner.invoke(app, [*args, "--teacher-option", "smooth_px"])
    assert r.exit_code != 0 and "a teacher option is KEY=VALUE" in r.output
    r = runner.invoke(app, [*args, "--teacher-option", "smooth_px=15"])
    assert r.exit_code == 0, r.output
    assert "--teacher-option smooth_px=15" in json.loads((out / "results.json").read_text())["command"]
    assert json.loads((out / "results.json").read_text())["rows"][0]["ransac_threshold_px"] == 25.0
    # --ransac-threshold replaces the student's threshold (this stand-in states none: DENSE_PNP's).
    r = runner.invoke(app, [*args, "--ransac-threshold", "12", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads((out / "results.json").read_text())
    assert data["rows"][0]["ransac_threshold_px"] == 12.0 and "--ransac-threshold 12" in data["command"]
    # So is a rig file that is not there, before any scene runs.
    r = runner.invoke(app, [*args, "--depth-registration", str(tmp_path / "rig.json"), "--out", str(tmp_path / "o2")])
    assert r.exit_code != 0 and "rig.json: file not found" in r.output
    assert not (tmp_path / "o2").exists()


def test_bench_unknown_data_root_is_one_line_error(tmp_path):
    r = runner.invoke(app, ["bench", "--data-root", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "data root not found" in r.stderr and len(r.stderr.strip().splitlines()) == 1
