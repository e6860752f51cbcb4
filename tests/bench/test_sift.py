import dataclasses

import numpy as np
import pytest

from slocal.bench.sift import SiftConfig, SiftLocalizer, match_descriptors, sift_dir
from slocal.capture.retrieval import descriptors_to_float
from slocal.data import load_scene
from slocal.data.synth import SynthConfig, render_scene
from slocal.errors import SlocalError
from slocal.geometry import pose_error
from slocal.io import read_image
from slocal.teach.sfm import SfmTeacherConfig

SYNTH = SynthConfig(mapping_frames=30, query_frames=4, seed=3)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("sift")
    scene = render_scene(root / "data" / "room", SYNTH).scene
    return scene, root / "runs"


@pytest.fixture(scope="module")
def localizer(synth):
    scene, runs = synth
    return SiftLocalizer.build(scene, runs, SiftConfig())


def test_synthetic_queries_localize_within_a_centimetre(synth, localizer):
    scene, _ = synth
    for frame in scene.query:
        result, ms = localizer.localize(read_image(frame.image_path), frame.camera)
        assert result.success and result.num_inliers > 100
        t_err, r_err = pose_error(result.cam_from_world, frame.cam_from_world)
        assert t_err < 0.01 and r_err < 0.5, (frame.name, t_err, r_err)
        assert set(ms) == {"features", "matching", "ransac"} and all(v >= 0 for v in ms.values())
    assert 0 < localizer.map_mb < 50


def test_map_is_cached_and_reused(synth, localizer, caplog):
    scene, runs = synth
    folder = sift_dir(runs, scene, SiftConfig())
    assert (folder / "map.npz").is_file() and (folder / "index.json").is_file()
    assert not (folder / "work" / "database.db").exists()
    mtime = (folder / "map.npz").stat().st_mtime_ns
    with caplog.at_level("INFO", logger="slocal.bench.sift"):
        again = SiftLocalizer.build(scene, runs, SiftConfig())
    assert "using the cached SIFT map" in caplog.text
    assert (folder / "map.npz").stat().st_mtime_ns == mtime
    assert again.image_names == [f.name for f in scene.mapping]
    # A setting of the map gives another folder; a query-time setting does not.
    assert sift_dir(runs, scene, SiftConfig(vocab_size=64)) != folder
    assert sift_dir(runs, scene, SiftConfig(num_retrieved=3, max_ratio=0.7)) == folder


def test_retrieval_finds_the_mapping_image_itself(synth, localizer):
    scene, _ = synth
    for k in (0, 7, 19):
        _, desc = localizer._extractor(read_image(scene.mapping[k].image_path))
        assert localizer.retrieve(descriptors_to_float(desc))[0] == k


def test_wrong_camera_size_is_refused(synth, localizer):
    scene, _ = synth
    frame = scene.query[0]
    with pytest.raises(SlocalError, match="query image is 320x240"):
        localizer.localize(read_image(frame.image_path), frame.camera.scaled(160, 120))


def test_match_descriptors_mutual_and_ratio():
    rng = np.random.default_rng(0)
    d = descriptors_to_float(rng.random((6, 128)).astype(np.float32))
    q = d[[0, 2, 4]] + 0.01 * rng.standard_normal((3, 128)).astype(np.float32)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    rows, cols = match_descriptors(q, d, 0.8)
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [0, 2, 4]
    # An ambiguous map (a duplicate of the best descriptor) fails the ratio test.
    rows, _ = match_descriptors(q[:1], np.concatenate([d[:1], d[:1] + 1e-4, d[1:]]), 0.8)
    assert len(rows) == 0
    # Two queries wanting the same map descriptor: only the mutual one is kept.
    rows, cols = match_descriptors(descriptors_to_float(np.stack([q[0], 0.9 * q[0] + 0.1 * d[1]])), d, 0.95)
    assert rows.tolist() == [0] and cols.tolist() == [0]


@pytest.mark.realdata
@pytest.mark.slow
def test_real_queries_against_a_small_map(seven_scenes_mini, tmp_path):
    """A 20-frame redkitchen map with reduced SIFT localizes queries of the other sequence."""
    scene = load_scene(seven_scenes_mini, "redkitchen")
    sub = dataclasses.replace(scene, mapping=scene.mapping[0:40:2], query=scene.query[:3])
    config = SiftConfig(sfm=SfmTeacherConfig(max_features=2048), vocab_size=128)
    loc = SiftLocalizer.build(sub, tmp_path / "runs", config)
    for frame in sub.query:
        result, _ = loc.localize(read_image(frame.image_path), frame.camera)
        assert result.success
        t_err, r_err = pose_error(result.cam_from_world, frame.cam_from_world)
        assert t_err < 0.05 and r_err < 2.0, (frame.name, t_err, r_err)
