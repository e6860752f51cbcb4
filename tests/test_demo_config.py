import pytest

from slocal.demo import DEMO_HEAD_STEPS, DemoConfig
from slocal.distill.config_files import load_configs, presets, resolve_preset
from slocal.errors import SlocalError


def test_demo_config_benches_its_student_against_sift():
    config = DemoConfig()
    assert resolve_preset(config.student) in presets()
    assert config.methods == (config.student, "sift")
    # The room's preset, chosen on its held-out mapping frames: the standardised head input.
    assert load_configs(config.student)[1].standardize_input


def test_demo_methods_follow_its_student():
    assert DemoConfig(student="cnn").methods == ("cnn", "sift")
    assert DemoConfig(student="cnn", methods=("cnn", "dust3r")).methods == ("cnn", "dust3r")


def test_demo_names_the_localize_command_for_its_student(tmp_path):
    command = DemoConfig().localize_command(tmp_path / "data", tmp_path / "runs")
    assert f"--scene synth-room --student {DemoConfig().student}" in command
    assert str(tmp_path / "data" / "synth-room" / "data" / "frame-000000.color.jpg") in command


def test_demo_budget_is_head_steps_unless_minutes_are_given():
    assert (DemoConfig().iterations, DemoConfig().minutes) == (DEMO_HEAD_STEPS, None)
    assert (DemoConfig(iterations=300).iterations, DemoConfig(minutes=2.0).iterations) == (300, None)
    assert DemoConfig(minutes=2.0).minutes == 2.0
    with pytest.raises(SlocalError, match="not both"):
        DemoConfig(iterations=300, minutes=2.0)
