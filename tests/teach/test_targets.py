import numpy as np
import pytest

from slocal.data import load_scene
from slocal.errors import SlocalError
from slocal.teach import ensure_targets, load_targets, make_teacher
from slocal.teach.targets import FrameTargets


class CountingTeacher:
    """Depth teacher that counts its runs and can corrupt one frame's coordinates."""

    name = "counting"

    def __init__(self, offset=0.0, max_side=32):
        self.inner = make_teacher("depth", max_side=max_side)
        self.offset = offset
        self.runs = 0

    def settings(self):
        return {"offset": self.offset, **self.inner.settings()}

    def teach(self, scene):
        self.runs += 1
        for t in self.inner.teach(scene):
            yield FrameTargets(t.name, t.camera, t.coords_HW3 + np.float32(self.offset), t.conf_HW, t.valid_HW)


def test_cache_reuse_rebuild_and_overwrite(tiny_twelve_scenes, tmp_path):
    scene = load_scene(tiny_twelve_scenes, "apt0/tiny")
    runs = tmp_path / "runs"
    teacher = CountingTeacher()
    first = ensure_targets(scene, teacher, runs)
    second = ensure_targets(scene, teacher, runs)
    assert teacher.runs == 1 and second.directory == first.directory
    np.testing.assert_array_equal(second.frames[0].coords_HW3, first.frames[0].coords_HW3)
    assert first.directory.parent == runs / "apt0/tiny/targets"
    ensure_targets(scene, teacher, runs, overwrite=True)
    assert teacher.runs == 2
    other = ensure_targets(scene, CountingTeacher(offset=0.03), runs)
    assert other.directory != first.directory
    # 3 cm off everywhere: the comparison against depth sees it.
    assert other.stats["median_error_cm"] == pytest.approx(3 * np.sqrt(3), rel=1e-3)
    assert other.stats["within_5cm"] == 0.0


def test_interrupted_cache_is_rebuilt(tiny_twelve_scenes, tmp_path):
    scene = load_scene(tiny_twelve_scenes, "apt0/tiny")
    teacher = CountingTeacher()
    ts = ensure_targets(scene, teacher, tmp_path / "runs")
    (ts.directory / "index.json").unlink()  # as if killed before the index was written
    ensure_targets(scene, teacher, tmp_path / "runs")
    assert teacher.runs == 2
    (ts.directory / "frames" / "000001.npz").unlink()
    with pytest.raises(SlocalError, match="000001.npz: target file missing"):
        load_targets(ts.directory)


def test_frame_targets_shape_check():
    from slocal.geometry import Camera

    cam = Camera(4, 3, 1, 1, 2, 1.5)
    with pytest.raises(ValueError, match="do not match"):
        FrameTargets("x", cam, np.zeros((3, 4, 3), np.float32), np.zeros((3, 4), np.float32), np.zeros((4, 3), bool))
