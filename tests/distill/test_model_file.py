import dataclasses

import numpy as np
import pytest
import torch

from helpers.distill_fixtures import TINY_STUDENT
from slocal.data.rig import DepthRegistration
from slocal.distill.model_file import StudentOutput, load_student, read_model_payload, save_student
from slocal.distill.students import build_student
from slocal.errors import SlocalError
from slocal.geometry import Camera, pixel_centers
from slocal.io import read_image

CAMERA = Camera(64, 48, 52.0, 52.0, 32.0, 24.0)
CENTRE = np.array([1.5, -0.25, 2.0])
CAM_FROM_DEPTH = np.eye(4)
CAM_FROM_DEPTH[:3, 3] = [0.0065, -0.0041, 0.0289]
RIG = DepthRegistration(CAM_FROM_DEPTH, 0.9641, "depth", "estimated")


@pytest.fixture
def model_path(tmp_path):
    torch.manual_seed(0)
    net = build_student(TINY_STUDENT, (64, 48))
    # Non-trivial BN statistics, so the round trip covers buffers too.
    with torch.no_grad():
        net(torch.randn(4, 3, 48, 64))
    path = tmp_path / "model.pt"
    save_student(
        path,
        net.eval(),
        scene_id="apt/kitchen",
        scene_fingerprint="abc123",
        centre=CENTRE,
        image_size=(64, 48),
        camera=CAMERA,
        teacher="depth",
        train={"iterations": 7, "validation": [{"pct_5cm5deg": 50.0}]},
        teacher_settings={"max_side": 320, "smooth_px": 15},
        teacher_consistency={"unit": "cm", "median": 1.05},
        depth_registration=RIG.summary(),
    )
    return path, net


def test_round_trip_predicts_what_the_network_computes(model_path):
    path, net = model_path
    # Plain values only: it loads with weights_only=True.
    payload = torch.load(path, weights_only=True)
    assert payload["scene_id"] == "apt/kitchen" and payload["image_size"] == [64, 48] and payload["stride"] == 8
    student = load_student(
        path, expect_scene="apt/kitchen", expect_student="tiny", expect_fingerprint="abc123", precision="fp32"
    )
    assert student.scene_id == "apt/kitchen" and student.stride == 8 and student.image_size == (64, 48)
    assert student.num_params == sum(p.numel() for p in net.parameters())
    assert student.file_mb == pytest.approx(path.stat().st_size / 2**20)
    assert student.reference_camera == CAMERA and student.teacher == "depth"
    assert student.train_info["iterations"] == 7
    assert student.teacher_settings == {"max_side": 320, "smooth_px": 15}
    assert student.teacher_consistency == {"unit": "cm", "median": 1.05}
    assert DepthRegistration.from_dict(student.depth_registration).same_as(RIG)

    # A 128x96 image with its camera: predict resizes to 64x48 and scales the camera.
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    out = student.predict(rgb, CAMERA.scaled(128, 96))
    assert isinstance(out, StudentOutput)
    assert out.coords_hw3.shape == (6, 8, 3) and out.coords_hw3.dtype == np.float32
    assert out.camera == CAMERA and out.stride == 8 and out.conf_hw is None and out.ms_network > 0
    x = torch.from_numpy(student.preprocess_network_input(rgb))
    with torch.no_grad():
        expected = net.eval()(x)[0].permute(1, 2, 0).numpy() + CENTRE
    np.testing.assert_allclose(out.coords_hw3, expected, atol=1e-5)
    # The export module gives the same world coordinates in fp32.
    with torch.no_grad():
        exported = student.export_module()(x)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(exported, expected, atol=1e-5)
    assert pixel_centers(out.camera.width, out.camera.height, out.stride).shape[:2] == out.coords_hw3.shape[:2]


def test_uncertainty_gives_a_confidence(tmp_path):
    cfg = dataclasses.replace(TINY_STUDENT, uncertainty=True)
    net = build_student(cfg, (64, 48)).eval()
    path = save_student(
        tmp_path / "u.pt",
        net,
        scene_id="s",
        scene_fingerprint="f",
        centre=np.zeros(3),
        image_size=(64, 48),
        camera=CAMERA,
        teacher="depth",
        train={},
    )
    student = load_student(path)
    out = student.predict(np.zeros((48, 64, 3), np.uint8), CAMERA)
    assert out.conf_hw.shape == (6, 8) and (out.conf_hw > 0).all()
    # Saved without the teacher's settings (as files written before they were recorded read).
    assert student.teacher_settings == {} and student.teacher_consistency is None


def test_refusals(model_path, tmp_path):
    path, _ = model_path
    with pytest.raises(SlocalError, match="trained for scene 'apt/kitchen', not 'apt/living'") as info:
        load_student(path, expect_scene="apt/living")
    assert str(path) in str(info.value)
    with pytest.raises(SlocalError, match="student 'tiny', not 'cnn-small'"):
        load_student(path, expect_student="cnn-small")
    with pytest.raises(SlocalError, match="another version of scene") as info:
        load_student(path, expect_fingerprint="fff")
    # It says which rig the model was taught through, so the user can bench through that one.
    assert "(+0.65, -0.41, +2.89) cm, 0.00 deg, depth scale 0.9641" in str(info.value)
    with pytest.raises(SlocalError, match="not found"):
        load_student(tmp_path / "nope.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(SlocalError, match="not a readable slocal model file"):
        load_student(corrupt)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(SlocalError, match="not a slocal student model file"):
        load_student(other)
    # Weights that do not fit the stored config.
    payload = read_model_payload(path)
    payload["student"]["head_width"] = 32
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    with pytest.raises(SlocalError, match="weights do not match"):
        load_student(bad)


def test_a_model_file_written_before_the_settings_were_typed_per_architecture_loads(model_path, tmp_path):
    # Such files store every architecture's student fields in one dict (those of other archs at their defaults).
    path, _ = model_path
    payload = read_model_payload(path)
    payload["student"] |= {
        "backbone": "",
        "encoder": "",
        "encoder_levels": [8, 16, 32],
        "tune_encoder": False,
        "patch_size": None,
        "vit_depth": None,
        "vit_embed_dim": None,
        "vit_heads": None,
    }
    old = tmp_path / "old.pt"
    torch.save(payload, old)
    student, current = load_student(old, precision="fp32"), load_student(path, precision="fp32")
    assert student.config == TINY_STUDENT
    x = torch.randn(1, 3, 48, 64)
    assert torch.equal(student.forward(x), current.forward(x))
    payload["student"]["colour"] = "red"
    torch.save(payload, old)
    with pytest.raises(SlocalError, match="unknown key.*colour") as info:
        load_student(old)
    assert str(old) in str(info.value)


def test_image_and_camera_must_agree(model_path):
    student = load_student(model_path[0])
    with pytest.raises(SlocalError, match="image is 64x48 but the camera is 128x96"):
        student.predict(np.zeros((48, 64, 3), np.uint8), CAMERA.scaled(128, 96))


def test_trained_model_predicts_its_mapping_frame(tiny_scene, tiny_targets, trained_tiny):
    """End to end on the synthetic scene: a briefly trained student predicts a mapping frame near its targets."""
    student = load_student(trained_tiny.model_path, expect_scene=tiny_scene.id, precision="fp32")
    frame = tiny_scene.mapping[3]
    out = student.predict(read_image(frame.image_path), frame.camera)
    target = tiny_targets.by_name()[frame.name]
    uv = pixel_centers(out.camera.width, out.camera.height, 8).reshape(-1, 2)
    s = target.camera.width / out.camera.width
    cols, rows = np.floor(uv[:, 0] * s).astype(int), np.floor(uv[:, 1] * s).astype(int)
    ok = target.valid_HW[rows, cols]
    err = np.linalg.norm(out.coords_hw3.reshape(-1, 3)[ok] - target.coords_HW3[rows, cols][ok], axis=1)
    spread = np.linalg.norm(target.coords_HW3[rows, cols][ok] - out.coords_hw3.reshape(-1, 3)[ok].mean(0), axis=1)
    assert np.median(err) < 0.5 * np.median(spread)


def test_student_exports_to_onnx_with_the_same_predictions(model_path, tmp_path):
    """The contract with ``slocal.localize.export``: export_module / preprocessing / metadata."""
    from slocal.localize.export import export_student
    from slocal.localize.onnx_student import OnnxStudent

    student = load_student(model_path[0], precision="fp32")
    info = export_student(student, tmp_path / "m.onnx")
    assert info["max_abs_diff"] < 1e-4
    onnx_student = OnnxStudent.load(tmp_path / "m.onnx", expect_scene="apt/kitchen")
    rgb = np.random.default_rng(1).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    a, b = student.predict(rgb, CAMERA.scaled(128, 96)), onnx_student.predict(rgb, CAMERA.scaled(128, 96))
    np.testing.assert_allclose(a.coords_hw3, b.coords_hw3, atol=1e-4)
    assert a.camera == b.camera and a.stride == b.stride
