import dataclasses

import numpy as np
import pytest

from helpers.student_standin import OracleStudent, StandinOutput, random_pose
from slocal.errors import SlocalError
from slocal.geometry import Camera, pose_error
from slocal.geometry.pnp import DENSE_PNP, PnpConfig
from slocal.io import write_image
from slocal.localize.localizer import Localizer, correspondences, fit_camera_to_image, student_pnp

CAM = Camera(640, 480, 585.0, 585.0, 320.0, 240.0)


def image(cam=CAM):
    return np.random.default_rng(0).integers(0, 255, (cam.height, cam.width, 3), dtype=np.uint8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_coordinates_recover_pose(seed):
    student = OracleStudent()
    student.cam_from_world = random_pose(seed)
    loc = Localizer(student).localize(image(), CAM)
    assert loc.success and loc.num_inliers == loc.num_correspondences == (160 // 8) * (120 // 8)
    t, r = pose_error(loc.cam_from_world, student.cam_from_world)
    assert t < 1e-3 and r < 0.01
    assert set(loc.ms) == {"network", "ransac", "total"} and loc.ms["total"] >= loc.ms["ransac"] > 0


def test_outliers_are_rejected():
    student = OracleStudent(image_size=(320, 240), stride=8, outlier_fraction=0.4, seed=3)
    student.cam_from_world = random_pose(7)
    loc = Localizer(student).localize(image(), CAM)
    assert loc.success
    assert 0.5 * loc.num_correspondences < loc.num_inliers < 0.75 * loc.num_correspondences
    t, r = pose_error(loc.cam_from_world, student.cam_from_world)
    # Random outliers that land within DENSE_PNP's 12.5 px (at 320 width) of their pixel count as
    # inliers; the final Cauchy refinement weighs them down but they still move the pose a little.
    assert t < 2e-3 and r < 0.05


def test_confidence_filter_drops_outliers_before_ransac():
    student = OracleStudent(outlier_fraction=0.4, seed=4)
    student.cam_from_world = random_pose(8)
    loc = Localizer(student, min_confidence=0.5).localize(image(), CAM)
    assert loc.success and loc.num_inliers == loc.num_correspondences


def test_too_few_points_is_failure_not_exception():
    student = OracleStudent(image_size=(32, 24), stride=8)  # 4x3 = 12 cells
    loc = Localizer(student, PnpConfig(min_inliers=20)).localize(image(), CAM)
    assert not loc.success and loc.cam_from_world is None and loc.num_correspondences == 12


def test_all_outliers_fail():
    student = OracleStudent(outlier_fraction=1.0, seed=5)
    loc = Localizer(student, PnpConfig(min_inliers=100)).localize(image(), CAM)
    assert not loc.success and loc.cam_from_world is None


def test_camera_is_rescaled_for_a_resized_image():
    student = OracleStudent()
    student.cam_from_world = random_pose(2)
    small = CAM.scaled(320, 240)
    loc = Localizer(student).localize(image(small), CAM)
    assert loc.success
    t, r = pose_error(loc.cam_from_world, student.cam_from_world)
    assert t < 1e-3 and r < 0.01


def test_mismatched_intrinsics_name_the_image():
    with pytest.raises(SlocalError, match="q.jpg.*aspect"):
        fit_camera_to_image(CAM, 480, 480, "q.jpg")
    with pytest.raises(SlocalError, match="q.jpg.*principal point"):
        fit_camera_to_image(Camera(640, 480, 500, 500, 2000, 240), 640, 480, "q.jpg")
    scaled = fit_camera_to_image(CAM, 321, 241, "q.jpg")  # rounding of a resize is fine
    assert scaled.size == (321, 241) and scaled.cx == pytest.approx(320 * 321 / 640)
    with pytest.raises(SlocalError, match="uint8"):
        Localizer(OracleStudent()).localize(np.zeros((480, 640, 3), np.float32), CAM, image="q.jpg")


def test_localize_image_times_the_load(tmp_path):
    student = OracleStudent()
    student.cam_from_world = random_pose(4)
    path = write_image(tmp_path / "q.png", image())
    loc = Localizer(student).localize_image(path, CAM)
    assert loc.success and loc.ms["load"] > 0
    assert loc.ms["total"] >= loc.ms["load"] + loc.ms["network"]
    with pytest.raises(SlocalError, match="missing.jpg"):
        Localizer(student).localize_image(tmp_path / "missing.jpg", CAM)
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(SlocalError, match="corrupt.jpg"):
        Localizer(student).localize_image(bad, CAM)


def test_correspondences_use_the_cell_centre_convention_and_top_k():
    cam = Camera(32, 16, 30, 30, 16, 8)
    coords = np.arange(4 * 2 * 3, dtype=np.float32).reshape(2, 4, 3)
    conf = np.array([[0.1, 0.9, 0.5, 0.2], [0.3, 0.8, 0.7, np.nan]], np.float32)
    out = StandinOutput(coords, conf, cam, 8)
    uv, xyz = correspondences(out)
    assert uv.shape == (7, 2)  # the NaN-confidence cell is dropped
    np.testing.assert_allclose(uv[:4], [[4, 4], [12, 4], [20, 4], [28, 4]])
    uv, xyz = correspondences(out, min_confidence=0.5)
    np.testing.assert_allclose(uv, [[12, 4], [20, 4], [12, 12], [20, 12]])
    uv, xyz = correspondences(out, max_points=2)
    np.testing.assert_allclose(uv, [[12, 4], [12, 12]])  # the two most confident
    np.testing.assert_allclose(xyz, coords.reshape(-1, 3)[[1, 5]])
    with pytest.raises(ValueError, match="shape"):
        correspondences(StandinOutput(coords[:, :3], None, cam, 8))


def test_stretched_query_warns_once_and_still_localizes(caplog):
    student = OracleStudent(image_size=(160, 120))
    student.cam_from_world = random_pose(6)
    loc = Localizer(student)
    square = Camera(240, 240, 200.0, 200.0, 120.0, 120.0)
    for _ in range(2):
        res = loc.localize(image(square), square, image="sq.png")
        t, r = pose_error(res.cam_from_world, student.cam_from_world)
        assert res.success and t < 1e-3 and r < 0.01
    assert caplog.text.count("stretched") == 1 and "sq.png" in caplog.text


def test_one_model_path_rule_resolves_aliases(tmp_path):
    from slocal.distill.config_files import default_model_path

    assert (
        default_model_path(tmp_path, "s", "cnn")
        == default_model_path(tmp_path, "s", "cnn-small")
        == tmp_path / "s" / "students" / "cnn-small" / "model.pt"
    )
    assert default_model_path(tmp_path, "s", "vit") == default_model_path(tmp_path, "s", "vit-tiny")
    assert default_model_path(tmp_path, "s", "my-custom").parent.name == "my-custom"  # not a preset: kept as typed


@pytest.mark.parametrize("suffix", [".pt", ".onnx"])
def test_empty_model_file_is_one_error_naming_it(tmp_path, suffix):
    from slocal.localize.localizer import load_model

    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"")
    with pytest.raises(SlocalError, match="not a slocal model file: the file is empty") as info:
        load_model(path)
    assert info.value.path == path and "\n" not in str(info.value)


def test_a_student_is_localized_at_the_threshold_its_preset_chose():
    class Precise(OracleStudent):
        ransac_threshold_px = 10.0

    plain, precise = OracleStudent(), Precise()
    assert student_pnp(plain) is DENSE_PNP  # a predictor that states none
    assert student_pnp(precise).threshold_px == 10.0
    assert student_pnp(precise, ransac_points=0).ransac_points is None
    assert student_pnp(precise, threshold_px=30.0).threshold_px == 30.0
    assert student_pnp(plain, ransac_points=200) == dataclasses.replace(DENSE_PNP, ransac_points=200)
    assert Localizer(precise).pnp_config.threshold_px == 10.0
    # An explicit configuration is used as given.
    assert Localizer(precise, DENSE_PNP).pnp_config is DENSE_PNP
