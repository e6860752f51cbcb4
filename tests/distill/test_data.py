from dataclasses import replace

import numpy as np
import pytest

from helpers.distill_fixtures import tiny_train
from slocal.distill.data import (
    NOMINAL_DEPTH_M,
    BatchSampler,
    load_train_frames,
    median_target_depth,
    recipe_metres_per_unit,
    scene_centre,
    split_mapping,
    validation_split,
)
from slocal.distill.mapping import split_frames
from slocal.errors import SlocalError


@pytest.fixture(scope="module")
def frames(tiny_scene, tiny_targets):
    centre = scene_centre(tiny_targets)
    return load_train_frames(tiny_scene, tiny_targets, (64, 48), centre), centre


def _project(batch, i):
    P = batch.coords_BN3[i].astype(np.float64)
    R, t = batch.cam_from_world_B34[i][:, :3], batch.cam_from_world_B34[i][:, 3]
    pc = P @ R.T + t
    K = batch.K_B33[i]
    return np.stack([pc[:, 0] / pc[:, 2] * K[0, 0] + K[0, 2], pc[:, 1] / pc[:, 2] * K[1, 1] + K[1, 2]], 1)


def test_augmented_targets_project_onto_their_cells(frames):
    """Scale + in-plane rotation: targets, augmented camera and cell centres stay consistent."""
    train_frames, centre = frames
    cfg = tiny_train(batch_size=6, aug_scale=0.3, aug_rotation=20.0)
    sampler = BatchSampler(train_frames, list(range(len(train_frames))), cfg, 8, seed=0, centre=centre)
    batch = sampler.next_batch()
    assert batch.images_BHW3.shape == (6, 48, 64, 3) and batch.coords_BN3.shape == (6, 48, 3)
    for i in range(6):
        ok = batch.valid_BN[i]
        assert ok.sum() > 10
        err = np.linalg.norm(_project(batch, i)[ok] - sampler.uv_N2[ok], axis=1)
        # Targets are taken at the exact cell centres (bilinear between target pixels), so they project
        # onto them; a nearest-pixel target would be off by up to half a target pixel (0.25 px here).
        # The tail allows cells next to depth edges, which take the nearest neighbour instead of blending.
        assert np.median(err) < 0.01 and np.quantile(err, 0.9) < 0.05, np.quantile(err, [0.5, 0.9, 1.0])
    # Without augmentation the targets are the un-augmented stride-8 samples of the target map.
    plain = BatchSampler(
        train_frames, [0], tiny_train(batch_size=1, aug_scale=0, aug_rotation=0, aug_color=0), 8, 0, centre
    )
    b = plain.next_batch()
    f = train_frames[0]
    # Cell centre (8j + 4) is the corner shared by target pixels 2(8j+4)-1 and 2(8j+4) (grid 2x finer): their mean.
    quad = np.stack([f.coords_HW3[r::16, c::16] for r in (7, 8) for c in (7, 8)])
    flat = np.ptp(quad, axis=0).max(-1) < 0.1  # away from depth edges (relative jumps < 4 %)
    np.testing.assert_allclose(b.coords_BN3[0].reshape(6, 8, 3)[flat], quad.mean(0)[flat], atol=1e-5)
    assert flat.mean() > 0.5
    np.testing.assert_allclose(b.images_BHW3[0], f.image_HW3 / 255.0, atol=1e-6)


def test_sampler_state_resumes_exactly(frames):
    train_frames, centre = frames
    a = BatchSampler(train_frames, [0, 2, 4, 6, 8], tiny_train(batch_size=3), 8, seed=5, centre=centre)
    for _ in range(3):
        a.next_batch()
    b = BatchSampler(train_frames, [0, 2, 4, 6, 8], tiny_train(batch_size=3), 8, seed=99, centre=centre)
    b.load_state_dict(a.state_dict())
    for _ in range(4):
        x, y = a.next_batch(), b.next_batch()
        np.testing.assert_array_equal(x.images_BHW3, y.images_BHW3)
        np.testing.assert_array_equal(x.coords_BN3, y.coords_BN3)


def test_epochs_visit_every_frame_once(frames):
    train_frames, centre = frames
    s = BatchSampler(train_frames, [1, 3, 5, 7], tiny_train(batch_size=1), 8, seed=0, centre=centre)
    seen = [s._next_index() for _ in range(8)]
    assert sorted(seen[:4]) == [1, 3, 5, 7] and sorted(seen[4:]) == [1, 3, 5, 7]
    with pytest.raises(SlocalError, match="no training frames"):
        BatchSampler(train_frames, [], tiny_train(), 8, 0, centre)


def test_validation_split():
    train, val = validation_split(125, 4)
    assert val == [25, 50, 74, 99] and len(train) == 121 and not set(train) & set(val)
    assert validation_split(5, 4) == ([0, 1, 2, 3, 4], [])
    assert validation_split(10, 0)[1] == []


def test_split_mapping_holds_out_the_same_frames_whatever_was_taught(tiny_scene, tiny_targets):
    train_scene, held_out = split_mapping(tiny_scene, 2)
    names = [f.name for f in tiny_scene.mapping]
    assert [f.name for f in held_out] == [names[i] for i in validation_split(len(names), 2)[1]] == [names[4], names[7]]
    assert [f.name for f in train_scene.mapping] == [n for n in names if n not in {names[4], names[7]}]
    assert train_scene.query == tiny_scene.query and train_scene.fingerprint != tiny_scene.fingerprint
    # A teacher that labelled no held-out frame (teach_held_out off) or skipped a training frame
    # leaves the split as it is: split_frames takes the training frames it has targets for.
    taught = replace(
        tiny_targets, frames=tuple(t for t in tiny_targets.frames if t.name not in {names[4], names[7], names[0]})
    )
    train, val = split_frames(tiny_scene, taught, tiny_train(val_frames=2))
    assert [f.name for f in val] == [names[4], names[7]]
    assert [f.name for f in train] == [n for n in names if n not in {names[0], names[4], names[7]}]
    unsplit, none = split_mapping(tiny_scene, 0)
    assert none == [] and unsplit.mapping == tiny_scene.mapping
    with pytest.raises(SlocalError, match="no mapping frame named 'nope'") as info:
        tiny_scene.without_mapping(["nope"])
    assert info.value.path == tiny_scene.root and str(info.value).startswith(f"{tiny_scene.root}: ")


def test_confidence_weights_normalise_by_the_median(tmp_path):
    from slocal.distill.data import confidence_weights
    from slocal.geometry import Camera
    from slocal.teach.targets import FrameTargets, TargetSet

    cam = Camera(2, 1, 1.0, 1.0, 1.0, 0.5)
    coords = np.zeros((1, 2, 3), np.float32)
    frames = (
        FrameTargets("a", cam, coords, np.array([[2.0, 4.0]], np.float32), np.array([[True, True]])),
        FrameTargets("b", cam, coords, np.array([[4.0, 9.0]], np.float32), np.array([[True, False]])),
    )
    weights = confidence_weights(TargetSet("x", {}, tmp_path, frames, {}))
    # Valid confidences 2, 4, 4 -> median 4; invalid cells get weight 0.
    np.testing.assert_allclose(weights["a"], [[0.5, 1.0]])
    np.testing.assert_allclose(weights["b"], [[1.0, 0.0]])
    bad = (FrameTargets("a", cam, coords, np.zeros((1, 2), np.float32), np.array([[True, True]])),)
    with pytest.raises(SlocalError, match="not positive"):
        confidence_weights(TargetSet("x", {}, tmp_path, bad, {}))


def test_recipe_scale_is_the_scenes_or_its_depth_taken_as_nominal(tiny_scene, tiny_targets):
    """A metric scene keeps its scale; a scene of unknown scale is taken as NOMINAL_DEPTH_M deep at the median
    depth of its targets, which on the rendered room is the median of its depth maps."""
    assert recipe_metres_per_unit(tiny_scene, tiny_targets) == (1.0, "the scene's scale")
    assert recipe_metres_per_unit(tiny_scene.with_scale(0.25), tiny_targets)[0] == 0.25
    depth = np.concatenate([f.read_depth().ravel() for f in tiny_scene.mapping])
    expected = float(np.median(depth[depth > 0]))
    assert median_target_depth(tiny_scene, tiny_targets) == pytest.approx(expected, rel=0.03)
    unknown = replace(tiny_scene, metres_per_unit=None)
    mpu, source = recipe_metres_per_unit(unknown, tiny_targets)
    assert mpu == pytest.approx(NOMINAL_DEPTH_M / expected, rel=0.03) and source.startswith("unknown scale")
