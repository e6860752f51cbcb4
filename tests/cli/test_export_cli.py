import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from slocal.distill.config_files import default_model_path
from slocal.geometry import Camera
from slocal.localize.onnx_student import read_metadata
from slocal_cli.main import app

runner = CliRunner()


@pytest.fixture
def runs_with_student(tmp_path):
    from slocal.distill.config_files import load_configs
    from slocal.distill.model_file import save_student
    from slocal.distill.students import build_student

    torch.manual_seed(0)
    config, _ = load_configs("cnn")
    runs = tmp_path / "runs"
    save_student(
        default_model_path(runs, "apt1/kitchen", "cnn"),
        build_student(config, (64, 48)),
        scene_id="apt1/kitchen",
        scene_fingerprint="f",
        centre=np.zeros(3),
        image_size=(64, 48),
        camera=Camera(64, 48, 60, 60, 32, 24),
        teacher="depth",
        train={},
    )
    return runs


def test_export_onnx_and_torchscript(runs_with_student, tmp_path):
    r = runner.invoke(
        app,
        ["export", "--scene", "apt1/kitchen", "--student", "cnn", "--runs", str(runs_with_student), "--format", "onnx"],
    )
    assert r.exit_code == 0, r.output
    onnx_path = default_model_path(runs_with_student, "apt1/kitchen", "cnn").with_name("model.onnx")
    assert str(onnx_path) in r.stdout and read_metadata(onnx_path)["scene_id"] == "apt1/kitchen"
    out = tmp_path / "m.ts.pt"
    r = runner.invoke(
        app,
        [
            "export",
            "--scene",
            "apt1/kitchen",
            "--student",
            "cnn",
            "--runs",
            str(runs_with_student),
            "--format",
            "torchscript",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert out.is_file()


def test_export_errors_are_one_line(runs_with_student, tmp_path):
    model = default_model_path(runs_with_student, "apt1/kitchen", "cnn")
    r = runner.invoke(app, ["export", "--scene", "apt2/bed", "--model", str(model)])
    assert r.exit_code == 1 and "trained for scene 'apt1/kitchen', not 'apt2/bed'" in r.stderr
    r = runner.invoke(
        app,
        [
            "export",
            "--scene",
            "apt1/kitchen",
            "--student",
            "cnn",
            "--runs",
            str(runs_with_student),
            "--format",
            "tflite",
        ],
    )
    assert r.exit_code == 1 and "unknown format 'tflite'" in r.stderr
    r = runner.invoke(app, ["export", "--scene", "nowhere", "--runs", str(runs_with_student)])
    assert r.exit_code == 1 and "slocal distill --scene nowhere" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
