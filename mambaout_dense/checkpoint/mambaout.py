"""Converters for MambaOut weights (Yu & Wang, "MambaOut: Do We Really Need Mamba for Vision?",
arXiv 2405.07992) into the layout of :class:`mambaout_dense.models.MambaOut`.

Our backbone keeps the official module names (``downsample_layers.{0..3}``, ``stages.{s}.{b}``),
so official release files need only their classifier (``head.*``) and final ``norm.*`` dropped.
timm's layout (``stem.*``, ``stages.{i}.downsample.*``, ``stages.{i}.blocks.{j}.*``, ``head.*``)
is renamed. Both are pure functions; a dict already in our layout comes back unchanged.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Tuple

import torch

from ..errors import CheckpointError

__all__ = ['detect_mambaout_layout', 'convert_mambaout', 'timm_to_official']

StateDict = Dict[str, torch.Tensor]

_OURS_ONLY = re.compile(r'^norm\d\.')


def detect_mambaout_layout(state_dict: StateDict) -> str:
    """Return ``'timm'``, ``'official'`` or ``'ours'`` for a MambaOut state dict.

    Raises:
        CheckpointError: The keys match none of them.
    """
    keys = list(state_dict)
    if any(k.startswith('stem.') for k in keys) and any('.blocks.' in k for k in keys):
        return 'timm'
    if any(k.startswith('downsample_layers.0.') for k in keys):
        if any(_OURS_ONLY.match(k) for k in keys):
            return 'ours'
        return 'official'
    raise CheckpointError('Not a MambaOut checkpoint: expected official keys (downsample_layers.*, '
                     f'stages.*) or timm keys (stem.*, stages.*.blocks.*); got {keys[:6]} ...')


def timm_to_official(state_dict: StateDict) -> 'OrderedDict[str, torch.Tensor]':
    """Rename timm MambaOut keys to the official layout (the head keeps timm's names).

    Args:
        state_dict (dict): timm ``mambaout_*`` state dict.

    Returns:
        OrderedDict: Same tensors, official names for stem, downsampling layers and blocks.
    """
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith('stem.'):
            key = 'downsample_layers.0.' + key[len('stem.'):]
        elif m := re.match(r'^stages\.(\d+)\.downsample\.(.*)$', key):
            key = f'downsample_layers.{m.group(1)}.{m.group(2)}'
        elif m := re.match(r'^stages\.(\d+)\.blocks\.(\d+)\.(.*)$', key):
            key = f'stages.{m.group(1)}.{m.group(2)}.{m.group(3)}'
        out[key] = value
    return out


def convert_mambaout(state_dict: StateDict) -> Tuple[StateDict, List[str]]:
    """Convert an official or timm MambaOut state dict to our backbone layout.

    Args:
        state_dict (dict): Raw tensors (``module.``/``backbone.`` prefixes already stripped).

    Returns:
        tuple[OrderedDict, list[str]]: Backbone tensors, and the checkpoint keys dropped
        (classifier head and final norm).
    """
    layout = detect_mambaout_layout(state_dict)
    if layout == 'ours':
        return OrderedDict(state_dict), []
    if layout == 'timm':
        state_dict = timm_to_official(state_dict)
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    ignored: List[str] = []
    for key, value in state_dict.items():
        if key.startswith(('head.', 'norm.')):
            ignored.append(key)
        else:
            out[key] = value
    return out, ignored
