"""The long-range probe network: one stage of blocks that differ only in the token mixer.

Tests the hypothesis of Yu & Wang, "MambaOut: Do We Really Need Mamba for Vision?",
arXiv 2405.07992: a state-space token mixer (SS2D of Liu et al., "VMamba: Visual State Space
Model", arXiv 2401.10166) is unnecessary unless the task needs it, and may pay off where a stage
sees long sequences. The probe is a 4x4 stride-4 patch stem (+ LayerNorm), ``depth`` blocks of
width ``dim`` at that single stage (no downsampling, so distances and sequence lengths are in
tokens of the mixing stage), a LayerNorm and a per-token linear head. The mixers:

- ``gated_cnn``: MambaOut's :class:`~mambaout_dense.models.backbones.mambaout.GatedCNNBlock`
  (7x7 depthwise convolution inside a gated MLP);
- ``ss2d``: VMamba v2's :class:`~mambaout_dense.models.backbones.vmamba.VSSBlock` (SS2D + MLP),
  its MLP width chosen so that a block has the Gated CNN block's parameter count;
- ``hybrid``: the first half of the blocks SS2D, the rest Gated CNN, in the order of
  :class:`~mambaout_dense.models.backbones.hybrid.HybridBackbone`;
- ``attention``: a pre-norm Transformer block, global multi-head self-attention
  (:class:`~mambaout_dense.models.layers.GlobalAttention`) + an MLP of matched width, with a fixed
  2-D sin-cos position embedding added after the stem (attention alone cannot tell which of two
  markers is nearer); ``window`` uses :class:`~mambaout_dense.models.layers.WindowAttention`;
- ``gated_cnn_dilated``: Gated CNN blocks whose depthwise convolutions are dilated 1, f, f², ...
  (``dilation=f``): the same parameters and FLOPs as ``gated_cnn``, a wider receptive field;
- ``gated_cnn_gap``: the *shortcut baseline*: Gated CNN blocks, each followed by a global-average-
  pool branch (``x + Linear(LN(mean over tokens of x))``), so every token sees image-level
  statistics but nothing selective from beyond its convolutions' field.

:func:`receptive_field` is the theoretical Chebyshev radius, in tokens, through which a token can
be influenced, and :func:`probe_complexity` counts parameters and FLOPs (one multiply-add = one
FLOP, the selective scan and scaled-dot-product attention counted by registered handles).
"""
import math
from collections import Counter
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from ..errors import UsageError
from ..models.backbones.mambaout import GatedCNNBlock
from ..models.backbones.vmamba import Mlp, VSSBlock
from ..models.layers import GlobalAttention, WindowAttention

__all__ = ['MIXERS', 'SHORTCUT_BASELINE', 'POSITIONAL', 'ProbeNet', 'AttentionBlock',
           'ChannelsFirst', 'GlobalPoolBranch', 'build_probe', 'matched_mlp_hidden',
           'block_params', 'dilations', 'receptive_field', 'local_field', 'probe_complexity',
           'set_ssm_init', 'sincos_2d']

#: Mixers the probe can use.
MIXERS = ('gated_cnn', 'gated_cnn_dilated', 'ss2d', 'hybrid', 'attention', 'window',
          'gated_cnn_gap')
#: The shortcut baseline: the cheapest model that could read image-level statistics.
SHORTCUT_BASELINE = 'gated_cnn_gap'
#: Mixers that get a position embedding (attention is otherwise blind to where a token is).
POSITIONAL = ('attention', 'window')
LN_EPS = 1e-6


def sincos_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding (as in MAE, He et al., arXiv 2111.06377).

    Args:
        h (int): Rows.
        w (int): Columns.
        dim (int): Channels, a multiple of 4: sin/cos of the row, then of the column.

    Returns:
        Tensor: (h, w, dim) float32.
    """
    if dim % 4:  # internal invariant: ProbeNet checks its width before it builds one
        raise ValueError(f'a 2-D sin-cos embedding needs dim % 4 == 0, got {dim}')
    q = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(q, dtype=torch.float64) / q)
    ys = torch.arange(h, dtype=torch.float64)[:, None] * omega  # (h, q)
    xs = torch.arange(w, dtype=torch.float64)[:, None] * omega  # (w, q)
    emb = torch.cat([ys.sin()[:, None].expand(h, w, q), ys.cos()[:, None].expand(h, w, q),
                     xs.sin()[None].expand(h, w, q), xs.cos()[None].expand(h, w, q)], -1)
    return emb.float()


class GlobalPoolBranch(nn.Module):
    """Adds a projection of the image-wide mean to every token, channels-last (B, H, W, C).

    Args:
        dim (int): Width D.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.fc = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc(self.norm(x.mean((1, 2), keepdim=True)))  # (B, 1, 1, C) broadcast


class ChannelsFirst(nn.Module):
    """Run a channels-first block on a channels-last map: (B, H, W, C) in and out.

    Args:
        block (nn.Module): A (B, C, H, W) -> (B, C, H, W) block.
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, H, W, C) -> (B, C, H, W) -> block -> (B, H, W, C)
        return self.block(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class AttentionBlock(nn.Module):
    """Pre-norm Transformer block, channels-last: x + attn(LN(x)), then x + MLP(LN(x)).

    Args:
        dim (int): Width D.
        mlp_hidden (int): Hidden width of the MLP.
        window (int, optional): Attend inside non-overlapping windows of this side (Swin's mixer,
            no shift); None attends over all tokens. Defaults to None.
        head_dim (int): Channels per head. Defaults to 32.
    """

    def __init__(self, dim: int, mlp_hidden: int, window: Optional[int] = None,
                 head_dim: int = 32) -> None:
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = (GlobalAttention(dim, head_dim) if window is None
                     else WindowAttention(dim, window, head_dim))
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        y = self.norm1(x)
        if self.window is None:
            y = self.attn(y.reshape(B, H * W, C)).view(B, H, W, C)  # (B, L, C) and back
        else:
            y = self.attn(y)
        x = x + y
        return x + self.mlp(self.norm2(x))


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _ss2d_block(dim: int, mlp_hidden: int, d_state: int, scan_backend: Optional[str]) -> nn.Module:
    # int(dim * ratio) == mlp_hidden exactly for this ratio
    return ChannelsFirst(VSSBlock(dim, d_state=d_state, mlp_ratio=(mlp_hidden + 0.5) / dim,
                                  version='v2', scan_backend=scan_backend))


def matched_mlp_hidden(mixer: str, dim: int, d_state: int = 1, window: int = 7,
                       head_dim: int = 32) -> int:
    """MLP width that brings an SS2D or attention block closest to a Gated CNN block's params.

    Args:
        mixer (str): 'ss2d', 'attention' or 'window'.
        dim (int): Width D.
        d_state (int): SSM state size (ss2d). Defaults to 1.
        window (int): Window side (window). Defaults to 7.
        head_dim (int): Channels per attention head. Defaults to 32.

    Returns:
        int: Hidden width h of the block's MLP.
    """
    target = _count(GatedCNNBlock(dim))
    if mixer == 'ss2d':
        def make(h):
            return _ss2d_block(dim, h, d_state, None)
    elif mixer in ('attention', 'window'):
        def make(h):
            return AttentionBlock(dim, h, window if mixer == 'window' else None, head_dim)
    else:
        raise UsageError(f'{mixer!r} has no MLP to match; valid: ss2d, attention, window')
    base = _count(make(1))
    per_unit = _count(make(2)) - base  # params grow linearly in h: 2 * dim + 1 per unit
    return max(1, 1 + round((target - base) / per_unit))


def dilations(mixer: str, depth: int, dilation: int = 2) -> List[int]:
    """Dilation of each block's depthwise convolution (1 for every non-dilated mixer)."""
    if mixer == 'gated_cnn_dilated':
        return [dilation ** i for i in range(depth)]
    return [1] * depth


def _blocks(mixer: str, dim: int, depth: int, d_state: int, window: int, head_dim: int,
            scan_backend: Optional[str], dilation: int = 2) -> List[nn.Module]:
    if mixer in ('gated_cnn', 'gated_cnn_dilated'):
        return [GatedCNNBlock(dim, dilation=f) for f in dilations(mixer, depth, dilation)]
    if mixer == 'gated_cnn_gap':
        return [m for _ in range(depth) for m in (GatedCNNBlock(dim), GlobalPoolBranch(dim))]
    if mixer == 'ss2d':
        h = matched_mlp_hidden('ss2d', dim, d_state)
        return [_ss2d_block(dim, h, d_state, scan_backend) for _ in range(depth)]
    if mixer == 'hybrid':
        n_ss2d = (depth + 1) // 2
        return (_blocks('ss2d', dim, n_ss2d, d_state, window, head_dim, scan_backend)
                + _blocks('gated_cnn', dim, depth - n_ss2d, d_state, window, head_dim,
                          scan_backend))
    if mixer in ('attention', 'window'):
        h = matched_mlp_hidden(mixer, dim, window=window, head_dim=head_dim)
        return [AttentionBlock(dim, h, window if mixer == 'window' else None, head_dim)
                for _ in range(depth)]
    raise UsageError(f'Unknown mixer {mixer!r}; valid: {", ".join(MIXERS)}')


class ProbeNet(nn.Module):
    """Patch stem (+ position embedding for attention) -> ``depth`` blocks of one mixer ->
    LayerNorm -> per-token linear head.

    Args:
        mixer (str): One of :data:`MIXERS`.
        dim (int): Width D of every block. Defaults to 32.
        depth (int): Blocks. Defaults to 4.
        patch (int): Side of the stem's patches (= its stride). Defaults to 4.
        num_classes (int): Logits per token. Defaults to 2.
        d_state (int): SSM state size of the SS2D blocks. Defaults to 1.
        window (int): Window side of the ``window`` mixer. Defaults to 7.
        head_dim (int): Channels per attention head. Defaults to 32.
        scan_backend (str, optional): Backend of the selective scan; None chooses per device.
            Defaults to None.
        dilation (int): Dilation factor f of ``gated_cnn_dilated`` (block i: f**i). Defaults
            to 2.
    """

    def __init__(self, mixer: str, dim: int = 32, depth: int = 4, patch: int = 4,
                 num_classes: int = 2, d_state: int = 1, window: int = 7, head_dim: int = 32,
                 scan_backend: Optional[str] = None, dilation: int = 2) -> None:
        super().__init__()
        if mixer in POSITIONAL and dim % 4:
            raise UsageError(f'the {mixer} probe adds a 2-D sin-cos position embedding, which '
                             f'needs a width divisible by 4; got dim={dim}')
        self.mixer, self.dim, self.depth, self.patch = mixer, dim, depth, patch
        self.stem = nn.Conv2d(3, dim, patch, stride=patch)
        self.stem_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.positions = mixer in POSITIONAL
        self.blocks = nn.Sequential(
            *_blocks(mixer, dim, depth, d_state, window, head_dim, scan_backend, dilation))
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (Tensor): (B, 3, H, W). Returns: (B, num_classes, H/patch, W/patch) logits."""
        x = self.stem_norm(self.stem(x).permute(0, 2, 3, 1))  # (B, h, w, D)
        if self.positions:
            x = x + sincos_2d(x.shape[1], x.shape[2], self.dim).to(x)
        x = self.norm(self.blocks(x))
        return self.head(x).permute(0, 3, 1, 2)  # (B, h, w, K) -> (B, K, h, w)


def build_probe(mixer: str, **kwargs: Any) -> ProbeNet:
    """:class:`ProbeNet` for ``mixer`` (keyword arguments as its constructor's)."""
    if mixer not in MIXERS:
        raise UsageError(f'Unknown mixer {mixer!r}; valid: {", ".join(MIXERS)}')
    return ProbeNet(mixer, **kwargs)


def set_ssm_init(model: nn.Module, dt_min: float = 0.001, dt_max: float = 0.1) -> int:
    """Re-draw the SSM parameters of every SS2D in ``model`` with another initial step range.

    ``SS2D.reset_ssm_parameters`` draws log dt uniformly in [log dt_min, log dt_max]; VMamba
    publishes 0.001..0.1. A larger dt writes more of each token into the state and forgets
    faster.

    Args:
        model (nn.Module): A model holding SS2D modules.
        dt_min (float): Smallest initial step. Defaults to 0.001.
        dt_max (float): Largest initial step. Defaults to 0.1.

    Returns:
        int: SS2D modules re-initialised.
    """
    n = 0
    for m in model.modules():
        if hasattr(m, 'reset_ssm_parameters') and hasattr(m, 'dt_init_range'):
            _, _, floor, scale = m.dt_init_range
            m.dt_init_range = (dt_min, dt_max, floor, scale)
            m.reset_ssm_parameters()
            n += 1
    return n


def block_params(model: ProbeNet) -> List[int]:
    """Parameters of each block of a probe (a pooling branch counts with its Gated CNN block)."""
    counts: List[int] = []
    for b in model.blocks:
        if isinstance(b, GlobalPoolBranch):
            counts[-1] += _count(b)
        else:
            counts.append(_count(b))
    return counts


def receptive_field(mixer: str, depth: int, kernel_size: int = 7,
                    window: int = 7, dilation: int = 2) -> float:
    """Theoretical receptive-field radius of the probe's blocks, in tokens (Chebyshev).

    A token's output can depend on the tokens within this radius of it. The stem's patches do
    not overlap, so they add nothing at token resolution. Gated CNN: ``depth * (k - 1) / 2``;
    dilated Gated CNN: ``(k - 1) / 2 * (1 + f + ... + f**(depth-1))``; SS2D, the hybrid (it holds
    SS2D blocks), global attention and the global-pool baseline: unbounded (``math.inf``; the
    baseline's reach beyond its convolutions is the image mean only); non-shifted window
    attention never crosses its window: ``window - 1``, reached only between the window's
    corners.

    Args:
        mixer (str): One of :data:`MIXERS`.
        depth (int): Blocks.
        kernel_size (int): Depthwise kernel of the Gated CNN block. Defaults to 7.
        window (int): Window side of the ``window`` mixer. Defaults to 7.
        dilation (int): Dilation factor of ``gated_cnn_dilated``. Defaults to 2.

    Returns:
        float: Radius in tokens, ``math.inf`` for a global mixer.
    """
    if mixer in ('gated_cnn', 'gated_cnn_dilated'):
        return float(sum(dilations(mixer, depth, dilation)) * (kernel_size // 2))
    if mixer in ('ss2d', 'hybrid', 'attention', 'gated_cnn_gap'):
        return math.inf
    if mixer == 'window':
        return float(window - 1)
    raise UsageError(f'Unknown mixer {mixer!r}; valid: {", ".join(MIXERS)}')


def local_field(mixer: str, depth: int, kernel_size: int = 7, window: int = 7,
                dilation: int = 2) -> float:
    """Radius within which a probe can tell *where* a token is relative to another: its
    :func:`receptive_field`, except for the global-pool baseline, whose reach beyond its
    convolutions is an image-wide mean (the Gated CNN's radius)."""
    if mixer == 'gated_cnn_gap':
        return receptive_field('gated_cnn', depth, kernel_size, window)
    return receptive_field(mixer, depth, kernel_size, window, dilation)


def _sdpa_flop_handle(inputs: List[Any], outputs: List[Any]) -> Counter:
    """FLOPs of ``aten::scaled_dot_product_attention``: Q K^T and A V, B·heads·L·S·(dk + dv)."""
    from mmengine.analysis.jit_handles import get_shape
    q, k, v = (get_shape(i) for i in inputs[:3])
    batch = math.prod(q[:-2])
    return Counter({'scaled_dot_product_attention': batch * q[-2] * k[-2] * (q[-1] + v[-1])})


def probe_complexity(model: nn.Module, grid: int, patch: Optional[int] = None,
                     batch: int = 1) -> Dict[str, Any]:
    """Parameters and forward FLOPs of a probe on ``batch`` images of ``grid x grid`` tokens.

    Args:
        model (nn.Module): A :class:`ProbeNet` (or any image model).
        grid (int): Tokens per side.
        patch (int, optional): Pixels per token side. Defaults to ``model.patch``.
        batch (int): Images. Defaults to 1.

    Returns:
        dict: ``params``, ``block_params`` (list), ``flops`` and ``flops_by_op`` (for the
        whole batch), ``tokens`` (L = grid²).
    """
    from mmengine.analysis import FlopAnalyzer

    from .flops import _register_extra_handles
    patch = patch or model.patch
    inputs = torch.zeros(batch, 3, grid * patch, grid * patch)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, (inputs, ))
        _register_extra_handles(analyzer)
        analyzer.set_op_handle('aten::scaled_dot_product_attention', _sdpa_flop_handle)
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        analyzer.tracer_warnings('none')
        flops = int(analyzer.total())
        by_op = {k: int(v) for k, v in analyzer.by_operator().items()}
    model.train(was_training)
    blocks = block_params(model) if isinstance(model, ProbeNet) else []
    return dict(params=_count(model), block_params=blocks, flops=flops, flops_by_op=by_op,
                tokens=grid * grid)
