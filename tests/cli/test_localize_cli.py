import json

import numpy as np
import pytest
from student_standin import make_tiny_student
from typer.testing import CliRunner

from slocal.io import write_image
from slocal.localize.export import export_student
from slocal_cli.main import app

runner = CliRunner()
INTR = "50,50,32,24"


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.onnx"
    export_student(make_tiny_student(scene_id="apt1/kitchen"), path)
    return path


def one_line_error(result, *needles):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_missing_image_is_one_line_error(tmp_path, onnx_model):
    r = runner.invoke(app, ["localize", str(tmp_path / "nope.jpg"), "--scene", "apt1/kitchen", "--model", str(onnx_model), "--intrinsics", INTR])
    one_line_error(r, "nope.jpg", "image not found")


def test_corrupt_image_is_one_line_error(tmp_path, onnx_model):
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    r = runner.invoke(app, ["localize", str(bad), "--scene", "apt1/kitchen", "--model", str(onnx_model), "--intrinsics", INTR])
    one_line_error(r, "corrupt.jpg", "cannot decode")


def test_model_for_another_scene_is_refused(tmp_path, onnx_model):
    img = write_image(tmp_path / "q.png", np.zeros((48, 64, 3), np.uint8))
    r = runner.invoke(app, ["localize", str(img), "--scene", "apt2/bed", "--model", str(onnx_model), "--intrinsics", INTR])
    one_line_error(r, "m.onnx", "apt1/kitchen", "apt2/bed")


def test_bad_intrinsics_and_empty_folder(tmp_path, onnx_model):
    r = runner.invoke(app, ["localize", str(tmp_path), "--scene", "apt1/kitchen", "--model", str(onnx_model), "--intrinsics", INTR])
    one_line_error(r, str(tmp_path), "no .jpg/.jpeg/.png")
    img = write_image(tmp_path / "q.png", np.zeros((48, 64, 3), np.uint8))
    r = runner.invoke(app, ["localize", str(img), "--scene", "apt1/kitchen", "--model", str(onnx_model), "--intrinsics", "1,2,3"])
    one_line_error(r, "--intrinsics must be four numbers")
    r = runner.invoke(app, ["localize", str(img), "--scene", "apt1/kitchen", "--model", str(onnx_model), "--intrinsics", "50,50,900,24"])
    one_line_error(r, "q.png", "principal point")


def test_missing_default_model_says_how_to_make_it(tmp_path):
    img = write_image(tmp_path / "q.png", np.zeros((48, 64, 3), np.uint8))
    r = runner.invoke(app, ["localize", str(img), "--scene", "apt1/kitchen", "--runs", str(tmp_path / "runs"), "--intrinsics", INTR])
    one_line_error(r, "slocal distill --scene apt1/kitchen")


def test_folder_of_images_text_and_json(tmp_path, onnx_model):
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    for name in ("b.png", "a.jpg", "c.jpeg"):
        write_image(folder / name, rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("ignored")
    r = runner.invoke(app, ["localize", str(folder), "--scene", "apt1/kitchen", "--model", str(onnx_model), "--intrinsics", INTR])
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert [line.split()[0].rsplit("/", 1)[1] for line in lines] == ["a.jpg", "b.png", "c.jpeg"]
    # A random network on a 8x6 grid gives no pose: each line says FAILED and the inlier count.
    for line in lines:
        parts = line.split()
        assert parts[1] == "FAILED" or len(parts) == 9
    r = runner.invoke(app, ["localize", str(folder / "a.jpg"), "--scene", "apt1/kitchen", "--model", str(onnx_model), "--intrinsics", INTR, "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert len(data) == 1 and set(data[0]) >= {"image", "success", "cam_from_world", "qvec", "tvec", "inliers", "ms"}
    assert set(data[0]["ms"]) == {"load", "network", "ransac", "total"}


def test_text_and_json_poses_with_an_exact_student(tmp_path, monkeypatch):
    import slocal_cli.commands.localize as cmd
    from student_standin import OracleStudent, random_pose

    from slocal.geometry import rotmat_to_qvec

    oracle = OracleStudent(scene_id="apt1/kitchen", image_size=(64, 48))
    oracle.cam_from_world = random_pose(3)
    monkeypatch.setattr(cmd, "load_model", lambda path, device="cpu", expect_scene=None, **kw: oracle)
    model = tmp_path / "m.pt"
    model.write_bytes(b"x")
    img = write_image(tmp_path / "q.png", np.zeros((96, 128, 3), np.uint8))
    r = runner.invoke(app, ["localize", str(img), "--scene", "apt1/kitchen", "--model", str(model), "--intrinsics", "100,100,64,48"])
    assert r.exit_code == 0, r.output
    parts = r.stdout.split()
    assert parts[0] == str(img) and len(parts) == 9 and int(parts[8]) == 48
    np.testing.assert_allclose([float(v) for v in parts[1:5]], rotmat_to_qvec(oracle.cam_from_world[:3, :3]), atol=1e-5)
    np.testing.assert_allclose([float(v) for v in parts[5:8]], oracle.cam_from_world[:3, 3], atol=1e-4)
    r = runner.invoke(app, ["localize", str(img), "--scene", "apt1/kitchen", "--model", str(model), "--intrinsics", "100,100,64,48", "--json"])
    data = json.loads(r.stdout)[0]
    assert data["success"] and data["inliers"] == 48
    np.testing.assert_allclose(data["cam_from_world"], oracle.cam_from_world, atol=1e-5)
