from pathlib import Path

import pytest

from slocal.data import load_scene
from slocal.data.synth import SynthConfig, render_scene
from slocal.teach.depth import DepthTeacher


@pytest.fixture
def fake_ckpt(tmp_path) -> Path:
    """A file that stands in for a DUSt3R checkpoint (the teacher hashes it, tests never load it)."""
    path = tmp_path / "weights.pth"
    path.write_bytes(b"not really weights" * 100)
    return path


@pytest.fixture(scope="session")
def room_targets(tmp_path_factory):
    """The procedural room (16 mapping frames, exact depth) and its depth teacher's targets; not to be modified."""
    root = tmp_path_factory.mktemp("room_targets")
    render_scene(root / "room", SynthConfig(mapping_frames=16, query_frames=1, seed=2))
    scene = load_scene(root, "room")
    return scene, tuple(DepthTeacher().teach(scene))
