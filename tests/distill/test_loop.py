"""The training loop with a toy recipe: the recipe's hooks, resume, the reprojection schedule, divergence."""

import numpy as np
import pytest
import torch

from helpers.distill_fixtures import TINY_STUDENT, tiny_train
from slocal.distill.ddp import DistEnv
from slocal.distill.loop import Prepared, Run, StepOutput, run_training
from slocal.distill.model_file import read_model_payload
from slocal.distill.students import build_student
from slocal.errors import SlocalError
from slocal.geometry.camera import pixel_centers

SIZE = (64, 48)


class ToyRecipe:
    """Random images and targets from one seeded generator, through the tiny student."""

    name = "toy"
    label = "toy"

    def __init__(self, scene, blow_up_at: int | None = None, units: float = 1.0, metres_per_unit: float = 1.0):
        # ``units``: the data (predictions, targets, poses) in units of 1 / units metres; ``metres_per_unit``:
        # what the recipe tells the loop about them.
        self.scene, self.blow_up_at = scene, blow_up_at
        self.units, self.metres_per_unit = units, metres_per_unit
        self.calls: list[str] = []
        self.steps = 0

    def prepare(self, run, checkpoint):
        self.calls.append("prepare")
        torch.manual_seed(0)
        net = build_student(TINY_STUDENT, SIZE)
        self.generator = torch.Generator().manual_seed(1)
        return Prepared(
            net=net,
            module=net,
            param_groups=[{"params": list(net.parameters()), "lr_factor": 1.0}],
            centre=np.zeros(3),
            image_size=SIZE,
            camera=self.scene.mapping[0].camera.scaled(*SIZE),
            val_frames=[],
            val_names=[],
            train_frames=1,
            metres_per_unit=self.metres_per_unit,
            scale_source="toy",
            detail="toy",
        )

    def start(self, rng_state):
        self.calls.append("start" if rng_state is None else "resume")
        if rng_state is not None:
            self.generator.set_state(rng_state["toy"])

    def rng_state(self):
        return {"toy": self.generator.get_state()}

    def step(self, forward):
        self.steps += 1
        g = self.generator
        out = forward(torch.rand(2, 3, SIZE[1], SIZE[0], generator=g))
        pred = out[:, :3].flatten(2).transpose(1, 2)
        coords = torch.randn(pred.shape, generator=g)
        if self.blow_up_at is not None and self.steps == self.blow_up_at:
            coords = coords * float("inf")
        K = torch.tensor([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]).expand(2, 3, 3)
        pose = torch.cat([torch.eye(3), torch.tensor([[0.0], [0.0], [2.0 * self.units]])], 1).expand(2, 3, 4)
        n = pred.shape[1]
        return StepOutput(
            pred_BN3=pred * self.units,
            coords_BN3=coords * self.units,
            valid_BN=torch.ones(2, n, dtype=torch.bool),
            weight_BN=torch.ones(2, n),
            uv_N2=torch.from_numpy(pixel_centers(*SIZE, 8).reshape(-1, 2)).float(),
            K_B33=K,
            cam_from_world_B34=pose,
        )

    def summary(self):
        return {"toy_steps": self.steps}

    def close(self):
        self.calls.append("close")


def run_for(scene, targets, out, recipe, cfg, resume=False, stop_after=None):
    run = Run(
        scene=scene,
        targets=targets,
        student=TINY_STUDENT,
        train=cfg,
        out=out,
        checkpoint=out.with_name(out.name + ".ckpt"),
        teacher="depth",
        env=DistEnv(),
        device=torch.device("cpu"),
        resume=resume,
        stop_after=stop_after,
    )
    return run_training(recipe, run)


def test_a_paused_and_resumed_run_equals_a_straight_one_bit_for_bit(tiny_scene, tiny_targets, tmp_path):
    # The reprojection loss switches on half-way: its schedule must follow the resumed progress too.
    cfg = tiny_train(iterations=12, val_frames=0, reproj_weight=0.01, reproj_start=0.5)
    straight = ToyRecipe(tiny_scene)
    result = run_for(tiny_scene, tiny_targets, tmp_path / "a.pt", straight, cfg)
    assert straight.calls == ["prepare", "start", "close"]
    assert (result.iterations, result.resumed_from, result.student) == (12, None, "tiny")

    first, second = ToyRecipe(tiny_scene), ToyRecipe(tiny_scene)
    paused = run_for(tiny_scene, tiny_targets, tmp_path / "b.pt", first, cfg, stop_after=5)
    resumed = run_for(tiny_scene, tiny_targets, tmp_path / "b.pt", second, cfg, resume=True)
    assert paused.iterations == 5 and (resumed.iterations, resumed.resumed_from) == (12, 5)
    assert second.calls == ["prepare", "resume", "close"] and second.steps == 7

    a, b = read_model_payload(tmp_path / "a.pt"), read_model_payload(tmp_path / "b.pt")
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    # The model file's training summary: the loop's entries and the recipe's.
    assert b["train"]["recipe"] == "toy" and b["train"]["iterations"] == 12 and b["train"]["toy_steps"] == 7


def test_a_diverging_loss_stops_naming_the_iteration_and_the_recipe_is_closed(tiny_scene, tiny_targets, tmp_path):
    recipe = ToyRecipe(tiny_scene, blow_up_at=3)
    with pytest.raises(SlocalError, match="training diverged .* at iteration 3"):
        run_for(tiny_scene, tiny_targets, tmp_path / "c.pt", recipe, tiny_train(iterations=10, val_frames=0))
    assert recipe.calls[-1] == "close"
    assert not (tmp_path / "c.pt").exists()


def test_the_losses_metric_settings_follow_the_recipes_scene_unit(tiny_scene, tiny_targets, tmp_path):
    """Data in units of 0.25 m with ``metres_per_unit`` 0.25 train exactly as in metres (scaling by a power of
    two is exact: the loss clamp and the reprojection loss's nearest depth act alike); without the scale not."""
    cfg = tiny_train(iterations=6, val_frames=0, loss_clamp=0.5, reproj_weight=0.05, reproj_start=0.0)
    run_for(tiny_scene, tiny_targets, tmp_path / "m.pt", ToyRecipe(tiny_scene), cfg)
    run_for(tiny_scene, tiny_targets, tmp_path / "u.pt", ToyRecipe(tiny_scene, units=4.0, metres_per_unit=0.25), cfg)
    run_for(tiny_scene, tiny_targets, tmp_path / "w.pt", ToyRecipe(tiny_scene, units=4.0), cfg)
    m, u, w = (read_model_payload(tmp_path / f"{n}.pt") for n in "muw")
    assert all(torch.equal(m["state_dict"][k], u["state_dict"][k]) for k in m["state_dict"])
    assert m["train"]["final_loss"] == u["train"]["final_loss"] != w["train"]["final_loss"]
    assert not all(torch.equal(m["state_dict"][k], w["state_dict"][k]) for k in m["state_dict"])
    assert (u["train"]["metres_per_unit"], u["train"]["metres_per_unit_source"]) == (0.25, "toy")
    assert m["train"]["metres_per_unit"] == 1.0
