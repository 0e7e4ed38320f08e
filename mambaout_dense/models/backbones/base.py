"""The dense-prediction backbone contract shared by every backbone of this package.

A backbone here is a four-stage hierarchy (strides 4, 8, 16, 32) that returns a tuple of NCHW
feature maps for ``out_indices``, each through its own output LayerNorm (``norm{i}``), as the
dense-prediction recipes of Swin, ConvNeXt, MambaOut (author's note, official issue #251) and
VMamba do. It follows mmpretrain's ConvNeXt backbone: ``arch`` is a name or a dict,
``frozen_stages``/``norm_eval`` survive ``train()``, ``with_cp`` trades compute for memory, and
``init_cfg=dict(type='Pretrained', checkpoint=...)`` loads strictly through a layout converter.
"""
import copy
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint as grad_checkpoint

from ...checkpoint.loading import load_pretrained

__all__ = ['DenseBackbone', 'ShapeSpec']

StateDict = Dict[str, torch.Tensor]


class ShapeSpec(dict):
    """Channels and stride of one output (detectron2's ``output_shape()`` contract)."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__(channels=channels, stride=stride)

    channels = property(lambda self: self['channels'])
    stride = property(lambda self: self['stride'])


class DenseBackbone(BaseModule):
    """Base class: arch parsing, outputs, freezing, gradient checkpointing, strict pretrained.

    Subclasses define ``arch_zoo``, ``arch_keys``, build their modules, call
    :meth:`_init_outputs`, and implement :meth:`_stem_modules`, :meth:`_stage_modules`,
    :meth:`convert_checkpoint` and ``forward``.

    Args:
        arch (str | dict): A name in ``arch_zoo`` or a dict with ``arch_keys``.
        out_indices (Sequence[int]): Stages to return, in 0..3. Defaults to (0, 1, 2, 3).
        frozen_stages (int): -1 freezes nothing, 0 the stem, k >= 1 the stem and stages
            0..k-1 with their downsampling layers and output norms. Defaults to -1.
        norm_eval (bool): Keep BatchNorm layers in eval mode in training. Defaults to False.
        with_cp (bool): Gradient checkpointing per block. Defaults to False.
        init_cfg (dict | list[dict], optional): mmengine init config; ``type='Pretrained'`` is
            handled strictly by :meth:`init_weights`. Defaults to None.
    """

    arch_zoo: Dict[str, Dict[str, Any]] = {}
    arch_keys: Tuple[str, ...] = ('depths', 'dims')
    num_stages = 4
    #: Regexes of parameters a classification checkpoint does not have.
    new_param_patterns: Tuple[str, ...] = (r'^norm\d\.', )

    def __init__(self,
                 arch: Union[str, Dict[str, Any]],
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self.parse_arch(arch)
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        out_indices = tuple(int(i) + self.num_stages if int(i) < 0 else int(i)
                            for i in out_indices)
        if not out_indices or any(i not in range(self.num_stages) for i in out_indices):
            raise ValueError(f'out_indices must be a non-empty subset of 0..{self.num_stages - 1}'
                             f', got {out_indices}')
        if len(set(out_indices)) != len(out_indices):
            raise ValueError(f'out_indices has duplicates: {out_indices}')
        if not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(f'frozen_stages must be in -1..{self.num_stages}, got {frozen_stages}')
        self.out_indices = tuple(sorted(out_indices))
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp

    # ------------------------------------------------------------------ arch
    @classmethod
    def parse_arch(cls, arch: Union[str, Dict[str, Any]]) -> Dict[str, Any]:
        """Resolve ``arch`` to a settings dict (a copy), validating names and keys.

        Args:
            arch (str | dict): Variant name or explicit settings.

        Returns:
            dict: Settings with at least ``arch_keys``.
        """
        if isinstance(arch, str):
            if arch not in cls.arch_zoo:
                raise ValueError(f'Unknown {cls.__name__} arch {arch!r}; valid names: '
                                 f'{", ".join(sorted(cls.arch_zoo))}')
            return copy.deepcopy(cls.arch_zoo[arch])
        if isinstance(arch, dict):
            missing = [k for k in cls.arch_keys if k not in arch]
            if missing:
                raise ValueError(f'Custom {cls.__name__} arch misses keys {missing}; '
                                 f'required: {list(cls.arch_keys)}')
            unknown = [k for k in arch if k not in cls.arch_keys + cls.optional_arch_keys()]
            if unknown:
                raise ValueError(f'Custom {cls.__name__} arch has unknown keys {unknown}; '
                                 f'allowed: {list(cls.arch_keys + cls.optional_arch_keys())}')
            settings = copy.deepcopy(arch)
            for key in ('depths', 'dims'):
                if key in settings and len(settings[key]) != cls.num_stages:
                    raise ValueError(f'arch[{key!r}] needs {cls.num_stages} entries, '
                                     f'got {settings[key]}')
            return settings
        raise TypeError(f'arch must be a str or dict, got {type(arch).__name__}')

    @classmethod
    def optional_arch_keys(cls) -> Tuple[str, ...]:
        """Keys a custom arch dict may add to ``arch_keys`` (subclasses extend)."""
        return ()

    # --------------------------------------------------------------- outputs
    def _init_outputs(self, dims: Sequence[int], strides: Sequence[int] = (4, 8, 16, 32),
                      eps: float = 1e-6) -> None:
        """Create output norms for the returned stages and the public output metadata."""
        self.dims = tuple(dims)
        self.strides = tuple(strides)
        self.out_channels = [self.dims[i] for i in self.out_indices]
        self.out_strides = [self.strides[i] for i in self.out_indices]
        for i in self.out_indices:
            self.add_module(f'norm{i}', nn.LayerNorm(self.dims[i], eps=eps))

    def output_shape(self) -> Dict[str, ShapeSpec]:
        """Channels and stride of each output, keyed ``'stage{i}'``."""
        return {f'stage{i}': ShapeSpec(self.dims[i], self.strides[i]) for i in self.out_indices}

    def _output(self, i: int, x: torch.Tensor, channels_last: bool) -> torch.Tensor:
        """Apply output norm ``i`` and return (B, C, H, W)."""
        norm = getattr(self, f'norm{i}')
        if channels_last:
            return norm(x).permute(0, 3, 1, 2).contiguous()  # (B, H, W, C) -> (B, C, H, W)
        return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()

    def _run_blocks(self, blocks: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Run a stage's blocks, checkpointing each when ``with_cp`` and gradients are needed."""
        for block in blocks:
            if self.with_cp and self.training and x.requires_grad:
                x = grad_checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x

    # -------------------------------------------------------------- freezing
    def _stem_modules(self) -> List[nn.Module]:
        raise NotImplementedError

    def _stage_modules(self, i: int) -> List[nn.Module]:
        """Modules of stage i (its blocks and the downsampling that belongs to it)."""
        raise NotImplementedError

    def _frozen_modules(self) -> Iterator[nn.Module]:
        if self.frozen_stages >= 0:
            yield from self._stem_modules()
        for i in range(self.frozen_stages):
            yield from self._stage_modules(i)
            if hasattr(self, f'norm{i}'):
                yield getattr(self, f'norm{i}')

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'DenseBackbone':
        """Set train mode, keeping frozen stages (and BN layers under ``norm_eval``) in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    # ------------------------------------------------------------ pretrained
    @staticmethod
    def convert_checkpoint(state_dict: StateDict) -> Tuple[StateDict, List[str]]:
        """Map a raw checkpoint to this backbone's layout; return it and the ignored keys."""
        raise NotImplementedError

    def init_weights(self) -> None:
        """Initialise; a ``Pretrained`` init_cfg loads strictly (see ``load_pretrained``)."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            unknown = set(cfg) - {'type', 'checkpoint', 'prefix', 'map_location'}
            if unknown:
                raise ValueError(f'Unknown Pretrained init_cfg keys {sorted(unknown)}')
            if 'checkpoint' not in cfg:
                raise ValueError("init_cfg type='Pretrained' needs a 'checkpoint'")
            self._init_own_weights()
            load_pretrained(self, cfg['checkpoint'], self.convert_checkpoint,
                            allow_missing=self.new_param_patterns, prefix=cfg.get('prefix'))
            self._is_init = True
            self._freeze_stages()
            return
        super().init_weights()
        if cfg is None:
            self._init_own_weights()
        self._freeze_stages()

    def _init_own_weights(self) -> None:
        """Default initialisation (truncated normal for linear layers, as the officials do)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
