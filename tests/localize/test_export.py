import json

import numpy as np
import onnx
import pytest
import torch

from helpers.student_standin import make_tiny_student
from slocal.errors import SlocalError
from slocal.geometry import Camera
from slocal.localize.export import MAX_ABS_DIFF, export_student
from slocal.localize.localizer import Localizer
from slocal.localize.onnx_student import OnnxStudent, read_metadata


@pytest.fixture(autouse=True)
def _one_thread():
    # Two OpenMP threads on a loaded 2-core machine can be 100x slower than one.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_onnx_export_matches_torch_and_carries_metadata(tmp_path):
    student = make_tiny_student()
    info = export_student(student, tmp_path / "m.onnx", format="onnx")
    assert info["max_abs_diff"] <= MAX_ABS_DIFF and info["format"] == "onnx"
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert model.opset_import[0].version >= 17
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 48, 64]
    meta = read_metadata(tmp_path / "m.onnx")
    assert meta["scene_id"] == "synthetic" and meta["stride"] == 8 and meta["image_size"] == [64, 48]
    assert Camera.from_dict(meta["reference_camera"]) == student.reference_camera
    assert meta["ransac_threshold_px"] == 25.0  # a student that states none: DENSE_PNP's
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary left behind


def test_the_exported_student_keeps_its_ransac_threshold(tmp_path):
    student = make_tiny_student()
    student.ransac_threshold_px = 10.0
    export_student(student, tmp_path / "m.onnx")
    onnx_student = OnnxStudent.load(tmp_path / "m.onnx")
    assert onnx_student.ransac_threshold_px == 10.0
    assert Localizer(onnx_student).pnp_config.threshold_px == 10.0


def test_onnx_student_predicts_like_torch(tmp_path):
    student = make_tiny_student()
    export_student(student, tmp_path / "m.onnx")
    onnx_student = OnnxStudent.load(tmp_path / "m.onnx", expect_scene="synthetic")
    assert onnx_student.image_size == (64, 48) and onnx_student.stride == 8
    rgb = np.random.default_rng(1).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    cam = Camera(128, 96, 100.0, 100.0, 64.0, 48.0)
    ref, out = student.predict(rgb, cam), onnx_student.predict(rgb, cam)
    assert out.coords_hw3.shape == (6, 8, 3) and out.camera == ref.camera and out.stride == 8
    np.testing.assert_allclose(out.coords_hw3, ref.coords_hw3, atol=1e-4)
    np.testing.assert_allclose(out.conf_hw, ref.conf_hw, atol=1e-4)


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_torchscript_export_matches_torch(tmp_path):
    student = make_tiny_student()
    info = export_student(student, tmp_path / "m.ts.pt", format="torchscript")
    assert info["max_abs_diff"] <= MAX_ABS_DIFF
    extra = {"slocal.json": ""}
    loaded = torch.jit.load(str(tmp_path / "m.ts.pt"), _extra_files=extra)
    assert json.loads(json.loads(extra["slocal.json"])["slocal.scene_id"]) == "synthetic"
    x = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        for a, b in zip(loaded(x), student.module(x)):
            assert torch.allclose(a, b, atol=1e-5)


def test_export_refuses_a_mismatch_and_leaves_no_file(tmp_path, monkeypatch):
    import slocal.localize.export as export

    student = make_tiny_student()
    real = export._run_onnx
    monkeypatch.setattr(export, "_run_onnx", lambda path, x: [o + 1e-3 for o in real(path, x)])
    with pytest.raises(SlocalError, match="differs from torch"):
        export_student(student, tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())
    with pytest.raises(SlocalError, match="unknown export format"):
        export_student(student, tmp_path / "m.x", format="tflite")


def test_onnx_student_refuses_other_scene_and_bad_files(tmp_path):
    export_student(make_tiny_student(scene_id="apt1/kitchen"), tmp_path / "m.onnx")
    with pytest.raises(SlocalError, match="trained for scene 'apt1/kitchen', not 'apt2/bed'"):
        OnnxStudent.load(tmp_path / "m.onnx", expect_scene="apt2/bed")
    (tmp_path / "bad.onnx").write_bytes(b"garbage \x00\x01")
    with pytest.raises(SlocalError, match="bad.onnx"):
        OnnxStudent.load(tmp_path / "bad.onnx")
    plain = tmp_path / "plain.onnx"
    model = onnx.load(str(tmp_path / "m.onnx"))
    del model.metadata_props[:]
    onnx.save(model, str(plain))
    with pytest.raises(SlocalError, match="plain.onnx.*slocal metadata"):
        OnnxStudent.load(plain)


@pytest.mark.parametrize("preset", ["cnn", "vit"])
def test_real_student_exports_and_onnx_predicts_like_torch(tmp_path, preset):
    from slocal.distill.config_files import load_configs
    from slocal.distill.model_file import load_student, save_student
    from slocal.distill.students import build_student

    torch.manual_seed(0)
    config, _ = load_configs(preset)
    net = build_student(config, (64, 48))
    with torch.no_grad():
        net.final.weight.normal_(0, 0.5)  # outputs of metre scale, so differences would show
    cam = Camera(64, 48, 60.0, 60.0, 32.0, 24.0)
    save_student(
        tmp_path / "model.pt",
        net,
        scene_id="apt1/kitchen",
        scene_fingerprint="abc",
        centre=np.array([1.0, 2.0, 3.0]),
        image_size=(64, 48),
        camera=cam,
        teacher="depth",
        train={"minutes": 0.5},
    )
    student = load_student(tmp_path / "model.pt", precision="fp32")
    info = export_student(student, tmp_path / "model.onnx")
    assert info["max_abs_diff"] <= MAX_ABS_DIFF
    assert info["metadata"]["slocal.scene_fingerprint"] == "abc" and info["metadata"]["slocal.teacher"] == "depth"
    onnx_student = OnnxStudent.load(tmp_path / "model.onnx", expect_scene="apt1/kitchen", expect_fingerprint="abc")
    rgb = np.random.default_rng(2).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    query_cam = Camera(128, 96, 120.0, 120.0, 64.0, 48.0)
    ref, out = student.predict(rgb, query_cam), onnx_student.predict(rgb, query_cam)
    assert ref.coords_hw3.std() > 0.1  # not a constant map
    np.testing.assert_allclose(out.coords_hw3, ref.coords_hw3, atol=1e-4)
    assert out.camera == ref.camera and out.stride == ref.stride == 8
    with pytest.raises(SlocalError, match="another version"):
        OnnxStudent.load(tmp_path / "model.onnx", expect_fingerprint="xyz")
    if preset == "cnn":
        ts = export_student(student, tmp_path / "model.ts.pt", format="torchscript")
        assert ts["max_abs_diff"] <= MAX_ABS_DIFF
