import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from helpers.distill_fixtures import LOSS_TEST_TRAIN, TINY_STUDENT, tiny_train
from slocal.data import load_scene
from slocal.distill.config import BufferTrainConfig, to_plain
from slocal.distill.config_files import load_configs
from slocal.distill.data import load_train_frames, scene_centre, validation_split
from slocal.distill.model_file import load_student, read_model_payload
from slocal.distill.students import build_student
from slocal.distill.trainer import (
    checkpoint_path_for,
    distill_student,
    finish_for_targets,
    student_for_targets,
    train_student,
)
from slocal.errors import SlocalError
from slocal.geometry.camera import Camera
from slocal.io import read_json
from slocal.teach.targets import FrameTargets, TargetSet


def _mean_error(net, frames) -> float:
    """Mean Euclidean error (m) of ``net`` on the un-augmented frames' valid stride-8 cells."""
    net.eval()
    errors = []
    mean = torch.tensor(TINY_STUDENT.mean).view(1, 3, 1, 1)
    std = torch.tensor(TINY_STUDENT.std).view(1, 3, 1, 1)
    with torch.no_grad():
        for f in frames:
            x = (torch.from_numpy(f.image_HW3).permute(2, 0, 1)[None].float() / 255 - mean) / std
            pred = net(x)[0, :3].permute(1, 2, 0).numpy()
            # Targets at the cell centres (the target grid is finer than the 64x48 input).
            h, w = pred.shape[:2]
            tc, cam = f.target_camera, f.camera
            u = (np.arange(w) * 8 + 4 - cam.cx) / cam.fx * tc.fx + tc.cx
            v = (np.arange(h) * 8 + 4 - cam.cy) / cam.fy * tc.fy + tc.cy
            cols, rows = np.floor(u).astype(int), np.floor(v).astype(int)
            tgt = f.coords_HW3[rows][:, cols]
            ok = f.valid_HW[rows][:, cols]
            errors.append(np.linalg.norm(pred - tgt, axis=-1)[ok])
    return float(np.concatenate(errors).mean())


def test_training_reduces_the_error_by_a_real_factor(tiny_scene, tiny_targets, trained_tiny):
    result = trained_tiny
    cfg = tiny_train(**LOSS_TEST_TRAIN)
    centre = scene_centre(tiny_targets)
    frames = load_train_frames(tiny_scene, tiny_targets, result.image_size, centre)
    torch.manual_seed(cfg.seed)
    before = _mean_error(build_student(TINY_STUDENT, result.image_size), frames)
    after = _mean_error(load_student(result.model_path, precision="fp32").module, frames)
    assert after < before / 3, (before, after)
    assert result.iterations == 300 and result.final_loss < before


def _params(path):
    return read_model_payload(path)["state_dict"]


def test_resume_is_bit_exact(tiny_scene, tiny_targets, tmp_path):
    straight = train_student(
        tiny_scene, tiny_targets, TINY_STUDENT, tiny_train(iterations=12), tmp_path / "a.pt", device="cpu"
    )
    # The interrupted run validates and checkpoints every iteration: neither may disturb training.
    cfg = tiny_train(iterations=12, val_every_s=0.0, checkpoint_every_s=0.0)
    first = train_student(tiny_scene, tiny_targets, TINY_STUDENT, cfg, tmp_path / "b.pt", device="cpu", stop_after=6)
    assert first.iterations == 6
    half = _params(tmp_path / "b.pt")
    resumed = train_student(tiny_scene, tiny_targets, TINY_STUDENT, cfg, tmp_path / "b.pt", device="cpu", resume=True)
    assert resumed.resumed_from == 6 and resumed.iterations == 12
    a, b = _params(straight.model_path), _params(resumed.model_path)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert any(not torch.equal(half[k], b[k]) for k in b)  # the second half did train
    ck_a = torch.load(checkpoint_path_for(straight.model_path), weights_only=True)
    ck_b = torch.load(checkpoint_path_for(resumed.model_path), weights_only=True)
    for sa, sb in zip(ck_a["optimizer"]["state"].values(), ck_b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert ck_a["rng"][0]["numpy_sampler"] == ck_b["rng"][0]["numpy_sampler"]


def test_resume_refusals(tiny_scene, tiny_targets, tmp_path):
    with pytest.raises(SlocalError, match="no checkpoint"):
        train_student(
            tiny_scene, tiny_targets, TINY_STUDENT, tiny_train(), tmp_path / "x.pt", device="cpu", resume=True
        )
    train_student(
        tiny_scene, tiny_targets, TINY_STUDENT, tiny_train(iterations=4), tmp_path / "x.pt", device="cpu", stop_after=2
    )
    with pytest.raises(SlocalError, match="training settings differ.*iterations 4 vs 8"):
        train_student(
            tiny_scene,
            tiny_targets,
            TINY_STUDENT,
            tiny_train(iterations=8),
            tmp_path / "x.pt",
            device="cpu",
            resume=True,
        )
    other = dataclasses.replace(TINY_STUDENT, blocks8=2)
    with pytest.raises(SlocalError, match="student settings differ.*blocks8"):
        train_student(
            tiny_scene, tiny_targets, other, tiny_train(iterations=4), tmp_path / "x.pt", device="cpu", resume=True
        )
    # Targets of the same teacher with other settings (the frames themselves do not matter here).
    smoothed = dataclasses.replace(tiny_targets, settings={**tiny_targets.settings, "smooth_px": 15})
    with pytest.raises(SlocalError, match="teacher settings differ.*smooth_px None vs 15"):
        train_student(
            tiny_scene, smoothed, TINY_STUDENT, tiny_train(iterations=4), tmp_path / "x.pt", device="cpu", resume=True
        )


def test_minutes_budget_stops_on_time_and_writes_the_model(tiny_scene, tiny_targets, tmp_path):
    cfg = tiny_train(iterations=None, minutes=0.03, val_every_s=0.5)
    result = train_student(tiny_scene, tiny_targets, TINY_STUDENT, cfg, tmp_path / "t.pt", device="cpu")
    assert result.iterations > 0
    # Never before the budget; after it by at most the step and validation in flight, which a loaded
    # machine stretches: bound the overshoot by the run's own mean step time, not by a wall-clock constant.
    seconds_per_step = result.train_seconds / result.iterations
    assert 1.8 <= result.train_seconds <= 1.8 + 5.0 + 3 * seconds_per_step
    info = read_model_payload(result.model_path)["train"]
    assert info["iterations"] == result.iterations
    assert info["validation"] and "pct_5cm5deg" in info["validation"][-1]


def _target_set(valid_fractions: list[float]) -> TargetSet:
    camera = Camera(10, 10, 10.0, 10.0, 5.0, 5.0)
    frames = []
    for i, fraction in enumerate(valid_fractions):
        valid = np.zeros((10, 10), bool)
        valid.flat[: int(round(fraction * 100))] = True
        frames.append(FrameTargets(f"f{i}", camera, np.zeros((10, 10, 3), np.float32), valid.astype(np.float32), valid))
    return TargetSet("t", {}, Path("."), tuple(frames), {})


def test_the_reprojection_finish_is_kept_for_dense_teachers_only():
    finish = BufferTrainConfig(reproj_weight=0.002, coord_fade_start=0.5, coord_weight_end=0.0)
    dense, sparse = _target_set([1.0, 0.9, 0.02]), _target_set([0.02, 0.01, 0.9])
    assert finish_for_targets(finish, dense) == finish
    assert finish_for_targets(finish, sparse) == dataclasses.replace(finish, coord_fade_start=1.0)
    # Asked for explicitly, or nothing to fade: the settings as given.
    forced = dataclasses.replace(finish, coord_fade_sparse=True)
    assert finish_for_targets(forced, sparse) == forced
    assert finish_for_targets(BufferTrainConfig(), sparse) == BufferTrainConfig()


def test_a_sparsely_taught_student_localizes_at_its_sparse_threshold(tiny_scene, tiny_targets, tmp_path):
    student, _ = load_configs("ace")
    dense, sparse = _target_set([1.0, 0.9, 0.02]), _target_set([0.02, 0.01, 0.9])
    assert student_for_targets(student, dense) == student
    assert student_for_targets(student, sparse) == dataclasses.replace(student, ransac_threshold_px=15.0)
    std, _ = load_configs("ace-lite0-std")  # no sparse threshold chosen for it: its own everywhere
    assert std.ransac_threshold_sparse_px is None and student_for_targets(std, sparse) == std
    # Through training, the model file states the threshold its localizer uses.
    cfg = dataclasses.replace(TINY_STUDENT, ransac_threshold_sparse_px=12.0)
    every_tenth = np.zeros(tiny_targets.frames[0].valid_HW.shape, bool)
    every_tenth.flat[::10] = True
    points = dataclasses.replace(
        tiny_targets,
        frames=tuple(dataclasses.replace(t, valid_HW=t.valid_HW & every_tenth) for t in tiny_targets.frames),
    )
    for targets, threshold in ((tiny_targets, 25.0), (points, 12.0)):
        out = tmp_path / f"{threshold:g}.pt"
        train_student(tiny_scene, targets, cfg, tiny_train(iterations=2, val_frames=0), out, device="cpu")
        assert load_student(out, precision="fp32").ransac_threshold_px == threshold


def test_teach_held_out_off_teaches_on_the_training_frames_only(tiny_data, tmp_path):
    scene = load_scene(tiny_data, "tiny")
    train = {k: v for k, v in to_plain(tiny_train(val_frames=2)).items() if k not in ("minutes", "iterations")}
    runs = tmp_path / "runs"
    names = [f.name for f in scene.mapping]
    held_out = [names[i] for i in validation_split(len(names), 2)[1]]
    payloads = {}
    for teach_held_out in (True, False):
        config = tmp_path / f"{teach_held_out}.yaml"
        plain = {"student": to_plain(TINY_STUDENT), "train": {**train, "teach_held_out": teach_held_out}}
        config.write_text(yaml.safe_dump(plain))
        result = distill_student(
            scene,
            runs,
            "cnn",
            teacher="depth",
            config_file=config,
            iterations=2,
            out=tmp_path / f"{teach_held_out}.pt",
            teacher_options={"smooth_px": 3},
        )
        payloads[teach_held_out] = read_model_payload(result.model_path)
        assert payloads[teach_held_out]["train"]["validation_frames"] == held_out
    indexes = {tuple(t["name"] for t in read_json(p)["frames"]): read_json(p) for p in runs.rglob("index.json")}
    taught = tuple(n for n in names if n not in held_out)
    assert set(indexes) == {tuple(names), taught} and len(held_out) == 2
    # The model file records the settings of the teacher it learned from and its targets' consistency.
    for teach_held_out, frames in ((True, tuple(names)), (False, taught)):
        payload, index = payloads[teach_held_out], indexes[frames]
        assert payload["teacher_settings"] == index["settings"] and index["settings"]["smooth_px"] == 3
        assert payload["teacher_consistency"] == index["stats"]["consistency"]
