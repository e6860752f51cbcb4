from slocal.demo import DemoConfig
from slocal.distill.config import load_configs, presets, resolve_preset


def test_demo_distils_and_benches_its_student_against_sift():
    config = DemoConfig()
    assert resolve_preset(config.student) in presets()
    assert config.methods == (config.student, "sift")
    # The room's preset, chosen on its held-out mapping frames: the standardised head input.
    assert load_configs(config.student)[1].standardize_input
