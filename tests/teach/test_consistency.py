"""Multi-view consistency of target sets: exact targets agree, targets moved per frame do not."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from slocal.teach.consistency import compare_pairs, multiview_consistency


def test_exact_depth_targets_agree_across_views(room_targets):
    scene, targets = room_targets
    c = multiview_consistency(scene, targets)
    assert c["unit"] == "cm"
    assert c["pairs"] >= len(targets) * 2
    assert c["points_compared"] > 5000
    # The room's depth is exact up to millimetre quantisation and half-resolution sampling.
    assert c["median"] < 0.5
    assert c["within_2"] > 90
    assert 50 < c["labelled_pct"] <= 100


def test_a_per_frame_offset_is_measured(room_targets):
    scene, targets = room_targets
    rng = np.random.default_rng(0)
    moved = []
    for t in targets:
        offset = rng.normal(size=3)
        offset *= 0.03 / np.linalg.norm(offset)  # every frame's targets moved 3 cm, each its own way
        moved.append(replace(t, coords_HW3=(t.coords_HW3 + offset).astype(np.float32)))
    c = multiview_consistency(scene, tuple(moved))
    # Two frames moved 3 cm in random directions lie 3 * sqrt(2) ~ 4.2 cm apart on average.
    assert 2.5 < c["median"] < 6.0
    assert c["within_1"] < 10


def test_model_units_without_a_scale(room_targets):
    scene, targets = room_targets
    c = multiview_consistency(replace(scene, metres_per_unit=None), targets)
    assert c["unit"] == "cu"
    assert c["median"] < 0.5
    assert multiview_consistency(scene, targets[:1])["points_compared"] == 0


def test_pair_comparisons_carry_each_sampled_pixel_and_its_partner(room_targets):
    scene, targets = room_targets
    pairs = list(compare_pairs(scene, targets, samples_per_frame=200))
    assert len(pairs) == multiview_consistency(scene, targets, samples_per_frame=200)["pairs"]
    for p in pairs[:10]:
        assert p.i != p.j and p.points_N3.shape == p.partner_N3.shape == (len(p.pixels_N), 3)
        # The pixels index frame i's own targets, and where j sees the same surface its target is the same point.
        np.testing.assert_array_equal(p.points_N3, targets[p.i].coords_HW3.reshape(-1, 3)[p.pixels_N])
        assert p.same_N.sum() > 50
        assert np.median(np.linalg.norm(p.partner_N3[p.same_N] - p.points_N3[p.same_N], axis=1)) < 0.005
