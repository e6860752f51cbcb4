import torch

from slocal.distill.config import TrainConfig
from slocal.distill.optim import make_optimizer


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
