import re
from types import SimpleNamespace

import pytest

from slocal.data.rig import needs_registration
from slocal.errors import SlocalError
from slocal.teach import TEACHERS, default_teacher, make_teacher, teacher_options


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


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("sfm", {"max_side": "x"}, "the sfm teacher's option max_side must be int, got 'x'"),
        ("colmap", {"max_side": "x"}, "the colmap teacher's option max_side must be int, got 'x'"),
        ("depth", {"min_depth": "near"}, "the depth teacher's option min_depth must be float, got 'near'"),
        ("sfm", {"use_gpu": "maybe"}, "the sfm teacher's option use_gpu must be bool, got 'maybe'"),
        ("dust3r", {"image_size": [512]}, "the dust3r teacher's option image_size must be int"),
        # `name` is the teacher's, positional only: as an option it is unknown, not a TypeError.
        (
            "depth",
            {"name": "sfm"},
            "the depth teacher has no option name; its options: cross_check_average, cross_check_cm, "
            "cross_check_drop, cross_check_partners, cross_check_views, max_depth, max_side, min_depth",
        ),
    ],
)
def test_wrongly_typed_option_is_one_error_naming_it(name, options, message):
    # sfm and colmap compared the string with an int in their checks: a raw TypeError before.
    with pytest.raises(SlocalError, match=re.escape(message)) as info:
        make_teacher(name, **options)
    assert "\n" not in str(info.value)


def test_options_are_coerced_to_their_types(tmp_path):
    assert make_teacher("depth", max_side="64", min_depth=1).settings() == {
        "max_side": 64,
        "min_depth": 1.0,
        "max_depth": 10.0,
    }
    # A checkpoint may be a Path; it is kept as a string (the targets' cache key).
    with pytest.raises(SlocalError, match="DUSt3R checkpoint not found"):
        make_teacher("dust3r", checkpoint=tmp_path / "missing.pth")


def test_default_teacher_is_depth_for_rgbd_scenes_registered_or_not():
    def scene(has_depth, fmt, **extra):
        return SimpleNamespace(has_depth=has_depth, format=fmt, extra=extra)

    assert default_teacher(scene(True, "7scenes", depth_registered=False, poses_of="depth")) == "depth"
    # Once the rig has been applied the scene needs no second registration; the teacher is the same.
    registered = scene(True, "7scenes", depth_registered=False, poses_of="colour", depth_registration={})
    assert default_teacher(registered) == "depth"
    assert not needs_registration(registered)
    assert needs_registration(scene(True, "7scenes", depth_registered=False, poses_of="depth"))
    assert default_teacher(scene(True, "12scenes")) == "depth"  # registered depth (12Scenes, the procedural room)
    assert default_teacher(scene(False, "colmap")) == "colmap"
    assert default_teacher(scene(False, "7scenes")) == "sfm"


def test_teacher_settings_from_outside_are_checked_by_make_teacher():
    options = teacher_options("depth", settings=["smooth_px=15", " cross_check_views = 1"])
    assert options == {"smooth_px": "15", "cross_check_views": "1"}
    config = make_teacher("depth", **options).config
    assert config.smooth_px == 15 and config.cross_check_views == 1
    assert teacher_options("dust3r", "w.pth", "cpu", ["max_side=224"]) == {
        "checkpoint": "w.pth",
        "device": "cpu",
        "max_side": "224",
    }
    with pytest.raises(SlocalError, match="a teacher option is KEY=VALUE .*got 'smooth_px'"):
        teacher_options("depth", settings=["smooth_px"])
    with pytest.raises(SlocalError, match="smooth_px must be odd"):
        make_teacher("depth", **teacher_options("depth", settings=["smooth_px=4"]))
