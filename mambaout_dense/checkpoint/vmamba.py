"""Converter for VMamba weights (Liu et al., "VMamba: Visual State Space Model",
arXiv 2401.10166) into the layout of :class:`mambaout_dense.models.VMamba`.

Our backbone keeps the official ``VSSM`` module names (``patch_embed.*``,
``layers.{i}.blocks.{j}.{norm,op,norm2,mlp}.*``, ``layers.{i}.downsample.*``), so a classification
release file needs only its classifier (``classifier.*``) dropped. Also handled:

- the names of the first (Vanilla VMamba) training code, which the official ``VSSM`` renames
  when loading: ``patch_embed.proj``/``patch_embed.norm`` -> ``patch_embed.0``/``.2``,
  ``blocks.{j}.ln_1`` -> ``blocks.{j}.norm``, ``blocks.{j}.self_attention`` -> ``blocks.{j}.op``,
  and a top-level ``norm.*``/``head.*`` classifier (dropped);
- 1x1 projections stored as conv weights (out, in, 1, 1), reshaped to (out, in);
- the output norms ``outnorm{i}`` of the official ``Backbone_VSSM`` (a dense-prediction
  checkpoint loaded with ``prefix='backbone.'``) -> ``norm{i}``.

The function is pure; a dict already in our layout comes back unchanged.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Tuple

import torch

from ..errors import CheckpointError

__all__ = ['detect_vmamba_layout', 'convert_vmamba']

StateDict = Dict[str, torch.Tensor]

_OURS_ONLY = re.compile(r'^norm\d\.')
_BLOCK = re.compile(r'^layers\.\d+\.blocks\.\d+\.')
_LINEAR_WEIGHTS = re.compile(r'\.(op\.in_proj|op\.out_proj|mlp\.fc1|mlp\.fc2)\.weight$')
_RENAMES = (
    (re.compile(r'^patch_embed\.proj\.'), 'patch_embed.0.'),
    (re.compile(r'^patch_embed\.norm\.'), 'patch_embed.2.'),
    (re.compile(r'^(layers\.\d+\.blocks\.\d+)\.ln_1\.'), r'\1.norm.'),
    (re.compile(r'^(layers\.\d+\.blocks\.\d+)\.self_attention\.'), r'\1.op.'),
    (re.compile(r'^outnorm(\d)\.'), r'norm\1.'),
)


def detect_vmamba_layout(state_dict: StateDict) -> str:
    """Return ``'ours'`` or ``'official'`` for a VMamba state dict.

    Raises:
        CheckpointError: The keys are not those of a VMamba model.
    """
    keys = list(state_dict)
    if not (any(k.startswith('patch_embed.') for k in keys)
            and any(_BLOCK.match(k) for k in keys)):
        raise CheckpointError('Not a VMamba checkpoint: expected keys patch_embed.* and '
                         f'layers.{{i}}.blocks.{{j}}.*; got {keys[:6]} ...')
    if any(_OURS_ONLY.match(k) for k in keys) and not any(
            k.startswith(('classifier.', 'head.', 'outnorm')) for k in keys):
        return 'ours'
    return 'official'


def convert_vmamba(state_dict: StateDict) -> Tuple[StateDict, List[str]]:
    """Convert an official VMamba state dict to our backbone layout.

    Args:
        state_dict (dict): Raw tensors (a ``model`` wrapper and ``module.`` prefix already
            removed by :func:`mambaout_dense.checkpoint.io.extract_state_dict`).

    Returns:
        tuple[OrderedDict, list[str]]: Backbone tensors, and the checkpoint keys dropped
        (the classifier).

    Raises:
        CheckpointError: It is not a VMamba checkpoint.
    """
    if detect_vmamba_layout(state_dict) == 'ours':
        return OrderedDict(state_dict), []
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    ignored: List[str] = []
    for key, value in state_dict.items():
        if key.startswith(('classifier.', 'head.', 'norm.')):
            ignored.append(key)
            continue
        for pattern, repl in _RENAMES:
            key = pattern.sub(repl, key)
        if _LINEAR_WEIGHTS.search(key) and value.dim() == 4 and value.shape[2:] == (1, 1):
            value = value.reshape(value.shape[0], value.shape[1])  # (out, in, 1, 1) -> (out, in)
        out[key] = value
    return out, ignored
