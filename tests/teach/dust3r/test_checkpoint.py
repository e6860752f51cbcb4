"""load_dust3r: official-format checkpoints, plain state dicts, and refusals."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from slocal.errors import SlocalError
from slocal.teach.dust3r import Dust3rConfig, load_dust3r, parse_constructor_string
from slocal.teach.dust3r.checkpoint import config_from_constructor_string

TOL = 1e-5
DPT_OVERRIDES = {"dpt_feature_dim": 32, "dpt_last_dim": 16, "dpt_layer_dims": (16, 24, 32, 40)}


class NotAllowed:
    """A class that a weights-only unpickler must refuse."""


def fixture_meta(fixtures: Path, name: str) -> dict:
    return json.loads((fixtures / f"{name}_config.json").read_text())


def state_dict(fixtures: Path, name: str) -> dict[str, torch.Tensor]:
    return torch.load(fixtures / f"{name}_state_dict.pt", map_location="cpu", weights_only=True)


def write_official(path: Path, sd: dict, model_string: str) -> Path:
    torch.save({"model": sd, "args": argparse.Namespace(model=model_string, lr=1e-4), "epoch": 7}, path)
    return path


def forward(net, io):
    with torch.inference_mode():
        return net({"img": io["view1.img"]}, {"img": io["view2.img"]})


def rel_err(got, want):
    return ((got.double() - want.double()).abs().max() / want.double().abs().max()).item()


def test_loads_official_format_linear(dust3r_fixtures, tmp_path):
    meta = fixture_meta(dust3r_fixtures, "small_linear")
    sd = state_dict(dust3r_fixtures, "small_linear")
    ckpt = write_official(tmp_path / "small.pth", sd, meta["constructor_string"])
    net = load_dust3r(ckpt)
    # built like the official load_model: natural orientation
    assert net.config.patch_embed_cls == "PatchEmbedDust3R" and net.config.landscape_only is False
    assert net.config.enc_embed_dim == 64 and net.config.dec_depth == 2 and net.config.head_type == "linear"
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    io = torch.load(dust3r_fixtures / "small_linear_io.pt", weights_only=True)
    pred1, pred2 = forward(net, io)
    assert rel_err(pred1["pts3d"], io["pred1.pts3d"]) <= TOL
    assert rel_err(pred2["pts3d_in_other_view"], io["pred2.pts3d_in_other_view"]) <= TOL


def test_loads_official_format_dpt_natural(dust3r_fixtures, tmp_path):
    meta = fixture_meta(dust3r_fixtures, "small_dpt")
    assert "ManyAR_PatchEmbed" in meta["constructor_string"]
    ckpt = write_official(tmp_path / "dpt.pth", state_dict(dust3r_fixtures, "small_dpt"), meta["constructor_string"])
    net = load_dust3r(ckpt, overrides=DPT_OVERRIDES)
    io = torch.load(dust3r_fixtures / "small_dpt_io_natural.pt", weights_only=True)
    pred1, pred2 = forward(net, io)  # view 1 portrait (112x80), view 2 landscape
    assert pred1["pts3d"].shape == (2, 112, 80, 3)
    assert rel_err(pred1["pts3d"], io["pred1.pts3d"]) <= TOL
    assert rel_err(pred2["conf"], io["pred2.conf"]) <= TOL


def test_plain_state_dict_with_config_json_and_single_alias_keys(dust3r_fixtures, tmp_path):
    """Hugging Face style: config.json of constructor kwargs + safetensors with one key per alias pair."""
    meta = fixture_meta(dust3r_fixtures, "small_dpt")
    sd = state_dict(dust3r_fixtures, "small_dpt")
    sd = {k: v.clone().contiguous() for k, v in sd.items() if ".layer_rn." not in k}
    save_file(sd, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({**meta["model_kwargs"], **DPT_OVERRIDES}))
    net = load_dust3r(tmp_path)
    assert net.config.dpt_feature_dim == 32
    io = torch.load(dust3r_fixtures / "small_dpt_io.pt", weights_only=True)
    pred1, _ = forward(net, io)
    assert rel_err(pred1["conf"], io["pred1.conf"]) <= TOL


def test_plain_state_dict_needs_a_config(dust3r_fixtures, tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(state_dict(dust3r_fixtures, "small_linear"), path)
    with pytest.raises(SlocalError, match="no model description") as err:
        load_dust3r(path)
    assert str(path) in str(err.value)
    kwargs = fixture_meta(dust3r_fixtures, "small_linear")["model_kwargs"]
    assert load_dust3r(path, config=kwargs).config.enc_depth == 2


@pytest.mark.parametrize("defect", ["renamed", "missing", "shape"])
def test_refuses_other_architecture(dust3r_fixtures, tmp_path, defect):
    meta = fixture_meta(dust3r_fixtures, "small_linear")
    sd = dict(state_dict(dust3r_fixtures, "small_linear"))
    if defect == "renamed":
        sd["enc_blocks.0.attn.qkv_renamed.weight"] = sd.pop("enc_blocks.0.attn.qkv.weight")
        expected = [
            "1 missing keys: enc_blocks.0.attn.qkv.weight",
            "1 unexpected keys: enc_blocks.0.attn.qkv_renamed.weight",
        ]
    elif defect == "missing":
        for i in range(2):
            for name in ("norm1", "norm2"):
                sd.pop(f"dec_blocks2.{i}.{name}.weight")
        expected = ["4 missing keys:", "dec_blocks2.0.norm1.weight"]
    else:
        sd["downstream_head1.proj.weight"] = torch.zeros(512, 48)
        expected = ["1 shape mismatches: downstream_head1.proj.weight (file (512, 48) vs network (1024, 48))"]
    ckpt = write_official(tmp_path / "other.pth", sd, meta["constructor_string"])
    with pytest.raises(SlocalError) as err:
        load_dust3r(ckpt)
    message = str(err.value)
    assert str(ckpt) in message
    for part in expected:
        assert part in message


def test_lists_only_the_first_keys_with_counts(dust3r_fixtures, tmp_path):
    meta = fixture_meta(dust3r_fixtures, "small_linear")
    sd = {f"prefix.{k}": v for k, v in state_dict(dust3r_fixtures, "small_linear").items()}
    ckpt = write_official(tmp_path / "prefixed.pth", sd, meta["constructor_string"])
    with pytest.raises(SlocalError, match=r"133 missing keys: mask_token, .*\(128 more\); 133 unexpected keys"):
        load_dust3r(ckpt)


@pytest.mark.parametrize(
    "model_string",
    [
        "AsymmetricCroCo3DStereo(enc_depth=__import__('os').system('touch {marker}'))",
        "AsymmetricCroCo3DStereo(img_size=open('{marker}', 'w'))",
        "AsymmetricCroCo3DStereo(depth_mode=('exp', -math.inf, inf))",
        "AsymmetricCroCo3DStereo(depth_mode=('exp', -nan, inf))",
        "AsymmetricCroCo3DStereo(enc_depth=2 + 2)",
        "AsymmetricCroCo3DStereo(**{{'enc_depth': 2}})",
        "__import__('os').system('touch {marker}')",
        "AsymmetricCroCo3DStereo(pos_embed='RoPE100'); open('{marker}', 'w')",
    ],
)
def test_constructor_string_is_never_evaluated(dust3r_fixtures, tmp_path, model_string):
    marker = tmp_path / "evaluated"
    sd = state_dict(dust3r_fixtures, "small_linear")
    ckpt = write_official(tmp_path / "evil.pth", sd, model_string.format(marker=marker))
    with pytest.raises(SlocalError, match="refusing the model constructor") as err:
        load_dust3r(ckpt)
    assert str(ckpt) in str(err.value)
    assert not marker.exists()


def test_parses_official_constructor_strings(dust3r_fixtures):
    meta = json.loads((dust3r_fixtures / "schema_vitlarge_512_dpt.json").read_text())
    name, kwargs = parse_constructor_string(meta["constructor_string"])
    assert name == "AsymmetricCroCo3DStereo"
    assert kwargs["depth_mode"] == ("exp", -math.inf, math.inf) and kwargs["img_size"] == (512, 512)
    assert kwargs["pos_embed"] == "RoPE100" and kwargs["enc_embed_dim"] == 1024
    assert config_from_constructor_string(meta["constructor_string"]) == Dust3rConfig.vitlarge_512_dpt()
    meta = json.loads((dust3r_fixtures / "schema_vitlarge_224_linear.json").read_text())
    assert config_from_constructor_string(meta["constructor_string"]) == Dust3rConfig.vitlarge_224_linear()


def test_refuses_mast3r(dust3r_fixtures, tmp_path):
    string = "AsymmetricMASt3R(enc_embed_dim=64, head_type='catmlp+dpt', output_mode='pts3d+desc24')"
    ckpt = write_official(tmp_path / "mast3r.pth", state_dict(dust3r_fixtures, "small_linear"), string)
    with pytest.raises(SlocalError, match="MASt3R checkpoints are not supported"):
        load_dust3r(ckpt)


def test_missing_path_says_where_to_get_checkpoints(tmp_path):
    with pytest.raises(SlocalError, match=r"not found.*github\.com/naver/dust3r") as err:
        load_dust3r(tmp_path / "DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth")
    assert "DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth" in str(err.value)


def test_refuses_unsafe_pickles_and_garbage(dust3r_fixtures, tmp_path):
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model": state_dict(dust3r_fixtures, "small_linear"), "args": NotAllowed()}, unsafe)
    with pytest.raises(SlocalError, match="weights-only"):
        load_dust3r(unsafe)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(SlocalError, match="PyTorch checkpoint") as err:
        load_dust3r(garbage)
    assert str(garbage) in str(err.value)
