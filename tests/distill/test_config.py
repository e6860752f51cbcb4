from pathlib import Path

import pytest

from slocal.distill.config import (
    PRESETS,
    StudentConfig,
    TrainConfig,
    configs_from_file,
    load_configs,
    resolve_preset,
    student_from_plain,
    to_plain,
)
from slocal.errors import SlocalError

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "students"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_yaml_files_mirror_the_presets(name):
    assert configs_from_file(CONFIGS / f"{name}.yaml") == load_configs(name)


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
    ],
)
def test_bad_files_are_refused_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SlocalError, match=message) as info:
        load_configs("cnn", path)
    assert str(path) in str(info.value)


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
