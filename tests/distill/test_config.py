import dataclasses
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from slocal.distill.config import (
    StudentConfig,
    TrainConfig,
    configs_from_file,
    load_configs,
    preset_file,
    preset_names,
    presets,
    resolve_preset,
    student_from_plain,
    to_plain,
)
from slocal.errors import SlocalError

ROOT = Path(__file__).resolve().parents[2]
PRESETS = ("ace-lite0", "ace-lite0-std", "cnn-resnet18", "cnn-small", "hybrid-lite0", "vit-small", "vit-tiny")


def test_presets_are_the_packaged_yaml_files():
    # The YAML files are the one source of the presets; aliases come from aliases.yaml.
    assert set(PRESETS) <= set(presets())
    assert {"cnn", "vit"} <= set(preset_names()) - set(presets())
    for name in presets():
        file = preset_file(name)
        assert file.name == f"{name}.yaml"
        assert load_configs(name)[0].name == name


@pytest.mark.parametrize("name", PRESETS)
def test_yaml_files_list_every_field(name):
    # Each preset file is a complete starting point for a custom --config file.
    text = preset_file(name).read_text()
    for cls in (StudentConfig, TrainConfig):
        for f in dataclasses.fields(cls):
            assert f"  {f.name}:" in text, f"{name}.yaml lacks {f.name}"
    assert configs_from_file(Path(str(preset_file(name)))) == load_configs(name)


def test_ace_lite0_std_is_the_default_with_a_standardised_input():
    # The demo's preset must track the default student: only its name and the two chosen train fields differ.
    (student, train), (base_student, base_train) = load_configs("ace-lite0-std"), load_configs("ace")
    assert dataclasses.replace(student, name=base_student.name) == base_student
    assert (train.standardize_input, train.weight_decay) == (True, 0.01)
    assert (base_train.standardize_input, base_train.weight_decay) == (False, 0.0)
    assert dataclasses.replace(train, standardize_input=False, weight_decay=0.0) == base_train


@pytest.mark.slow
def test_built_wheel_ships_the_presets(tmp_path):
    # What an installed slocal finds: build the wheel and look inside.
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, f"pip wheel failed: {out.stderr.strip()[-2000:]}"
    [wheel] = tmp_path.glob("slocal-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (*PRESETS, "aliases"):
        assert f"slocal/distill/presets/{name}.yaml" in names


def test_aliases():
    assert resolve_preset("cnn") == "cnn-small"
    assert load_configs("vit")[0].arch == "vit"
    with pytest.raises(SlocalError, match="unknown student 'cnn-huge'"):
        load_configs("cnn-huge")


def test_file_then_overrides(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("student:\n  widths: [16, 32, 64, 128]\n  blocks8: 1\ntrain:\n  lr: 0.01\n  batch_size: 4\n")
    s, t = load_configs("cnn", path, iterations=50, seed=3)
    assert s.widths == (16, 32, 64, 128) and s.blocks8 == 1 and s.name == "cnn-small"
    assert t.lr == 0.01 and t.batch_size == 4 and t.seed == 3
    # --iterations replaces the default time budget.
    assert t.iterations == 50 and t.minutes is None
    assert load_configs("cnn", path, minutes=2.5)[1].minutes == 2.5


def test_yaml_strings_are_coerced_to_the_field_types(tmp_path):
    # PyYAML reads 1e-3 (no dot) as the string "1e-3"; it must train with lr = 0.001.
    path = tmp_path / "mine.yaml"
    path.write_text("student:\n  mean: [0.5, 0.5, 0.5]\ntrain:\n  lr: 1e-3\n  batch_size: '4'\n  loss_clamp: 2\n")
    s, t = load_configs("cnn", path)
    assert t.lr == 0.001 and isinstance(t.lr, float)
    assert t.batch_size == 4 and t.loss_clamp == 2.0
    assert s.mean == (0.5, 0.5, 0.5) and isinstance(s.mean, tuple)


@pytest.mark.parametrize(
    "text, message",
    [
        ("student:\n  widht: [1, 2, 3, 4]\n", "unknown key.*widht.*section 'student'"),
        ("train:\n  learning_rate: 0.1\n", "unknown key.*learning_rate"),
        ("trainer:\n  lr: 0.1\n", "unknown top-level key.*trainer"),
        ("student: [1, 2]\n", "must be a mapping"),
        ("student:\n  arch: rnn\n", "arch must be one of"),
        ("train:\n  precision: fp8\n", "precision must be one of"),
        ("student: {widths: [1, 2\n", "not valid YAML"),
        ("train:\n  lr: abc\n", "section 'train', key 'lr': expected float, got 'abc'"),
        ("train:\n  batch_size: 2.5\n", "key 'batch_size': expected int, got 2.5"),
        (
            "student:\n  mean: [0.5, 0.5]\n",
            "key 'mean\\[2\\]': expected tuple\\[float, float, float\\], got \\[0.5, 0.5\\]",
        ),
        ("train:\n  lr: -0.1\n", "lr must be > 0"),
        ("train:\n  loss_clamp: 0\n", "loss_clamp must be > 0 or null"),
        ("train:\n  reproj_start: 1.5\n", "reproj_start must be in \\[0, 1\\)"),
        ("train:\n  val_frames: -1\n", "val_frames must be >= 0"),
        ("train:\n  aug_rotation: -10\n", "aug_rotation must be >= 0"),
        ("student:\n  std: [0.2, 0, 0.2]\n", "std must be > 0"),
        ("student:\n  encoder_levels: [16, 32]\n", "encoder_levels must be 8 followed by"),
        ("student:\n  encoder_levels: [8, 32, 16]\n", "encoder_levels must be 8 followed by"),
        ("train:\n  view_neighbours: -1\n", "view_neighbours must be >= 0"),
        ("train:\n  level_dropout: 1.0\n", "level_dropout must be in \\[0, 1\\)"),
    ],
)
def test_bad_files_are_refused_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SlocalError, match=message) as info:
        load_configs("cnn", path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)  # one line for the CLI


def test_buffer_student_input_sides_follow_its_coarsest_level(tmp_path):
    path = tmp_path / "sides.yaml"
    path.write_text("student:\n  encoder_levels: [8, 16]\n  size_multiple: 16\n")
    student, _ = load_configs("ace", path)
    assert student.size_multiple == 16 and tuple(student.encoder_levels) == (8, 16)
    path.write_text("student:\n  encoder_levels: [8, 16, 32]\n  size_multiple: 16\n")
    with pytest.raises(SlocalError, match="needs size_multiple a multiple of 32, got 16"):
        load_configs("ace", path)


DROPOUT_REFUSED = "level_dropout needs an ace student with two or more frozen encoder levels"
STANDARDIZE_REFUSED = "standardize_input needs an ace student with a frozen encoder"
TUNED_ACE = "student:\n  encoder_levels: [8, 16, 32]\n  size_multiple: 32\n  tune_encoder: true\n"


@pytest.mark.parametrize(
    "student, text, message",
    [
        (
            "ace",
            "student:\n  encoder_levels: [8]\ntrain:\n  level_dropout: 0.5\n",
            DROPOUT_REFUSED,
        ),  # nothing coarser to drop
        ("cnn", "train:\n  level_dropout: 0.5\n", DROPOUT_REFUSED),
        ("ace", TUNED_ACE + "train:\n  level_dropout: 0.5\n", DROPOUT_REFUSED),
        ("cnn", "train:\n  standardize_input: true\n", STANDARDIZE_REFUSED),
        ("hybrid-lite0", "train:\n  standardize_input: true\n", STANDARDIZE_REFUSED),
        ("ace", TUNED_ACE + "train:\n  standardize_input: true\n", STANDARDIZE_REFUSED),
    ],
)
def test_train_options_the_student_cannot_use_are_refused_naming_the_file(tmp_path, student, text, message):
    path = tmp_path / "options.yaml"
    path.write_text(text)
    with pytest.raises(SlocalError, match=message) as info:
        load_configs(student, path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_train_options_are_accepted_where_the_student_can_use_them(tmp_path):
    path = tmp_path / "options.yaml"
    path.write_text("student:\n  encoder_levels: [8, 16, 32]\n  size_multiple: 32\ntrain:\n  level_dropout: 0.5\n")
    assert load_configs("ace", path)[1].level_dropout == 0.5
    path.write_text("train:\n  standardize_input: true\n")
    assert load_configs("ace", path)[1].standardize_input is True
    path.write_text("train:\n  standardize_input: maybe\n")
    with pytest.raises(SlocalError, match="key 'standardize_input': expected"):
        load_configs("ace", path)


def test_missing_file():
    with pytest.raises(SlocalError, match="config file not found"):
        load_configs("cnn", "/nonexistent/x.yaml")


def test_plain_round_trip_and_validation():
    s = StudentConfig(widths=(8, 16, 32, 64))
    assert student_from_plain(to_plain(s)) == s
    with pytest.raises(SlocalError):
        TrainConfig(minutes=None, iterations=None)
    with pytest.raises(SlocalError):
        StudentConfig(arch="vit")  # needs a backbone
    with pytest.raises(SlocalError):
        StudentConfig(stride=16)
