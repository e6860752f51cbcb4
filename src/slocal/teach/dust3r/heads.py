"""DUSt3R prediction heads: linear (pixel shuffle) and DPT, plus the point/confidence post-processing.

A head maps the decoder token list of one view to raw maps (B, 4, H, W)
(x, y, z, confidence logit) and then to ``{"pts3d": (B, H, W, 3), "conf": (B, H, W)}``.
Key names follow the official checkpoints (``proj``; ``dpt.scratch.*``,
``dpt.head.*``, ``dpt.act_postprocess.*``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

DEPTH_MODES = ("exp", "linear", "square")
CONF_MODES = ("exp",)
#: official DPT sizes (``create_dpt_head``); the hooks default to ``[0, L*2//4, L*3//4, L]``.
DPT_FEATURE_DIM = 256
DPT_LAST_DIM = 128
DPT_LAYER_DIMS = (96, 192, 384, 768)


def dpt_hooks(dec_depth: int) -> tuple[int, int, int, int]:
    """Official DPT hook indices into the (dec_depth + 1)-long token list."""
    return (0, dec_depth * 2 // 4, dec_depth * 3 // 4, dec_depth)


def check_modes(depth_mode: Sequence, conf_mode: Sequence) -> None:
    """Raise ValueError for post-processing modes this implementation does not support."""
    if len(depth_mode) != 3 or depth_mode[0] not in DEPTH_MODES:
        raise ValueError(f"depth_mode must be (mode, vmin, vmax) with mode in {DEPTH_MODES}, got {depth_mode!r}")
    if not (depth_mode[1] == -math.inf and depth_mode[2] == math.inf):
        raise ValueError(f"only unbounded depth_mode ranges (-inf, inf) are supported, got {depth_mode!r}")
    if not conf_mode or len(conf_mode) != 3 or conf_mode[0] not in CONF_MODES:
        raise ValueError(f"conf_mode must be ('exp', vmin, vmax), got {conf_mode!r}")


def postprocess(raw_B4HW: torch.Tensor, depth_mode: Sequence, conf_mode: Sequence) -> dict[str, torch.Tensor]:
    """Raw head output -> points and confidence.

    Args:
        raw_B4HW: (B, 4, H, W) channels x, y, z, confidence logit.
        depth_mode: ``(mode, -inf, inf)``; ``exp`` keeps the direction of v and
            sets the distance to ``expm1(|v|)``, ``square`` to ``|v|^2``, ``linear`` returns v.
        conf_mode: ``('exp', vmin, vmax)``: ``conf = vmin + min(exp(c), vmax - vmin)``.

    Returns:
        ``{"pts3d": (B, H, W, 3), "conf": (B, H, W)}``.
    """
    fmap_BHW4 = raw_B4HW.permute(0, 2, 3, 1)
    xyz_BHW3 = fmap_BHW4[..., 0:3]
    mode = depth_mode[0]
    if mode == "linear":
        pts3d = xyz_BHW3
    else:
        dist_BHW1 = xyz_BHW3.norm(dim=-1, keepdim=True)
        direction_BHW3 = xyz_BHW3 / dist_BHW1.clip(min=1e-8)
        pts3d = direction_BHW3 * (torch.expm1(dist_BHW1) if mode == "exp" else dist_BHW1.square())
    vmin, vmax = float(conf_mode[1]), float(conf_mode[2])
    conf = vmin + fmap_BHW4[..., 3].exp().clip(max=vmax - vmin)
    return {"pts3d": pts3d, "conf": conf}


class LinearPts3d(nn.Module):
    """Linear head: one Linear per token to a p x p x 4 patch, then pixel shuffle.

    Args:
        dec_dim: decoder width Cd.
        patch_size: p.
        depth_mode, conf_mode: see :func:`postprocess`.
    """

    def __init__(self, dec_dim: int, patch_size: int, depth_mode: Sequence, conf_mode: Sequence):
        super().__init__()
        check_modes(depth_mode, conf_mode)
        self.patch_size = patch_size
        self.depth_mode = tuple(depth_mode)
        self.conf_mode = tuple(conf_mode)
        self.proj = nn.Linear(dec_dim, 4 * patch_size**2)

    def forward_raw(self, tokens: Sequence[torch.Tensor], image_hw: tuple[int, int]) -> torch.Tensor:
        """Last token tensor (B, N, Cd) of ``tokens`` -> raw maps (B, 4, H, W)."""
        H, W = image_hw
        p = self.patch_size
        tokens_BNC = tokens[-1]
        B = tokens_BNC.shape[0]
        feat = self.proj(tokens_BNC).transpose(-1, -2).reshape(B, -1, H // p, W // p)
        return F.pixel_shuffle(feat, p)

    def forward(self, tokens: Sequence[torch.Tensor], image_hw: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Token list -> ``{"pts3d": (B, H, W, 3), "conf": (B, H, W)}``."""
        return postprocess(self.forward_raw(tokens, image_hw), self.depth_mode, self.conf_mode)


class ResidualConvUnit(nn.Module):
    """``z + conv2(relu(conv1(relu(z))))`` with 3x3 convolutions."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1, bias=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(F.relu(z)))) + z


class FeatureFusionBlock(nn.Module):
    """DPT fusion: ``out_conv(up2(RCU2(x + RCU1(skip))))``; bilinear x2 with align_corners=True."""

    def __init__(self, features: int):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, kernel_size=1, bias=True)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x_BFhw: torch.Tensor, skip_BFhw: torch.Tensor | None = None) -> torch.Tensor:
        """(B, F, h, w) [+ skip (B, F, h, w)] -> (B, F, 2h, 2w)."""
        out = x_BFhw
        if skip_BFhw is not None:
            out = out + self.resConfUnit1(skip_BFhw)
        out = self.resConfUnit2(out)
        out = F.interpolate(out, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(out)


class DPTScratch(nn.Module):
    """Projections to ``feature_dim`` and the four fusion blocks.

    The projection convs are registered twice, as ``layer{k}_rn`` and
    ``layer_rn.{k-1}``, exactly like the official module, so state dicts carry
    both alias keys. A load pre-hook fills in whichever alias a state dict
    lacks (e.g. after a safetensors conversion dropped one of each pair).
    """

    def __init__(self, layer_dims: Sequence[int], feature_dim: int):
        super().__init__()
        convs = [nn.Conv2d(c, feature_dim, kernel_size=3, padding=1, bias=False) for c in layer_dims]
        for k, conv in enumerate(convs, start=1):
            self.add_module(f"layer{k}_rn", conv)
        self.layer_rn = nn.ModuleList(convs)
        for k in range(1, 5):
            self.add_module(f"refinenet{k}", FeatureFusionBlock(feature_dim))
        self.register_load_state_dict_pre_hook(DPTScratch._fill_aliases)

    @staticmethod
    def alias_pairs() -> list[tuple[str, str]]:
        """(canonical, alias) parameter names relative to this module."""
        return [(f"layer{k}_rn.weight", f"layer_rn.{k - 1}.weight") for k in range(1, 5)]

    @staticmethod
    def _fill_aliases(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        for canonical, alias in DPTScratch.alias_pairs():
            a, b = prefix + canonical, prefix + alias
            if a in state_dict and b not in state_dict:
                state_dict[b] = state_dict[a]
            elif b in state_dict and a not in state_dict:
                state_dict[a] = state_dict[b]
            elif a in state_dict and b in state_dict:
                ta, tb = state_dict[a], state_dict[b]
                same = ta is tb or (ta.shape == tb.shape and not ta.is_meta and torch.equal(ta, tb))
                if not same and not ta.is_meta:
                    error_msgs.append(f"alias keys {a} and {b} hold different tensors")


class DPTAdapter(nn.Module):
    """The DPT decoder of DUSt3R (``DPTOutputAdapter_fix``): reassemble, project, fuse, predict.

    Args:
        dim_tokens: channel count of each hooked token tensor (official: [Ce, Cd, Cd, Cd]).
        hooks: indices into the token list (official: ``dpt_hooks(dec_depth)``).
        patch_size: p; the token grid is (H/p, W/p).
        feature_dim: F (official 256).
        last_dim: width before the final 1x1 conv (official 128).
        layer_dims: reassemble widths (official 96, 192, 384, 768).
        num_channels: output channels (4: x, y, z, confidence).
    """

    def __init__(
        self,
        dim_tokens: Sequence[int],
        hooks: Sequence[int],
        patch_size: int = 16,
        feature_dim: int = DPT_FEATURE_DIM,
        last_dim: int = DPT_LAST_DIM,
        layer_dims: Sequence[int] = DPT_LAYER_DIMS,
        num_channels: int = 4,
    ):
        super().__init__()
        if len(dim_tokens) != 4 or len(hooks) != 4 or len(layer_dims) != 4:
            raise ValueError("DPT needs exactly four hooks, token dims and layer dims")
        self.hooks = tuple(int(h) for h in hooks)
        self.patch_size = patch_size
        self.scratch = DPTScratch(layer_dims, feature_dim)
        self.head = nn.Sequential(
            nn.Conv2d(feature_dim, feature_dim // 2, kernel_size=3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(feature_dim // 2, last_dim, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(last_dim, num_channels, kernel_size=1),
        )
        d0, d1, d2, d3 = layer_dims
        self.act_postprocess = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(dim_tokens[0], d0, 1), nn.ConvTranspose2d(d0, d0, kernel_size=4, stride=4)),
                nn.Sequential(nn.Conv2d(dim_tokens[1], d1, 1), nn.ConvTranspose2d(d1, d1, kernel_size=2, stride=2)),
                nn.Sequential(nn.Conv2d(dim_tokens[2], d2, 1)),
                nn.Sequential(nn.Conv2d(dim_tokens[3], d3, 1), nn.Conv2d(d3, d3, kernel_size=3, stride=2, padding=1)),
            ]
        )

    def forward(self, tokens: Sequence[torch.Tensor], image_hw: tuple[int, int]) -> torch.Tensor:
        """Token list (each (B, N, C)) -> raw maps (B, num_channels, H, W).

        With an n-token grid side, the four levels have sides 4n, 2n, n and
        ceil(n/2); the coarsest fused map (2*ceil(n/2)) is cropped to n.
        """
        H, W = image_hw
        nh, nw = H // self.patch_size, W // self.patch_size
        levels = []
        for k, hook in enumerate(self.hooks):
            t_BNC = tokens[hook]
            x = t_BNC.transpose(1, 2).reshape(t_BNC.shape[0], t_BNC.shape[2], nh, nw)
            levels.append(self.scratch.layer_rn[k](self.act_postprocess[k](x)))
        l1, l2, l3, l4 = levels
        path4 = self.scratch.refinenet4(l4)[:, :, : l3.shape[2], : l3.shape[3]]
        path3 = self.scratch.refinenet3(path4, l3)
        path2 = self.scratch.refinenet2(path3, l2)
        path1 = self.scratch.refinenet1(path2, l1)
        return self.head(path1)


class DPTPts3d(nn.Module):
    """DPT head (``PixelwiseTaskWithDPT``) with point/confidence post-processing; weights under ``dpt``."""

    def __init__(
        self,
        dim_tokens: Sequence[int],
        hooks: Sequence[int],
        patch_size: int,
        depth_mode: Sequence,
        conf_mode: Sequence,
        feature_dim: int = DPT_FEATURE_DIM,
        last_dim: int = DPT_LAST_DIM,
        layer_dims: Sequence[int] = DPT_LAYER_DIMS,
    ):
        super().__init__()
        check_modes(depth_mode, conf_mode)
        self.depth_mode = tuple(depth_mode)
        self.conf_mode = tuple(conf_mode)
        self.dpt = DPTAdapter(dim_tokens, hooks, patch_size, feature_dim, last_dim, layer_dims, num_channels=4)

    def forward_raw(self, tokens: Sequence[torch.Tensor], image_hw: tuple[int, int]) -> torch.Tensor:
        """Token list -> raw maps (B, 4, H, W)."""
        return self.dpt(tokens, image_hw)

    def forward(self, tokens: Sequence[torch.Tensor], image_hw: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Token list -> ``{"pts3d": (B, H, W, 3), "conf": (B, H, W)}``."""
        return postprocess(self.forward_raw(tokens, image_hw), self.depth_mode, self.conf_mode)
