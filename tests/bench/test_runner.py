import json

import pytest

import slocal.bench.runner as runner
from helpers.student_standin import SceneOracleStudent
from slocal.bench.runner import BenchConfig, reference_poses, run_bench, select_queries
from slocal.data import load_scene
from slocal.data.scene import Scene
from slocal.distill.config_files import default_model_path
from slocal.errors import SlocalError
from slocal.teach import make_teacher


@pytest.fixture
def bench_setup(tiny_twelve_scenes, tmp_path, monkeypatch):
    """apt0/tiny with oracle students cnn (exact) and vit (30 % outliers), and a broken scene apt0/broken."""
    data_root, runs = tiny_twelve_scenes, tmp_path / "runs"
    broken = data_root / "apt0" / "broken"
    (broken / "data").mkdir(parents=True)
    (broken / "info.txt").write_text("m_colorWidth = 64\n")
    for name in ("cnn", "vit"):
        path = default_model_path(runs, "apt0/tiny", name)
        path.parent.mkdir(parents=True)
        path.write_bytes(b"stand-in")

    def fake_load_model(path, device="cpu", expect_scene=None, **kw):
        scene = load_scene(data_root, expect_scene)
        return SceneOracleStudent(scene, outlier_fraction=0.3 if "vit" in str(path) else 0.0, seed=1)

    monkeypatch.setattr(runner, "load_model", fake_load_model)
    return data_root, runs


def test_bench_all_scenes_reports_failures_and_averages(bench_setup, tmp_path):
    data_root, runs = bench_setup
    out = tmp_path / "out"
    res = run_bench(
        data_root, runs, None, ["cnn", "vit"], None, out, BenchConfig(distill_missing=False), command="slocal bench"
    )
    by = {(r["scene"], r["method"]): r for r in res.rows}
    cnn = by[("apt0/tiny", "cnn")]
    assert cnn["n_queries"] == 2 and cnn["failed"] is None
    assert cnn["median_t_cm"] < 0.1 and cnn["acc_1cm1deg"] == 100.0 and cnn["teacher"] == "depth"
    assert cnn["ms_per_query"] > 0 and cnn["ms_load"] > 0 and cnn["map_mb"] == 0.5
    assert by[("apt0/tiny", "vit")]["acc_1cm1deg"] == 100.0  # RANSAC removes the outliers
    assert "info.txt" in by[("apt0/broken", "cnn")]["failed"] and len(res.failures) == 1
    # Only one scene produced results, so no average row.
    assert not any(r["scene"] == "average" for r in res.rows)
    data = json.loads((out / "results.json").read_text())
    assert set(data) == {"rows", "machine", "command", "units"} and len(data["rows"]) == 4
    assert "| apt0/tiny | cnn | depth | 2 |" in res.markdown and "FAILED" in res.markdown
    assert [p.name for p in res.paths["plots"]] == ["apt0_tiny_cumulative_errors.png", "apt0_tiny_positions.png"]


def test_average_row_over_two_scenes(bench_setup, tmp_path, monkeypatch):
    data_root, runs = bench_setup
    import shutil

    shutil.rmtree(data_root / "apt0" / "broken")
    shutil.copytree(data_root / "apt0" / "tiny", data_root / "apt1" / "tiny")
    path = default_model_path(runs, "apt1/tiny", "cnn")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"stand-in")
    res = run_bench(data_root, runs, None, ["cnn"], None, tmp_path / "out", BenchConfig(distill_missing=False))
    avg = [r for r in res.rows if r["scene"] == "average"]
    assert len(avg) == 1 and avg[0]["n_queries"] == 4 and avg[0]["acc_1cm1deg"] == 100.0


def test_teacher_settings_come_from_the_model_file(bench_setup, tmp_path, monkeypatch):
    """The report names the settings the student's teacher changed and its targets' consistency;
    a student taught with other settings than ``--teacher-option`` asks for is refused."""
    data_root, runs = bench_setup
    oracle = runner.load_model

    def taught(path, **kw):
        model = oracle(path, **kw)
        model.teacher = "depth"
        model.teacher_settings = make_teacher("depth", smooth_px=15).settings()
        model.teacher_consistency = {
            "unit": "cm",
            "median": 1.05,
            "within_1": 48.0,
            "within_2": 73.0,
            "within_5": 93.0,
            "labelled_pct": 71.9,
        }
        return model

    monkeypatch.setattr(runner, "load_model", taught)
    res = run_bench(data_root, runs, ["apt0/tiny"], ["cnn"], None, tmp_path / "a", BenchConfig(distill_missing=False))
    (row,) = res.rows
    assert row["teacher_options"] == {"smooth_px": 15} and row["teacher_consistency"]["median"] == 1.05
    assert "| apt0/tiny | cnn | depth (smooth_px=15) | 2 |" in res.markdown
    assert "taught by depth (smooth_px=15), whose targets agree across mapping views to 1.05 cm" in res.markdown
    same = BenchConfig(distill_missing=False, teacher_settings=("smooth_px=15",))
    res = run_bench(data_root, runs, ["apt0/tiny"], ["cnn"], "depth", tmp_path / "b", same)
    assert res.rows[0]["failed"] is None
    other = BenchConfig(distill_missing=False, teacher_settings=("smooth_px=9",))
    res = run_bench(data_root, runs, ["apt0/tiny"], ["cnn"], None, tmp_path / "c", other)
    assert "had other settings (smooth_px=15)" in res.rows[0]["failed"]


def test_missing_student_without_distill_is_a_failed_row(bench_setup, tmp_path):
    data_root, runs = bench_setup
    res = run_bench(
        data_root, runs, ["apt0/tiny"], ["small"], None, tmp_path / "out", BenchConfig(distill_missing=False)
    )
    assert "no small student" in res.rows[0]["failed"] and "slocal distill" in res.rows[0]["failed"]


def test_unknown_scene_and_bad_methods(bench_setup, tmp_path):
    data_root, runs = bench_setup
    res = run_bench(data_root, runs, ["nope"], ["cnn"], None, tmp_path / "out", BenchConfig(distill_missing=False))
    assert "not found" in res.rows[0]["failed"]
    with pytest.raises(SlocalError, match="method"):
        run_bench(data_root, runs, ["apt0/tiny"], [], None, tmp_path / "out")


def test_select_queries_is_even_and_keeps_ends():
    frames = list(range(10))
    assert select_queries(frames, 4) == [0, 3, 6, 9]
    assert select_queries(frames, None) == frames and select_queries(frames, 20) == frames


def test_a_programming_error_is_not_a_failed_row(bench_setup, tmp_path, monkeypatch):
    """Only SlocalError (bad input) makes a failed row; a bug must surface with its traceback."""
    data_root, runs = bench_setup

    def buggy(*args, **kwargs):
        raise TypeError("unsupported operand type(s)")

    monkeypatch.setattr(runner, "run_student", buggy)
    with pytest.raises(TypeError, match="unsupported operand"):
        run_bench(data_root, runs, ["apt0/tiny"], ["cnn"], None, tmp_path / "out", BenchConfig(distill_missing=False))


def test_reference_poses_states_the_pose_files_and_the_rig(tmp_path):
    reg = {
        "depth_from_colour_translation_cm": [0.4, -0.1, 2.9],
        "rotation_deg": 0.79,
        "depth_scale": 0.963,
        "poses_of": "depth",
        "source": "estimated",
    }
    plain = Scene("s", tmp_path, "7scenes", (), ())
    assert reference_poses(plain) == "7scenes poses"
    moved = Scene("s", tmp_path, "7scenes", (), (), extra={"depth_registration": reg})
    assert "the depth camera's, moved to the colour camera" in reference_poses(moved)
    assert "(+0.4, -0.1, +2.9) cm" in reference_poses(moved)
    files = Scene(
        "s",
        tmp_path,
        "7scenes",
        (),
        (),
        extra={"pose_files": ["/x/pgt.txt"], "depth_registration": {**reg, "poses_of": "colour"}},
    )
    assert reference_poses(files).startswith("pose files pgt.txt; depth rendered into the colour camera")
    assert "rig estimated on the mapping frames" in reference_poses(files)
    given = Scene("s", tmp_path, "7scenes", (), (), extra={"depth_registration": {**reg, "source": "file rig.json"}})
    assert "through the colour-depth rig given (file rig.json): depth camera at (+0.4" in reference_poses(given)
