"""Dust3rRunner: batching by shape, input order, numpy outputs equal to single forwards."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from slocal.teach.dust3r import Dust3rConfig, Dust3rNet, Dust3rRunner


@pytest.fixture(scope="module")
def natural_net(dust3r_fixtures) -> Dust3rNet:
    meta = json.loads((dust3r_fixtures / "small_dpt_config.json").read_text())
    dpt = meta["dpt_head_override"]
    cfg = Dust3rConfig.from_kwargs(
        {
            **meta["model_kwargs"],
            "dpt_feature_dim": dpt["feature_dim"],
            "dpt_last_dim": dpt["last_dim"],
            "dpt_layer_dims": dpt["layer_dims"],
        }
    ).natural()
    net = Dust3rNet(cfg).eval()
    sd = torch.load(dust3r_fixtures / "small_dpt_state_dict.pt", map_location="cpu", weights_only=True)
    net.load_state_dict(sd, strict=True)
    return net


def test_runner_batches_by_shape_and_keeps_order(natural_net):
    gen = torch.Generator().manual_seed(5)

    def img(h, w):
        return torch.rand(3, h, w, generator=gen) * 2 - 1

    shapes = [((80, 112), (80, 112)), ((112, 80), (80, 112)), ((80, 112), (80, 112)), ((64, 64), (112, 80))]
    pairs = [(img(*a), img(*b)) for a, b in shapes]
    preds = Dust3rRunner(natural_net, device="cpu", batch_size=2).run(pairs, progress=False)
    assert len(preds) == len(pairs)
    for (img1, img2), pred, (s1, s2) in zip(pairs, preds, shapes):
        with torch.inference_mode():
            ref1, ref2 = natural_net({"img": img1[None]}, {"img": img2[None]})
        assert pred.pts3d_1.shape == (*s1, 3) and pred.conf_1.shape == s1
        assert pred.pts3d_2.shape == (*s2, 3) and pred.conf_2.shape == s2
        assert pred.pts3d_1.dtype == np.float32 and pred.conf_2.dtype == np.float32
        np.testing.assert_allclose(pred.pts3d_1, ref1["pts3d"][0].numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(pred.conf_1, ref1["conf"][0].numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(pred.pts3d_2, ref2["pts3d_in_other_view"][0].numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(pred.conf_2, ref2["conf"][0].numpy(), rtol=1e-5, atol=1e-5)
    # pairs 0 and 2 share a batch but are different images
    assert not np.allclose(preds[0].pts3d_1, preds[2].pts3d_1)


def test_runner_rejects_bad_arguments(natural_net):
    with pytest.raises(ValueError, match="amp"):
        Dust3rRunner(natural_net, amp="int8")
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        Dust3rRunner(natural_net).run([(torch.zeros(1, 3, 64, 64), torch.zeros(3, 64, 64))], progress=False)


@pytest.mark.cuda
def test_runner_cuda_autocast_close_to_fp32(natural_net):
    gen = torch.Generator().manual_seed(6)
    pairs = [(torch.rand(3, 80, 112, generator=gen) * 2 - 1, torch.rand(3, 80, 112, generator=gen) * 2 - 1)]
    ref = Dust3rRunner(natural_net, device="cpu").run(pairs, progress=False)[0]
    for amp in ("fp32", "bf16", "fp16"):
        got = Dust3rRunner(natural_net, device="cuda", amp=amp).run(pairs, progress=False)[0]
        scale = np.abs(ref.pts3d_2).max()
        tol = 1e-3 if amp == "fp32" else 5e-2
        assert np.abs(got.pts3d_2 - ref.pts3d_2).max() / scale < tol, amp
    natural_net.to("cpu")
