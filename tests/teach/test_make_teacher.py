import pytest

from slocal.errors import SlocalError
from slocal.teach import TEACHERS, make_teacher


def test_every_teacher_is_built_with_its_options():
    for name in TEACHERS:
        if name != "dust3r":  # needs a checkpoint file; built in tests/teach/dust3r
            assert make_teacher(name).name == name
    assert make_teacher("depth", max_side=64).settings()["max_side"] == 64


def test_unknown_teacher_or_option_is_one_clear_error():
    with pytest.raises(SlocalError, match="unknown teacher 'lidar'"):
        make_teacher("lidar")
    with pytest.raises(SlocalError, match="the colmap teacher has no option max_sides; its options: .*max_side"):
        make_teacher("colmap", max_sides=80)
