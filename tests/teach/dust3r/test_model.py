"""Dust3rNet against the official reference fixtures (outputs and every stored intermediate)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from slocal.teach.dust3r.blocks import grid_positions
from slocal.teach.dust3r.model import Dust3rConfig, Dust3rNet
from slocal.teach.dust3r.rope import RoPE2D

TOL = 1e-5
CASES = {
    "small_linear_io": ("small_linear", {}),
    "small_dpt_io": ("small_dpt", {}),
    "small_dpt_io_mixed": ("small_dpt", {}),
    "small_dpt_io_natural": ("small_dpt", {"patch_embed_cls": "PatchEmbedDust3R", "landscape_only": False}),
}


def small_config(fixtures: Path, name: str, **overrides) -> Dust3rConfig:
    """Config of a small fixture model, with its DPT size override."""
    meta = json.loads((fixtures / f"{name}_config.json").read_text())
    kwargs = dict(meta["model_kwargs"])
    dpt = meta.get("dpt_head_override")
    if dpt:
        kwargs.update(
            dpt_feature_dim=dpt["feature_dim"],
            dpt_last_dim=dpt["last_dim"],
            dpt_layer_dims=dpt["layer_dims"],
            dpt_hooks=dpt["hooks"],
        )
    return Dust3rConfig.from_kwargs({**kwargs, **overrides})


def small_net(fixtures: Path, name: str, **overrides) -> Dust3rNet:
    net = Dust3rNet(small_config(fixtures, name, **overrides)).eval()
    state_dict = torch.load(fixtures / f"{name}_state_dict.pt", map_location="cpu", weights_only=True)
    net.load_state_dict(state_dict, strict=True)
    return net


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want|."""
    assert got.shape == want.shape
    return ((got.double() - want.double()).abs().max() / want.double().abs().max()).item()


class Recorder:
    """Collects module outputs (and head inputs) by forward hooks."""

    def __init__(self):
        self.outputs: dict[str, list] = defaultdict(list)
        self.handles = []

    def output(self, module: torch.nn.Module, name: str, index: int | None = None) -> None:
        def hook(_m, _args, out):
            self.outputs[name].append(out if index is None else out[index])

        self.handles.append(module.register_forward_hook(hook))

    def head_input(self, module: torch.nn.Module, name: str) -> None:
        def hook(_m, args):
            self.outputs[name].append(list(args[0]))

        self.handles.append(module.register_forward_pre_hook(hook))

    def cat(self, name: str) -> torch.Tensor:
        return torch.cat(self.outputs[name], dim=0)


def run_recorded(net: Dust3rNet, io: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Forward the io case and return tensors named like the io file's keys."""
    rec = Recorder()
    rec.output(net.patch_embed, "patch_embed", 0)
    rec.output(net.patch_embed, "pos", 1)
    for i, blk in enumerate(net.enc_blocks):
        rec.output(blk, f"enc.block{i}")
    rec.output(net.enc_norm, "enc.out")
    rec.output(net.decoder_embed, "dec.embed")
    rec.output(net.dec_norm, "dec.out")
    for k, stream in ((1, net.dec_blocks), (2, net.dec_blocks2)):
        for i, blk in enumerate(stream):
            rec.output(blk, f"dec.block{i}.view{k}")
    for k in (1, 2):
        head = getattr(net, f"downstream_head{k}")
        rec.head_input(head, f"dec{k}")
        if net.config.head_type == "linear":
            rec.output(head.proj, f"head{k}.proj")
        else:
            for j in range(4):
                rec.output(head.dpt.act_postprocess[j], f"head{k}.dpt.act_postprocess.{j}")
                rec.output(head.dpt.scratch.layer_rn[j], f"head{k}.dpt.layer_rn.{j}")
                rec.output(getattr(head.dpt.scratch, f"refinenet{j + 1}"), f"head{k}.dpt.refinenet{j + 1}")

    view1 = {"img": io["view1.img"], "true_shape": io["view1.true_shape"]}
    view2 = {"img": io["view2.img"], "true_shape": io["view2.true_shape"]}
    with torch.inference_mode():
        pred1, pred2 = net(view1, view2)
    for h in rec.handles:
        h.remove()

    B = io["view1.img"].shape[0]
    got = {
        "pred1.pts3d": pred1["pts3d"],
        "pred1.conf": pred1["conf"],
        "pred2.pts3d_in_other_view": pred2["pts3d_in_other_view"],
        "pred2.conf": pred2["conf"],
    }
    # the encoder runs once on [view1; view2] or once per view: rows [0, B) are view 1 either way
    per_view = ["patch_embed", "pos", "enc.out", "dec.embed", "dec.out"]
    per_view += [f"enc.block{i}" for i in range(len(net.enc_blocks))]
    for name in per_view:
        both = rec.cat(name)
        key = {"patch_embed": "enc.patch_embed", "pos": "enc.pos"}.get(name, name)
        got[f"{key}.view1"], got[f"{key}.view2"] = both[:B], both[B:]
    for name, outs in rec.outputs.items():
        # head internals only when each head ran once (mixed batches split the heads)
        if name.startswith("dec.block") or (name.startswith("head") and len(outs) == 1):
            got[name] = torch.cat(outs, dim=0)
    for k in (1, 2):
        tokens = rec.outputs[f"dec{k}"]
        if len(tokens) == 1:  # one head call (no mixed-orientation split)
            for j, t in enumerate(tokens[0]):
                got[f"dec{k}.{j}"] = t
            shape = io[f"view{k}.true_shape"][0].tolist()
            with torch.inference_mode():
                got[f"head{k}.raw"] = getattr(net, f"downstream_head{k}").forward_raw(tokens[0], tuple(shape))
    return got


@pytest.mark.parametrize("case", list(CASES))
def test_reproduces_every_stored_tensor(dust3r_fixtures, case):
    torch.manual_seed(0)
    name, overrides = CASES[case]
    net = small_net(dust3r_fixtures, name, **overrides)
    io = torch.load(dust3r_fixtures / f"{case}.pt", map_location="cpu", weights_only=True)
    got = run_recorded(net, io)
    inputs = {k for k in io if k.startswith("view")}
    unchecked = sorted(set(io) - inputs - set(got))
    assert not unchecked, f"stored tensors not reproduced: {unchecked}"
    errors = {}
    for key in sorted(set(io) - inputs):
        want = io[key]
        if want.dtype == torch.int64:
            assert torch.equal(got[key].cpu(), want), key
        else:
            errors[key] = rel_err(got[key], want)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOL, f"{worst}: relative error {errors[worst]:.3g}"


def test_natural_portrait_is_transpose_of_manyar(dust3r_fixtures):
    """ManyAR fed a transposed portrait == natural model fed the portrait, transposed."""
    io = torch.load(dust3r_fixtures / "small_dpt_io_mixed.pt", map_location="cpu", weights_only=True)
    manyar = small_net(dust3r_fixtures, "small_dpt")
    natural = small_net(dust3r_fixtures, "small_dpt", patch_embed_cls="PatchEmbedDust3R", landscape_only=False)
    assert io["view1.true_shape"][1].tolist() == [112, 80] and io["view2.true_shape"][1].tolist() == [80, 112]
    with torch.inference_mode():
        ref1, ref2 = manyar(
            {"img": io["view1.img"], "true_shape": io["view1.true_shape"]},
            {"img": io["view2.img"], "true_shape": io["view2.true_shape"]},
        )
        p1, p2 = natural({"img": io["view1.img"][1:].transpose(-1, -2)}, {"img": io["view2.img"][1:]})
    assert p1["pts3d"].shape == (1, 112, 80, 3)
    assert rel_err(p1["pts3d"][0].transpose(0, 1), ref1["pts3d"][1]) <= TOL
    assert rel_err(p1["conf"][0].T, ref1["conf"][1]) <= TOL
    assert rel_err(p2["pts3d_in_other_view"][0], ref2["pts3d_in_other_view"][1]) <= TOL


def test_natural_model_refuses_mixed_shapes_in_a_batch(dust3r_fixtures):
    net = small_net(dust3r_fixtures, "small_dpt", patch_embed_cls="PatchEmbedDust3R", landscape_only=False)
    img = torch.zeros(2, 3, 80, 112)
    shape = torch.tensor([[80, 112], [112, 80]], dtype=torch.int32)
    with pytest.raises(ValueError, match="same true_shape"), torch.inference_mode():
        net({"img": img, "true_shape": shape}, {"img": img})


def test_manyar_refuses_portrait_tensor(dust3r_fixtures):
    net = small_net(dust3r_fixtures, "small_dpt")
    img = torch.zeros(1, 3, 112, 80)
    with pytest.raises(ValueError, match="landscape"), torch.inference_mode():
        net({"img": img}, {"img": img})


@pytest.mark.parametrize("keep", ["canonical", "alias"])
def test_dpt_alias_keys_optional(dust3r_fixtures, keep):
    """A state dict with only one key of each alias pair loads strictly and gives the same numbers."""
    state_dict = torch.load(dust3r_fixtures / "small_dpt_state_dict.pt", map_location="cpu", weights_only=True)
    ref = small_net(dust3r_fixtures, "small_dpt")
    net = Dust3rNet(small_config(dust3r_fixtures, "small_dpt")).eval()
    aliases = net.state_dict_aliases()
    assert len(aliases) == 8 and all(k in state_dict for k in aliases)
    drop = set(aliases) if keep == "canonical" else set(aliases.values())
    net.load_state_dict({k: v.clone() for k, v in state_dict.items() if k not in drop}, strict=True)
    for alias, canonical in aliases.items():
        assert net.get_parameter(alias) is net.get_parameter(canonical)
        assert torch.equal(net.get_parameter(alias), state_dict[canonical])
    io = torch.load(dust3r_fixtures / "small_dpt_io.pt", map_location="cpu", weights_only=True)
    views = ({"img": io["view1.img"]}, {"img": io["view2.img"]})
    with torch.inference_mode():
        assert torch.equal(net(*views)[1]["conf"], ref(*views)[1]["conf"])


def test_dpt_alias_keys_must_agree(dust3r_fixtures):
    state_dict = torch.load(dust3r_fixtures / "small_dpt_state_dict.pt", map_location="cpu", weights_only=True)
    net = Dust3rNet(small_config(dust3r_fixtures, "small_dpt"))
    alias = next(iter(net.state_dict_aliases()))
    state_dict = {k: v.clone() for k, v in state_dict.items()}
    state_dict[alias] += 1.0
    with pytest.raises(RuntimeError, match="alias keys"):
        net.load_state_dict(state_dict, strict=True)


@pytest.mark.parametrize(
    "schema, config",
    [
        ("schema_vitlarge_512_dpt.json", Dust3rConfig.vitlarge_512_dpt()),
        ("schema_vitlarge_224_linear.json", Dust3rConfig.vitlarge_224_linear()),
    ],
)
def test_official_configs_match_schema(dust3r_fixtures, schema, config):
    meta = json.loads((dust3r_fixtures / schema).read_text())
    assert Dust3rConfig.from_kwargs(meta["constructor_kwargs"]) == config
    with torch.device("meta"):
        net = Dust3rNet(config, init_weights=False)
    got = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in net.state_dict().items()]
    want = [(e["name"], e["shape"], e["dtype"]) for e in meta["keys"]]
    assert got == want  # same keys, shapes, dtypes and order, alias keys included
    assert {k: v for k, v in net.state_dict_aliases().items()} == {
        e["name"]: e["alias_of"] for e in meta["keys"] if "alias_of" in e
    }
    assert sum(p.numel() for p in net.parameters()) == meta["num_unique_parameter_elements"]


def test_default_config_matches_official_defaults_and_is_refused():
    cfg = Dust3rConfig()
    assert (cfg.enc_embed_dim, cfg.enc_depth, cfg.dec_embed_dim, cfg.dec_depth) == (768, 12, 512, 8)
    assert cfg.depth_mode == ("exp", -math.inf, math.inf) and cfg.conf_mode == ("exp", 1.0, math.inf)
    with pytest.raises(ValueError, match="RoPE100"):
        Dust3rNet(cfg)
    with pytest.raises(ValueError, match="unsupported constructor arguments: norm_layer"):
        Dust3rConfig.from_kwargs({"norm_layer": "LayerNorm"})
    with pytest.raises(ValueError, match="unbounded"):
        Dust3rNet(replace(Dust3rConfig.vitlarge_224_linear(), enc_depth=1, dec_depth=1, depth_mode=("exp", 0, 1)))


def test_rope_depends_only_on_relative_position():
    """<R(p) q, R(p') k> depends on p - p' only, and the rotation keeps norms."""
    rope = RoPE2D(100.0)
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(1, 2, 1, 16, generator=gen, dtype=torch.float64).float()
    k = torch.randn(1, 2, 1, 16, generator=gen, dtype=torch.float64).float()

    def score(pq, pk):
        rq = rope(q, torch.tensor([[pq]]))
        rk = rope(k, torch.tensor([[pk]]))
        return (rq * rk).sum(-1)

    assert torch.allclose(score((3, 5), (1, 2)), score((12, 9), (10, 6)), atol=1e-5)
    assert not torch.allclose(score((3, 5), (1, 2)), score((3, 5), (2, 1)), atol=1e-3)
    rq = rope(q, torch.tensor([[(7, 4)]]))
    assert torch.allclose(rq.norm(dim=-1), q.norm(dim=-1), atol=1e-5)
    # channel j pairs with j + d/2 inside the row half, rotated by y * 100**(-2j/d)
    y, j, d = 7, 1, 8
    ang = y / 100 ** (2 * j / d)
    want = q[..., j] * math.cos(ang) - q[..., j + d // 2] * math.sin(ang)
    assert torch.allclose(rq[..., j], want, atol=1e-5)


def test_grid_positions_row_major():
    pos = grid_positions(2, 3)
    assert pos.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
