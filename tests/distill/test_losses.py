import math

import pytest
import torch

from slocal.distill.losses import coordinate_loss, reprojection_loss


def test_coordinate_loss_masks_and_soft_clamps():
    pred = torch.tensor([[[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.1, 0.0]]])
    target = torch.zeros(1, 3, 3)
    valid = torch.tensor([[True, True, False]])
    assert coordinate_loss(pred, target, valid).item() == pytest.approx(1.5)
    # Beyond the clamp c the cost is c (1 + log(d / c)) and still has a gradient.
    pred.requires_grad_(True)
    loss = coordinate_loss(pred, target, valid, soft_clamp=1.0)
    assert loss.item() == pytest.approx((0.0 + 1.0 + math.log(3.0)) / 2)
    loss.backward()
    assert pred.grad[0, 1, 0].item() == pytest.approx(0.5 / 3.0)


def test_reprojection_loss_is_zero_for_points_on_their_rays_and_saturates():
    K = torch.tensor([[[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]]])
    pose = torch.tensor([[[1.0, 0, 0, 0.5], [0, 1.0, 0, 0], [0, 0, 1.0, 1.0]]])
    uv = torch.tensor([[10.0, 20.0], [40.0, 30.0]])
    depth = torch.tensor([2.0, 3.0])
    cam = torch.stack([(uv[:, 0] - 32) / 100 * depth, (uv[:, 1] - 24) / 100 * depth, depth], 1)
    world = (cam - pose[0, :, 3]) @ pose[0, :, :3]  # R = I
    assert reprojection_loss(world[None], uv, K, pose, tau=10.0, pixel_scale=1.0).item() == pytest.approx(0.0, abs=1e-3)
    far = world.clone()
    far[:, 0] += 1.0  # tens of pixels off -> each term close to tau
    assert reprojection_loss(far[None], uv, K, pose, tau=5.0, pixel_scale=1.0).item() == pytest.approx(5.0, rel=0.01)


def test_confidence_weights_the_coordinate_loss():
    pred = torch.zeros(1, 2, 3)
    target = torch.tensor([[[1.0, 0.0, 0.0], [3.0, 0.0, 0.0]]])
    valid = torch.tensor([[True, True]])
    assert coordinate_loss(pred, target, valid).item() == pytest.approx(2.0)
    weight = torch.tensor([[3.0, 1.0]])
    assert coordinate_loss(pred, target, valid, weight_BN=weight).item() == pytest.approx((3 * 1 + 1 * 3) / 4)
    assert coordinate_loss(pred, target, torch.tensor([[True, False]]), weight_BN=weight).item() == pytest.approx(1.0)
