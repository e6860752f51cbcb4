import pytest
import torch

from slocal.distill.config import TrainConfig
from slocal.distill.optim import coordinate_weight, make_optimizer, one_cycle_lr, reprojection_tau, set_learning_rate
from slocal.errors import SlocalError


def test_make_optimizer_is_fused_adamw_with_the_configs_settings_and_steps_like_the_reference():
    torch.manual_seed(0)
    cfg = TrainConfig(lr=3e-3, weight_decay=1e-2)
    net = torch.nn.Sequential(torch.nn.Linear(7, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    ref = torch.nn.Sequential(torch.nn.Linear(7, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    ref.load_state_dict(net.state_dict())
    initial = net[0].weight.detach().clone()
    opt = make_optimizer(net.parameters(), cfg, torch.device("cpu"))
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False)
    assert opt.defaults["fused"] is True
    assert (opt.defaults["lr"], opt.defaults["weight_decay"]) == (3e-3, 1e-2)
    x, y = torch.randn(64, 7), torch.randn(64, 3)
    for _ in range(20):
        for model, o in ((net, opt), (ref, ref_opt)):
            o.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            o.step()
    assert (net[0].weight - initial).abs().max() > 1e-2  # the steps did move the weights
    assert max((a - b).abs().max().item() for a, b in zip(net.parameters(), ref.parameters(), strict=True)) < 1e-5


def test_one_cycle_lr():
    assert one_cycle_lr(1.0, 0.0, 0.1, 1e-4) == pytest.approx(1 / 25)
    assert one_cycle_lr(1.0, 0.1, 0.1, 1e-4) == pytest.approx(1.0)
    assert one_cycle_lr(1.0, 1.0, 0.1, 1e-4) == pytest.approx(1e-4)
    assert one_cycle_lr(1.0, 0.55, 0.1, 1e-4) == pytest.approx(0.5, abs=1e-3)


def test_reprojection_clamp_is_off_before_its_start_then_tightens_from_start_to_end():
    cfg = TrainConfig(reproj_weight=0.01, reproj_start=0.5, reproj_tau_start=50.0, reproj_tau_end=2.0)
    assert reprojection_tau(cfg, 0.49) is None
    assert reprojection_tau(cfg, 0.5) == pytest.approx(50.0)
    assert reprojection_tau(cfg, 0.75) == pytest.approx(26.0)
    assert reprojection_tau(cfg, 1.0) == pytest.approx(2.0)
    assert reprojection_tau(TrainConfig(reproj_weight=0.0), 0.9) is None


def test_learning_rate_scales_by_each_groups_factor():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [a], "lr_factor": 1.0}, {"params": [b], "lr_factor": 0.1}, {"params": []}], lr=1)
    set_learning_rate(opt, 0.5)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.05, 0.5]


def test_coordinate_weight_fades_to_its_end_value_after_its_start():
    cfg = TrainConfig(reproj_weight=0.002, coord_fade_start=0.5, coord_weight_end=0.0)
    assert coordinate_weight(cfg, 0.0) == 1.0
    assert coordinate_weight(cfg, 0.5) == 1.0
    assert coordinate_weight(cfg, 0.75) == pytest.approx(0.5)
    assert coordinate_weight(cfg, 1.0) == pytest.approx(0.0)
    half = TrainConfig(reproj_weight=0.002, coord_fade_start=0.0, coord_weight_end=0.2)
    assert coordinate_weight(half, 0.5) == pytest.approx(0.6)
    # The default never fades: a run without the finish is the run it was before the setting existed.
    assert all(coordinate_weight(TrainConfig(), p) == 1.0 for p in (0.0, 0.5, 0.99, 1.0))


def test_a_fading_coordinate_loss_needs_a_reprojection_loss_to_finish_on():
    with pytest.raises(SlocalError, match="reproj_weight is 0"):
        TrainConfig(reproj_weight=0.0, coord_fade_start=0.5, coord_weight_end=0.0)
