"""The DUSt3R network (``AsymmetricCroCo3DStereo``) re-implemented for inference.

Structure (names match the official state dict):

* ``patch_embed`` -> ``enc_blocks.*`` -> ``enc_norm``: Siamese ViT encoder with RoPE.
* ``decoder_embed``; two interleaved decoder streams ``dec_blocks.*`` (view 1)
  and ``dec_blocks2.*`` (view 2) with cross-attention; shared ``dec_norm``.
* ``downstream_head1`` / ``downstream_head2``: linear or DPT heads, run in fp32.
* ``mask_token``: a CroCo pre-training leftover, unused but kept for strict loading.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import nn

from slocal.teach.dust3r.blocks import Block, DecoderBlock, ManyARPatchEmbed, PatchEmbedDust3R, layer_norm
from slocal.teach.dust3r.heads import (
    DPT_FEATURE_DIM,
    DPT_LAST_DIM,
    DPT_LAYER_DIMS,
    DPTPts3d,
    DPTScratch,
    LinearPts3d,
    check_modes,
    dpt_hooks,
)
from slocal.teach.dust3r.rope import RoPE2D

PATCH_EMBED_CLASSES = ("PatchEmbedDust3R", "ManyAR_PatchEmbed")
HEAD_TYPES = ("linear", "dpt")
FREEZE_MODES = ("none", "mask", "encoder")


def _float_or_inf(value: Any) -> float:
    """A number, or the strings "inf"/"-inf" (how JSON files spell infinities)."""
    if isinstance(value, str) and value in ("inf", "-inf", "Infinity", "-Infinity"):
        return -math.inf if value.startswith("-") else math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number or 'inf', got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Dust3rConfig:
    """Constructor arguments of the DUSt3R network; defaults are the official ones.

    The first group mirrors ``AsymmetricCroCo3DStereo(...)`` / ``CroCoNet(...)``
    argument for argument, official defaults included (so ``pos_embed`` defaults
    to CroCo's ``'cosine'``, which this implementation refuses: every DUSt3R
    checkpoint uses ``'RoPE100'``). Use the presets, e.g.
    :meth:`vitlarge_512_dpt`, for the published models.

    Attributes:
        output_mode: only ``'pts3d'``.
        head_type: ``'linear'`` or ``'dpt'``.
        depth_mode: ``(mode, vmin, vmax)``, mode in exp/linear/square, unbounded range.
        conf_mode: ``('exp', vmin, vmax)``.
        freeze: training-only; accepted and ignored.
        landscape_only: run the heads in landscape layout and transpose portrait rows back.
        patch_embed_cls: ``'PatchEmbedDust3R'`` or ``'ManyAR_PatchEmbed'``.
        pos_embed: ``'RoPE<base>'``, e.g. ``'RoPE100'``.
        img_size: training size (H, W); only checked to be a multiple of the patch size.
        patch_size, mask_ratio (unused at inference), enc_*/dec_* widths, depths and heads,
        mlp_ratio, norm_im2_in_dec: as in CroCo.
        dpt_feature_dim, dpt_last_dim, dpt_layer_dims, dpt_hooks: slocal extras (not
            constructor arguments of the official class) that size the DPT head;
            the defaults are the values the official factory hard-codes, hooks
            ``None`` means ``[0, L*2//4, L*3//4, L]``.
    """

    output_mode: str = "pts3d"
    head_type: str = "linear"
    depth_mode: tuple[str, float, float] = ("exp", -math.inf, math.inf)
    conf_mode: tuple[str, float, float] = ("exp", 1.0, math.inf)
    freeze: str = "none"
    landscape_only: bool = True
    patch_embed_cls: str = "PatchEmbedDust3R"
    pos_embed: str = "cosine"
    img_size: tuple[int, int] = (224, 224)
    patch_size: int = 16
    mask_ratio: float = 0.9
    enc_embed_dim: int = 768
    enc_depth: int = 12
    enc_num_heads: int = 12
    dec_embed_dim: int = 512
    dec_depth: int = 8
    dec_num_heads: int = 16
    mlp_ratio: float = 4.0
    norm_im2_in_dec: bool = True
    dpt_feature_dim: int = DPT_FEATURE_DIM
    dpt_last_dim: int = DPT_LAST_DIM
    dpt_layer_dims: tuple[int, int, int, int] = DPT_LAYER_DIMS
    dpt_hooks: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        # normalise the JSON/constructor-string spellings (lists, int img_size, "inf")
        img_size = self.img_size
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(int(s) for s in img_size)
        object.__setattr__(self, "img_size", img_size)
        for name in ("depth_mode", "conf_mode"):
            mode = getattr(self, name)
            if mode is not None and not isinstance(mode, str) and len(mode) == 3:
                object.__setattr__(self, name, (mode[0], _float_or_inf(mode[1]), _float_or_inf(mode[2])))
        object.__setattr__(self, "dpt_layer_dims", tuple(int(c) for c in self.dpt_layer_dims))
        if self.dpt_hooks is not None:
            object.__setattr__(self, "dpt_hooks", tuple(int(h) for h in self.dpt_hooks))

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> Dust3rConfig:
        """Build from constructor keyword arguments; unknown names raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"unsupported constructor arguments: {', '.join(unknown)}")
        return cls(**dict(kwargs))

    @classmethod
    def vitlarge_512_dpt(cls) -> Dust3rConfig:
        """``DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth`` as trained (ManyAR, landscape_only)."""
        return replace(cls.vitlarge_512_linear(), head_type="dpt")

    @classmethod
    def vitlarge_512_linear(cls) -> Dust3rConfig:
        """``DUSt3R_ViTLarge_BaseDecoder_512_linear.pth`` as trained (ManyAR, landscape_only)."""
        return replace(cls.vitlarge_224_linear(), patch_embed_cls="ManyAR_PatchEmbed", img_size=(512, 512))

    @classmethod
    def vitlarge_224_linear(cls) -> Dust3rConfig:
        """``DUSt3R_ViTLarge_BaseDecoder_224_linear.pth``."""
        return cls(
            pos_embed="RoPE100",
            img_size=(224, 224),
            head_type="linear",
            enc_embed_dim=1024,
            enc_depth=24,
            enc_num_heads=16,
            dec_embed_dim=768,
            dec_depth=12,
            dec_num_heads=12,
        )

    def natural(self) -> Dust3rConfig:
        """The form the official ``load_model`` builds: PatchEmbedDust3R, landscape_only=False.

        Images are then fed in their natural orientation; a batch must share one shape.
        """
        return replace(self, patch_embed_cls="PatchEmbedDust3R", landscape_only=False)

    @property
    def rope_base(self) -> float:
        match = re.fullmatch(r"RoPE(\d+(?:\.\d*)?)", self.pos_embed)
        if match is None:
            raise ValueError(
                f"pos_embed={self.pos_embed!r} is not supported; DUSt3R models use 'RoPE100' "
                "(cosine/absolute position embeddings are not implemented)"
            )
        return float(match.group(1))

    @property
    def hooks(self) -> tuple[int, int, int, int]:
        """The DPT hook indices actually used."""
        return self.dpt_hooks if self.dpt_hooks is not None else dpt_hooks(self.dec_depth)

    def check(self) -> None:
        """Raise ValueError if this configuration is not one this implementation can build."""
        if self.output_mode != "pts3d":
            raise ValueError(f"output_mode={self.output_mode!r} is not supported (only 'pts3d')")
        if self.head_type not in HEAD_TYPES:
            raise ValueError(f"head_type={self.head_type!r} is not supported (choose {HEAD_TYPES})")
        if self.patch_embed_cls not in PATCH_EMBED_CLASSES:
            raise ValueError(f"patch_embed_cls={self.patch_embed_cls!r} is not one of {PATCH_EMBED_CLASSES}")
        if self.freeze not in FREEZE_MODES:
            raise ValueError(f"freeze={self.freeze!r} is not one of {FREEZE_MODES}")
        check_modes(self.depth_mode, self.conf_mode)
        _ = self.rope_base
        if len(self.img_size) != 2 or any(s % self.patch_size for s in self.img_size):
            raise ValueError(f"img_size={self.img_size} must be a multiple of patch_size={self.patch_size}")
        for name, dim, heads in (
            ("enc", self.enc_embed_dim, self.enc_num_heads),
            ("dec", self.dec_embed_dim, self.dec_num_heads),
        ):
            if dim % heads or (dim // heads) % 4:
                raise ValueError(f"{name}_embed_dim={dim} / {name}_num_heads={heads}: head width not a multiple of 4")
        if self.head_type == "dpt":
            hooks = self.hooks
            if len(hooks) != 4 or not all(0 <= h <= self.dec_depth for h in hooks):
                raise ValueError(f"DPT hooks {hooks} must be four indices in [0, {self.dec_depth}]")
            if len(self.dpt_layer_dims) != 4:
                raise ValueError(f"dpt_layer_dims must have four entries, got {self.dpt_layer_dims}")


def _make_head(cfg: Dust3rConfig) -> nn.Module:
    if cfg.head_type == "linear":
        return LinearPts3d(cfg.dec_embed_dim, cfg.patch_size, cfg.depth_mode, cfg.conf_mode)
    dims = [cfg.enc_embed_dim if h == 0 else cfg.dec_embed_dim for h in cfg.hooks]
    return DPTPts3d(
        dims,
        cfg.hooks,
        cfg.patch_size,
        cfg.depth_mode,
        cfg.conf_mode,
        feature_dim=cfg.dpt_feature_dim,
        last_dim=cfg.dpt_last_dim,
        layer_dims=cfg.dpt_layer_dims,
    )


def _transposed(pred: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Swap the spatial axes of (B, H, W, ...) outputs."""
    return {k: v.swapaxes(1, 2) for k, v in pred.items()}


class Dust3rNet(nn.Module):
    """DUSt3R: two views in, two point maps in view 1's frame out.

    Args:
        config: the architecture; see :class:`Dust3rConfig`.
        init_weights: apply the official initialisation (xavier-uniform Linear
            weights, zero biases). Pointless when weights are loaded afterwards.
    """

    def __init__(self, config: Dust3rConfig, init_weights: bool = True):
        super().__init__()
        config.check()
        self.config = config
        rope = RoPE2D(config.rope_base)
        embed_cls = ManyARPatchEmbed if config.patch_embed_cls == "ManyAR_PatchEmbed" else PatchEmbedDust3R
        enc_dim, dec_dim = config.enc_embed_dim, config.dec_embed_dim
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_dim))
        self.patch_embed = embed_cls(config.patch_size, enc_dim)
        self.enc_blocks = nn.ModuleList(
            [Block(enc_dim, config.enc_num_heads, config.mlp_ratio, rope) for _ in range(config.enc_depth)]
        )
        self.enc_norm = layer_norm(enc_dim)
        self.decoder_embed = nn.Linear(enc_dim, dec_dim, bias=True)
        self.dec_blocks = self._decoder_blocks(config, rope)
        self.dec_norm = layer_norm(dec_dim)
        self.dec_blocks2 = self._decoder_blocks(config, rope)
        self.downstream_head1 = _make_head(config)
        self.downstream_head2 = _make_head(config)
        if init_weights:
            self.apply(self._init_module)

    @staticmethod
    def _decoder_blocks(cfg: Dust3rConfig, rope: RoPE2D) -> nn.ModuleList:
        return nn.ModuleList(
            [
                DecoderBlock(cfg.dec_embed_dim, cfg.dec_num_heads, cfg.mlp_ratio, rope, norm_mem=cfg.norm_im2_in_dec)
                for _ in range(cfg.dec_depth)
            ]
        )

    @staticmethod
    def _init_module(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def state_dict_aliases(self) -> dict[str, str]:
        """Map of alias key -> canonical key for parameters registered under two names (DPT heads)."""
        aliases = {}
        for name, module in self.named_modules():
            if isinstance(module, DPTScratch):
                for canonical, alias in DPTScratch.alias_pairs():
                    aliases[f"{name}.{alias}"] = f"{name}.{canonical}"
        return aliases

    # ------------------------------------------------------------------ encoder / decoder

    def encode(self, img_B3HW: torch.Tensor, true_shape_B2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode one batch of images.

        Returns:
            features (B, N, Ce) after ``enc_norm`` and positions (B, N, 2) int64.
        """
        x_BNC, pos_BN2 = self.patch_embed(img_B3HW, true_shape_B2)
        for blk in self.enc_blocks:
            x_BNC = blk(x_BNC, pos_BN2)
        return self.enc_norm(x_BNC), pos_BN2

    def encode_pair(
        self, img1: torch.Tensor, img2: torch.Tensor, shape1: torch.Tensor, shape2: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Siamese encoding; one pass over [view1; view2] when both have the same H x W.

        Returns:
            feat1, feat2 (B, N, Ce) and pos1, pos2 (B, N, 2).
        """
        if img1.shape[-2:] == img2.shape[-2:]:
            feat, pos = self.encode(torch.cat((img1, img2)), torch.cat((shape1, shape2)))
            feat1, feat2 = feat.chunk(2)
            pos1, pos2 = pos.chunk(2)
            return feat1, feat2, pos1, pos2
        feat1, pos1 = self.encode(img1, shape1)
        feat2, pos2 = self.encode(img2, shape2)
        return feat1, feat2, pos1, pos2

    def decode(
        self, feat1: torch.Tensor, pos1: torch.Tensor, feat2: torch.Tensor, pos2: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Run the two interleaved decoder streams.

        Returns:
            For each view the token list the heads consume, of length L + 1:
            ``[encoder features (B, N, Ce), out of layer 0, ..., out of layer L-2,
            dec_norm(out of layer L-1)]`` (decoder entries (B, N, Cd)).
        """
        f1, f2 = self.decoder_embed(feat1), self.decoder_embed(feat2)
        dec1, dec2 = [feat1], [feat2]
        for blk1, blk2 in zip(self.dec_blocks, self.dec_blocks2):
            # both streams read the previous layer's states of the other view
            new_f1 = blk1(f1, f2, pos1, pos2)
            new_f2 = blk2(f2, f1, pos2, pos1)
            f1, f2 = new_f1, new_f2
            dec1.append(f1)
            dec2.append(f2)
        dec1[-1] = self.dec_norm(dec1[-1])
        dec2[-1] = self.dec_norm(dec2[-1])
        return dec1, dec2

    # ------------------------------------------------------------------ heads

    def run_head(
        self, head: nn.Module, tokens: Sequence[torch.Tensor], true_shape_B2: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Apply a head with DUSt3R's orientation handling (``transpose_to_landscape``).

        ``landscape_only=False``: every row must share one true shape; the head runs at it.
        ``landscape_only=True``: the head runs at (min, max) of the batch's true
        shapes for landscape rows and at the swapped size for portrait rows,
        whose outputs are then transposed back to landscape layout.
        """
        shapes = true_shape_B2.detach().to("cpu", torch.int64)
        if not self.config.landscape_only:
            if not bool((shapes == shapes[0]).all()):
                raise ValueError("with landscape_only=False all rows of a batch must have the same true_shape")
            h, w = (int(s) for s in shapes[0])
            return head(tokens, (h, w))
        h, w = int(shapes.min()), int(shapes.max())
        is_landscape = shapes[:, 1] >= shapes[:, 0]
        if bool(is_landscape.all()):
            return head(tokens, (h, w))
        if not bool(is_landscape.any()):
            return _transposed(head(tokens, (w, h)))
        sel_l = is_landscape.to(tokens[0].device)
        sel_p = ~sel_l
        pred_l = head([t[sel_l] for t in tokens], (h, w))
        pred_p = _transposed(head([t[sel_p] for t in tokens], (w, h)))
        out = {}
        for key, value in pred_l.items():
            full = value.new_empty((len(shapes), *value.shape[1:]))
            full[sel_l] = value
            full[sel_p] = pred_p[key]
            out[key] = full
        return out

    # ------------------------------------------------------------------ forward

    @staticmethod
    def _true_shape(view: Mapping[str, torch.Tensor]) -> torch.Tensor:
        img = view["img"]
        shape = view.get("true_shape")
        if shape is None:
            return torch.tensor(img.shape[-2:], device=img.device)[None].repeat(img.shape[0], 1)
        return torch.as_tensor(shape, device=img.device)

    def forward(
        self, view1: Mapping[str, torch.Tensor], view2: Mapping[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Predict both point maps in view 1's camera frame.

        Args:
            view1, view2: dicts with ``img`` (B, 3, H, W) in [-1, 1] (H, W
                multiples of 16) and optional ``true_shape`` (B, 2) int (H, W per
                row; default: the tensor's size).

        Returns:
            ``pred1 = {"pts3d": (B, H1, W1, 3), "conf": (B, H1, W1)}`` and
            ``pred2 = {"pts3d_in_other_view": (B, H2, W2, 3), "conf": (B, H2, W2)}``,
            float32. The heads run in fp32 even under autocast.
        """
        img1, img2 = view1["img"], view2["img"]
        shape1, shape2 = self._true_shape(view1), self._true_shape(view2)
        feat1, feat2, pos1, pos2 = self.encode_pair(img1, img2, shape1, shape2)
        dec1, dec2 = self.decode(feat1, pos1, feat2, pos2)
        with torch.autocast(device_type=img1.device.type, enabled=False):
            pred1 = self.run_head(self.downstream_head1, [t.float() for t in dec1], shape1)
            pred2 = self.run_head(self.downstream_head2, [t.float() for t in dec2], shape2)
        return pred1, {"pts3d_in_other_view": pred2["pts3d"], "conf": pred2["conf"]}
