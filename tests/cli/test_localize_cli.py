import json

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers.student_standin import make_tiny_student
from slocal.geometry import Camera, qvec_to_rotmat
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
    r = runner.invoke(
        app,
        [
            "localize",
            str(tmp_path / "nope.jpg"),
            "--scene",
            "apt1/kitchen",
            "--model",
            str(onnx_model),
            "--intrinsics",
            INTR,
        ],
    )
    one_line_error(r, "nope.jpg", "image not found")


def test_corrupt_image_is_one_line_error(tmp_path, onnx_model):
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    r = runner.invoke(
        app, ["localize", str(bad), "--scene", "apt1/kitchen", "--model", str(onnx_model), "--intrinsics", INTR]
    )
    one_line_error(r, "corrupt.jpg", "cannot decode")


def test_model_for_another_scene_is_refused(tmp_path, onnx_model):
    img = write_image(tmp_path / "q.png", np.zeros((48, 64, 3), np.uint8))
    r = runner.invoke(
        app, ["localize", str(img), "--scene", "apt2/bed", "--model", str(onnx_model), "--intrinsics", INTR]
    )
    one_line_error(r, "m.onnx", "apt1/kitchen", "apt2/bed")


def test_bad_intrinsics_and_empty_folder(tmp_path, onnx_model):
    r = runner.invoke(
        app, ["localize", str(tmp_path), "--scene", "apt1/kitchen", "--model", str(onnx_model), "--intrinsics", INTR]
    )
    one_line_error(r, str(tmp_path), "no .jpg/.jpeg/.png")
    img = write_image(tmp_path / "q.png", np.zeros((48, 64, 3), np.uint8))
    r = runner.invoke(
        app, ["localize", str(img), "--scene", "apt1/kitchen", "--model", str(onnx_model), "--intrinsics", "1,2,3"]
    )
    one_line_error(r, "--intrinsics must be four numbers")
    r = runner.invoke(
        app,
        ["localize", str(img), "--scene", "apt1/kitchen", "--model", str(onnx_model), "--intrinsics", "50,50,900,24"],
    )
    one_line_error(r, "q.png", "principal point")


def test_missing_default_model_says_how_to_make_it(tmp_path):
    img = write_image(tmp_path / "q.png", np.zeros((48, 64, 3), np.uint8))
    r = runner.invoke(
        app, ["localize", str(img), "--scene", "apt1/kitchen", "--runs", str(tmp_path / "runs"), "--intrinsics", INTR]
    )
    one_line_error(r, "slocal distill --scene apt1/kitchen")


def test_missing_default_model_names_the_students_trained_for_the_scene(tmp_path):
    # After `slocal demo` the scene has the demo's preset, not the default: say which --student to pass.
    img = write_image(tmp_path / "q.png", np.zeros((48, 64, 3), np.uint8))
    trained = tmp_path / "runs" / "synth-room" / "students" / "ace-lite0-std" / "model.pt"
    trained.parent.mkdir(parents=True)
    trained.write_bytes(b"not read: only its presence matters here")
    r = runner.invoke(
        app, ["localize", str(img), "--scene", "synth-room", "--runs", str(tmp_path / "runs"), "--intrinsics", INTR]
    )
    one_line_error(r, "trained for it: ace-lite0-std (pass --student ace-lite0-std)")


def test_folder_of_images_text_and_json(tmp_path, onnx_model):
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    for name in ("b.png", "a.jpg", "c.jpeg"):
        write_image(folder / name, rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("ignored")
    r = runner.invoke(
        app, ["localize", str(folder), "--scene", "apt1/kitchen", "--model", str(onnx_model), "--intrinsics", INTR]
    )
    lines = r.stdout.strip().splitlines()
    assert r.exit_code == (1 if any("FAILED" in line for line in lines) else 0), r.output
    assert [line.split()[0].rsplit("/", 1)[1] for line in lines] == ["a.jpg", "b.png", "c.jpeg"]
    # A random network on a 8x6 grid gives no pose: each line says FAILED and the inlier count.
    for line in lines:
        parts = line.split()
        assert parts[1] == "FAILED" or len(parts) == 9
    r = runner.invoke(
        app,
        [
            "localize",
            str(folder / "a.jpg"),
            "--scene",
            "apt1/kitchen",
            "--model",
            str(onnx_model),
            "--intrinsics",
            INTR,
            "--json",
        ],
    )
    data = json.loads(r.stdout)
    assert r.exit_code == (0 if data[0]["success"] else 1), r.output
    assert len(data) == 1 and set(data[0]) >= {"image", "success", "cam_from_world", "qvec", "tvec", "inliers", "ms"}
    assert set(data[0]["ms"]) == {"load", "network", "ransac", "total"}


def test_text_and_json_poses_with_an_exact_student(tmp_path, monkeypatch):
    import slocal_cli.commands.localize as cmd
    from helpers.student_standin import OracleStudent, random_pose
    from slocal.geometry import rotmat_to_qvec

    oracle = OracleStudent(scene_id="apt1/kitchen", image_size=(64, 48))
    oracle.cam_from_world = random_pose(3)
    monkeypatch.setattr(cmd, "load_model", lambda path, device="cpu", expect_scene=None, **kw: oracle)
    model = tmp_path / "m.pt"
    model.write_bytes(b"x")
    img = write_image(tmp_path / "q.png", np.zeros((96, 128, 3), np.uint8))
    r = runner.invoke(
        app, ["localize", str(img), "--scene", "apt1/kitchen", "--model", str(model), "--intrinsics", "100,100,64,48"]
    )
    assert r.exit_code == 0, r.output
    parts = r.stdout.split()
    assert parts[0] == str(img) and len(parts) == 9 and int(parts[8]) == 48
    np.testing.assert_allclose([float(v) for v in parts[1:5]], rotmat_to_qvec(oracle.cam_from_world[:3, :3]), atol=1e-5)
    np.testing.assert_allclose([float(v) for v in parts[5:8]], oracle.cam_from_world[:3, 3], atol=1e-4)
    r = runner.invoke(
        app,
        [
            "localize",
            str(img),
            "--scene",
            "apt1/kitchen",
            "--model",
            str(model),
            "--intrinsics",
            "100,100,64,48",
            "--json",
        ],
    )
    data = json.loads(r.stdout)[0]
    assert data["success"] and data["inliers"] == 48
    np.testing.assert_allclose(data["cam_from_world"], oracle.cam_from_world, atol=1e-5)


def _oracle(monkeypatch, pose_seed=3):
    import slocal_cli.commands.localize as cmd
    from helpers.student_standin import OracleStudent, random_pose

    oracle = OracleStudent(scene_id="apt1/kitchen", image_size=(64, 48))
    oracle.cam_from_world = random_pose(pose_seed)
    oracle.reference_camera = Camera(64, 48, 50.0, 50.0, 32.0, 24.0)
    monkeypatch.setattr(cmd, "load_model", lambda path, device="cpu", expect_scene=None, **kw: oracle)
    return oracle


def test_one_unreadable_image_fails_alone_and_json_stays_valid(tmp_path, monkeypatch):
    oracle = _oracle(monkeypatch)
    model = tmp_path / "m.pt"
    model.write_bytes(b"x")
    good = write_image(tmp_path / "imgs" / "good.png", np.zeros((96, 128, 3), np.uint8))
    (tmp_path / "imgs" / "bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "out" / "poses.txt"
    r = runner.invoke(app, ["localize", str(tmp_path / "imgs"), "--model", str(model), "--json", "--out", str(out)])
    assert r.exit_code == 1
    data = json.loads(r.stdout)  # valid JSON although one image failed
    assert [d["name"] for d in data] == ["bad.jpg", "good.png"]
    assert data[0]["success"] is False and "cannot decode" in data[0]["error"] and data[1]["success"]
    assert [line for line in r.stderr.splitlines() if line.strip()] == [f"error: {data[0]['error']}"]
    # hloc format: only the localized image, cam_from_world as qvec + tvec; the sidecar has both.
    (line,) = out.read_text().splitlines()
    name, *values = line.split()
    assert name == "good.png" and len(values) == 7
    np.testing.assert_allclose(qvec_to_rotmat(np.array(values[:4], float)), oracle.cam_from_world[:3, :3], atol=1e-5)
    np.testing.assert_allclose(np.array(values[4:], float), oracle.cam_from_world[:3, 3], atol=1e-4)
    side = json.loads((out.parent / "poses.json").read_text())
    assert side["localized"] == 1 and side["failed"] == 1 and side["queries"][1]["ms"]["total"] > 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["poses.json", "poses.txt"]  # nothing temporary left
    assert str(good) == side["queries"][1]["image"]


def test_trained_camera_is_used_without_loading_any_scene(tmp_path, monkeypatch):
    oracle = _oracle(monkeypatch)
    model = tmp_path / "m.pt"
    model.write_bytes(b"x")
    img = write_image(tmp_path / "q.png", np.zeros((96, 128, 3), np.uint8))
    # No data root and no scene folder exist: the model file holds the scene id and camera.
    r = runner.invoke(
        app, ["localize", str(img), "--model", str(model), "--data-root", str(tmp_path / "nodata"), "--json"]
    )
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(json.loads(r.stdout)[0]["cam_from_world"], oracle.cam_from_world, atol=1e-5)
    wrong = write_image(tmp_path / "square.png", np.zeros((64, 64, 3), np.uint8))
    r = runner.invoke(app, ["localize", str(wrong), "--model", str(model)])
    assert r.exit_code == 1 and "aspect" in r.stderr


def test_intrinsics_list_with_distortion_is_undistorted_on_the_fly(tmp_path, monkeypatch):
    oracle = _oracle(monkeypatch)
    model = tmp_path / "m.pt"
    model.write_bytes(b"x")
    write_image(tmp_path / "imgs" / "a.png", np.zeros((96, 128, 3), np.uint8))
    write_image(tmp_path / "imgs" / "sub" / "b.png", np.zeros((100, 120, 3), np.uint8))
    lst = tmp_path / "queries_with_intrinsics.txt"
    lst.write_text(
        "# name MODEL W H params\n"
        "a.png OPENCV 128 96 100 100 64 48 -0.1 0.01 0 0\n"
        "sub/b.png PINHOLE 120 100 90 90 60 50\n"
    )
    r = runner.invoke(
        app, ["localize", str(tmp_path / "imgs"), "--model", str(model), "--intrinsics-list", str(lst), "--json"]
    )
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert [d["name"] for d in data] == ["a.png", "sub/b.png"] and all(d["success"] for d in data)
    for d in data:
        np.testing.assert_allclose(d["cam_from_world"], oracle.cam_from_world, atol=1e-4)


@pytest.mark.parametrize(
    "text, needles",
    [
        ("a.png PINHOLE 128 96 100 100 64\n", ["line 1", "PINHOLE takes 4 parameters"]),
        ("\na.png NOSUCH 128 96 100\n", ["line 2", "unknown COLMAP camera model 'NOSUCH'"]),
        ("a.png PINHOLE wide 96 100 100 64 48\n", ["line 1", "must be numbers"]),
        ("other.png PINHOLE 128 96 100 100 64 48\n", ["no line for image", "a.png'"]),
    ],
)
def test_bad_intrinsics_list_is_one_line_naming_file_and_line(tmp_path, monkeypatch, text, needles):
    _oracle(monkeypatch)
    model = tmp_path / "m.pt"
    model.write_bytes(b"x")
    img = write_image(tmp_path / "a.png", np.zeros((96, 128, 3), np.uint8))
    lst = tmp_path / "list.txt"
    lst.write_text(text)
    r = runner.invoke(app, ["localize", str(img), "--model", str(model), "--intrinsics-list", str(lst)])
    one_line_error(r, "list.txt", *needles)


def test_ransac_on_a_subset_still_counts_and_refines_on_every_match(tmp_path, monkeypatch):
    oracle = _oracle(monkeypatch)
    model = tmp_path / "m.pt"
    model.write_bytes(b"x")
    img = write_image(tmp_path / "q.png", np.zeros((48, 64, 3), np.uint8))
    r = runner.invoke(app, ["localize", str(img), "--model", str(model), "--ransac-points", "12", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)[0]
    # RANSAC saw 12 of the 48 cells; the inliers are counted on all of them.
    assert data["success"] and data["inliers"] == 48
    np.testing.assert_allclose(data["cam_from_world"], oracle.cam_from_world, atol=1e-5)
    r = runner.invoke(app, ["localize", str(img), "--model", str(model), "--ransac-points", "-1"])
    assert r.exit_code != 0


def test_refine_finishes_the_pose_from_the_mapping_images(cli_data, cli_model, tmp_path):
    query = sorted((cli_data / "tiny").rglob("*.color.*"))[0]
    args = ["localize", str(query), "--scene", "tiny", "--model", str(cli_model), "--data-root", str(cli_data)]
    r = runner.invoke(app, [*args, "--runs", str(tmp_path / "runs"), "--refine", "--json"])
    data = json.loads(r.stdout)
    assert r.exit_code == (0 if data[0]["success"] else 1), r.output
    # The refinement runs after every pose the student finds, and only then.
    assert ("refine" in data[0]["ms"]) == data[0]["success"]
    assert any((tmp_path / "runs" / "tiny" / "targets").iterdir())  # the teacher's targets, cached for it


def test_refine_refuses_a_student_that_does_not_record_its_teacher(cli_data, tmp_path):
    onnx = tmp_path / "m.onnx"
    export_student(make_tiny_student(scene_id="tiny"), onnx)
    query = sorted((cli_data / "tiny").rglob("*.color.*"))[0]
    r = runner.invoke(
        app,
        [
            "localize",
            str(query),
            "--model",
            str(onnx),
            "--data-root",
            str(cli_data),
            "--runs",
            str(tmp_path),
            "--refine",
        ],
    )
    one_line_error(r, "needs the student's model.pt")
