"""Strict loading of pretrained classification weights into a dense backbone.

``init_cfg=dict(type='Pretrained', checkpoint=...)`` on our backbones ends up in
:func:`load_pretrained` instead of mmengine's ``PretrainedInit`` (which loads with
``strict=False`` and only logs mismatches). Here a wrong path raises, every key is accounted for,
and anything outside an explicit allow-list of newly added modules raises with the key names.
"""
import os
import os.path as osp
import re
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch
from mmengine.logging import print_log
from torch import nn

from .io import CheckpointError, extract_state_dict, safe_load

__all__ = ['load_pretrained', 'resolve_checkpoint', 'compare_state_dicts', 'LoadReport']

StateDict = Dict[str, torch.Tensor]


class LoadReport:
    """What :func:`load_pretrained` did.

    Args:
        loaded (list[str]): Keys copied from the checkpoint.
        new (list[str]): Model keys absent from the checkpoint but allowed (newly added modules).
        ignored (list[str]): Checkpoint keys dropped by the converter (e.g. the classifier).
    """

    def __init__(self, loaded: List[str], new: List[str], ignored: List[str]) -> None:
        self.loaded, self.new, self.ignored = loaded, new, ignored

    def __repr__(self) -> str:
        return (f'LoadReport(loaded={len(self.loaded)}, new={len(self.new)}, '
                f'ignored={len(self.ignored)})')


def resolve_checkpoint(checkpoint: str) -> str:
    """Return a local file for a path or an http(s) URL (downloaded once into torch's hub cache).

    Args:
        checkpoint (str): Local path (``~`` expanded) or URL.

    Returns:
        str: A local file path.

    Raises:
        CheckpointError: The file is missing or the download failed.
    """
    if re.match(r'^https?://', checkpoint):
        cache_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
        target = osp.join(cache_dir, osp.basename(checkpoint.split('?')[0]))
        if not osp.isfile(target):
            os.makedirs(cache_dir, exist_ok=True)
            try:
                torch.hub.download_url_to_file(checkpoint, target, progress=False)
            except Exception as err:  # network errors come in many types
                raise CheckpointError(
                    f'Could not download pretrained weights from {checkpoint} '
                    f'({type(err).__name__}: {err}). Download the file by hand and set '
                    f"init_cfg=dict(type='Pretrained', checkpoint='/path/to/file.pth'), or "
                    'place it at ' + target) from None
        return target
    path = osp.expanduser(checkpoint)
    if not osp.isfile(path):
        raise CheckpointError(f'Pretrained checkpoint not found: {path!r}')
    return path


def compare_state_dicts(
        model_state: StateDict, ckpt_state: StateDict,
        allow_missing: Iterable[str] = ()) -> Tuple[List[str], List[str], List[str]]:
    """Compare a converted checkpoint with a model's state dict.

    Args:
        model_state (dict): ``model.state_dict()``.
        ckpt_state (dict): Converted checkpoint tensors.
        allow_missing (Iterable[str]): Regexes of model keys that may be absent from the
            checkpoint (modules added for dense prediction).

    Returns:
        tuple[list[str], list[str], list[str]]: (missing keys not allowed, allowed missing
        keys, unexpected keys).

    Raises:
        CheckpointError: On the first shape mismatch, naming the key and both shapes.
    """
    patterns = [re.compile(p) for p in allow_missing]
    for key, value in ckpt_state.items():
        if key in model_state and tuple(model_state[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f'Shape mismatch for {key!r}: checkpoint {tuple(value.shape)} vs model '
                f'{tuple(model_state[key].shape)}. The checkpoint is for another architecture '
                'or size.')
    missing, new = [], []
    for key in model_state:
        if key in ckpt_state:
            continue
        (new if any(p.search(key) for p in patterns) else missing).append(key)
    unexpected = [k for k in ckpt_state if k not in model_state]
    return missing, new, unexpected


def _preview(keys: List[str], n: int = 8) -> str:
    more = f' ... (+{len(keys) - n} more)' if len(keys) > n else ''
    return ', '.join(keys[:n]) + more


def load_pretrained(model: nn.Module,
                    checkpoint: str,
                    converter: Callable[[StateDict], Tuple[StateDict, List[str]]],
                    allow_missing: Iterable[str] = (),
                    prefix: Optional[str] = None) -> LoadReport:
    """Load pretrained weights strictly, through a layout converter.

    Args:
        model (nn.Module): The backbone.
        checkpoint (str): Path or URL.
        converter (Callable): Pure function mapping the raw tensor dict to
            ``(state_dict_in_model_layout, ignored_keys)``.
        allow_missing (Iterable[str]): Regexes of model keys that may stay at their
            initialisation (e.g. output norms). Defaults to ().
        prefix (str, optional): Take only keys under this prefix (e.g. ``'backbone.'`` of a
            detector checkpoint), stripping it. Defaults to None.

    Returns:
        LoadReport: Counts and names of loaded, new and ignored keys.

    Raises:
        CheckpointError: Missing file, unsafe pickle, unexpected or missing keys, or a shape
            mismatch.
    """
    path = resolve_checkpoint(checkpoint)
    raw = extract_state_dict(safe_load(path), path)
    if prefix:
        raw = {k[len(prefix):]: v for k, v in raw.items() if k.startswith(prefix)}
        if not raw:
            raise CheckpointError(f'{path!r} has no keys under prefix {prefix!r}')
    state, ignored = converter(raw)
    model_state = model.state_dict()
    missing, new, unexpected = compare_state_dicts(model_state, state, allow_missing)
    if missing or unexpected:
        raise CheckpointError(
            f'Checkpoint {path!r} does not match {type(model).__name__}: '
            f'{len(missing)} missing key(s) [{_preview(missing)}], '
            f'{len(unexpected)} unexpected key(s) [{_preview(unexpected)}].')
    model.load_state_dict(state, strict=False)
    report = LoadReport(sorted(state), new, ignored)
    print_log(
        f'Loaded pretrained {type(model).__name__} weights from {path}: '
        f'{len(report.loaded)} tensors loaded, {len(new)} new (kept at init: '
        f'{_preview(new, 4)}), {len(ignored)} checkpoint tensors ignored '
        f'({_preview(ignored, 4)}).',
        logger='current')
    return report
