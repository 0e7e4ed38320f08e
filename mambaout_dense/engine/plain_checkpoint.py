"""Checkpoints that load with ``torch.load(weights_only=True)``.

mmengine 0.10.7 stores its message hub (``HistoryBuffer`` objects holding numpy arrays) in every
checkpoint, and torch >= 2.6 refuses those globals when ``weights_only=True``, so ``--resume``
breaks. Allow-listing them is not enough (numpy's reconstruction asks for ``builtins.getattr``,
which would defeat the point). :class:`PlainCheckpointHook` instead changes what goes into the
file: before saving it turns history buffers into tagged dicts of tensors and numpy values into
tensors or Python numbers; after loading it turns them back. Nothing is allow-listed.
"""
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer

from ..registry import HOOKS

__all__ = ['PlainCheckpointHook', 'to_plain', 'from_plain']

_BUFFER_TAG = '__mambaout_dense_history_buffer__'


def to_plain(obj: Any) -> Any:
    """Recursively replace objects torch's weights-only unpickler refuses.

    ``HistoryBuffer`` becomes a tagged dict, ``np.ndarray`` a tensor, numpy scalars Python
    numbers, tuples/lists/dicts are rebuilt with converted items. Tensors and plain Python values
    pass through.

    Args:
        obj (Any): A checkpoint or part of one.

    Returns:
        Any: The converted object.
    """
    if isinstance(obj, HistoryBuffer):
        log, count = obj._log_history, obj._count_history  # noqa: SLF001
        return {
            _BUFFER_TAG: True,
            'log_history': torch.from_numpy(np.asarray(log, dtype=np.float64).copy()),
            'count_history': torch.from_numpy(np.asarray(count, dtype=np.int64).copy()),
            'max_length': int(obj.max_length),
        }
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy()) if obj.dtype != object else [
            to_plain(v) for v in obj.tolist()
        ]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, OrderedDict):
        return OrderedDict((k, to_plain(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, '_fields'):
        return tuple(to_plain(v) for v in obj)
    return obj


def from_plain(obj: Any) -> Any:
    """Inverse of :func:`to_plain` for history buffers (other values stay plain).

    Args:
        obj (Any): A loaded checkpoint or part of one.

    Returns:
        Any: The object with tagged dicts turned back into ``HistoryBuffer``.
    """
    if isinstance(obj, dict):
        if obj.get(_BUFFER_TAG, False):
            buf = HistoryBuffer(max_length=obj['max_length'])
            buf._log_history = obj['log_history'].numpy()  # noqa: SLF001
            buf._count_history = obj['count_history'].numpy()  # noqa: SLF001
            return buf
        items = ((k, from_plain(v)) for k, v in obj.items())
        return OrderedDict(items) if isinstance(obj, OrderedDict) else dict(items)
    if isinstance(obj, list):
        return [from_plain(v) for v in obj]
    return obj


@HOOKS.register_module()
class PlainCheckpointHook(Hook):
    """Make saved checkpoints loadable with ``weights_only=True`` and restore them on resume.

    ``tools/train.py`` adds this hook to every run; configs may list it explicitly too.
    """

    priority = 'VERY_LOW'  # run after hooks that add their own entries to the checkpoint

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Convert the checkpoint in place to plain containers, tensors and numbers."""
        converted = to_plain(checkpoint)
        checkpoint.clear()
        checkpoint.update(converted)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Turn tagged history buffers back into ``HistoryBuffer`` objects in place."""
        if 'message_hub' in checkpoint:
            checkpoint['message_hub'] = from_plain(checkpoint['message_hub'])
