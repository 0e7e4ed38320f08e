"""VMamba backbone for dense prediction.

Liu et al., "VMamba: Visual State Space Model", arXiv 2401.10166 (NeurIPS 2024). A VMamba block
(VSS block) mixes tokens with SS2D: the map is unrolled in four directions (row-major,
column-major and both reversed), each sequence passes a selective scan (the Mamba-1 recurrence)
and the four results are put back in place and summed.

Two layouts of the official releases are built:

- ``version='v2'`` (VMamba-T/S/B of the v2 release, SS2D ``forward_type="v05_noz"``): channels-first
  (B, C, H, W) throughout with channel LayerNorms, an overlapping stem (two 3x3 stride-2 convs),
  3x3 stride-2 conv downsampling, SS2D without the z gate, and a GELU MLP after each SS2D.
- ``version='v0'`` (Vanilla VMamba): channels-last (B, H, W, C), a 4x4 patchify stem, patch
  merging, SS2D with the SiLU z gate, and no MLP (``mlp_ratio=0``).

Module and parameter names equal the official ``VSSM``'s (``patch_embed``, ``layers.{i}.blocks``,
``layers.{i}.downsample``, ``op.x_proj_weight``, ...), so an official classification checkpoint
loads after :func:`mambaout_dense.checkpoint.vmamba.convert_vmamba` drops its classifier. The scan
itself is :func:`mambaout_dense.ops.selective_scan`, which runs on CPU and GPU.
"""
import math
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ...checkpoint.vmamba import convert_vmamba
from ...errors import ConfigError
from ...ops import cross_merge, cross_scan, selective_scan
from ...ops.scan import check_scan_backend
from ...registry import MODELS
from ..layers import DropPath, LayerNorm2d
from .base import DenseBackbone, check_int, drop_path_rates

__all__ = [
    'VMamba', 'SS2D', 'VSSBlock', 'VSSStage', 'Mlp', 'Linear2d', 'PatchMerging2D'
]

LN_EPS = 1e-5
#: Values of the ``version`` arch key.
VERSIONS = ('v2', 'v0')


def _norm(dim: int, channels_first: bool) -> nn.Module:
    return LayerNorm2d(dim, eps=LN_EPS) if channels_first else nn.LayerNorm(dim, eps=LN_EPS)


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """Cast up to float32 (float64 stays): SSM parameters enter the scan in fp32 under AMP."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


class Linear2d(nn.Linear):
    """A linear layer over channels; with ``channels_first`` it runs as a 1x1 convolution.

    The weight stays (out, in), as in the official release, so the same tensor serves both
    layouts.

    Args:
        in_features (int): Input channels.
        out_features (int): Output channels.
        bias (bool): Learn an additive bias. Defaults to True.
        channels_first (bool): Inputs are (B, C, H, W) instead of (..., C). Defaults to False.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 channels_first: bool = False) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.channels_first = channels_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_first:
            return F.conv2d(x, self.weight[:, :, None, None], self.bias)
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f', channels_first={self.channels_first}'


class ToChannelsLast(nn.Module):
    """(B, C, H, W) -> (B, H, W, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class SS2D(nn.Module):
    """2D selective scan (VMamba's token mixer).

    in_proj -> [split off the gate z] -> depthwise 3x3 conv -> SiLU -> cross-scan (4 directions)
    -> per-direction x-projection to (dt_rank + 2 * d_state) -> per-direction dt projection ->
    selective scan (softplus on dt, the 4 directions as 4 groups) -> cross-merge (sum) ->
    out_norm -> [times SiLU(z)] -> out_proj.

    Args:
        d_model (int): Channels in and out.
        d_state (int): SSM state size N. Defaults to 1.
        ssm_ratio (float): d_inner = int(ssm_ratio * d_model). Defaults to 1.0.
        dt_rank (int, optional): Rank of the dt projection; None gives
            ``ceil(d_model / 16)``. Defaults to None.
        d_conv (int): Depthwise kernel size. Defaults to 3.
        conv_bias (bool): Bias of the depthwise conv (False in the v2 release, True in v0).
            Defaults to False.
        gated (bool): Project to 2 x d_inner and multiply the output by SiLU(z) (v0).
            Defaults to False.
        channels_first (bool): (B, C, H, W) in and out (v2), else (B, H, W, C) (v0).
            Defaults to True.
        dt_min (float): Smallest initial step size. Defaults to 0.001.
        dt_max (float): Largest initial step size. Defaults to 0.1.
        dt_init_floor (float): Lower clamp of the initial step size. Defaults to 1e-4.
        dt_scale (float): Scale of the dt-projection init range. Defaults to 1.0.
        scan_backend (str, optional): Backend of :func:`mambaout_dense.ops.selective_scan`;
            None chooses per device. Defaults to None.
    """

    num_directions = 4

    def __init__(self,
                 d_model: int,
                 d_state: int = 1,
                 ssm_ratio: float = 1.0,
                 dt_rank: Optional[int] = None,
                 d_conv: int = 3,
                 conv_bias: bool = False,
                 gated: bool = False,
                 channels_first: bool = True,
                 dt_min: float = 0.001,
                 dt_max: float = 0.1,
                 dt_init_floor: float = 1e-4,
                 dt_scale: float = 1.0,
                 scan_backend: Optional[str] = None) -> None:
        super().__init__()
        K = self.num_directions
        self.d_model = d_model
        self.d_state = d_state
        self.d_inner = d_inner = int(ssm_ratio * d_model)
        self.dt_rank = dt_rank = math.ceil(d_model / 16) if dt_rank is None else dt_rank
        self.gated = gated
        self.channels_first = channels_first
        self.scan_backend = scan_backend
        self.dt_init_range = (dt_min, dt_max, dt_init_floor, dt_scale)

        self.in_proj = Linear2d(d_model, d_inner * (2 if gated else 1), bias=False,
                                channels_first=channels_first)
        self.act = nn.SiLU()
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2,
                                groups=d_inner, bias=conv_bias)
        # per direction k: (dt_rank + 2N, d_inner) projections, stacked as the official does
        self.x_proj_weight = nn.Parameter(torch.empty(K, dt_rank + 2 * d_state, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(K, d_inner, dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(K, d_inner))
        self.A_logs = nn.Parameter(torch.empty(K * d_inner, d_state))  # A = -exp(A_logs)
        self.Ds = nn.Parameter(torch.empty(K * d_inner))
        self.A_logs._no_weight_decay = True
        self.Ds._no_weight_decay = True
        self.out_norm = _norm(d_inner, channels_first)
        self.out_proj = Linear2d(d_inner, d_model, bias=False, channels_first=channels_first)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """Initialise the SSM parameters as the official release does.

        x projection: nn.Linear's default (uniform, bound 1/sqrt(d_inner)); dt projection:
        uniform in +-dt_scale/sqrt(dt_rank); dt bias: inverse softplus of dt, with log dt uniform
        in [log dt_min, log dt_max] and dt clamped below at dt_init_floor; A_logs = log(1..N)
        for every channel (S4D-real); Ds = 1.
        """
        dt_min, dt_max, dt_init_floor, dt_scale = self.dt_init_range
        bound = 1.0 / math.sqrt(self.d_inner)
        nn.init.uniform_(self.x_proj_weight, -bound, bound)
        std = dt_scale * self.dt_rank**-0.5
        nn.init.uniform_(self.dt_projs_weight, -std, std)
        log_dt = torch.rand(self.dt_projs_bias.shape) * (math.log(dt_max) - math.log(dt_min)) \
            + math.log(dt_min)
        dt = torch.exp(log_dt).clamp(min=dt_init_floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        A = torch.arange(1, self.d_state + 1, dtype=torch.float32)
        self.A_logs.copy_(torch.log(A).expand_as(self.A_logs))
        self.Ds.fill_(1.0)

    def extra_repr(self) -> str:
        return (f'd_state={self.d_state}, d_inner={self.d_inner}, dt_rank={self.dt_rank}, '
                f'gated={self.gated}')

    def scan2d(self, x: torch.Tensor) -> torch.Tensor:
        """Cross-scan, selective scan and cross-merge of a (B, d_inner, H, W) map.

        Returns:
            Tensor: (B, d_inner, H, W).
        """
        B, D, H, W = x.shape
        K, R, N, L = self.num_directions, self.dt_rank, self.d_state, H * W
        xs = cross_scan(x).reshape(B, K * D, L)  # (B, K, D, L) -> (B, K*D, L)
        # the K direction-wise projections as one grouped 1x1 conv: (B, K*(R+2N), L)
        x_dbl = F.conv1d(xs, self.x_proj_weight.reshape(K * (R + 2 * N), D, 1), groups=K)
        dts, Bs, Cs = torch.split(x_dbl.view(B, K, R + 2 * N, L), [R, N, N], dim=2)
        dts = F.conv1d(dts.reshape(B, K * R, L), self.dt_projs_weight.reshape(K * D, R, 1),
                       groups=K)  # (B, K*D, L)
        ys = selective_scan(
            xs, dts, -torch.exp(_at_least_fp32(self.A_logs)), Bs.contiguous(), Cs.contiguous(),
            D=_at_least_fp32(self.Ds), delta_bias=_at_least_fp32(self.dt_projs_bias.reshape(-1)),
            delta_softplus=True, backend=self.scan_backend)  # (B, K*D, L), groups = K
        y = cross_merge(ys.view(B, K, D, H, W))  # (B, D, L), row-major
        return y.view(B, D, H, W).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x (Tensor): (B, C, H, W) if channels_first else (B, H, W, C). Returns: same."""
        cf = self.channels_first
        x = self.in_proj(x)
        z = None
        if self.gated:
            x, z = x.chunk(2, dim=1 if cf else -1)
            z = self.act(z)
        if not cf:
            x = x.permute(0, 3, 1, 2)  # (B, H, W, D) -> (B, D, H, W)
        x = self.act(self.conv2d(x))
        y = self.scan2d(x)  # (B, D, H, W)
        if not cf:
            y = y.permute(0, 2, 3, 1)  # (B, D, H, W) -> (B, H, W, D)
        y = self.out_norm(y)
        if z is not None:
            y = y * z
        return self.out_proj(y)


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 over channels.

    Args:
        dim (int): Channels in and out.
        hidden (int): Hidden channels.
        channels_first (bool): Inputs are (B, C, H, W). Defaults to False.
    """

    def __init__(self, dim: int, hidden: int, channels_first: bool = False) -> None:
        super().__init__()
        self.fc1 = Linear2d(dim, hidden, channels_first=channels_first)
        self.act = nn.GELU()
        self.fc2 = Linear2d(hidden, dim, channels_first=channels_first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class VSSBlock(nn.Module):
    """VSS block: x + DropPath(SS2D(norm(x))), then x + DropPath(MLP(norm2(x))).

    Args:
        dim (int): Channels.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        d_state (int): SSM state size. Defaults to 1.
        ssm_ratio (float): SS2D expansion. Defaults to 1.0.
        mlp_ratio (float): MLP expansion; 0 omits the MLP branch. Defaults to 4.0.
        version (str): 'v2' (channels-first, no gate, conv without bias) or 'v0'
            (channels-last, gated, conv with bias). Defaults to 'v2'.
        scan_backend (str, optional): See :class:`SS2D`. Defaults to None.
    """

    def __init__(self,
                 dim: int,
                 drop_path: float = 0.0,
                 d_state: int = 1,
                 ssm_ratio: float = 1.0,
                 mlp_ratio: float = 4.0,
                 version: str = 'v2',
                 scan_backend: Optional[str] = None) -> None:
        super().__init__()
        if version not in VERSIONS:
            raise ConfigError(f'Unknown VMamba version {version!r}; valid: {", ".join(VERSIONS)}')
        channels_first = version == 'v2'
        self.norm = _norm(dim, channels_first)
        self.op = SS2D(dim, d_state=d_state, ssm_ratio=ssm_ratio, conv_bias=version == 'v0',
                       gated=version == 'v0', channels_first=channels_first,
                       scan_backend=scan_backend)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.has_mlp = mlp_ratio > 0
        if self.has_mlp:
            self.norm2 = _norm(dim, channels_first)
            self.mlp = Mlp(dim, int(dim * mlp_ratio), channels_first=channels_first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.op(self.norm(x)))
        if self.has_mlp:
            x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class PatchMerging2D(nn.Module):
    """Swin-style 2x2 patch merging, channels-last (v0 downsampling).

    Odd H or W is zero-padded at the end; the four neighbours are concatenated in the order
    (0,0), (1,0), (0,1), (1,1), normalised and projected.

    Args:
        dim (int): Cin.
        out_dim (int): Cout.
    """

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-3:-1]  # (B, H, W, C)
        if H % 2 or W % 2:
            x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        x = torch.cat([x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :],
                       x[..., 0::2, 1::2, :], x[..., 1::2, 1::2, :]], dim=-1)
        return self.reduction(self.norm(x))  # (B, ceil(H/2), ceil(W/2), Cout)


def _official_sequential(modules: Dict[int, nn.Module]) -> nn.Sequential:
    """A Sequential whose children are named by the official ``nn.Sequential`` indices.

    The official stems and downsampling layers hold parameter-free Permute/Identity entries;
    leaving those out while keeping the other indices gives the official parameter names.
    """
    return nn.Sequential(OrderedDict((str(i), m) for i, m in sorted(modules.items())))


def make_stem(in_channels: int, dim: int, version: str) -> nn.Sequential:
    """Stride-4 stem.

    v2: Conv3x3 s2 (-> dim/2) -> LN -> GELU -> Conv3x3 s2 -> LN, channels-first, named
    ``0, 2, 4, 5, 7``. v0: Conv4x4 s4 -> (B, H, W, C) -> LN, named ``0, 1, 2``.
    """
    if version == 'v2':
        return _official_sequential({
            0: nn.Conv2d(in_channels, dim // 2, 3, stride=2, padding=1),
            2: LayerNorm2d(dim // 2, eps=LN_EPS),
            4: nn.GELU(),
            5: nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1),
            7: LayerNorm2d(dim, eps=LN_EPS),
        })
    return _official_sequential({
        0: nn.Conv2d(in_channels, dim, 4, stride=4),
        1: ToChannelsLast(),
        2: nn.LayerNorm(dim, eps=LN_EPS),
    })


def make_downsample(dim: int, out_dim: int, version: str) -> nn.Module:
    """Stride-2 downsampling after a stage.

    v2: Conv3x3 s2 -> LN, channels-first, named ``1, 3``. v0: :class:`PatchMerging2D`.
    """
    if version == 'v2':
        return _official_sequential({
            1: nn.Conv2d(dim, out_dim, 3, stride=2, padding=1),
            3: LayerNorm2d(out_dim, eps=LN_EPS),
        })
    return PatchMerging2D(dim, out_dim)


class VSSStage(nn.Module):
    """A stage: ``blocks`` then the ``downsample`` feeding the next stage (Identity in the last).

    Args:
        blocks (nn.Sequential): The VSS blocks.
        downsample (nn.Module): Downsampling layer.
    """

    def __init__(self, blocks: nn.Sequential, downsample: nn.Module) -> None:
        super().__init__()
        self.blocks = blocks
        self.downsample = downsample


@MODELS.register_module()
class VMamba(DenseBackbone):
    """VMamba backbone (``type='mambaout_dense.VMamba'``).

    Args:
        arch (str | dict): One of tiny (v2 "s1l8"), small, base, vanilla_tiny (v0), test (a
            tiny v2 variant for unit tests), or a dict with ``depths`` and ``dims`` and
            optionally ``d_state`` (default 1), ``ssm_ratio`` (1.0), ``mlp_ratio`` (4.0) and
            ``version`` ('v2' or 'v0', default 'v2'; see the module docstring).
            Defaults to 'tiny'.
        in_channels (int): Image channels. Defaults to 3.
        drop_path_rate (float): Stochastic depth, linear from 0 over all blocks.
            Defaults to 0.
        scan_backend (str, optional): Backend of :func:`mambaout_dense.ops.selective_scan`;
            None chooses per device. Defaults to None.
        out_indices, frozen_stages, norm_eval, with_cp, init_cfg: see
            :class:`~mambaout_dense.models.backbones.base.DenseBackbone`. A frozen stage
            includes the downsampling layer after it.

    Example:
        >>> model = VMamba('test').eval()
        >>> [tuple(o.shape) for o in model(torch.rand(1, 3, 64, 64))]
        [(1, 16, 16, 16), (1, 32, 8, 8), (1, 48, 4, 4), (1, 64, 2, 2)]
    """

    arch_zoo: Dict[str, Dict[str, Any]] = {
        'tiny': dict(depths=(2, 2, 8, 2), dims=(96, 192, 384, 768), d_state=1, ssm_ratio=1.0,
                     mlp_ratio=4.0, version='v2'),
        'small': dict(depths=(2, 2, 15, 2), dims=(96, 192, 384, 768), d_state=1,
                      ssm_ratio=2.0, mlp_ratio=4.0, version='v2'),
        'base': dict(depths=(2, 2, 15, 2), dims=(128, 256, 512, 1024), d_state=1,
                     ssm_ratio=2.0, mlp_ratio=4.0, version='v2'),
        'vanilla_tiny': dict(depths=(2, 2, 9, 2), dims=(96, 192, 384, 768), d_state=16,
                             ssm_ratio=2.0, mlp_ratio=0.0, version='v0'),
        'test': dict(depths=(1, 1, 1, 1), dims=(16, 32, 48, 64), d_state=1, ssm_ratio=1.0,
                     mlp_ratio=2.0, version='v2'),
    }
    arch_keys = ('depths', 'dims')
    arch_defaults: Dict[str, Any] = dict(d_state=1, ssm_ratio=1.0, mlp_ratio=4.0, version='v2')

    def __init__(self,
                 arch: Union[str, Dict[str, Any]] = 'tiny',
                 in_channels: int = 3,
                 drop_path_rate: float = 0.0,
                 scan_backend: Optional[str] = None,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(arch, out_indices, frozen_stages, norm_eval, with_cp, init_cfg)
        settings = {**self.arch_defaults, **self.arch_settings}
        if settings['version'] not in VERSIONS:
            raise ConfigError(f"Unknown VMamba version {settings['version']!r}; valid: "
                              f'{", ".join(VERSIONS)}')
        self.arch_settings = settings
        depths = tuple(settings['depths'])
        dims = tuple(settings['dims'])
        self.depths = depths
        self.version = settings['version']
        self.channels_first = self.version == 'v2'
        self.channels_last = not self.channels_first  # layout of the stage outputs
        self.drop_path_rate = drop_path_rate
        rates = drop_path_rates('VMamba', drop_path_rate, depths)
        check_int('VMamba', 'in_channels', in_channels, 1)
        check_scan_backend('VMamba', scan_backend)

        self.patch_embed = make_stem(in_channels, dims[0], self.version)
        self.layers = nn.ModuleList()
        start = 0
        for i in range(self.num_stages):
            blocks = nn.Sequential(*[
                VSSBlock(dims[i], drop_path=rates[start + j], d_state=settings['d_state'],
                         ssm_ratio=settings['ssm_ratio'], mlp_ratio=settings['mlp_ratio'],
                         version=self.version, scan_backend=scan_backend)
                for j in range(depths[i])
            ])
            start += depths[i]
            downsample = (make_downsample(dims[i], dims[i + 1], self.version)
                          if i < self.num_stages - 1 else nn.Identity())
            self.layers.append(VSSStage(blocks, downsample))
        self._init_outputs(dims, eps=LN_EPS)

    @classmethod
    def optional_arch_keys(cls) -> Tuple[str, ...]:
        return ('d_state', 'ssm_ratio', 'mlp_ratio', 'version')

    def _stem_modules(self) -> List[nn.Module]:
        return [self.patch_embed]

    def _stage_modules(self, i: int) -> List[nn.Module]:
        return [self.layers[i]]

    convert_checkpoint = staticmethod(convert_vmamba)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_embed(x)  # v2: (B, C, H/4, W/4); v0: (B, H/4, W/4, C)

    def _stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        if i > 0:
            x = self.layers[i - 1].downsample(x)  # the official layout keeps it in layer i-1
        return self._run_blocks(self.layers[i].blocks, x)

    def _param_location(self, name: str) -> Optional[Tuple]:
        parts = name.split('.')
        if parts[0] == 'patch_embed':
            return ('stem', )
        if parts[0] == 'layers' and parts[2] == 'blocks':
            return ('block', int(parts[1]), int(parts[3]))
        if parts[0] == 'layers' and parts[2] == 'downsample':
            return ('downsample', int(parts[1]) + 1)
        return None
