"""Transformer pieces of DUSt3R: patch embeddings, (cross-)attention, encoder and decoder blocks.

Module and parameter names follow CroCo/DUSt3R exactly (``attn.qkv``,
``cross_attn.projq``, ``norm_y`` ...) so official state dicts load unchanged.
All blocks are pre-norm with exact GELU MLPs (timm ``Mlp``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn

from slocal.teach.dust3r.rope import RoPE2D

LAYER_NORM_EPS = 1e-6


def layer_norm(dim: int) -> nn.LayerNorm:
    """The LayerNorm used everywhere in DUSt3R (eps 1e-6, not PyTorch's 1e-5)."""
    return nn.LayerNorm(dim, eps=LAYER_NORM_EPS)


def grid_positions(nh: int, nw: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Positions (nh * nw, 2) int64 as (row y, column x), row-major like the token order."""
    ys = torch.arange(nh, device=device)
    xs = torch.arange(nw, device=device)
    return torch.cartesian_prod(ys, xs).reshape(nh * nw, 2)


class PatchEmbedDust3R(nn.Module):
    """16x16 patch embedding; the image is used exactly as given.

    Args:
        patch_size: patch side in pixels.
        embed_dim: token width Ce.
    """

    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def _embed(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, H/p * W/p, Ce), row-major token order."""
        return self.proj(img_B3HW).flatten(2).transpose(1, 2)

    def _check(self, img_B3HW: torch.Tensor) -> tuple[int, int]:
        h, w = img_B3HW.shape[-2:]
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {p}")
        return h // p, w // p

    def forward(self, img_B3HW: torch.Tensor, true_shape_B2: torch.Tensor | None = None):
        """Embed images.

        Args:
            img_B3HW: (B, 3, H, W) images in [-1, 1]; H and W multiples of the patch size.
            true_shape_B2: unused here (kept for the ManyAR interface).

        Returns:
            tokens (B, N, Ce) and positions (B, N, 2) int64 (row y, column x).
        """
        nh, nw = self._check(img_B3HW)
        tokens_BNC = self._embed(img_B3HW)
        pos_BN2 = grid_positions(nh, nw, img_B3HW.device).expand(img_B3HW.shape[0], -1, -1)
        return tokens_BNC, pos_BN2


class ManyARPatchEmbed(PatchEmbedDust3R):
    """DUSt3R's ``ManyAR_PatchEmbed``: portrait images are stored transposed in landscape tensors.

    The input tensor must be landscape (W >= H). Rows whose ``true_shape`` is
    portrait (width < height) are transposed back before the convolution, so
    their tokens form a (W/p) x (H/p) grid in true orientation.
    """

    def forward(self, img_B3HW: torch.Tensor, true_shape_B2: torch.Tensor | None = None):
        """Same contract as :meth:`PatchEmbedDust3R.forward`, with ``true_shape_B2`` (B, 2) = (H, W) per row."""
        nh, nw = self._check(img_B3HW)
        if nw < nh:
            raise ValueError(
                "ManyAR_PatchEmbed needs landscape input tensors (W >= H), "
                f"got {img_B3HW.shape[-2]}x{img_B3HW.shape[-1]}"
            )
        B = img_B3HW.shape[0]
        if true_shape_B2 is None:
            return super().forward(img_B3HW)
        true_shape_B2 = true_shape_B2.to(img_B3HW.device)
        is_landscape_B = true_shape_B2[:, 1] >= true_shape_B2[:, 0]
        if bool(is_landscape_B.all()):
            return super().forward(img_B3HW)
        is_portrait_B = ~is_landscape_B
        portrait_tokens = self._embed(img_B3HW[is_portrait_B].transpose(-1, -2))
        tokens_BNC = portrait_tokens.new_zeros((B, nh * nw, portrait_tokens.shape[-1]))
        pos_BN2 = torch.zeros((B, nh * nw, 2), dtype=torch.int64, device=img_B3HW.device)
        tokens_BNC[is_portrait_B] = portrait_tokens
        pos_BN2[is_portrait_B] = grid_positions(nw, nh, img_B3HW.device)
        if bool(is_landscape_B.any()):
            tokens_BNC[is_landscape_B] = self._embed(img_B3HW[is_landscape_B]).to(tokens_BNC.dtype)
            pos_BN2[is_landscape_B] = grid_positions(nh, nw, img_B3HW.device)
        return tokens_BNC, pos_BN2


def _split_heads(x_BNC: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, N, C) -> (B, heads, N, C/heads); head h owns channels [h*Dh, (h+1)*Dh)."""
    B, N, C = x_BNC.shape
    return x_BNC.reshape(B, N, num_heads, C // num_heads).transpose(1, 2)


def _merge_heads(x_BhND: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, Dh) -> (B, N, heads*Dh)."""
    B, h, N, dh = x_BhND.shape
    return x_BhND.transpose(1, 2).reshape(B, N, h * dh)


class Attention(nn.Module):
    """Multi-head self-attention with RoPE on q and k (keys ``qkv``, ``proj``)."""

    def __init__(self, dim: int, num_heads: int, rope: RoPE2D):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)
        self.rope = rope

    def forward(self, x_BNC: torch.Tensor, pos_BN2: torch.Tensor) -> torch.Tensor:
        """(B, N, C), positions (B, N, 2) -> (B, N, C)."""
        B, N, C = x_BNC.shape
        qkv = self.qkv(x_BNC).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.rope(q, pos_BN2), self.rope(k, pos_BN2)
        return self.proj(_merge_heads(F.scaled_dot_product_attention(q, k, v)))


class CrossAttention(nn.Module):
    """Multi-head cross-attention with RoPE (keys ``projq``, ``projk``, ``projv``, ``proj``)."""

    def __init__(self, dim: int, num_heads: int, rope: RoPE2D):
        super().__init__()
        self.num_heads = num_heads
        self.projq = nn.Linear(dim, dim, bias=True)
        self.projk = nn.Linear(dim, dim, bias=True)
        self.projv = nn.Linear(dim, dim, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)
        self.rope = rope

    def forward(
        self,
        query_BNC: torch.Tensor,
        key_BMC: torch.Tensor,
        value_BMC: torch.Tensor,
        qpos_BN2: torch.Tensor,
        kpos_BM2: torch.Tensor,
    ) -> torch.Tensor:
        """Queries (B, N, C) attend to keys/values (B, M, C) -> (B, N, C)."""
        q = self.rope(_split_heads(self.projq(query_BNC), self.num_heads), qpos_BN2)
        k = self.rope(_split_heads(self.projk(key_BMC), self.num_heads), kpos_BM2)
        v = _split_heads(self.projv(value_BMC), self.num_heads)
        return self.proj(_merge_heads(F.scaled_dot_product_attention(q, k, v)))


class Block(nn.Module):
    """Encoder block: ``x += attn(norm1(x)); x += mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, rope: RoPE2D):
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = Attention(dim, num_heads, rope)
        self.norm2 = layer_norm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x_BNC: torch.Tensor, pos_BN2: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        x_BNC = x_BNC + self.attn(self.norm1(x_BNC), pos_BN2)
        return x_BNC + self.mlp(self.norm2(x_BNC))


class DecoderBlock(nn.Module):
    """Decoder block: self-attention, cross-attention to the other view, MLP.

    Args:
        norm_mem: normalise the other view's tokens with this block's ``norm_y``
            (``norm_im2_in_dec=True`` in all DUSt3R models).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, rope: RoPE2D, norm_mem: bool = True):
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = Attention(dim, num_heads, rope)
        self.cross_attn = CrossAttention(dim, num_heads, rope)
        self.norm2 = layer_norm(dim)
        self.norm3 = layer_norm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)
        self.norm_y = layer_norm(dim) if norm_mem else nn.Identity()

    def forward(
        self, x_BNC: torch.Tensor, y_BMC: torch.Tensor, xpos_BN2: torch.Tensor, ypos_BM2: torch.Tensor
    ) -> torch.Tensor:
        """Update own tokens x (B, N, C) given the other view's tokens y (B, M, C); returns new x."""
        x_BNC = x_BNC + self.attn(self.norm1(x_BNC), xpos_BN2)
        y_BMC = self.norm_y(y_BMC)
        x_BNC = x_BNC + self.cross_attn(self.norm2(x_BNC), y_BMC, y_BMC, xpos_BN2, ypos_BM2)
        return x_BNC + self.mlp(self.norm3(x_BNC))
