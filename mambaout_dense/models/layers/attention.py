"""Attention token mixers: global multi-head self-attention and Swin-style window attention.

The quadratic and the windowed references against which the long-sequence criterion of Yu & Wang,
"MambaOut: Do We Really Need Mamba for Vision?" (arXiv 2405.07992) is argued: a Transformer block
on L tokens of width D costs 24·D²·L + 4·D·L² FLOPs, so global attention's cost bends upward once
L > 6D, while attention inside w x w windows (Liu et al., "Swin Transformer", arXiv 2103.14030)
stays linear in L with a w x w receptive field per layer. Both compute through
``F.scaled_dot_product_attention``.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError

__all__ = ['GlobalAttention', 'WindowAttention']


class GlobalAttention(nn.Module):
    """Multi-head self-attention over all L tokens (the quadratic mixer), (B, L, D) in and out.

    Args:
        dim (int): Width D.
        head_dim (int): Channels per head. Defaults to 32 (Swin's: three heads at D = 96).
    """

    def __init__(self, dim: int, head_dim: int = 32) -> None:
        super().__init__()
        self.num_heads = max(1, dim // head_dim)
        if dim % self.num_heads:
            raise ConfigError(f'GlobalAttention: dim {dim} is not divisible into '
                              f'{self.num_heads} heads of about {head_dim} channels')
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        # (B, L, 3D) -> (3, B, heads, L, D/heads)
        q, k, v = self.qkv(x).view(B, L, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(B, L, D))  # (B, heads, L, d) -> (B, L, D)

    def extra_repr(self) -> str:
        return f'num_heads={self.num_heads}'


class WindowAttention(nn.Module):
    """Attention inside non-overlapping w x w windows (Swin's mixer), (B, H, W, D) in and out.

    The map is zero-padded to multiples of the window, partitioned, attended per window and put
    back; no shift, no relative position bias (they do not change the cost's growth).

    Args:
        dim (int): Width D.
        window (int): Window side. Defaults to 7.
        head_dim (int): Channels per head. Defaults to 32.
    """

    def __init__(self, dim: int, window: int = 7, head_dim: int = 32) -> None:
        super().__init__()
        self.window = window
        self.attn = GlobalAttention(dim, head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, D = x.shape
        w = self.window
        ph, pw = (-H) % w, (-W) % w
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
        Hp, Wp = H + ph, W + pw
        # (B, Hp, Wp, D) -> (B * windows, w*w, D)
        x = x.view(B, Hp // w, w, Wp // w, w, D).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, D)
        x = self.attn(x)
        # (B * windows, w*w, D) -> (B, Hp, Wp, D)
        x = x.view(B, Hp // w, Wp // w, w, w, D).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, D)
        return x[:, :H, :W]

    def extra_repr(self) -> str:
        return f'window={self.window}'
