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

from ..errors import CheckpointError
from .compare import check_state_dict, preview_keys
from .io import extract_state_dict, safe_load

__all__ = ['load_pretrained', 'resolve_checkpoint', 'LoadReport', 'TASK_PREFIXES']

StateDict = Dict[str, torch.Tensor]
#: Prefixes under which a whole detector/segmentor checkpoint stores its backbone.
TASK_PREFIXES = ('backbone.', )


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
    name = type(model).__name__
    if prefix:
        raw = {k[len(prefix):]: v for k, v in raw.items() if k.startswith(prefix)}
        if not raw:
            raise CheckpointError(f'{path!r} has no keys under prefix {prefix!r}')
    else:
        task_prefix = next((p for p in TASK_PREFIXES if any(k.startswith(p) for k in raw)), None)
        if task_prefix is not None:
            raise CheckpointError(
                f'{path!r} is a whole detector/segmentor checkpoint (its {name} weights are under '
                f"{task_prefix!r}): load it with init_cfg=dict(type='Pretrained', "
                f"checkpoint={path!r}, prefix={task_prefix!r}), or use load_from={path!r} to "
                'load the whole model.')
    try:
        state, ignored = converter(raw)
    except CheckpointError as err:
        raise CheckpointError(f'{path!r} cannot be loaded into {name}: {err}') from None
    diff = check_state_dict(model.state_dict(), state, f'Checkpoint {path!r} (for {name})',
                            allow_missing=allow_missing,
                            hint='It is for another architecture or size.')
    model.load_state_dict(state, strict=False)
    report = LoadReport(sorted(state), diff.allowed_missing, ignored)
    print_log(
        f'Loaded pretrained {name} weights from {path}: {len(report.loaded)} tensors loaded, '
        f'{len(report.new)} new (kept at init: {preview_keys(report.new, 4)}), '
        f'{len(ignored)} checkpoint tensors ignored ({preview_keys(ignored, 4)}).',
        logger='current')
    return report
