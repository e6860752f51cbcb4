import dataclasses

import numpy as np
import pytest
import timm
import torch

from slocal.distill.config import CnnStudentConfig, StudentConfig, TimmStudentConfig, VitStudentConfig
from slocal.distill.config_files import load_configs, presets
from slocal.distill.students import AceStudent, build_student, input_size, load_pretrained, num_params
from slocal.errors import SlocalError

# Non-square, not 224, not a multiple of 32 (the stride-32 context branch must still align).
WIDTH, HEIGHT = 176, 112


def _small(name: str) -> StudentConfig:
    """The preset at a small input size (and for ViTs a shallow stack, so the test is quick)."""
    cfg, _ = load_configs(name)
    if isinstance(cfg, VitStudentConfig):
        cfg = dataclasses.replace(cfg, vit_depth=2)
    return cfg


@pytest.mark.parametrize("name", presets())
def test_every_preset_gives_stride8_coordinates(name):
    torch.manual_seed(0)
    cfg = _small(name)
    net = build_student(cfg, (WIDTH, HEIGHT)).eval()
    x = torch.randn(2, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        out = net(x)
    assert out.shape == (2, 3, HEIGHT // 8, WIDTH // 8)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    # The two images give different outputs (the net looks at its input).
    assert (out[0] - out[1]).abs().max() > 0


def test_uncertainty_channel_and_bf16_body_keeps_fp32_output():
    cfg = dataclasses.replace(_small("cnn-small"), uncertainty=True)
    net = build_student(cfg, (WIDTH, HEIGHT)).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(torch.randn(1, 3, HEIGHT, WIDTH))
    assert out.shape == (1, 4, HEIGHT // 8, WIDTH // 8)
    assert out.dtype == torch.float32


def test_input_size_keeps_aspect_and_multiple():
    assert input_size(load_configs("cnn")[0], 640, 480) == (320, 240)
    vit = load_configs("vit")[0]
    w, h = input_size(vit, 1296, 968)
    assert w == 320 and h % 16 == 0 and abs(w / h - 1296 / 968) < 0.05


def test_param_counts_are_in_the_intended_range():
    counts = {name: num_params(build_student(load_configs(name)[0], (320, 240))) for name in ("cnn-small", "vit-tiny")}
    assert 1e6 < counts["cnn-small"] < 8e6
    assert 4e6 < counts["vit-tiny"] < 8e6


def test_pretrained_local_state_dict_is_loaded_into_resnet18(tmp_path):
    torch.manual_seed(1)
    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": source.state_dict(), "epoch": 3}, path)
    net = build_student(_small("cnn-resnet18"), (WIDTH, HEIGHT))
    counts = load_pretrained(net, path)
    assert counts["ignored"] == 2  # fc.weight, fc.bias
    assert torch.equal(net.backbone.conv1.weight, source.conv1.weight)
    assert torch.equal(net.backbone.layer3[1].bn2.running_var, source.layer3[1].bn2.running_var)


def test_pretrained_vit_position_embeddings_are_resampled(tmp_path):
    torch.manual_seed(2)
    source = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2)
    path = tmp_path / "vit.pt"
    torch.save(source.state_dict(), path)
    net = build_student(_small("vit-tiny"), (WIDTH, HEIGHT))
    load_pretrained(net, path)
    assert torch.equal(net.backbone.blocks[1].attn.qkv.weight, source.blocks[1].attn.qkv.weight)
    assert net.backbone.pos_embed.shape[1] == 1 + (HEIGHT // 16) * (WIDTH // 16)


def test_pretrained_mismatch_is_reported(tmp_path):
    path = tmp_path / "resnet50.pth"
    torch.save(timm.create_model("resnet50", pretrained=False).state_dict(), path)
    net = build_student(_small("cnn-resnet18"), (WIDTH, HEIGHT))
    before = net.backbone.conv1.weight.clone()
    with pytest.raises(SlocalError, match="do not fit") as info:
        load_pretrained(net, path)
    assert str(path) in str(info.value)
    assert torch.equal(net.backbone.conv1.weight, before)  # nothing half-loaded


def test_pretrained_file_errors(tmp_path):
    net = build_student(_small("cnn-resnet18"), (WIDTH, HEIGHT))
    with pytest.raises(SlocalError, match="not found"):
        load_pretrained(net, tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(SlocalError, match="cannot read"):
        load_pretrained(net, bad)
    torch.save({"epoch": 1}, tmp_path / "nostate.pth")
    with pytest.raises(SlocalError, match="no state dict"):
        load_pretrained(net, tmp_path / "nostate.pth")


def test_pretrained_timm_offline_fails_clearly(monkeypatch):
    import huggingface_hub.constants

    # Offline mode without waiting for network timeouts (the constant is read at import).
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SlocalError, match="pretrained weights"):
        build_student(_small("cnn-resnet18"), (WIDTH, HEIGHT), pretrained_timm=True)
    with pytest.raises(SlocalError, match="from-scratch"):
        build_student(_small("cnn-small"), (WIDTH, HEIGHT), pretrained_timm=True)


@pytest.mark.parametrize(
    "cls, overrides",
    [
        (TimmStudentConfig, {"backbone": "mobilenetv3_large_100"}),
        (TimmStudentConfig, {"backbone": "efficientnet_b0"}),
        (VitStudentConfig, {"backbone": "vit_tiny_patch16_224", "patch_size": 8, "vit_depth": 1, "size_multiple": 8}),
        (CnnStudentConfig, {"norm": "gn", "context": False, "blocks8": 0}),
    ],
    ids=["mobilenetv3", "efficientnet", "vit-patch8", "cnn-gn-nocontext"],
)
def test_other_backbones_give_stride8_coordinates(cls, overrides):
    cfg = cls(name="x", **overrides)
    net = build_student(cfg, (WIDTH, HEIGHT)).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, HEIGHT, WIDTH))
    assert out.shape == (1, 3, HEIGHT // 8, WIDTH // 8) and torch.isfinite(out).all()


def test_unknown_backbone_and_missing_stride8():
    with pytest.raises(SlocalError, match="unknown timm model"):
        build_student(TimmStudentConfig(name="x", backbone="resnet-does-not-exist"), (WIDTH, HEIGHT))
    with pytest.raises(SlocalError, match="patch size 32"):
        build_student(VitStudentConfig(name="x", backbone="vit_base_patch32_224", vit_depth=1), (WIDTH, HEIGHT))


def test_tagged_timm_name_is_accepted():
    # timm.is_model accepts pretrained tags; the net is built from scratch all the same.
    cfg = TimmStudentConfig(name="x", backbone="mobilenetv3_small_050.lamb_in1k")
    net = build_student(cfg, (WIDTH, HEIGHT)).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, HEIGHT, WIDTH)).shape == (1, 3, HEIGHT // 8, WIDTH // 8)


def test_standardized_input_is_the_raw_head_with_its_first_layer_rescaled():
    """(f - m) / s through ``inp`` == f through ``inp`` with W / s and b - W (m / s): only the input changed."""
    torch.manual_seed(0)
    cfg, _ = load_configs("ace")
    net = build_student(cfg, (WIDTH, HEIGHT)).eval()
    assert isinstance(net, AceStudent)
    rng = np.random.default_rng(0)
    C = net.encoder.channels
    mean_C, std_C = rng.normal(0, 2, C).astype(np.float32), rng.uniform(0.5, 8, C).astype(np.float32)
    feat = torch.randn(2, C, 5, 7) * torch.from_numpy(std_C)[:, None, None] + torch.from_numpy(mean_C)[:, None, None]
    with torch.no_grad():
        raw = net.forward_features(feat)
        W, b = net.inp.weight.clone(), net.inp.bias.clone()
        net.standardize_input(mean_C, std_C)
        standardized = net.forward_features(feat)
        folded = build_student(cfg, (WIDTH, HEIGHT)).eval()
        folded.load_state_dict(net.state_dict())
        folded.feat_shift.zero_(), folded.feat_scale.fill_(1.0)
        scale = torch.from_numpy(1.0 / std_C)
        folded.inp.weight.copy_(W * scale), folded.inp.bias.copy_(b - (W * scale) @ torch.from_numpy(mean_C))
        assert torch.allclose(folded.forward_features(feat), standardized, atol=1e-4)
    assert not torch.allclose(raw, standardized, atol=1e-2)

    # Stored with the head; a head saved before the statistics existed loads with none (identity).
    state = net.scene_state_dict()
    assert torch.allclose(state["feat_scale"], torch.from_numpy(1.0 / std_C))
    again = build_student(cfg, (WIDTH, HEIGHT)).eval()
    again.load_scene_state_dict(state)
    assert torch.equal(again.feat_shift, net.feat_shift) and torch.equal(again.feat_scale, net.feat_scale)
    old = {k: v for k, v in state.items() if not k.startswith("feat_")}
    again.load_scene_state_dict(old)
    assert torch.equal(again.feat_shift, torch.zeros(C)) and torch.equal(again.feat_scale, torch.ones(C))
    with pytest.raises(RuntimeError, match="missing keys"):
        again.load_scene_state_dict({k: v for k, v in old.items() if k != "final.bias"})
