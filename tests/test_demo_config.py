from slocal.demo import DemoConfig
from slocal.distill.config_files import load_configs, presets, resolve_preset


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
