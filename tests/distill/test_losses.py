import math

import pytest
import torch

from slocal.distill.losses import MIN_DEPTH_M, coordinate_loss, reprojection_loss


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


def test_losses_are_the_same_in_any_scene_unit():
    """A scene in units of 0.25 m (coordinates x4) with metres_per_unit 0.25 costs what the metric scene costs:
    the coordinate loss in metres (soft clamp included), the reprojection loss leaving out the same near points."""
    torch.manual_seed(0)
    k = 4.0  # scene units per metre
    K = torch.tensor([[[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]]])
    pose_m = torch.tensor([[[1.0, 0, 0, 0.1], [0, 1.0, 0, 0], [0, 0, 1.0, 1.0]]])
    pose_u = pose_m.clone()
    pose_u[:, :, 3] *= k
    uv = torch.rand(50, 2) * torch.tensor([64.0, 48.0])
    # Half of the points 4-8 cm in front of the camera: under MIN_DEPTH_M, left out of the reprojection loss.
    pred_m = torch.randn(1, 50, 3) * 0.2
    pred_m[0, :25, 2] = -1.0 + 0.04 + 0.04 * torch.rand(25)
    pred_m[0, 25:, 2] = torch.rand(25) - 0.5  # 0.5-1.5 m in front of the camera
    target_m = pred_m + torch.randn(1, 50, 3) * 0.3
    valid = torch.ones(1, 50, dtype=torch.bool)
    metric = coordinate_loss(pred_m, target_m, valid, soft_clamp=0.1)
    units = coordinate_loss(k * pred_m, k * target_m, valid, soft_clamp=0.1, metres_per_unit=1 / k)
    assert units.item() == pytest.approx(metric.item(), rel=1e-5)
    assert coordinate_loss(k * pred_m, k * target_m, valid, soft_clamp=0.1).item() > 1.5 * metric.item()
    reproj_m = reprojection_loss(pred_m, uv, K, pose_m, tau=50.0, pixel_scale=1.0)
    reproj_u = reprojection_loss(k * pred_m, uv, K, pose_u, tau=50.0, pixel_scale=1.0, min_depth=MIN_DEPTH_M * k)
    assert reproj_u.item() == pytest.approx(reproj_m.item(), rel=1e-5)
    # Read as units, the metric 10 cm would keep the near points (0.16-0.32 units in front of the camera).
    reproj_wrong = reprojection_loss(k * pred_m, uv, K, pose_u, tau=50.0, pixel_scale=1.0)
    assert abs(reproj_wrong.item() - reproj_m.item()) > 0.05 * reproj_m.item()
