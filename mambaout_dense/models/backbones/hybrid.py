"""A hybrid backbone that picks the token mixer per stage: Gated CNN or SS2D.

Tests the hypothesis of Yu & Wang, "MambaOut: Do We Really Need Mamba for Vision?",
arXiv 2405.07992 (CVPR 2025): a state-space token mixer should only pay off where the token
sequence is long (L > 6D). In a four-stage hierarchy that is the high-resolution stages of
detection/segmentation inputs, so the default puts SS2D (Liu et al., "VMamba: Visual State Space
Model", arXiv 2401.10166) in stages 1-2 and MambaOut's Gated CNN blocks in stages 3-4.

Layout: channels-last (B, H, W, C) throughout, as MambaOut computes. The stem and the
downsampling layers are MambaOut's (:class:`~.mambaout.StemLayer`,
:class:`~.mambaout.DownsampleLayer`), a ``gated_cnn`` stage is a sequence of
:class:`~.mambaout.GatedCNNBlock`, and an ``ss2d`` stage is a sequence of VMamba v2
:class:`~.vmamba.VSSBlock` (LN2d -> SS2D -> residual, LN2d -> MLP -> residual), which compute
channels-first; the stage permutes to (B, C, H, W) on entry and back on exit.

No ImageNet-pretrained hybrid exists; :meth:`HybridBackbone.convert_checkpoint` accepts only
checkpoints in this backbone's own layout and explains that otherwise.
"""
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ...errors import CheckpointError, ConfigError
from ...ops.scan import check_scan_backend
from ...registry import MODELS
from .base import DenseBackbone, check_int, drop_path_rates
from .mambaout import (
    LN_EPS,
    DownsampleLayer,
    GatedCNNBlock,
    MambaOut,
    StemLayer,
    mambaout_param_location,
)
from .vmamba import VSSBlock

__all__ = ['HybridBackbone', 'HybridStage', 'MIXERS']

#: Token mixers a stage can use.
MIXERS = ('gated_cnn', 'ss2d')
_SS2D_KEYS = ('d_state', 'ssm_ratio', 'mlp_ratio')
_GATED_KEYS = ('expansion_ratio', 'kernel_size', 'conv_ratio')


class HybridStage(nn.Sequential):
    """The blocks of one stage, channels-last in and out.

    Args:
        blocks (Sequence[nn.Module]): The blocks.
        channels_first (bool): The blocks compute (B, C, H, W) (SS2D stages); the stage permutes
            around them. Defaults to False.
    """

    def __init__(self, blocks: Sequence[nn.Module], channels_first: bool = False) -> None:
        super().__init__(*blocks)
        self.channels_first = channels_first


@MODELS.register_module()
class HybridBackbone(DenseBackbone):
    """Per-stage Gated CNN / SS2D backbone (``type='mambaout_dense.HybridBackbone'``).

    The arch zoo is sized for the default mixers ``('ss2d', 'ss2d', 'gated_cnn', 'gated_cnn')``:
    MambaOut's widths, with two VSS blocks (VMamba-T's block: d_state 1, ssm_ratio 1, mlp_ratio 4)
    in place of the three Gated CNN blocks of stages 1-2. 'tiny' (22.74 M with output norms)
    keeps Mask R-CNN / UperNet within 0.4% of MambaOut-T's 43.13 M / 54.05 M parameters; 'femto'
    has 5.77 M backbone parameters (MambaOut-Femto: 5.82 M).

    Args:
        arch (str | dict): One of femto, tiny, test (a tiny variant for unit tests), or a dict
            with ``depths`` and ``dims`` and optionally the SS2D-block keys ``d_state`` (1),
            ``ssm_ratio`` (1.0), ``mlp_ratio`` (4.0) and the Gated-CNN keys ``expansion_ratio``
            (8/3), ``kernel_size`` (7), ``conv_ratio`` (1.0). Defaults to 'tiny'.
        mixers (Sequence[str]): Token mixer of each stage, each in :data:`MIXERS`.
            Defaults to ('ss2d', 'ss2d', 'gated_cnn', 'gated_cnn').
        in_channels (int): Image channels. Defaults to 3.
        drop_path_rate (float): Stochastic depth, linear from 0 over all blocks. Defaults to 0.
        scan_backend (str, optional): Backend of :func:`mambaout_dense.ops.selective_scan`;
            None chooses per device. Defaults to None.
        out_indices, frozen_stages, norm_eval, with_cp, init_cfg: see
            :class:`~mambaout_dense.models.backbones.base.DenseBackbone`.

    Example:
        >>> model = HybridBackbone('test').eval()
        >>> [tuple(o.shape) for o in model(torch.rand(1, 3, 64, 64))]
        [(1, 16, 16, 16), (1, 24, 8, 8), (1, 32, 4, 4), (1, 48, 2, 2)]
    """

    arch_zoo: Dict[str, Dict[str, Any]] = {
        'femto': dict(depths=(2, 2, 9, 3), dims=(48, 96, 192, 288)),
        'tiny': dict(depths=(2, 2, 9, 3), dims=(96, 192, 384, 576)),
        'test': dict(depths=(1, 1, 2, 1), dims=(16, 24, 32, 48), mlp_ratio=2.0),
    }
    arch_keys = ('depths', 'dims')
    arch_defaults: Dict[str, Any] = dict(d_state=1, ssm_ratio=1.0, mlp_ratio=4.0)
    # MambaOut's rule: its stem, downsampling layers and Gated CNN blocks are MambaOut's
    trunc_normal_layers = MambaOut.trunc_normal_layers

    def __init__(self,
                 arch: Union[str, Dict[str, Any]] = 'tiny',
                 mixers: Sequence[str] = ('ss2d', 'ss2d', 'gated_cnn', 'gated_cnn'),
                 in_channels: int = 3,
                 drop_path_rate: float = 0.0,
                 scan_backend: Optional[str] = None,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(arch, out_indices, frozen_stages, norm_eval, with_cp, init_cfg)
        self.mixers = self.parse_mixers(mixers, self.num_stages)
        settings = {**self.arch_defaults, **self.arch_settings}
        self.arch_settings = settings
        depths = tuple(settings['depths'])
        dims = tuple(settings['dims'])
        self.depths = depths
        self.drop_path_rate = drop_path_rate
        rates = drop_path_rates('HybridBackbone', drop_path_rate, depths)
        check_int('HybridBackbone', 'in_channels', in_channels, 1)
        if 'ss2d' in self.mixers:
            check_scan_backend('HybridBackbone', scan_backend)
        ss2d_cfg = {k: settings[k] for k in _SS2D_KEYS}
        gated_cfg = {k: settings[k] for k in _GATED_KEYS if k in settings}

        self.downsample_layers = nn.ModuleList([StemLayer(in_channels, dims[0])] + [
            DownsampleLayer(dims[i - 1], dims[i]) for i in range(1, self.num_stages)
        ])
        self.stages = nn.ModuleList()
        start = 0
        for i, mixer in enumerate(self.mixers):
            stage_rates = rates[start:start + depths[i]]
            start += depths[i]
            if mixer == 'ss2d':
                blocks = [VSSBlock(dims[i], drop_path=r, version='v2', scan_backend=scan_backend,
                                   **ss2d_cfg) for r in stage_rates]
            else:
                blocks = [GatedCNNBlock(dims[i], drop_path=r, **gated_cfg) for r in stage_rates]
            self.stages.append(HybridStage(blocks, channels_first=mixer == 'ss2d'))
        self._init_outputs(dims, eps=LN_EPS)

    @staticmethod
    def parse_mixers(mixers: Sequence[str], num_stages: int = 4) -> Tuple[str, ...]:
        """Validate the per-stage mixer names.

        Args:
            mixers (Sequence[str]): One name per stage.
            num_stages (int): Number of stages. Defaults to 4.

        Returns:
            tuple[str, ...]: The names.

        Raises:
            ConfigError: Wrong count or an unknown name (the message lists the valid ones).
        """
        if not isinstance(mixers, (list, tuple)) or len(mixers) != num_stages:
            raise ConfigError(f'mixers needs one name per stage ({num_stages}), got {mixers!r}')
        unknown = [m for m in mixers if m not in MIXERS]
        if unknown:
            raise ConfigError(f'Unknown token mixer(s) {unknown}; valid: {", ".join(MIXERS)}')
        return tuple(mixers)

    @classmethod
    def optional_arch_keys(cls) -> Tuple[str, ...]:
        return _SS2D_KEYS + _GATED_KEYS

    def _stem_modules(self) -> List[nn.Module]:
        return [self.downsample_layers[0]]

    def _stage_modules(self, i: int) -> List[nn.Module]:
        return ([self.downsample_layers[i]] if i > 0 else []) + [self.stages[i]]

    @staticmethod
    def convert_checkpoint(
            state_dict: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], List[str]]:
        """Accept a checkpoint in this backbone's own layout (e.g. a trained detector's).

        No ImageNet-pretrained hybrid checkpoint exists, so there is nothing to convert from.

        Args:
            state_dict (dict): Raw tensors (prefixes such as ``backbone.`` already stripped).

        Returns:
            tuple[OrderedDict, list[str]]: The tensors, and the dropped keys (``head.*``,
            ``norm.*`` of a classifier).

        Raises:
            CheckpointError: The keys are not in the hybrid layout.
        """
        keys = list(state_dict)
        if not any(k.startswith('downsample_layers.0.') for k in keys) or not any(
                k.startswith('stages.') for k in keys):
            raise CheckpointError(
                'HybridBackbone loads only checkpoints in its own layout (downsample_layers.*, '
                f'stages.*, norm{{i}}.*); got keys {keys[:6]} ... No official (ImageNet) hybrid '
                'checkpoint exists: train from scratch (init_cfg=None) or pass a checkpoint '
                "saved from this backbone with init_cfg=dict(type='Pretrained', ...,"
                " prefix='backbone.').")
        ignored = [k for k in keys if k.startswith(('head.', 'norm.'))]
        return OrderedDict((k, v) for k, v in state_dict.items() if k not in ignored), ignored

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample_layers[0](x)  # (B, 3, H, W) -> (B, H/4, W/4, C)

    def _stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        if i > 0:
            x = self.downsample_layers[i](x)  # (B, H, W, C) -> (B, H/2, W/2, C')
        stage = self.stages[i]
        if stage.channels_first:
            x = x.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W) for the VSS blocks
            x = self._run_blocks(stage, x)
            return x.permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C)
        return self._run_blocks(stage, x)

    def _param_location(self, name: str) -> Optional[Tuple]:
        return mambaout_param_location(name)
