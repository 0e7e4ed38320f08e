"""The dense-prediction backbone contract shared by every backbone of this package.

A backbone here is a four-stage hierarchy (strides 4, 8, 16, 32) that returns a tuple of NCHW
feature maps for ``out_indices``, each through its own output LayerNorm (``norm{i}``), as the
dense-prediction recipes of Swin, ConvNeXt, MambaOut (author's note, official issue #251) and
VMamba do. It follows mmpretrain's ConvNeXt backbone: ``arch`` is a name or a dict,
``frozen_stages``/``norm_eval`` survive ``train()``, ``with_cp`` trades compute for memory,
``get_layer_depth`` serves layer-wise learning-rate decay, and
``init_cfg=dict(type='Pretrained', checkpoint=...)`` loads strictly through a layout converter.
Like detectron2's backbones it states its outputs (``output_shape()``: channels and stride).

One stage loop (:meth:`DenseBackbone.iter_stages`) serves ``forward`` and the analysis tools
(:meth:`DenseBackbone.forward_stages`); a subclass provides the stem, one stage step, and the
layout its stages compute in.
"""
import copy
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint as grad_checkpoint

from ...checkpoint.loading import load_pretrained
from ...errors import ConfigError

__all__ = ['DenseBackbone', 'ShapeSpec', 'drop_path_rates', 'check_int', 'check_bool', 'is_int']

StateDict = Dict[str, torch.Tensor]


def is_int(value: Any) -> bool:
    """True for an integer that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(owner: str, key: str, value: Any, low: Optional[int] = None,
              high: Optional[int] = None) -> int:
    """Return ``value`` when it is an integer in ``low..high`` (bounds included).

    Raises:
        ConfigError: Naming ``owner`` and ``key``, the valid range and the value.
    """
    if not is_int(value) or (low is not None and value < low) or (high is not None
                                                                   and value > high):
        span = ('' if low is None and high is None else
                f' in {low if low is not None else "-inf"}..{high if high is not None else "inf"}')
        raise ConfigError(f'{owner}: {key} must be an integer{span}, got {value!r}')
    return value


def check_bool(owner: str, key: str, value: Any) -> bool:
    """Return ``value`` when it is a bool; else raise :class:`ConfigError` naming ``key``."""
    if not isinstance(value, bool):
        raise ConfigError(f'{owner}: {key} must be True or False, got {value!r}')
    return value


def drop_path_rates(owner: str, drop_path_rate: Any, depths: Sequence[int]) -> List[float]:
    """Stochastic-depth rate of every block: linear from 0 to ``drop_path_rate``.

    Args:
        owner (str): Named in the error message (the backbone class).
        drop_path_rate (float): Rate of the last block, in [0, 1).
        depths (Sequence[int]): Blocks per stage.

    Returns:
        list[float]: One rate per block, in order.

    Raises:
        ConfigError: ``drop_path_rate`` is not a number in [0, 1).
    """
    if isinstance(drop_path_rate, bool) or not isinstance(drop_path_rate, (int, float)) \
            or not 0 <= drop_path_rate < 1:
        raise ConfigError(f'{owner}: drop_path_rate must be a number in [0, 1), got '
                          f'{drop_path_rate!r}')
    return torch.linspace(0, drop_path_rate, sum(depths)).tolist()


class ShapeSpec(dict):
    """Channels and stride of one output (detectron2's ``output_shape()`` contract)."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__(channels=channels, stride=stride)

    channels = property(lambda self: self['channels'])
    stride = property(lambda self: self['stride'])


class DenseBackbone(BaseModule):
    """Base class: arch parsing, outputs, freezing, gradient checkpointing, strict pretrained.

    Subclasses define ``arch_zoo``, ``arch_keys``, build their modules, call
    :meth:`_init_outputs`, set ``channels_last`` (the layout of their stage outputs), and
    implement :meth:`_stem`, :meth:`_stage`, :meth:`_stem_modules`, :meth:`_stage_modules`,
    :meth:`_param_location` and :meth:`convert_checkpoint`.

    Args:
        arch (str | dict): A name in ``arch_zoo`` or a dict with ``arch_keys``.
        out_indices (Sequence[int]): Stages to return, in 0..3. Defaults to (0, 1, 2, 3).
        frozen_stages (int): -1 freezes nothing, 0 the stem, k >= 1 the stem and stages
            0..k-1 with their downsampling layers and output norms. Defaults to -1.
        norm_eval (bool): Keep BatchNorm layers in eval mode in training. Defaults to False.
        with_cp (bool): Gradient checkpointing per block. Defaults to False.
        init_cfg (dict | list[dict], optional): mmengine init config; ``type='Pretrained'`` is
            handled strictly by :meth:`init_weights`. Defaults to None.

    Raises:
        ConfigError: An argument of the wrong kind or out of range (the message names it).
    """

    arch_zoo: Dict[str, Dict[str, Any]] = {}
    arch_keys: Tuple[str, ...] = ('depths', 'dims')
    num_stages = 4
    #: Regexes of parameters a classification checkpoint does not have.
    new_param_patterns: Tuple[str, ...] = (r'^norm\d\.', )
    #: Stage outputs are (B, H, W, C) when True, (B, C, H, W) when False.
    channels_last: bool = True
    #: Layers that :meth:`_init_own_weights` gives truncated-normal (std 0.02) weights and zero
    #: biases (the others keep PyTorch's default); each family sets its official rule.
    trunc_normal_layers: Tuple[type, ...] = (nn.Linear, )

    def __init__(self,
                 arch: Union[str, Dict[str, Any]],
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        name = type(self).__name__
        self.arch_settings = self.parse_arch(arch)
        if isinstance(out_indices, int) and not isinstance(out_indices, bool):
            out_indices = (out_indices, )
        if not isinstance(out_indices, (list, tuple)) or not all(
                is_int(i) for i in out_indices):
            raise ConfigError(f'{name}: out_indices must be a stage index or a list of them '
                              f'(0..{self.num_stages - 1}), got {out_indices!r}')
        out_indices = tuple(i + self.num_stages if i < 0 else i for i in out_indices)
        if not out_indices or any(i not in range(self.num_stages) for i in out_indices):
            raise ConfigError(f'{name}: out_indices must be a non-empty subset of '
                              f'0..{self.num_stages - 1}, got {out_indices}')
        if len(set(out_indices)) != len(out_indices):
            raise ConfigError(f'{name}: out_indices has duplicates: {out_indices}')
        check_int(name, 'frozen_stages', frozen_stages, -1, self.num_stages)
        check_bool(name, 'norm_eval', norm_eval)
        check_bool(name, 'with_cp', with_cp)
        if init_cfg is not None and not isinstance(init_cfg, (dict, list)):
            raise ConfigError(f'{name}: init_cfg must be a dict, a list of dicts or None, got '
                              f'{init_cfg!r}')
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

        Raises:
            ConfigError: An unknown name, a dict with missing or unknown keys, or ``depths`` /
                ``dims`` that are not ``num_stages`` positive integers.
        """
        name = cls.__name__
        if isinstance(arch, str):
            if arch not in cls.arch_zoo:
                raise ConfigError(f'Unknown {name} arch {arch!r}; valid names: '
                                  f'{", ".join(sorted(cls.arch_zoo))}')
            return copy.deepcopy(cls.arch_zoo[arch])
        if not isinstance(arch, dict):
            raise ConfigError(f'{name}: arch must be a name ({", ".join(sorted(cls.arch_zoo))}) '
                              f'or a dict with {list(cls.arch_keys)}, got {arch!r}')
        missing = [k for k in cls.arch_keys if k not in arch]
        if missing:
            raise ConfigError(f'Custom {name} arch misses keys {missing}; '
                              f'required: {list(cls.arch_keys)}')
        allowed = cls.arch_keys + cls.optional_arch_keys()
        unknown = [k for k in arch if k not in allowed]
        if unknown:
            raise ConfigError(f'Custom {name} arch has unknown keys {unknown}; '
                              f'allowed: {list(allowed)}')
        settings = copy.deepcopy(dict(arch))
        for key in ('depths', 'dims'):
            value = settings.get(key)
            if key in settings and (not isinstance(value, (list, tuple))
                                    or len(value) != cls.num_stages
                                    or not all(is_int(v) and v > 0 for v in value)):
                raise ConfigError(f'{name}: arch[{key!r}] needs {cls.num_stages} positive '
                                  f'integers, got {value!r}')
        return settings

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

    def _output(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Apply output norm ``i`` to a stage output and return (B, C, H, W)."""
        norm = getattr(self, f'norm{i}')
        if self.channels_last:
            return norm(x).permute(0, 3, 1, 2).contiguous()  # (B, H, W, C) -> (B, C, H, W)
        return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()

    # ----------------------------------------------------------- stage loop
    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) -> the input of stage 0, in the stages' layout."""
        raise NotImplementedError

    def _stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Stage ``i`` on the previous stage's output (its downsampling included)."""
        raise NotImplementedError

    def iter_stages(self, x: torch.Tensor,
                    last: Optional[int] = None) -> Iterator[Tuple[int, torch.Tensor]]:
        """The one stage loop: yield ``(i, stage output)`` for stages 0..``last``.

        Args:
            x (Tensor): Images (B, C, H, W).
            last (int, optional): Last stage to run. Defaults to the last stage.

        Yields:
            tuple[int, Tensor]: Stage index and its output before the output norm, in the
            stages' layout (see ``channels_last``).
        """
        last = self.num_stages - 1 if last is None else last
        x = self._stem(x)
        for i in range(last + 1):
            x = self._stage(i, x)
            yield i, x

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Args: x (Tensor): (B, C, H, W) images. Returns: tuple of (B, C_i, H_i, W_i)."""
        return tuple(self._output(i, feat) for i, feat in self.iter_stages(x, max(self.out_indices))
                     if i in self.out_indices)

    def forward_stages(self, x: torch.Tensor) -> List[torch.Tensor]:
        """All four stage outputs before the output norms, as (B, C, H, W) views."""
        if self.channels_last:  # (B, H, W, C) -> (B, C, H, W), a view
            return [feat.permute(0, 3, 1, 2) for _, feat in self.iter_stages(x)]
        return [feat for _, feat in self.iter_stages(x)]

    def _run_blocks(self, blocks: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Run a stage's blocks, checkpointing each when ``with_cp`` and gradients are needed."""
        for block in blocks:
            if self.with_cp and self.training and x.requires_grad:
                x = grad_checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x

    # ----------------------------------------------------- layer-wise decay
    def _param_location(self, name: str) -> Optional[Tuple]:
        """Where a parameter lives: ``('stem',)``, ``('block', stage, block)``,
        ``('downsample', stage)`` (the layer that feeds ``stage``), or None (output norms)."""
        raise NotImplementedError

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """The layer-wise depth of a parameter, for layer-wise learning-rate decay.

        mmpretrain's convention (``LearningRateDecayOptimWrapperConstructor``): the stem is depth
        0, every block has a depth of its own (1..total blocks, in order), a downsampling layer
        shares the depth of the first block it feeds, and everything after (output norms, and
        parameters outside this backbone, e.g. ``neck.*`` with ``prefix='backbone.'``) is the
        last depth ``num_layers - 1``.

        Args:
            param_name (str): Parameter name, e.g. ``backbone.stages.2.4.fc1.weight``.
            prefix (str): Prefix of this backbone's parameters in ``param_name``.
                Defaults to ''.

        Returns:
            tuple[int, int]: (depth, num_layers) with ``num_layers = sum(depths) + 2``.
        """
        num_layers = sum(self.depths) + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        where = self._param_location(param_name[len(prefix):])
        if where is None:
            return num_layers - 1, num_layers
        if where[0] == 'stem':
            return 0, num_layers
        stage = where[1]
        block = where[2] if where[0] == 'block' else 0
        return 1 + sum(self.depths[:stage]) + block, num_layers

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
                raise ConfigError(f'Unknown Pretrained init_cfg keys {sorted(unknown)}; '
                                  "allowed: checkpoint, prefix, map_location")
            if not isinstance(cfg.get('checkpoint'), str):
                raise ConfigError("init_cfg type='Pretrained' needs a 'checkpoint' (a path or "
                                  f"URL), got {cfg.get('checkpoint')!r}")
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
        """Default initialisation, as the official release of the family does: truncated normal
        (std 0.02) weights and zero biases for the layer types in ``trunc_normal_layers``."""
        for module in self.modules():
            if isinstance(module, self.trunc_normal_layers):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
