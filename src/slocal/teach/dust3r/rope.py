"""2D rotary position embedding of CroCo v2 / DUSt3R ("RoPE100").

Each attention head of width ``Dh`` is split in two halves of ``d = Dh / 2``
channels: the first half is rotated by the token's row ``y``, the second by its
column ``x``. Inside a half, channel ``j`` is paired with ``j + d/2``
("rotate-half", not interleaved) and rotated by the angle ``p * w_j`` with
``w_j = 1 / base ** (2j / d)``.
"""

from __future__ import annotations

import torch
from torch import nn


def _rotate_half(u: torch.Tensor) -> torch.Tensor:
    """(..., 2m) -> (..., 2m): ``[a, b] -> [-b, a]``."""
    a, b = u.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class RoPE2D(nn.Module):
    """Rotary embedding of 2D integer token positions; holds no parameters.

    Args:
        base: frequency base (100 for ``pos_embed='RoPE100'``).
    """

    def __init__(self, base: float = 100.0):
        super().__init__()
        self.base = float(base)

    def extra_repr(self) -> str:
        return f"base={self.base:g}"

    def _cos_sin(self, pos_BN: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin tables (B, 1, N, d) in float32 for one coordinate of the positions."""
        inv_freq_m = 1.0 / (self.base ** (torch.arange(0, d, 2, device=pos_BN.device).float() / d))
        angle_BNm = pos_BN.float()[..., None] * inv_freq_m
        angle_BNd = torch.cat((angle_BNm, angle_BNm), dim=-1)
        return angle_BNd.cos()[:, None], angle_BNd.sin()[:, None]

    def forward(self, x_BhND: torch.Tensor, pos_BN2: torch.Tensor) -> torch.Tensor:
        """Rotate queries or keys.

        Args:
            x_BhND: (B, heads, N, Dh) per-head tokens; Dh must be a multiple of 4.
            pos_BN2: (B, N, 2) integer positions (row y, column x).

        Returns:
            (B, heads, N, Dh), same dtype as ``x_BhND``. The rotation is computed
            in float32 (angles and products), also under autocast.
        """
        dh = x_BhND.shape[-1]
        if dh % 4:
            raise ValueError(f"RoPE2D needs a head dimension divisible by 4, got {dh}")
        d = dh // 2
        x = x_BhND.float()
        y_half, x_half = x[..., :d], x[..., d:]
        cos_y, sin_y = self._cos_sin(pos_BN2[..., 0], d)
        cos_x, sin_x = self._cos_sin(pos_BN2[..., 1], d)
        y_half = y_half * cos_y + _rotate_half(y_half) * sin_y
        x_half = x_half * cos_x + _rotate_half(x_half) * sin_x
        return torch.cat((y_half, x_half), dim=-1).to(x_BhND.dtype)
