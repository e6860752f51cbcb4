import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from helpers.distill_fixtures import TINY_SCENE, TINY_STUDENT, tiny_train
from slocal.data import load_scene
from slocal.data.rig import DepthRegistration
from slocal.data.synth import render_scene
from slocal.distill.config import to_plain
from slocal.distill.model_file import load_student
from slocal.distill.rig_source import resolve_depth_registration
from slocal.errors import SlocalError
from slocal.teach.rig import registered_scene
from slocal_cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """The distillation tests' tiny rendered RGB-D scene (tests/helpers/distill_fixtures.py)."""
    root = tmp_path_factory.mktemp("distill-cli") / "data"
    render_scene(root / "tiny", TINY_SCENE)
    return root


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny nets gain nothing from threads; on a shared, busy machine OpenMP barriers make them crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(tmp_path):
    train = {k: v for k, v in to_plain(tiny_train()).items() if k not in ("minutes", "iterations")}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"student": to_plain(TINY_STUDENT), "train": train}))
    return path


def test_distill_computes_targets_trains_and_resumes(tiny_data, tmp_path):
    runs = tmp_path / "runs"
    base = [
        "distill",
        "--scene",
        "tiny",
        "--student",
        "cnn",
        "--config",
        str(_config(tmp_path)),
        "--data-root",
        str(tiny_data),
        "--runs",
        str(runs),
    ]
    result = runner.invoke(app, [*base, "--iterations", "4", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    model = runs / "tiny" / "students" / "cnn-small" / "model.pt"  # the alias cnn names the preset's folder
    assert summary["model"] == str(model) and summary["iterations"] == 4 and summary["teacher"] == "depth"
    assert list((runs / "tiny" / "targets").iterdir())  # the teach step ran first
    assert load_student(model, expect_scene="tiny").train_info["iterations"] == 4
    # Nothing left to do: resuming a finished run rewrites the same model.
    again = runner.invoke(app, [*base, "--iterations", "4", "--resume", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["resumed_from"] == 4


def test_distill_errors_are_one_line(tiny_data, tmp_path):
    base = ["distill", "--scene", "tiny", "--data-root", str(tiny_data), "--runs", str(tmp_path / "runs")]
    result = runner.invoke(app, [*base, "--config", str(_config(tmp_path)), "--iterations", "2", "--resume"])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "no checkpoint" in lines[0], result.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr0: 1\n")
    result = runner.invoke(app, [*base, "--config", str(bad)])
    assert result.exit_code == 1 and "lr0" in result.stderr and str(bad) in result.stderr
    result = runner.invoke(app, [*base, "--student", "resnet999"])
    assert result.exit_code == 1 and "unknown student" in result.stderr
    result = runner.invoke(app, [*base, "--iterations", "2", "--minutes", "1"])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and lines == ["error: give the training budget as --iterations or --minutes, not both"]
    assert not (tmp_path / "runs").exists()  # refused before teaching or training


def test_a_rig_given_to_distill_travels_with_the_model(tiny_data, tmp_path):
    """--depth-registration FILE: the rig is applied as given, recorded in the model, and the model gives it back."""
    cam_from_depth = np.eye(4)
    cam_from_depth[:3, 3] = [0.02, -0.003, 0.005]
    rig = DepthRegistration(cam_from_depth, 1.01, "colour", "test")
    rig_file = tmp_path / "rig.json"
    rig_file.write_text(json.dumps(rig.to_dict()))
    runs = tmp_path / "runs"
    common = ["--scene", "tiny", "--data-root", str(tiny_data), "--runs", str(runs)]
    distill = ["distill", *common, "--student", "cnn", "--config", str(_config(tmp_path)), "--iterations", "2"]
    result = runner.invoke(app, [*distill, "--depth-registration", str(rig_file), "--json"])
    assert result.exit_code == 0, result.output
    model = Path(json.loads(result.stdout)["model"])
    assert not (runs / "tiny" / "rig").exists()  # nothing estimated
    recorded = DepthRegistration.from_dict(load_student(model).depth_registration)
    assert recorded.same_as(rig) and recorded.source == "file rig.json"
    # The scene through the model's rig is the scene it was trained on: the fingerprint check passes.
    scene = registered_scene(load_scene(tiny_data, "tiny"), runs, resolve_depth_registration(str(model)))
    load_student(model, expect_fingerprint=scene.fingerprint)
    with pytest.raises(
        SlocalError, match=r"depth camera at \(\+2.00, -0.30, \+0.50\) cm, 0.00 deg, depth scale 1.0100"
    ):
        load_student(model, expect_fingerprint=load_scene(tiny_data, "tiny").fingerprint)
    # teach through the model's rig reuses the targets distill made through the same rig.
    taught = runner.invoke(app, ["teach", *common, "--depth-registration", str(model), "--json"])
    assert taught.exit_code == 0, taught.output
    out = json.loads(taught.stdout)
    assert out["depth_registration"]["depth_scale"] == 1.01
    assert [str(d) for d in (runs / "tiny" / "targets").iterdir() if d.is_dir()] == [out["directory"]]
    # A missing rig file is one line.
    bad = runner.invoke(app, ["teach", *common, "--depth-registration", str(tmp_path / "none.json")])
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert bad.exit_code == 1 and len(lines) == 1 and "none.json" in lines[0], bad.stderr
