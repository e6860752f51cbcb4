import pytest

from slocal.data.synth import SynthConfig, render_scene
from slocal.teach.sfm import SfmTeacherConfig, build_sfm_map

# The procedural room at its default 320x240: enough texture for SIFT, 30 views on two loops.
SYNTH = SynthConfig(mapping_frames=30, query_frames=2, seed=3)


@pytest.fixture(scope="package")
def synth_scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("sfm") / "data"
    return render_scene(root / "room", SYNTH).scene


@pytest.fixture(scope="package")
def synth_map(synth_scene, tmp_path_factory):
    return build_sfm_map(synth_scene, SfmTeacherConfig(), tmp_path_factory.mktemp("sfm_work"))
