"""MambaOut backbone for dense prediction.

Yu & Wang, "MambaOut: Do We Really Need Mamba for Vision?", arXiv 2405.07992 (CVPR 2025).
A MambaOut block is a Gated CNN block: Mamba's block without its state-space model. The model
computes channels-last (B, H, W, C); the outputs are NCHW maps at strides 4/8/16/32, each through
an output LayerNorm (the author's dense-prediction recipe, official issue #251).

Module names equal the official release's (``downsample_layers``, ``stages``) so its checkpoints
load directly; timm's layout is converted by :mod:`mambaout_dense.checkpoint.mambaout`.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ...checkpoint.mambaout import convert_mambaout
from ...ops.depthwise_conv import depthwise_conv2d
from ...ops.gated_product import gated_product
from ...registry import MODELS
from ..layers import DropPath
from .base import DenseBackbone, check_int, drop_path_rates

__all__ = ['MambaOut', 'GatedCNNBlock', 'StemLayer', 'DownsampleLayer', 'mambaout_param_location']

LN_EPS = 1e-6


class StemLayer(nn.Module):
    """Stride-4 stem: Conv3x3 s2 -> LN -> GELU -> Conv3x3 s2 -> LN.

    Args:
        in_channels (int): Input channels. Defaults to 3.
        out_channels (int): C of the first stage.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels // 2, 3, stride=2, padding=1)
        self.norm1 = nn.LayerNorm(out_channels // 2, eps=LN_EPS)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(out_channels // 2, out_channels, 3, stride=2, padding=1)
        self.norm2 = nn.LayerNorm(out_channels, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, 3, H, W) -> (B, H/4, W/4, C)
        x = self.conv1(x).permute(0, 2, 3, 1)
        x = self.act(self.norm1(x)).permute(0, 3, 1, 2)
        x = self.conv2(x).permute(0, 2, 3, 1)
        return self.norm2(x)


class DownsampleLayer(nn.Module):
    """Conv3x3 s2 -> LN, channels-last in and out.

    Args:
        in_channels (int): Cin.
        out_channels (int): Cout.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(out_channels, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, H, W, Cin) -> (B, Cin, H, W) -> conv -> (B, H/2, W/2, Cout)
        x = self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.norm(x)


class GatedCNNBlock(nn.Module):
    """Gated CNN block (MambaOut's token mixer), channels-last.

    ``fc1`` expands to 2 x hidden channels, split into a gate g (hidden), an identity part
    i (hidden - conv_channels) and a conv part c (conv_channels); c passes a depthwise k x k
    convolution; ``out = fc2(GELU(g) * cat(i, conv(c)))`` plus the residual. The parameters are
    the official ones; the computation avoids copies (``fc1`` applied as two products so that c
    is contiguous for the convolution, whose backward is
    :func:`mambaout_dense.ops.depthwise_conv.depthwise_conv2d`'s, and the gate as one node,
    :func:`mambaout_dense.ops.gated_product.gated_product`, that stores no temporaries) and gives
    the same values as the official formula.

    Args:
        dim (int): Channels.
        expansion_ratio (float): hidden = int(expansion_ratio * dim). Defaults to 8/3.
        kernel_size (int): Depthwise kernel. Defaults to 7.
        conv_ratio (float): conv_channels = int(conv_ratio * dim). Defaults to 1.0.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        dilation (int): Dilation of the depthwise convolution (MambaOut's: 1). A larger one
            widens the receptive field at the same parameters and FLOPs (used by the long-range
            probe's field-matched control). Defaults to 1.
    """

    def __init__(self,
                 dim: int,
                 expansion_ratio: float = 8 / 3,
                 kernel_size: int = 7,
                 conv_ratio: float = 1.0,
                 drop_path: float = 0.0,
                 dilation: int = 1) -> None:
        super().__init__()
        hidden = int(expansion_ratio * dim)
        conv_channels = int(conv_ratio * dim)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.fc1 = nn.Linear(dim, hidden * 2)
        self.split_indices = (hidden, hidden - conv_channels, conv_channels)
        self.conv = nn.Conv2d(conv_channels, conv_channels, kernel_size,
                              padding=dilation * (kernel_size // 2), dilation=dilation,
                              groups=conv_channels)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x  # (B, H, W, C)
        h, c_dim = self.split_indices[0], self.split_indices[2]
        y = self.norm(x)
        # fc1 as two products: the conv part c comes out contiguous, so the depthwise conv reads
        # it as a channels-last (B, C, H, W) view without a copy; same weights, same sums
        k = self.fc1.out_features - c_dim
        # torch.split, not slicing: its backward is one concatenation instead of zero-filled
        # full-size gradients per slice
        w_gi, w_c = torch.split(self.fc1.weight, (k, c_dim))
        b_gi, b_c = torch.split(self.fc1.bias, (k, c_dim))
        gi = F.linear(y, w_gi, b_gi)  # (B, H, W, hidden + i)
        c = F.linear(y, w_c, b_c)  # (B, H, W, C)
        # (B, H, W, C) -> (B, C, H, W) view -> depthwise conv -> (B, H, W, C) view
        c = c.permute(0, 3, 1, 2)
        if self.conv.dilation == (1, 1):
            c = depthwise_conv2d(c, self.conv.weight, self.conv.bias)
        else:
            c = self.conv(c)
        c = c.permute(0, 2, 3, 1)
        x = self.drop_path(self.fc2(gated_product(gi, c, h)))
        return x + shortcut if torch.is_grad_enabled() else x.add_(shortcut)


@MODELS.register_module()
class MambaOut(DenseBackbone):
    """MambaOut backbone (``type='mambaout_dense.MambaOut'``).

    Args:
        arch (str | dict): One of femto, kobe, tiny, small, base, test (a tiny variant for unit
            tests), or a dict with ``depths`` and ``dims`` (optional ``expansion_ratio``,
            ``kernel_size``, ``conv_ratio``). Defaults to 'tiny'.
        in_channels (int): Image channels. Defaults to 3.
        drop_path_rate (float): Stochastic depth, linear from 0 over all blocks.
            Defaults to 0.
        out_indices, frozen_stages, norm_eval, with_cp, init_cfg: see
            :class:`~mambaout_dense.models.backbones.base.DenseBackbone`.

    Without pretrained weights it is initialised as timm's and the official MambaOut:
    truncated normal (std 0.02) on every Conv2d and Linear weight, zero biases.

    Example:
        >>> model = MambaOut('test').eval()
        >>> [tuple(o.shape) for o in model(torch.rand(1, 3, 64, 64))]
        [(1, 16, 16, 16), (1, 24, 8, 8), (1, 32, 4, 4), (1, 48, 2, 2)]
    """

    arch_zoo: Dict[str, Dict[str, Any]] = {
        'femto': dict(depths=(3, 3, 9, 3), dims=(48, 96, 192, 288)),
        'kobe': dict(depths=(3, 3, 15, 3), dims=(48, 96, 192, 288)),
        'tiny': dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 576)),
        'small': dict(depths=(3, 4, 27, 3), dims=(96, 192, 384, 576)),
        'base': dict(depths=(3, 4, 27, 3), dims=(128, 256, 512, 768)),
        'test': dict(depths=(1, 1, 2, 1), dims=(16, 24, 32, 48)),
    }
    arch_keys = ('depths', 'dims')
    trunc_normal_layers = (nn.Conv2d, nn.Linear)  # as the official release and timm

    def __init__(self,
                 arch: Union[str, Dict[str, Any]] = 'tiny',
                 in_channels: int = 3,
                 drop_path_rate: float = 0.0,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(arch, out_indices, frozen_stages, norm_eval, with_cp, init_cfg)
        depths = tuple(self.arch_settings['depths'])
        dims = tuple(self.arch_settings['dims'])
        block_cfg = {k: self.arch_settings[k] for k in self.optional_arch_keys()
                     if k in self.arch_settings}
        self.depths = depths
        self.drop_path_rate = drop_path_rate
        rates = drop_path_rates('MambaOut', drop_path_rate, depths)
        check_int('MambaOut', 'in_channels', in_channels, 1)

        self.downsample_layers = nn.ModuleList([StemLayer(in_channels, dims[0])] + [
            DownsampleLayer(dims[i - 1], dims[i]) for i in range(1, self.num_stages)
        ])
        self.stages = nn.ModuleList()
        start = 0
        for i in range(self.num_stages):
            self.stages.append(nn.Sequential(*[
                GatedCNNBlock(dims[i], drop_path=rates[start + j], **block_cfg)
                for j in range(depths[i])
            ]))
            start += depths[i]
        self._init_outputs(dims, eps=LN_EPS)

    @classmethod
    def optional_arch_keys(cls) -> Tuple[str, ...]:
        return ('expansion_ratio', 'kernel_size', 'conv_ratio')

    def _stem_modules(self) -> List[nn.Module]:
        return [self.downsample_layers[0]]

    def _stage_modules(self, i: int) -> List[nn.Module]:
        return ([self.downsample_layers[i]] if i > 0 else []) + [self.stages[i]]

    convert_checkpoint = staticmethod(convert_mambaout)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample_layers[0](x)  # (B, 3, H, W) -> (B, H/4, W/4, C)

    def _stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        if i > 0:
            x = self.downsample_layers[i](x)  # (B, H, W, C) -> (B, H/2, W/2, C')
        return self._run_blocks(self.stages[i], x)

    def _param_location(self, name: str) -> Optional[Tuple]:
        return mambaout_param_location(name)


def mambaout_param_location(name: str) -> Optional[Tuple]:
    """Location of a parameter in the MambaOut layout (``downsample_layers.i``, ``stages.i.j``)."""
    parts = name.split('.')
    if parts[0] == 'downsample_layers':
        return ('stem', ) if parts[1] == '0' else ('downsample', int(parts[1]))
    if parts[0] == 'stages':
        return ('block', int(parts[1]), int(parts[2]))
    return None
