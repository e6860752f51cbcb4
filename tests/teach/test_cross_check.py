"""The multi-view check of per-frame targets: wrong depth goes, depth noise averages down, unseen targets stay."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from slocal.errors import SlocalError
from slocal.teach import ensure_targets, load_targets, make_teacher
from slocal.teach.consistency import multiview_consistency
from slocal.teach.cross_check import choose_partners, cross_check
from slocal.teach.depth import DepthTeacher, DepthTeacherConfig


def test_partners_have_a_baseline_and_overlap(room_targets):
    scene, targets = room_targets
    chosen = choose_partners(scene, [t.name for t in targets], partners=4)
    centres = {f.name: f.world_from_cam[:3, 3] for f in scene.mapping}
    assert all(1 <= len(c) <= 4 for c in chosen)
    for i, partners in enumerate(chosen):
        assert i not in partners
        for j in partners:
            assert np.linalg.norm(centres[targets[i].name] - centres[targets[j].name]) >= 0.05


def along_rays(scene, t, offset_HW):
    """``t``'s targets moved ``offset_HW`` metres along its own viewing rays (a depth error)."""
    centre = next(f for f in scene.mapping if f.name == t.name).world_from_cam[:3, 3]
    ray = t.coords_HW3 - centre
    ray /= np.linalg.norm(ray, axis=-1, keepdims=True)
    return replace(t, coords_HW3=(t.coords_HW3 + offset_HW[..., None] * ray).astype(np.float32))


def half_wrong(scene, targets):
    """The targets with frame 5's left half 10 cm too far along its rays, and that half's index."""
    wrong = targets[5]
    half = np.s_[:, : wrong.camera.width // 2]
    offset = np.zeros(wrong.valid_HW.shape)
    offset[half] = 0.10
    moved = list(targets)
    moved[5] = along_rays(scene, wrong, offset)
    return moved, half


def test_a_wrong_patch_is_removed_and_exact_targets_kept(room_targets):
    scene, targets = room_targets
    wrong = targets[5]
    moved, half = half_wrong(scene, targets)
    bad = moved[5].coords_HW3[half]

    checked, stats = cross_check(scene, moved, min_views=1, partners=4, tolerance_m=0.02)

    assert [t.name for t in checked] == [t.name for t in targets]
    left = checked[5].valid_HW[half]
    was = np.isfinite(bad[..., 0])
    # What a partner sees of the moved half goes; only what no partner sees may stay.
    assert left.sum() < 0.3 * was.sum()
    right = checked[5].valid_HW[:, wrong.camera.width // 2 :]
    assert right.sum() > 0.9 * wrong.valid_HW[:, wrong.camera.width // 2 :].sum()
    assert stats["kept_pct"] > 90
    assert stats["unchecked_frames"] == 0
    # Exact targets stay put (agreeing neighbours are the same points up to sampling).
    other = checked[0]
    ok = other.valid_HW & targets[0].valid_HW
    assert np.median(np.linalg.norm(other.coords_HW3[ok] - targets[0].coords_HW3[ok], axis=1)) < 0.002


def test_keeping_the_disputed_targets_only_averages_the_confirmed(room_targets):
    scene, targets = room_targets
    moved, half = half_wrong(scene, targets)

    checked, stats = cross_check(scene, moved, min_views=1, partners=4, tolerance_m=0.02, drop_disputed=False)

    # Every target stays; the wrong half is kept exactly where it was (10 cm off), not averaged with its partners.
    assert stats["kept_pct"] == 100 and all((c.valid_HW == t.valid_HW).all() for c, t in zip(checked, moved))
    ok = moved[5].valid_HW[half]
    assert np.allclose(checked[5].coords_HW3[half][ok], moved[5].coords_HW3[half][ok], atol=1e-6)
    # The frames that agree are confirmed and averaged as with the drop.
    dropped, dropped_stats = cross_check(scene, moved, min_views=1, partners=4, tolerance_m=0.02)
    assert stats["confirmed_pct"] == pytest.approx(dropped_stats["confirmed_pct"])
    # Dropping keeps exactly the confirmed and the unseen targets (a target no partner sees has no vote).
    assert stats["confirmed_pct"] + stats["unseen_pct"] == pytest.approx(dropped_stats["kept_pct"])
    assert 50 < stats["confirmed_pct"] < dropped_stats["kept_pct"] < 100
    same = dropped[0].valid_HW
    assert np.allclose(checked[0].coords_HW3[same], dropped[0].coords_HW3[same], atol=1e-6)


def test_without_averaging_only_the_disputed_targets_go(room_targets):
    scene, targets = room_targets
    moved, _ = half_wrong(scene, targets)

    kept, stats = cross_check(scene, moved, min_views=1, partners=4, tolerance_m=0.02, average=False)
    averaged, averaged_stats = cross_check(scene, moved, min_views=1, partners=4, tolerance_m=0.02)

    # The same targets go as with the averaging; the ones that stay are exactly the frame's own.
    assert stats["kept_pct"] == averaged_stats["kept_pct"] and stats["mean_shift_mm"] == 0
    for k, a, m in zip(kept, averaged, moved):
        assert (k.valid_HW == a.valid_HW).all()
        assert np.array_equal(k.coords_HW3[k.valid_HW], m.coords_HW3[k.valid_HW])
    assert kept[5].valid_HW.sum() < 0.8 * moved[5].valid_HW.sum()


def test_independent_noise_averages_down(room_targets):
    scene, targets = room_targets
    rng = np.random.default_rng(0)
    noisy = [along_rays(scene, t, rng.normal(0, 0.005, t.valid_HW.shape)) for t in targets]
    checked, _ = cross_check(scene, noisy, min_views=1, partners=4, tolerance_m=0.03)

    def error(ts):
        d = [np.linalg.norm(t.coords_HW3[t.valid_HW] - e.coords_HW3[t.valid_HW], axis=1) for t, e in zip(ts, targets)]
        return float(np.median(np.concatenate(d)))

    # Depth noise of sigma 5 mm: 3.4 mm median error per frame; averaging with the partners that see a pixel (a
    # filter alone, at 3 cm, would keep every target as it is) cuts it by a quarter here.
    assert error(noisy) > 0.003
    assert error(checked) < 0.8 * error(noisy)
    before = multiview_consistency(scene, tuple(noisy))["median"]
    after = multiview_consistency(scene, tuple(checked))["median"]
    assert after < 0.8 * before


def test_a_frame_without_partners_is_kept_as_it_is(room_targets):
    scene, targets = room_targets
    checked, stats = cross_check(scene, targets[:1], min_views=1)
    assert checked[0] is targets[0]
    assert stats["unchecked_frames"] == 1
    assert stats["kept_pct"] == 100


def test_depth_teacher_with_the_check(room_targets, tmp_path):
    scene, targets = room_targets
    assert not any(k.startswith("cross_check") for k in DepthTeacher().settings())  # the old cache key
    teacher = make_teacher("depth", cross_check_views="1")
    assert teacher.settings()["cross_check_views"] == 1
    assert teacher.settings()["cross_check_rule"] == "mean-range-along-ray"
    assert teacher.settings()["cross_check_drop"] is True
    assert make_teacher("depth", cross_check_views="1", cross_check_drop="false").config.cross_check_drop is False
    checked = ensure_targets(scene, teacher, tmp_path)
    assert len(checked.frames) == len(targets)
    # The check's own stats reach the cache's index (and `slocal teach --json`).
    assert 90 < checked.stats["teacher_stats"]["kept_pct"] <= 100
    assert load_targets(checked.directory).stats["teacher_stats"] == checked.stats["teacher_stats"]
    with pytest.raises(SlocalError, match="cross_check_views"):
        DepthTeacherConfig(cross_check_views=5, cross_check_partners=4)
