"""Key-by-key and shape-by-shape comparison of a checkpoint with a model.

One comparison serves every loader: pretrained backbones (``init_cfg`` Pretrained), mmengine's
``load_from``/``--resume`` (:class:`~mambaout_dense.engine.compat.CheckpointCompatibilityHook`),
``tools/demo.py`` and the analysis tools. As nanoGPT does when it imports foreign weights, every
key and every shape is checked, and a mismatch raises with the key names instead of loading
partially.
"""
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, List, Mapping, Tuple

import torch

from ..errors import CheckpointError

__all__ = ['StateDictDiff', 'diff_state_dicts', 'check_state_dict', 'preview_keys']


def preview_keys(keys: List[str], n: int = 6) -> str:
    """The first ``n`` keys, comma-separated, with a count of the rest."""
    more = f' ... (+{len(keys) - n} more)' if len(keys) > n else ''
    return ', '.join(keys[:n]) + more


@dataclass
class StateDictDiff:
    """How a checkpoint's tensors differ from a model's state dict.

    Attributes:
        missing (list[str]): Model keys the checkpoint lacks (not allowed to be missing).
        allowed_missing (list[str]): Model keys the checkpoint lacks that may stay at their
            initialisation (e.g. output norms added for dense prediction).
        unexpected (list[str]): Checkpoint keys the model does not have.
        shape_mismatches (list[tuple[str, tuple, tuple]]): (key, checkpoint shape, model shape).
    """
    missing: List[str] = field(default_factory=list)
    allowed_missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    shape_mismatches: List[Tuple[str, tuple, tuple]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the checkpoint fits (only allowed keys missing)."""
        return not (self.missing or self.unexpected or self.shape_mismatches)

    def describe(self) -> str:
        """One line: the first shape mismatch (with both shapes), missing and unexpected keys."""
        problems = []
        if self.shape_mismatches:
            key, ckpt_shape, model_shape = self.shape_mismatches[0]
            more = (f' (first of {len(self.shape_mismatches)})'
                    if len(self.shape_mismatches) > 1 else '')
            problems.append(f'shape mismatch for {key!r}: checkpoint {ckpt_shape} vs model '
                            f'{model_shape}{more}')
        if self.missing or self.unexpected:
            problems.append(f'{len(self.missing)} missing key(s) [{preview_keys(self.missing)}], '
                            f'{len(self.unexpected)} unexpected key(s) '
                            f'[{preview_keys(self.unexpected)}]')
        return '; '.join(problems)


def diff_state_dicts(model_state: Mapping[str, torch.Tensor], ckpt_state: Mapping[str, Any],
                     allow_missing: Iterable[str] = (),
                     ignore: Iterable[str] = ()) -> StateDictDiff:
    """Compare a checkpoint's tensors with a model's state dict.

    Args:
        model_state (Mapping): ``model.state_dict()``.
        ckpt_state (Mapping): The checkpoint's tensors (non-tensor values are skipped; a
            ``module.`` prefix left by DDP is stripped).
        allow_missing (Iterable[str]): Regexes of model keys that may be absent from the
            checkpoint. Defaults to ().
        ignore (Iterable[str]): Regexes of keys left out of the comparison altogether (missing,
            unexpected or of another shape, e.g. a classifier re-sized for fine-tuning).
            Defaults to ().

    Returns:
        StateDictDiff: The differences.
    """
    allowed = [re.compile(p) for p in allow_missing]
    ignored = [re.compile(p) for p in ignore]
    state = {(k[len('module.'):] if k.startswith('module.') else k): v
             for k, v in ckpt_state.items()}
    state = {k: v for k, v in state.items()
             if isinstance(v, torch.Tensor) and not any(p.search(k) for p in ignored)}
    diff = StateDictDiff()
    for key, value in state.items():
        if key not in model_state:
            diff.unexpected.append(key)
        elif tuple(value.shape) != tuple(model_state[key].shape):
            diff.shape_mismatches.append((key, tuple(value.shape), tuple(model_state[key].shape)))
    for key in model_state:
        if key in state or any(p.search(key) for p in ignored):
            continue
        (diff.allowed_missing if any(p.search(key) for p in allowed) else diff.missing).append(key)
    return diff


def check_state_dict(model_state: Mapping[str, torch.Tensor], ckpt_state: Mapping[str, Any],
                     source: str, allow_missing: Iterable[str] = (), ignore: Iterable[str] = (),
                     hint: str = '') -> StateDictDiff:
    """:func:`diff_state_dicts`, raising when the checkpoint does not fit.

    Args:
        model_state, ckpt_state, allow_missing, ignore: As for :func:`diff_state_dicts`.
        source (str): Names the checkpoint (and the model) in the message.
        hint (str): Appended to the message (what to do about it). Defaults to ''.

    Returns:
        StateDictDiff: The differences (only allowed missing keys).

    Raises:
        CheckpointError: Missing or unexpected keys, or a shape mismatch, with the key names.
    """
    diff = diff_state_dicts(model_state, ckpt_state, allow_missing, ignore)
    if not diff.ok:
        raise CheckpointError(f'{source} does not fit the model: {diff.describe()}.'
                              + (f' {hint}' if hint else ''))
    return diff
